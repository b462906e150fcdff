"""SDM, the spectral decomposition module (one per scale).

F_hat = fft2(F) in float32; a centred low-pass box of side ``low_ratio`` of each
spatial dim splits it into F_low + F_high == F; a channel gate computed from
both bands mixes them; conv1x1-BN-GELU projects the mix.
"""

from __future__ import annotations

import torch
from torch import nn

from masf.method.fft import fft2, ifft2_real


def low_pass_mask(height: int, width: int, ratio: float, device: torch.device | None = None) -> torch.Tensor:
    """(H, W) float mask in unshifted FFT order: 1 inside the centred low-pass box.

    The box keeps frequencies |k_y| <= ratio * H / 2 and |k_x| <= ratio * W / 2,
    i.e. a side of about ``ratio`` of each dim after ``fftshift``. It is
    symmetric about DC so that both bands of a real map stay real (an even-sided
    box would leak its unpaired edge into the other band when the real part is
    taken).
    """
    ky = torch.fft.fftfreq(height, d=1.0 / height, device=device).abs()  # integer frequencies
    kx = torch.fft.fftfreq(width, d=1.0 / width, device=device).abs()
    rows = ky <= max(0.0, ratio * height / 2)
    cols = kx <= max(0.0, ratio * width / 2)
    return (rows[:, None] & cols[None, :]).float()


class SDM(nn.Module):
    def __init__(self, channels: int, low_ratio: float = 0.3, gate_reduction: int = 4):
        super().__init__()
        self.low_ratio = low_ratio
        hidden = max(1, channels // gate_reduction)
        # g = sigmoid(conv1x1(GELU(conv1x1(GAP([F_low ; F_high])))))  -> (B, C, 1, 1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(2 * channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.proj = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.GELU())

    def split(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (F_low, F_high), float32, with F_low + F_high == F."""
        f_hat = fft2(f)
        mask = low_pass_mask(f.shape[-2], f.shape[-1], self.low_ratio, f.device)
        return ifft2_real(f_hat * mask), ifft2_real(f_hat * (1.0 - mask))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        low, high = self.split(f)
        low, high = low.to(f.dtype), high.to(f.dtype)
        g = self.gate(torch.cat([low, high], dim=1))
        return self.proj(g * low + (1.0 - g) * high)
