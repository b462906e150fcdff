"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

The published method on masf's frozen teacher: the maps of the two middle
layers (``model.patchcore.layers``; strides 8 and 16 of EfficientNet-Lite0,
layer2 and layer3 of WRN-50), each aggregated over its 3x3 neighbourhood (zero
padding at the border, as the reference code's unfold), the deeper map upsampled
bilinearly onto the finer grid and concatenated: one bank of locally aware patch
features. A greedy k-center coreset (10 %, selected on a seeded Gaussian random
projection, no cap) is the bank; a test patch scores its distance to the nearest
bank patch; the image score is the maximum patch score, optionally reweighted
as in the paper (eq. 7) by how isolated the nearest bank patch is. The map is
upsampled to the input and blurred (sigma 4).
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from masf.config import PatchCoreConfig
from masf.method.coreset import coreset_subsample
from masf.method.memory_bank import MemoryBank
from masf.method.scores import Scores, TrainingFree, gaussian_blur
from masf.method.teacher import Teacher


def aggregate(maps: list[torch.Tensor], local: int, mode: str = "bilinear") -> torch.Tensor:
    """Maps (B, C_i, H_i, W_i) -> (B, sum C_i, H, W) on the finest grid, each averaged over local x local first."""
    if local > 1:
        maps = [F.avg_pool2d(m, local, stride=1, padding=local // 2, count_include_pad=True) for m in maps]
    grid = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = [m if m.shape[-2:] == grid else F.interpolate(m, size=grid, mode=mode, **kw) for m in maps]
    return torch.cat(up, dim=1)


def reweight(test: np.ndarray, star: np.ndarray, bank: MemoryBank, neighbours: int) -> float:
    """The paper's weight 1 - exp(|m_test - m*|) / sum_{m in N_b(m*)} exp(|m_test - m|) (eq. 7).

    ``test`` (D,) is the image's highest-scoring patch, ``star`` the index of its nearest
    bank patch m*; N_b(m*) are the b bank patches nearest to m* (m* itself first).
    """
    protos = bank.prototypes
    _, support = bank.knn(protos[star][None], neighbours)
    d = np.linalg.norm(protos[support[0]] - test[None], axis=1).astype(np.float64)
    w = np.exp(d - d.max())
    return float(1.0 - w[0] / w.sum())


class PatchCore(TrainingFree):
    """One bank of aggregated middle-layer patches; ``fit`` on normal images, then ``score``."""

    def __init__(self, cfg: PatchCoreConfig, teacher: Teacher, seed: int = 0, device: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.teacher = teacher
        self.seed = seed
        self.bank = MemoryBank(k=cfg.k, device=device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> patch features (B, D, h, w) on the finer layer's grid."""
        feats = self.teacher(x)
        return aggregate([feats[i] for i in self.cfg.layers], self.cfg.local_avg)

    @torch.no_grad()
    def fit(self, images: Iterable[torch.Tensor]) -> dict[str, float]:
        parts = []
        for x in images:
            e = self.embed(x)
            parts.append(e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]).cpu().numpy())
        patches = np.concatenate(parts, axis=0)
        n = len(patches)
        c = self.cfg
        patches = coreset_subsample(patches, c.coreset_ratio, c.coreset_max, c.projection_dim, self.seed)
        self.bank.fit(patches)
        return {"bank/patches": n, "bank/prototypes": len(patches)}

    @property
    def fitted(self) -> bool:
        return len(self.bank) > 0

    def fitted_state(self) -> dict:
        return {"bank": self.bank.state()}

    def load_fitted_state(self, state: dict) -> None:
        self.bank.load_state(state["bank"])

    @torch.no_grad()
    def patch_scores(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Normalised images (B, 3, H, W) -> patch scores (B, h, w) and image scores (B,), as numpy."""
        if not self.fitted:
            raise RuntimeError("score() before fit()")
        e = self.embed(x)
        b, d, h, w = e.shape
        queries = e.permute(0, 2, 3, 1).reshape(-1, d).cpu().numpy()
        dist, nearest = self.bank.knn(queries)
        patch = dist.mean(axis=1).reshape(b, h * w)
        image = patch.max(axis=1)
        if self.cfg.reweight:
            top = patch.argmax(axis=1)
            for i in range(b):
                j = i * h * w + int(top[i])
                image[i] *= reweight(queries[j], int(nearest[j, 0]), self.bank, self.cfg.reweight_neighbours)
        return patch.reshape(b, h, w), image

    @torch.no_grad()
    def score(self, x: torch.Tensor, ttsa: Optional[bool] = None) -> Scores:
        """Normalised images (B, 3, H, W) -> anomaly maps at input resolution and image scores."""
        patch, image = self.patch_scores(x)
        maps = torch.from_numpy(patch).to(x.device, torch.float32).unsqueeze(1)
        up = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        return Scores(anomaly_map=gaussian_blur(up, self.cfg.blur_sigma),
                      image_score=torch.from_numpy(image).to(x.device, torch.float32), scale_maps=[up])
