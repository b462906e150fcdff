"""SAMB, the spectral-anchored memory bank (one per scale).

Each teacher patch embedding p (C,) gets a spectral anchor
p_spec = MLP2(pad_to_C(|rfft(p)|)) (rfft along channels), and the prototype is
q = L2norm(p + p_spec). MLP2 is a seeded, fixed random projection: it gets no
gradient. A greedy k-center coreset of the training prototypes forms the bank;
the bank score of a position is the mean distance to its k nearest prototypes.
"""

from __future__ import annotations

from typing import Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masf.method.coreset import coreset_subsample
from masf.method.fft import no_autocast
from masf.method.memory_bank import MemoryBank


class SpectralAnchor(nn.Module):
    """p (N, C) -> L2norm(p + MLP2(pad_to_C(|rfft(p)|))); fixed, seeded, no gradient."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        bound = 1.0 / channels**0.5
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.uniform_(layer.weight, -bound, bound, generator=gen)
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
        for p in self.mlp.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, p: torch.Tensor) -> torch.Tensor:
        with no_autocast(p.device.type):
            p = p.float()
            spec = torch.fft.rfft(p, dim=-1).abs()  # (N, C // 2 + 1)
            spec = F.pad(spec, (0, self.channels - spec.shape[-1]))  # zero-padded to C
            return F.normalize(p + self.mlp(spec), dim=-1)


class SAMB(nn.Module):
    """One scale's bank: embedding, coreset build and kNN scoring."""

    def __init__(
        self,
        channels: int,
        spectral_anchor: bool = True,
        local_avg: int = 1,
        coreset_ratio: float = 0.1,
        coreset_max: int = 3000,
        projection_dim: int = 128,
        k: int = 3,
        seed: int = 0,
        device: Literal["auto", "cpu", "gpu"] = "auto",
    ):
        super().__init__()
        self.anchor = SpectralAnchor(channels, seed) if spectral_anchor else None
        self.local_avg = local_avg
        self.coreset_ratio = coreset_ratio
        self.coreset_max = coreset_max
        self.projection_dim = projection_dim
        self.seed = seed
        self.bank = MemoryBank(k=k, device=device)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """Teacher map (B, C, H, W) -> prototypes (B * H * W, C), rows in (b, h, w) order."""
        if self.local_avg > 1:
            t = F.avg_pool2d(t, self.local_avg, stride=1, padding=self.local_avg // 2, count_include_pad=False)
        p = t.float().permute(0, 2, 3, 1).reshape(-1, t.shape[1])
        return self.anchor(p) if self.anchor is not None else p

    @torch.no_grad()
    def build(self, teacher_maps: Iterable[torch.Tensor]) -> dict[str, int]:
        """Fit the bank on the prototypes of all training maps; returns a few build statistics."""
        protos = np.concatenate([self.embed(t).cpu().numpy() for t in teacher_maps], axis=0)
        n_patches = len(protos)
        protos = coreset_subsample(protos, self.coreset_ratio, self.coreset_max, self.projection_dim, self.seed)
        self.bank.fit(protos)
        return {"patches": n_patches, "prototypes": len(protos)}

    @property
    def fitted(self) -> bool:
        return len(self.bank) > 0

    @torch.no_grad()
    def score(self, t: torch.Tensor) -> torch.Tensor:
        """Teacher map (B, C, H, W) -> bank map (B, H, W) on t's device."""
        b, _, h, w = t.shape
        dist = self.bank.search(self.embed(t).cpu().numpy())
        return torch.from_numpy(dist).to(t.device, torch.float32).view(b, h, w)
