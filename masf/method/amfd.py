"""AMFD, asymmetric masked feature distillation (one student per scale).

Two views of F_spec: a spatial view with 35 % of its 2x2 patches zeroed and a
frequency view with 25 % of its rfft2 coefficients zeroed. SSCA fuses them
(queries from the spatial view, keys/values from the frequency view), two
residual blocks refine, a conv1x1 maps back to the teacher's C channels.

Two readings of the paper's "so that there is no direct copy" live here (see
docs/MASF-SPEC.md, "Readings"): the spec's, where the loss covers every
position and attention sees every key, and the masked-reconstruction one,
where keys at spatially hidden positions are left out of attention
(``attention_mask``), queries and keys carry a 2-D position
(``pos_encoding``) and the loss covers only what was hidden
(``distillation_loss(..., hidden=, removed=)``).
"""

from __future__ import annotations

import math
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


def _patches_to_pixels(grid: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """(B, 1, gh, gw) patch grid -> (B, 1, H, W), each patch cell repeated over its pixels."""
    grid = grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return grid[:, :, :height, :width]


def spatial_patch_mask(
    batch: int, height: int, width: int, ratio: float, patch: int, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """(B, 1, H, W) keep-mask zeroing ``ratio`` of the patch x patch patches of each sample."""
    gh, gw = -(-height // patch), -(-width // patch)
    keep = _drop_exactly(batch, gh * gw, ratio, generator, device).view(batch, 1, gh, gw)
    return _patches_to_pixels(keep, height, width, patch)


def complementary_patch_masks(
    parts: int, height: int, width: int, patch: int, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """(parts, 1, H, W) keep-masks that hide every patch x patch patch in exactly one of them.

    The patches are permuted at random and dealt into ``parts`` groups of (nearly) equal size; mask k
    hides group k. Summed over the parts, the hidden indicators are 1 everywhere.
    """
    gh, gw = -(-height // patch), -(-width // patch)
    n = gh * gw
    order = torch.randperm(n, generator=generator)
    group = torch.empty(n, dtype=torch.long)
    group[order] = torch.arange(n) % parts
    keep = (group.view(1, 1, gh, gw) != torch.arange(parts).view(parts, 1, 1, 1)).float()
    return _patches_to_pixels(keep, height, width, patch).to(device)


def complementary_parts(spatial_ratio: float) -> int:
    """How many complementary masks of about ``spatial_ratio`` each cover every patch once (3 at 35 %)."""
    return max(2, int(round(1.0 / spatial_ratio))) if spatial_ratio > 0 else 1


def frequency_mask(
    batch: int, height: int, width: int, ratio: float, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """(B, 1, H, W // 2 + 1) keep-mask zeroing ``ratio`` of the rfft2 coefficients of each sample."""
    wr = width // 2 + 1
    return _drop_exactly(batch, height * wr, ratio, generator, device).view(batch, 1, height, wr)


def frequency_view(f: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """F_spec (B, C, H, W) with the rfft2 coefficients where ``keep`` is 0 removed."""
    return irfft2(rfft2(f) * keep, tuple(f.shape[-2:])).to(f.dtype)


def views(f: torch.Tensor, visible: Optional[torch.Tensor], keep: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of F_spec (B, C, H, W) under a spatial keep-mask (B, 1, H, W) and an rfft2 keep-mask;
    a mask that is None leaves its view unmasked."""
    spatial = f * visible.to(f.dtype) if visible is not None else f
    freq = frequency_view(f, keep) if keep is not None else f
    return spatial, freq


def mask_views(
    f: torch.Tensor, spatial_ratio: float, freq_ratio: float, patch: int, generator: Optional[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two masked views of F_spec (B, C, H, W), masks drawn as in training: (spatially masked, frequency masked)."""
    b, _, h, w = f.shape
    visible = spatial_patch_mask(b, h, w, spatial_ratio, patch, generator, f.device)
    return views(f, visible, frequency_mask(b, h, w, freq_ratio, generator, f.device))


def sincos_2d(dim: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(dim, H, W) fixed 2-D sine-cosine position code: half the channels for rows, half for columns."""
    quarter = max(1, dim // 4)
    freqs = 1.0 / (10000.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))

    def axis(n: int) -> torch.Tensor:  # (2 * quarter, n)
        angles = freqs[:, None] * torch.arange(n, device=device, dtype=torch.float32)[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=0)

    rows = axis(height)[:, :, None].expand(-1, height, width)
    cols = axis(width)[:, None, :].expand(-1, height, width)
    code = torch.cat([rows, cols], dim=0)[:dim]
    if code.shape[0] < dim:
        code = F.pad(code, (0, 0, 0, 0, 0, dim - code.shape[0]))
    return code


def norm_layer(kind: str, dim: int) -> nn.Module:
    """batch: BatchNorm2d (running statistics); group: GroupNorm, which keeps none."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(dim, 8), dim)
    return nn.BatchNorm2d(dim)


class ResidualBlock(nn.Module):
    """x + (conv3x3-norm-GELU twice)(x)."""

    def __init__(self, dim: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            norm_layer(norm, dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            norm_layer(norm, dim),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SSCA(nn.Module):
    """Spectral-spatial cross-attention: Q from the spatial view, K = V from the frequency view.

    ``attention_mask``: keys at positions the spatial view hid are left out, so that the frequency
    view cannot hand a hidden position its own features. ``pos_encoding``: a fixed 2-D sine-cosine
    code is added to Q and K, so that hidden queries are not all the same token.
    """

    def __init__(self, channels: int, attn_dim: int = 256, heads: int = 4, attention_mask: bool = False, pos_encoding: str = "none",
                 attention_dtype: str = "float32"):
        super().__init__()
        dim = min(channels, attn_dim)
        dim = -(-dim // heads) * heads  # divisible by the number of heads
        self.heads = heads
        self.q = nn.Conv2d(channels, dim, 1)
        self.kv = nn.Conv2d(channels, 2 * dim, 1)
        self.out = nn.Conv2d(dim, dim, 1)
        self.dim = dim
        self.attention_mask = attention_mask
        self.pos_encoding = pos_encoding
        self.attention_dtype = getattr(torch, attention_dtype)  # the softmax attention's precision

    def _tokens(self, t: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) -> (B, heads, H*W, d / heads); contiguous: the fused kernels need unit stride."""
        b, _, h, w = t.shape
        return t.reshape(b, self.heads, self.dim // self.heads, h * w).transpose(2, 3).contiguous()

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, H, W) x 2 -> (B, d, H, W): Q + attention(Q, K, V).

        ``visible`` (B, 1, H, W): 1 where the spatial view shows the position; with ``attention_mask``
        only those positions serve as keys.
        """
        b, _, h, w = spatial.shape
        q = self.q(spatial)  # (B, d, H, W)
        k, v = self.kv(freq).chunk(2, dim=1)
        if self.pos_encoding == "sincos":
            code = sincos_2d(self.dim, h, w, q.device).to(q.dtype)
            q, k = q + code, k + code
        qt, kt, vt = self._tokens(q), self._tokens(k), self._tokens(v)
        lowered = self.attention_dtype != torch.float32 and qt.dtype == torch.float32
        if lowered:  # model.amfd.attention_dtype=bfloat16: an explicit precision choice
            qt, kt, vt = qt.to(self.attention_dtype), kt.to(self.attention_dtype), vt.to(self.attention_dtype)
        if self.attention_mask and visible is not None:
            att = self._masked_attention(qt, kt, vt, visible.reshape(b, h * w) > 0.5)
        else:
            # fused kernel: never materialises the (H*W)^2 attention matrix at the largest scale
            att = F.scaled_dot_product_attention(qt, kt, vt)  # (B, heads, H*W, d / heads)
        if lowered:
            att = att.to(q.dtype)
        att = att.transpose(2, 3).reshape(b, self.dim, h, w)
        return q + self.out(att)

    @staticmethod
    def _masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Attention over the visible keys only. visible (B, N) bool."""
        counts = visible.sum(1)
        if bool((counts == counts[0]).all()) and int(counts[0]) > 0:
            # the usual case (every sample hides the same number of positions): gather the visible
            # keys, which also makes attention cheaper by the hidden share
            idx = visible.float().argsort(dim=1, descending=True, stable=True)[:, : int(counts[0])]
            idx = idx[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            return F.scaled_dot_product_attention(q, k.gather(2, idx), v.gather(2, idx))
        # uneven counts (odd-sized maps): a boolean key mask; a sample with nothing visible sees every key
        allowed = visible | ~visible.any(1, keepdim=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None, None, :])


class Student(nn.Module):
    """One scale's student: masked views -> SSCA -> 2 residual blocks -> conv1x1 back to C."""

    def __init__(
        self, channels: int, attn_dim: int = 256, heads: int = 4, freq_view: bool = True,
        attention_mask: bool = False, pos_encoding: str = "none", norm: str = "batch", attention_dtype: str = "float32",
    ):
        super().__init__()
        self.freq_view = freq_view
        self.ssca = SSCA(channels, attn_dim, heads, attention_mask, pos_encoding, attention_dtype)
        self.blocks = nn.Sequential(ResidualBlock(self.ssca.dim, norm), ResidualBlock(self.ssca.dim, norm))
        self.head = nn.Conv2d(self.ssca.dim, channels, 1)

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Views (B, C, H, W) -> S (B, C, H, W). Without the frequency view, K = V = Q's view."""
        kv_view = freq if self.freq_view else spatial
        return self.head(self.blocks(self.ssca(spatial, kv_view, visible)))


def _masked_mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``values`` (B, ...) over the elements where ``weight`` (broadcastable) is 1; all of them without one."""
    if weight is None:
        return values.mean()
    weight = weight.float().expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def distillation_loss(teacher: torch.Tensor, student: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """L_l = cosine term + w * amplitude term, FFTs in float32 (the arguments of :func:`loss_terms`).

    Spec reading (no ``hidden``/``removed``, ``amplitude_error="raw"``):
    mean_positions(1 - cos(T, S)) + w * MSE(|fft2(S)|, |fft2(T)|).
    """
    return sum(loss_terms(teacher, student, *args, **kwargs))


def loss_terms(
    teacher: torch.Tensor,
    student: torch.Tensor,
    spectral_weight: float = 0.5,
    hidden: Optional[torch.Tensor] = None,
    removed: Optional[torch.Tensor] = None,
    amplitude_error: str = "raw",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine term, weighted amplitude term) of :func:`distillation_loss`.

    ``hidden`` (B, 1, H, W): the cosine term averages only over the positions the spatial view hid.
    ``removed`` (B, 1, H, W // 2 + 1): the amplitude term covers only the rfft2 coefficients the
    frequency view removed. ``amplitude_error="relative"``: the squared amplitude error divided by the
    teacher's squared amplitude (per sample), so the term is O(1) like the cosine term.
    """
    cos = 1.0 - F.cosine_similarity(teacher.float(), student.float(), dim=1)  # (B, H, W)
    cos_term = _masked_mean(cos, hidden[:, 0] if hidden is not None else None)
    if removed is None:
        a_s, a_t = amplitude(student), amplitude(teacher)  # (B, C, H, W)
        weight = None
    else:
        a_s, a_t = rfft2(student).abs(), rfft2(teacher).abs()  # (B, C, H, W // 2 + 1)
        weight = removed
    err = (a_s - a_t) ** 2
    if amplitude_error == "relative":
        w = torch.ones_like(a_t[:, :1]) if weight is None else weight.float()
        num = (err * w).flatten(1).sum(1)
        den = (a_t**2 * w).flatten(1).sum(1).clamp_min(1e-12)
        amp_term = (num / den).mean()
    else:
        amp_term = _masked_mean(err, weight)
    return cos_term, spectral_weight * amp_term


def cosine_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, H, W) = 1 - cos(T, S) along channels."""
    return 1.0 - F.cosine_similarity(teacher.float(), student.float(), dim=1)
