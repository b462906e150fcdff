"""Benchmark suites in bench/suites: every one loads and names real presets and variants."""

from __future__ import annotations

import pytest

from masf.config import preset_path
from masf.errors import MasfError
from masf.runner.plan import SUITE_DIR, load_suite
from masf.variants import get_variant

SUITES = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def test_there_are_suites():
    assert {"paper-table3", "paper-table4", "smoke-ablations"} <= set(SUITES)


@pytest.mark.parametrize("name", SUITES)
def test_suite_is_valid(name):
    suite = load_suite(name)
    assert preset_path(suite["preset"]).is_file()
    assert suite["categories"] == "all" or all(isinstance(c, str) for c in suite["categories"])
    if suite["variants"] != "ablations":
        for v in suite["variants"]:
            get_variant(v)
    assert all(isinstance(s, int) for s in suite["seeds"])


def test_bad_suites_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: all\nvariantz: [full]\n")
    with pytest.raises(MasfError, match=r"bad\.yaml: unknown suite key 'variantz'"):
        load_suite(str(bad))
    with pytest.raises(MasfError, match="unknown suite 'nope'"):
        load_suite("nope")
