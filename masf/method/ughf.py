"""UGHF, uncertainty-gated hierarchical fusion.

Per-scale log-variances v_l (init 0). Training loss
sum_l exp(-v_l) * L_l + v_l (homoscedastic uncertainty weighting); fused map
s = sum_l w_l s_l with w_l = softmax(-v)_l. With ``learned=False`` the weights
are fixed at 1 / L and the loss is the plain sum.

Two forms of v (``form``): ``parameter``, the spec's learned parameter (under
Adam it moves about lr per step, so a short training leaves it near 0; its own
learning rate is the trainer's ``ughf.log_var_lr``), and ``closed_form``, v_l
set to the optimum of exp(-v) L_l + v, which is log L_l, tracked as an
exponential average of the detached per-scale losses (no gradient).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class UGHF(nn.Module):
    def __init__(self, scales: int, learned: bool = True, form: str = "parameter", momentum: float = 0.9):
        super().__init__()
        self.learned = learned
        self.form = form if learned else "fixed"
        self.momentum = momentum
        log_vars = torch.zeros(scales)
        if self.form == "parameter":
            self.log_vars = nn.Parameter(log_vars)
        else:
            self.register_buffer("log_vars", log_vars)
            self.register_buffer("tracked", torch.zeros((), dtype=torch.bool))

    def weights(self) -> torch.Tensor:
        """(L,) fusion weights, summing to 1."""
        if not self.learned:
            return torch.full_like(self.log_vars, 1.0 / self.log_vars.numel())
        return torch.softmax(-self.log_vars.float(), dim=0)

    def loss(self, per_scale: list[torch.Tensor]) -> torch.Tensor:
        losses = torch.stack([l.float() for l in per_scale])
        if not self.learned:
            return losses.sum()
        if self.form == "closed_form" and self.training:
            self._track(losses.detach())
        v = self.log_vars.float()
        return (torch.exp(-v) * losses + v).sum()

    @torch.no_grad()
    def _track(self, losses: torch.Tensor) -> None:
        """v <- log of the exponential average of L (the first batch sets it)."""
        if not torch.isfinite(losses).all():
            return  # a skipped batch does not move the weights
        current = losses.clamp_min(1e-8).log().to(self.log_vars)
        if bool(self.tracked):
            self.log_vars.copy_(torch.logaddexp(self.log_vars + torch.log(torch.tensor(self.momentum)),
                                                current + torch.log(torch.tensor(1.0 - self.momentum))))
        else:
            self.log_vars.copy_(current)
            self.tracked.fill_(True)

    def fuse(self, maps: list[torch.Tensor], weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L maps (B, H, W) at one resolution -> (B, H, W), weighted by UGHF's weights (or ``weights``)."""
        w = (self.weights() if weights is None else weights).detach().to(maps[0].device)
        return sum(w[i] * m for i, m in enumerate(maps))
