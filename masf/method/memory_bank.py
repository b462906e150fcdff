"""FAISS behind one small class: fit / search / save / load / reset.

The index is chosen at run time: a GPU index when faiss has GPU support and
CUDA is up (``device="auto"`` or ``"gpu"``), a flat CPU index otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import faiss
import numpy as np
import torch


def faiss_gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and torch.cuda.is_available()


class MemoryBank:
    """Exact L2 kNN over a set of prototypes; the score is the mean distance to the k nearest."""

    def __init__(self, k: int = 3, device: Literal["auto", "cpu", "gpu"] = "auto"):
        self.k = k
        self.device = device
        self.prototypes: Optional[np.ndarray] = None  # (M, D) float32
        self._index = None

    @property
    def on_gpu(self) -> bool:
        if self.device == "cpu":
            return False
        available = faiss_gpu_available()
        if self.device == "gpu" and not available:
            raise RuntimeError("model.samb.device=gpu but faiss has no GPU support here (pip install masf-bench[gpu])")
        return available

    def fit(self, prototypes: np.ndarray) -> "MemoryBank":
        self.prototypes = np.ascontiguousarray(prototypes, dtype=np.float32)
        index = faiss.IndexFlatL2(self.prototypes.shape[1])
        if self.on_gpu:
            self._gpu_res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_res, 0, index)
        index.add(self.prototypes)
        self._index = index
        return self

    def knn(self, queries: np.ndarray, k: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) -> Euclidean distances (N, k) and prototype indices (N, k), nearest first."""
        if self._index is None:
            raise RuntimeError("memory bank searched before fit()")
        k = min(self.k if k is None else k, self._index.ntotal)
        d2, idx = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.sqrt(np.maximum(d2, 0.0)), idx

    def search(self, queries: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) mean Euclidean distance to the k nearest prototypes."""
        return self.knn(queries)[0].mean(axis=1)

    def state(self) -> dict:
        """Everything needed to rebuild the bank, as tensors (safe for ``torch.load(weights_only=True)``)."""
        protos = torch.empty(0) if self.prototypes is None else torch.from_numpy(self.prototypes.copy())
        return {"k": self.k, "prototypes": protos}

    def load_state(self, state: dict) -> "MemoryBank":
        self.k = int(state["k"])
        if state["prototypes"].numel():
            self.fit(state["prototypes"].numpy())
        else:
            self.reset()
        return self

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path, device: Literal["auto", "cpu", "gpu"] = "auto") -> "MemoryBank":
        return cls(device=device).load_state(torch.load(path, map_location="cpu", weights_only=True))

    def reset(self) -> None:
        self.prototypes = None
        self._index = None

    def __len__(self) -> int:
        return 0 if self.prototypes is None else len(self.prototypes)
