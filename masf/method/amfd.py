"""AMFD, asymmetric masked feature distillation (one student per scale).

Two views of F_spec: a spatial view with 35 % of its 2x2 patches zeroed and a
frequency view with 25 % of its rfft2 coefficients zeroed. SSCA fuses them
(queries from the spatial view, keys/values from the frequency view), two
residual blocks refine, a conv1x1 maps back to the teacher's C channels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from masf.method.fft import amplitude, irfft2, rfft2


def _drop_exactly(batch: int, n: int, ratio: float, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """(B, n) keep-mask with exactly round(ratio * n) zeros per row, drawn at random."""
    n_drop = int(round(ratio * n))
    scores = torch.rand(batch, n, generator=generator, device="cpu")
    order = scores.argsort(dim=1)
    keep = torch.ones(batch, n)
    if n_drop:
        keep.scatter_(1, order[:, :n_drop], 0.0)
    return keep.to(device)


def spatial_patch_mask(
    batch: int, height: int, width: int, ratio: float, patch: int, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """(B, 1, H, W) keep-mask zeroing ``ratio`` of the patch x patch patches of each sample."""
    gh, gw = -(-height // patch), -(-width // patch)
    keep = _drop_exactly(batch, gh * gw, ratio, generator, device).view(batch, 1, gh, gw)
    keep = keep.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return keep[:, :, :height, :width]


def frequency_mask(
    batch: int, height: int, width: int, ratio: float, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """(B, 1, H, W // 2 + 1) keep-mask zeroing ``ratio`` of the rfft2 coefficients of each sample."""
    wr = width // 2 + 1
    return _drop_exactly(batch, height * wr, ratio, generator, device).view(batch, 1, height, wr)


def mask_views(
    f: torch.Tensor, spatial_ratio: float, freq_ratio: float, patch: int, generator: Optional[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two masked views of F_spec (B, C, H, W): (spatially masked, frequency masked)."""
    b, _, h, w = f.shape
    spatial = f * spatial_patch_mask(b, h, w, spatial_ratio, patch, generator, f.device).to(f.dtype)
    keep = frequency_mask(b, h, w, freq_ratio, generator, f.device)
    freq = irfft2(rfft2(f) * keep, (h, w)).to(f.dtype)
    return spatial, freq


class ResidualBlock(nn.Module):
    """x + (conv3x3-BN-GELU twice)(x)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SSCA(nn.Module):
    """Spectral-spatial cross-attention: Q from the spatial view, K = V from the frequency view."""

    def __init__(self, channels: int, attn_dim: int = 256, heads: int = 4):
        super().__init__()
        dim = min(channels, attn_dim)
        dim = -(-dim // heads) * heads  # divisible by the number of heads
        self.heads = heads
        self.q = nn.Conv2d(channels, dim, 1)
        self.kv = nn.Conv2d(channels, 2 * dim, 1)
        self.out = nn.Conv2d(dim, dim, 1)
        self.dim = dim

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) x 2 -> (B, d, H, W): Q + attention(Q, K, V)."""
        b, _, h, w = spatial.shape
        q = self.q(spatial)  # (B, d, H, W)
        k, v = self.kv(freq).chunk(2, dim=1)

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, d, H, W) -> (B, heads, H*W, d / heads)
            # contiguous: the fused (flash) kernels need unit stride along the head dim
            return t.reshape(b, self.heads, self.dim // self.heads, h * w).transpose(2, 3).contiguous()

        # fused kernel: never materialises the (H*W)^2 attention matrix at the largest scale
        att = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))  # (B, heads, H*W, d / heads)
        att = att.transpose(2, 3).reshape(b, self.dim, h, w)
        return q + self.out(att)


class Student(nn.Module):
    """One scale's student: masked views -> SSCA -> 2 residual blocks -> conv1x1 back to C."""

    def __init__(self, channels: int, attn_dim: int = 256, heads: int = 4, freq_view: bool = True):
        super().__init__()
        self.freq_view = freq_view
        self.ssca = SSCA(channels, attn_dim, heads)
        self.blocks = nn.Sequential(ResidualBlock(self.ssca.dim), ResidualBlock(self.ssca.dim))
        self.head = nn.Conv2d(self.ssca.dim, channels, 1)

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        """Views (B, C, H, W) -> S (B, C, H, W). Without the frequency view, K = V = Q's view."""
        kv_view = freq if self.freq_view else spatial
        return self.head(self.blocks(self.ssca(spatial, kv_view)))


def distillation_loss(teacher: torch.Tensor, student: torch.Tensor, spectral_weight: float = 0.5) -> torch.Tensor:
    """L_l = mean_positions(1 - cos(T, S)) + w * MSE(|fft2(S)|, |fft2(T)|), FFT in float32."""
    cos = F.cosine_similarity(teacher.float(), student.float(), dim=1)  # (B, H, W)
    spectral = F.mse_loss(amplitude(student), amplitude(teacher))
    return (1.0 - cos).mean() + spectral_weight * spectral


def cosine_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, H, W) = 1 - cos(T, S) along channels."""
    return 1.0 - F.cosine_similarity(teacher.float(), student.float(), dim=1)
