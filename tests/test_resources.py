"""The data files are found through the ``masf`` package alone: no top-level ``ablations`` or ``bench``
module, pyproject.toml maps the folders that masf/resources.py reads, and a checkout on sys.path works too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from masf import resources
from masf.config import list_presets
from masf.config.variants import list_variants

ROOT = Path(__file__).resolve().parents[1]

READ_EVERYTHING = """
import json, sys
from masf.config import list_presets
from masf.resources import DATA_PACKAGES
from masf.fingerprint import code_fingerprint
from masf.runner.plan import known_suites
from masf.config.variants import list_variants
print(json.dumps({"variants": list_variants(), "presets": list_presets(), "suites": list(known_suites()),
                  "code": code_fingerprint(), "data_packages_imported": sorted(set(DATA_PACKAGES) & set(sys.modules)),
                  "top_level": sorted({m.split(".")[0] for m in sys.modules} & {"ablations", "bench"})}))
"""


def read_everything(env: dict[str, str], prelude: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", prelude + READ_EVERYTHING], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_masf_imports_no_top_level_ablations_or_bench():
    """From the checkout, where ``import ablations`` and ``import bench`` would succeed."""
    seen = read_everything({**os.environ, "PYTHONPATH": ""})
    assert seen["top_level"] == [] and seen["variants"] == list_variants() and seen["presets"] == list_presets()


def test_a_checkout_on_sys_path_without_an_install_reads_its_folders():
    """As bench/gpu_check.sh runs it: PYTHONPATH=checkout, the editable install's finder out of the way."""
    no_install = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]\n"
    seen = read_everything({**os.environ, "PYTHONPATH": str(ROOT)}, no_install)
    installed = read_everything({**os.environ, "PYTHONPATH": ""})
    assert seen.pop("data_packages_imported") == [] and installed.pop("data_packages_imported") == sorted(resources.DATA_PACKAGES)
    assert seen == installed


def test_every_yaml_of_the_folders_is_found():
    assert list_presets() == sorted(p.stem for p in (ROOT / "bench" / "presets").glob("*.yaml"))
    assert list(resources.suites()) == sorted(p.stem for p in (ROOT / "bench" / "suites").glob("*.yaml"))
    assert list(resources.grids()) == sorted(p.stem for p in (ROOT / "ablations" / "grids").glob("*.yaml"))
    assert Path(str(resources.variants_file())).resolve() == ROOT / "ablations" / "variants.yaml"


def test_pyproject_installs_masf_alone_with_the_data_packages():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {".".join(d.relative_to(ROOT).parts) for d in (ROOT / "masf").rglob("*")
                   if d.is_dir() and any(d.glob("*.py"))}
    assert set(setuptools["packages"]) == {"masf", *subpackages, *resources.DATA_PACKAGES}
    assert setuptools["package-dir"] == resources.DATA_PACKAGES
    assert setuptools["package-data"] == {"masf.presets": ["*.yaml"], "masf.suites": ["*.yaml"],
                                          "masf.ablations": ["variants.yaml", "grids/*.yaml"]}
