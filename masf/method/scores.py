"""What every detector's ``score`` returns, the Gaussian blur of anomaly maps, the per-image seeds of test-time masks,
and the base of the baselines."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Scores:
    anomaly_map: torch.Tensor  # (B, H, W) fused and blurred, at input resolution
    image_score: torch.Tensor  # (B,) max of anomaly_map
    scale_maps: list[torch.Tensor]  # L x (B, H, W) per-scale s_l at input resolution (view-averaged)


def image_seeds(x: torch.Tensor, seed: int) -> list[int]:
    """One seed per image of ``x`` (B, ...), from its pixels: the same image gets the same seed in any batch."""
    pixels = x.detach().float().cpu().numpy()
    return [zlib.crc32(pixels[i].tobytes(), seed & 0xFFFFFFFF) for i in range(pixels.shape[0])]


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) -> (B, H, W), separable Gaussian, reflect padding, radius 4 sigma."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(4 * sigma)))
    xs = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float32)
    k = torch.exp(-(xs**2) / (2 * sigma**2))
    k = k / k.sum()
    x = maps.unsqueeze(1).float()
    pad_h, pad_w = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)
    x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
    x = F.conv2d(x, k[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect")
    x = F.conv2d(x, k[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return x.squeeze(1)


class TrainingFree(nn.Module):
    """A detector fitted on normal images only (the baselines): nothing to train, no scale weights."""

    trains = False

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []

    def fusion_weights(self) -> list[float]:
        return []
