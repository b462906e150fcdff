"""TTSA, test-time spectral augmentation.

n views x_k = ifft2(|fft2(x)| * exp(i (phase(fft2(x)) + eps_k))): the amplitude
spectrum is kept, the phase perturbed by eps_k, seeded. Two readings of eps
(``noise``):

- ``hermitian``: eps_k is made odd-symmetric (eps(-f) = -eps(f)) and divided by
  sqrt(2), so the perturbed spectrum stays Hermitian and each view is real
  without dropping an imaginary part. Its std is ``std`` off the
  self-conjugate frequencies (DC and Nyquist lines, where it is 0).
- ``literal``: the spec's formula as written, eps_k ~ N(0, std^2) i.i.d. per
  frequency and channel and x_k = Re(ifft2(...)). Taking the real part
  averages each frequency with its mirror, so the phase change a view really
  carries has std about std / sqrt(2): half the variance of ``hermitian``.

``include_clean`` makes the unperturbed image one of the n views (eps = 0).
"""

from __future__ import annotations

import torch

from masf.method.fft import fft2, ifft2_real


def _negate_freq(t: torch.Tensor) -> torch.Tensor:
    """t(f) -> t(-f) over the last two dims (index i -> -i mod N)."""
    return torch.roll(torch.flip(t, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def phase_noise(
    views: int, channels: int, height: int, width: int, std: float, seed: int,
    noise: str = "hermitian", include_clean: bool = False,
) -> torch.Tensor:
    """(views, C, H, W) phase perturbations; with ``include_clean`` the first view's is 0."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(views, channels, height, width, generator=gen) * std
    if noise == "hermitian":
        e = (e - _negate_freq(e)) / 2**0.5
    if include_clean:
        e[0] = 0.0
    return e


def phase_views(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) and eps (n, C, H, W) -> n * B views (n*B, C, H, W), view-major (real part taken)."""
    x_hat = fft2(x)  # (B, C, H, W) complex64
    amp, phase = x_hat.abs(), x_hat.angle()
    eps = eps.to(x.device)
    perturbed = torch.polar(amp.unsqueeze(0).expand(eps.shape[0], *amp.shape), phase.unsqueeze(0) + eps.unsqueeze(1))
    views = ifft2_real(perturbed)  # (n, B, C, H, W)
    return views.reshape(-1, *x.shape[1:]).to(x.dtype)
