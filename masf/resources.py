"""Where the data files are: config presets, benchmark suites, ablation grids and the variant entries.

pyproject.toml installs three folders of the repository as data packages of ``masf``
(``DATA_PACKAGES``); importlib.resources finds them in a wheel and in the editable install
alike, in any interpreter of the environment (Ray workers included). A checkout used from
``sys.path`` alone, without an install (``PYTHONPATH``, as bench/gpu_check.sh runs it), has no
such packages: there the folders are read where they lie in the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from masf.errors import MasfError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# data package -> its folder in the repository, as [tool.setuptools.package-dir] of pyproject.toml maps it
DATA_PACKAGES = {"masf.presets": "bench/presets", "masf.suites": "bench/suites", "masf.ablations": "ablations"}
_CHECKOUT = Path(__file__).resolve().parent.parent


def data_folder(package: str) -> Traversable:
    """The folder of data package ``package`` (a key of ``DATA_PACKAGES``), installed or in the checkout."""
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        folder = _CHECKOUT / DATA_PACKAGES[package]
        if not folder.is_dir():
            raise MasfError(f"data package {package} is not installed and {folder} does not exist: reinstall masf-bench") from None
        return folder


def yaml_files(folder: Traversable) -> dict[str, Traversable]:
    """NAME -> file for every NAME.yaml in ``folder``, sorted by name."""
    files = {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml") and f.is_file()}
    return dict(sorted(files.items()))


def presets() -> dict[str, Traversable]:
    """The config presets (bench/presets)."""
    return yaml_files(data_folder("masf.presets"))


def suites() -> dict[str, Traversable]:
    """The benchmark suites (bench/suites)."""
    return yaml_files(data_folder("masf.suites"))


def grids() -> dict[str, Traversable]:
    """The ablation grids (ablations/grids)."""
    return yaml_files(data_folder("masf.ablations") / "grids")


def variants_file() -> Traversable:
    """The variant entries (ablations/variants.yaml)."""
    return data_folder("masf.ablations") / "variants.yaml"
