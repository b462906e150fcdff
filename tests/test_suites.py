"""Benchmark suites (bench/suites) and ablation grids (ablations/grids): every one loads and names real
presets and variants, and ``--suite NAME`` finds a name in either."""

from __future__ import annotations

import pytest

from masf import resources
from masf.config import preset_path
from masf.errors import MasfError
from masf.runner.plan import known_suites, load_suite
from masf.config.variants import get_variant

SUITES = list(known_suites())


def test_there_are_suites_and_grids():
    assert {"paper-table3", "paper-table4", "smoke-ablations"} <= set(resources.grids())
    assert "real-cpu" in resources.suites()
    assert set(SUITES) == set(resources.grids()) | set(resources.suites())


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
    with pytest.raises(MasfError, match=r"unknown suite 'nope' \(known: paper-table3, paper-table4, real-cpu, smoke-ablations"):
        load_suite("nope")
    with pytest.raises(MasfError, match="suite file not found: .*missing.yaml"):
        load_suite(str(tmp_path / "missing.yaml"))


def test_a_name_in_both_folders_is_an_error(monkeypatch):
    grids = resources.grids()
    monkeypatch.setattr(resources, "suites", lambda: {"smoke-ablations": grids["smoke-ablations"]})
    with pytest.raises(MasfError, match="suite 'smoke-ablations' is both a benchmark suite and an ablation grid"):
        load_suite("real-cpu")
