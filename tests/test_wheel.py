"""The package stands on its own: a wheel of the project holds ``masf`` alone (its presets, suites, grids and
variant entries inside), and installed apart from the checkout it lists the variants and trains a trial."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what `git status` ignores (.gitignore) and git's own folder: never part of a build
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache",
                                     "mlruns", "mlflow.db", "mlartifacts", "masf-runs", ".masf-cache", "out", ".whl")
# where masf, its data files and its code fingerprint come from, with the editable install's finder out of the way
PROBE = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", "")]
import masf
from masf import resources
from masf.fingerprint import code_fingerprint
from masf.config.variants import list_variants
print(json.dumps({"masf": masf.__file__, "variants_file": str(resources.variants_file()),
                  "presets": {k: str(v) for k, v in resources.presets().items()}, "variants": list_variants(),
                  "code": code_fingerprint()}))
"""


def run(*args: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A wheel built from a copy of the checkout (nothing written into the checkout), installed with --target."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    wheels, site = tmp / "wheels", tmp / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source), cwd=tmp, pythonpath=tmp)
    (wheel,) = wheels.glob("masf_bench-*.whl")
    run(*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp, pythonpath=tmp)
    return {"tmp": tmp, "source": source, "wheel": wheel, "site": site}


@pytest.mark.slow
def test_the_wheel_holds_masf_alone_with_its_data(installed):
    source = installed["source"]
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"masf"}
    data = {f"masf/presets/{p.name}" for p in (source / "bench" / "presets").glob("*.yaml")}
    data |= {f"masf/suites/{p.name}" for p in (source / "bench" / "suites").glob("*.yaml")}
    data |= {f"masf/ablations/grids/{p.name}" for p in (source / "ablations" / "grids").glob("*.yaml")}
    assert {"masf/presets/smoke.yaml", "masf/suites/real-cpu.yaml", "masf/ablations/grids/smoke-ablations.yaml"} <= data
    assert data | {"masf/ablations/variants.yaml"} <= set(names)
    sources = {p.relative_to(source).as_posix() for p in (source / "masf").rglob("*.py")}
    assert sources <= set(names)  # every subpackage is listed in pyproject.toml


@pytest.mark.slow
def test_the_installed_wheel_runs_from_outside_the_checkout(installed, synth_root, tiny, tmp_path):
    site, source = installed["site"], installed["source"]
    probe = json.loads(run(sys.executable, "-c", PROBE, cwd=tmp_path, pythonpath=site).stdout)
    assert Path(probe["masf"]).is_relative_to(site) and Path(probe["variants_file"]).is_relative_to(site)
    assert {"cpu", "paper", "smoke"} <= set(probe["presets"]) and all(Path(p).is_relative_to(site) for p in probe["presets"].values())
    # the same code gives the same fingerprint from the wheel and from its checkout (read from sys.path, not installed)
    from_checkout = json.loads(run(sys.executable, "-c", PROBE, cwd=tmp_path, pythonpath=source).stdout)
    assert Path(from_checkout["variants_file"]).is_relative_to(source)
    assert probe["code"] == from_checkout["code"] and probe["variants"] == from_checkout["variants"]

    cli = site / "bin" / "masf-bench"
    listed = run(str(cli), "variants", cwd=tmp_path, pythonpath=site).stdout
    assert all(name in listed for name in ("full", "no_sdm", "no_ttsa", "spatial_only", "patchcore", "padim"))
    assert "patchcore (baseline)" in listed
    sets = [f"{k}={v}" for k, v in {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0}.items()
            if k not in ("data.root", "data.category")]
    trained = run(str(cli), "train", "--data-root", str(synth_root), "-c", "bottle", "--preset", "smoke", "--variant", "no_ttsa",
                  *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path / "trial"), cwd=tmp_path, pythonpath=site)
    assert "bottle / no_ttsa / seed" in trained.stdout
    row = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert row["variant"] == "no_ttsa" and row["code_fingerprint"] == probe["code"] and 0.0 <= row["last/image_auroc"] <= 1.0
