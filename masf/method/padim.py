"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR 2021).

The published method on masf's frozen teacher: the maps of ``model.padim.layers``
(all three by default: strides 4, 8, 16, as the paper's layer1-3 of ResNet)
upsampled (nearest) onto the finest grid and concatenated; a seeded random
subset of ``features`` channels (the paper's random dimensionality reduction);
one Gaussian per grid position fitted on the training normals (sample
covariance + ``regularization`` * I); a test patch scores its Mahalanobis
distance. The map is upsampled to the input and blurred (sigma 4); the image
score is the maximum of the blurred map.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from masf.config import PaDiMConfig
from masf.method.patchcore import aggregate
from masf.method.scores import Scores, TrainingFree, gaussian_blur
from masf.method.teacher import Teacher


class PaDiM(TrainingFree):
    """Per-position Gaussians of a random channel subset; ``fit`` on normal images, then ``score``."""

    def __init__(self, cfg: PaDiMConfig, teacher: Teacher, seed: int = 0, chunk: int = 256):
        super().__init__()
        self.cfg = cfg
        self.teacher = teacher
        channels = sum(teacher.channels[i] for i in cfg.layers)
        gen = torch.Generator().manual_seed(seed)
        # fitted state, kept out of the module's state_dict (the trainer checkpoints it through fitted_state)
        self.channels = torch.randperm(channels, generator=gen)[: min(cfg.features, channels)].sort().values
        self.mean = torch.empty(0)  # (P, d) per grid position
        self.inv_cov = torch.empty(0)  # (P, d, d)
        self.chunk = chunk  # grid positions per step of the covariance fit

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> (B, d, h, w) on the finest chosen grid."""
        feats = self.teacher(x)
        e = aggregate([feats[i] for i in self.cfg.layers], 1, mode="nearest")
        return e.index_select(1, self.channels.to(e.device))

    @torch.no_grad()
    def fit(self, images: Iterable[torch.Tensor]) -> dict[str, float]:
        e = torch.cat([self.embed(x).cpu() for x in images])  # (N, d, h, w)
        n, d, h, w = e.shape
        if n < 2:
            raise ValueError("PaDiM needs at least 2 training images to fit a covariance")
        e = e.reshape(n, d, h * w).permute(2, 0, 1)  # (P, N, d)
        mean = e.mean(dim=1)
        inv = torch.empty(h * w, d, d)
        eye = torch.eye(d, dtype=torch.float64)
        for p in range(0, h * w, self.chunk):  # float64 covariance and inverse, a chunk of positions at a time
            c = e[p : p + self.chunk].double() - mean[p : p + self.chunk, None].double()
            cov = c.transpose(1, 2) @ c / (n - 1) + self.cfg.regularization * eye
            inv[p : p + self.chunk] = torch.linalg.inv(cov).float()
        self.mean, self.inv_cov = mean, inv
        return {"padim/train_images": n, "padim/features": d, "padim/positions": h * w}

    @property
    def fitted(self) -> bool:
        return self.mean.numel() > 0

    def fitted_state(self) -> dict:
        return {"channels": self.channels, "mean": self.mean, "inv_cov": self.inv_cov}

    def load_fitted_state(self, state: dict) -> None:
        self.channels, self.mean, self.inv_cov = state["channels"], state["mean"], state["inv_cov"]

    @torch.no_grad()
    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> Mahalanobis distance of every grid position (B, h, w)."""
        if not self.fitted:
            raise RuntimeError("score() before fit()")
        e = self.embed(x)
        b, d, h, w = e.shape
        if self.mean.shape[0] != h * w:
            raise RuntimeError(f"PaDiM was fitted on a {self.mean.shape[0]}-position grid, scored on {h}x{w}")
        diff = e.reshape(b, d, h * w).permute(2, 0, 1).float() - self.mean.to(e.device)[:, None]  # (P, B, d)
        m2 = torch.einsum("pbd,pde,pbe->bp", diff, self.inv_cov.to(e.device), diff)
        return m2.clamp_min(0).sqrt().view(b, h, w)

    @torch.no_grad()
    def score(self, x: torch.Tensor, ttsa: Optional[bool] = None) -> Scores:
        """Normalised images (B, 3, H, W) -> Mahalanobis maps at input resolution and image scores."""
        maps = self.distances(x).unsqueeze(1)
        up = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        fused = gaussian_blur(up, self.cfg.blur_sigma)
        return Scores(anomaly_map=fused, image_score=fused.flatten(1).amax(1), scale_maps=[up])
