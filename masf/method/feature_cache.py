"""The teacher's features, computed once: a content-addressed cache in memory and on disk.

The teacher is frozen and the images are not augmented, so the features of an
image are the same for every variant, seed and epoch of a sweep. The teacher
(masf/method/teacher.py) computes them one image at a time, so an image's features
never depend on the batch it came in, and asks a :class:`FeatureCache` first.

An entry's key is the image tensor itself (its bytes and shape: the file's
content after resize and normalisation, a TTSA view after its phase noise) in a
namespace of everything else the features depend on: backbone, weights source
(and weights file), layers, timm and torch versions, device type and autocast
dtype. Metrics are therefore exactly equal with and without the cache.

Two tiers: a per-process memory tier (kept until its budget is used, never
evicted: training cycles over the same images, where eviction would always
miss) and an optional disk tier (the sweep's storage; shared storage on a
cluster), written atomically, bounded by ``limit_bytes``. Past the limit the
cache stops writing, says so once, and features are computed as without it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

DEFAULT_MEMORY_BYTES = 2 << 30


def tensor_digest(x: torch.Tensor) -> str:
    """Hex digest of a tensor's dtype, shape and bytes."""
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h = hashlib.sha1(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def folder_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


@dataclass
class FeatureCache:
    """Per-image teacher features by (namespace, image digest); see the module docstring."""

    root: Optional[Path] = None  # disk tier (None: memory only)
    limit_bytes: int = 20 << 30  # disk tier size limit
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    hits: int = 0
    misses: int = 0
    writes: int = 0
    full: bool = False  # the disk tier reached its limit: nothing more is written
    _memory: dict = field(default_factory=dict, repr=False)
    _memory_used: int = 0
    _disk_used: Optional[int] = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.root is not None:
            self.root = Path(self.root)

    def stats(self) -> dict[str, float]:
        return {"feature_cache_hits": self.hits, "feature_cache_misses": self.misses,
                "feature_cache_writes": self.writes, "feature_cache_full": int(self.full)}

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}.pt"

    def get(self, namespace: str, key: str) -> Optional[list[torch.Tensor]]:
        found = self._memory.get((namespace, key))
        if found is None and self.root is not None:
            path = self._path(namespace, key)
            if path.exists():
                try:
                    found = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # a torn or foreign file: computed again (and rewritten)
                    found = None
                if found is not None:
                    self._remember(namespace, key, found)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        return found

    def _remember(self, namespace: str, key: str, feats: list[torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in feats)
        with self._lock:
            if self._memory_used + size <= self.memory_bytes:
                self._memory[(namespace, key)] = feats
                self._memory_used += size

    def put(self, namespace: str, key: str, feats: list[torch.Tensor]) -> None:
        feats = [f.detach().to("cpu", copy=True).contiguous() for f in feats]  # own storage, not a view of a batch
        self._remember(namespace, key, feats)
        if self.root is None or self.full:
            return
        size = sum(t.numel() * t.element_size() for t in feats) + 1024
        with self._lock:
            if self._disk_used is None:
                self._disk_used = folder_bytes(self.root) if self.root.exists() else 0
            if self._disk_used + size > self.limit_bytes:
                self.full = True
                warnings.warn(f"feature cache {self.root} reached its limit ({self.limit_bytes / 2**30:.1f} GiB): "
                              "further teacher features are computed and not stored", stacklevel=3)
                return
            self._disk_used += size
        path = self._path(namespace, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                torch.save(feats, fh)
            os.replace(tmp, path)  # two trials writing one entry write the same bytes
            self.writes += 1
        except (OSError, RuntimeError) as exc:
            self.full = True
            warnings.warn(f"feature cache {self.root} is not writable ({getattr(exc, 'strerror', None) or exc}): "
                          "teacher features are computed and not stored", stacklevel=3)
