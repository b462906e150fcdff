"""FFT helpers that always compute in float32, also under autocast.

The paper's NaN batches on carpet and grid came from FFTs in float16; every
spectral operation of MASF goes through these functions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def fft2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D FFT over the last two dims, in float32 (complex64)."""
    with no_autocast(x.device.type):
        return torch.fft.fft2(x.float(), norm="ortho")


def ifft2_real(x_hat: torch.Tensor) -> torch.Tensor:
    """Real part of the orthonormal inverse 2-D FFT, float32."""
    with no_autocast(x_hat.device.type):
        return torch.fft.ifft2(x_hat, norm="ortho").real


def rfft2(x: torch.Tensor) -> torch.Tensor:
    with no_autocast(x.device.type):
        return torch.fft.rfft2(x.float(), norm="ortho")


def irfft2(x_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with no_autocast(x_hat.device.type):
        return torch.fft.irfft2(x_hat, s=size, norm="ortho")


def amplitude(x: torch.Tensor) -> torch.Tensor:
    """|fft2(x)| in float32."""
    return fft2(x).abs()
