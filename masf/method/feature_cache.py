"""The teacher's features, computed once: a content-addressed cache in memory and on disk.

The teacher is frozen and the images are not augmented, so the features of an
image are the same for every variant, seed and epoch of a sweep. On CPU the teacher
(masf/method/teacher.py) computes them one image at a time, so an image's features
never depend on the batch it came in, and asks a :class:`FeatureCache` first. On CUDA
it runs whole batches and leaves the cache alone unless ``train.feature_cache=on``
(then a batch is hashed with one host copy, :func:`batch_digests`).

An entry's key is the image tensor itself (its bytes and shape: the file's
content after resize and normalisation, a TTSA view after its phase noise) in a
namespace of everything else the features depend on: backbone, weights source
(and weights file), layers, timm and torch versions, device type and autocast
dtype. Metrics on the per-image path are therefore exactly equal with and without the cache.

Two tiers: a per-process memory tier (kept until its budget is used, never
evicted: training cycles over the same images, where eviction would always
miss) and an optional disk tier (the sweep's storage; shared storage on a
cluster), written atomically, bounded by ``limit_bytes``. Past the limit the
cache stops writing, says so once, and features are computed as without it.

A disk entry cannot lie. Its file holds what it is the features of (format,
namespace and key) and a sha256 checksum over those and the tensors' dtypes,
shapes and bytes, all checked on read. A file that fails any check (another
image's features moved onto this key, another namespace, a flipped byte, a torn
or half-copied file, a foreign file, an entry of the old format) is never used:
the features are computed again and rewritten, the entry counts in
``rejected`` (``feature_cache_rejected`` in a trial's row), and a warning says
once per cache that entries were rejected and where.
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
ENTRY_FORMAT = "masf-feature-cache/2"  # what a disk entry says it is (the first format, a bare list of tensors, is rejected)


def tensor_digest(x: torch.Tensor) -> str:
    """Hex digest of a tensor's dtype, shape and bytes."""
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h = hashlib.sha1(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def batch_digests(x: torch.Tensor) -> list[str]:
    """:func:`tensor_digest` of each image of a batch, with one device-to-host copy for the whole batch."""
    host = x.detach()
    if host.device.type != "cpu":
        host = host.cpu()
    return [tensor_digest(host[i]) for i in range(host.shape[0])]


def entry_checksum(namespace: str, key: str, feats: list[torch.Tensor]) -> str:
    """sha256 over an entry's format, namespace, key and each tensor's dtype, shape and bytes."""
    h = hashlib.sha256(f"{ENTRY_FORMAT}\0{namespace}\0{key}\0{len(feats)}\0".encode())
    for t in feats:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}\0".encode())
        h.update((t if t.dtype != torch.bfloat16 else t.view(torch.int16)).numpy().tobytes())
    return h.hexdigest()


def check_entry(entry: object, namespace: str, key: str) -> tuple[Optional[list[torch.Tensor]], str]:
    """(the features, "") of a loaded disk entry that is what it says, else (None, why not)."""
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        return None, "not an entry of this format"
    if entry.get("namespace") != namespace:
        return None, "an entry of another namespace"
    if entry.get("key") != key:
        return None, "the features of another image"
    feats = entry.get("features")
    if not isinstance(feats, list) or not feats or not all(isinstance(t, torch.Tensor) for t in feats):
        return None, "no features"
    if entry.get("checksum") != entry_checksum(namespace, key, feats):
        return None, "a bad checksum"
    return feats, ""


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
    misses: int = 0  # lookups without usable features (rejected entries included)
    writes: int = 0
    rejected: int = 0  # disk entries that failed a check on read: recomputed and rewritten, never used
    full: bool = False  # the disk tier reached its limit: nothing more is written
    _memory: dict = field(default_factory=dict, repr=False)
    _memory_used: int = 0
    _disk_used: Optional[int] = None
    _warned_rejected: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.root is not None:
            self.root = Path(self.root)

    def stats(self) -> dict[str, float]:
        return {"feature_cache_hits": self.hits, "feature_cache_misses": self.misses,
                "feature_cache_writes": self.writes, "feature_cache_full": int(self.full),
                "feature_cache_rejected": self.rejected}

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}.pt"

    def get(self, namespace: str, key: str) -> Optional[list[torch.Tensor]]:
        found = self._memory.get((namespace, key))
        if found is None and self.root is not None:
            found = self._read(namespace, key)
            if found is not None:
                self._remember(namespace, key, found)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        return found

    def _read(self, namespace: str, key: str) -> Optional[list[torch.Tensor]]:
        """A disk entry's features when it passes every check; a failing one is counted and reported."""
        path = self._path(namespace, key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:  # replaced or removed meanwhile: a plain miss
            return None
        except Exception:  # noqa: BLE001 - torch raises many kinds for a torn or foreign file
            feats, why = None, "an unreadable file (torn or foreign)"
        else:
            feats, why = check_entry(entry, namespace, key)
        if feats is None:
            self._reject(path, why)
        return feats

    def _reject(self, path: Path, why: str) -> None:
        with self._lock:
            self.rejected += 1
            warn = not self._warned_rejected
            self._warned_rejected = True
        if warn:  # once per cache; the count is in stats()
            warnings.warn(f"feature cache {self.root}: rejected entries, never used: recomputed and rewritten "
                          f"(first: {path}, {why}; feature_cache_rejected counts them)", stacklevel=4)

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
        path = self._path(namespace, key)
        size = sum(t.numel() * t.element_size() for t in feats) + 1024
        try:
            size -= path.stat().st_size  # a rejected entry is replaced, not added
        except OSError:
            pass
        with self._lock:
            if self._disk_used is None:
                self._disk_used = folder_bytes(self.root) if self.root.exists() else 0
            if self._disk_used + size > self.limit_bytes:
                self.full = True
                warnings.warn(f"feature cache {self.root} reached its limit ({self.limit_bytes / 2**30:.1f} GiB): "
                              "further teacher features are computed and not stored", stacklevel=3)
                return
            self._disk_used += size
        entry = {"format": ENTRY_FORMAT, "namespace": namespace, "key": key, "features": feats,
                 "checksum": entry_checksum(namespace, key, feats)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                torch.save(entry, fh)
            os.replace(tmp, path)  # two trials writing one entry write the same bytes
            self.writes += 1
        except (OSError, RuntimeError) as exc:
            self.full = True
            warnings.warn(f"feature cache {self.root} is not writable ({getattr(exc, 'strerror', None) or exc}): "
                          "teacher features are computed and not stored", stacklevel=3)
