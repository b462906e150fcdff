"""UGHF, uncertainty-gated hierarchical fusion.

Learned per-scale log-variances v_l (init 0). Training loss
sum_l exp(-v_l) * L_l + v_l (homoscedastic uncertainty weighting); fused map
s = sum_l w_l s_l with w_l = softmax(-v)_l. With ``learned=False`` the weights
are fixed at 1 / L and the loss is the plain sum.
"""

from __future__ import annotations

import torch
from torch import nn


class UGHF(nn.Module):
    def __init__(self, scales: int, learned: bool = True):
        super().__init__()
        self.learned = learned
        log_vars = torch.zeros(scales)
        if learned:
            self.log_vars = nn.Parameter(log_vars)
        else:
            self.register_buffer("log_vars", log_vars)

    def weights(self) -> torch.Tensor:
        """(L,) fusion weights, summing to 1."""
        if not self.learned:
            return torch.full_like(self.log_vars, 1.0 / self.log_vars.numel())
        return torch.softmax(-self.log_vars.float(), dim=0)

    def loss(self, per_scale: list[torch.Tensor]) -> torch.Tensor:
        losses = torch.stack([l.float() for l in per_scale])
        if not self.learned:
            return losses.sum()
        v = self.log_vars.float()
        return (torch.exp(-v) * losses + v).sum()

    def fuse(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """L maps (B, H, W) at one resolution -> (B, H, W)."""
        w = self.weights().detach().to(maps[0].device)
        return sum(w[i] * m for i, m in enumerate(maps))
