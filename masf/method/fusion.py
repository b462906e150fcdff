"""MASF's scoring regime and fusion: calibration quantiles, per-component normalisation, the weights of the
components and scales, the bank at its scales, TTSA views aligned on the clean scale.

:class:`Fusion` is a part of :class:`masf.method.model.MASF`, kept apart for size; it uses the model's
``cfg`` (ModelConfig), ``scales``, ``students``, ``banks``, ``ughf``, the calibration buffers
(``cos_range``, ``bank_range``, ``fused_range``, ``view_*_range``, ``calibrated``, ``views_calibrated``),
``test_mask_seed`` and its ``_components`` and ``_ttsa_views``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from masf.method.scores import image_seeds


class Fusion:
    """How MASF's component maps become one map: normalised, weighted per component and per scale."""


    def _norm_mode(self, kind: str) -> str:
        """How the ``kind`` ("cosine" or "bank") component's maps are normalised (ughf.normalize, bank_normalize)."""
        u = self.cfg.ughf
        return u.bank_normalize if kind == "bank" and u.bank_normalize != "same" else u.normalize

    @property
    def _calibrates_views(self) -> bool:
        """Whether the TTSA views are calibrated on their own (ttsa.calibration=views, TTSA on)."""
        return self.cfg.ttsa.enabled and self.cfg.ttsa.calibration == "views"

    @property
    def calibrates(self) -> bool:
        """Whether scoring needs calibration normals (a normalisation other than none, per-view TTSA calibration)."""
        return ((self.students is not None and self._norm_mode("cosine") != "none")
                or (self.banks is not None and self._norm_mode("bank") != "none") or self._calibrates_views)

    @torch.no_grad()
    def calibrate(self, images: Iterable[torch.Tensor]) -> dict[str, float]:
        """Quantiles (lo, hi) on the calibration normals ``images``: of each scale's cosine and bank maps (no
        TTSA); with a ``fused`` normalisation, of each such component's fused map; with ``ttsa.calibration``
        views, of each TTSA view's per-scale maps (the views made of these normals)."""
        self.eval()
        kinds = ("cosine", "bank")
        fused_kinds = [k for k in kinds if self._norm_mode(k) == "fused"]
        views = self.cfg.ttsa.views if self._calibrates_views else 0
        clean: dict[str, list[list[np.ndarray]]] = {k: [[] for _ in range(self.scales)] for k in kinds}
        fused: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
        per_view: dict[str, list[list[list[np.ndarray]]]] = {k: [[[] for _ in range(self.scales)] for _ in range(views)] for k in kinds}
        flat = lambda t: t.float().cpu().numpy().ravel()  # noqa: E731
        n = 0
        for x in images:
            n += x.shape[0]
            for kind, maps in zip(kinds, self._components(x, image_seeds(x, self.test_mask_seed))):
                if maps is None:
                    continue
                for i in self._scales_of(kind):
                    clean[kind][i].append(flat(maps[i]))
                if kind in fused_kinds:
                    fused[kind].append(flat(self._fused_component(maps, kind, x.shape[-2:])))
            if views:
                vx, seeds = self._ttsa_views(x)
                for kind, maps in zip(kinds, self._components(vx, seeds)):
                    if maps is None:
                        continue
                    for i in self._scales_of(kind):
                        by_view = maps[i].view(views, x.shape[0], *maps[i].shape[1:])
                        for k in range(views):
                            per_view[kind][k][i].append(flat(by_view[k]))
        if n == 0:
            raise RuntimeError("scoring calibrates on held-out normals (model.ughf.normalize, model.ttsa.calibration), "
                               "and none were given")
        q = self.cfg.ughf.quantiles

        def quantiles(values: list[np.ndarray]) -> tuple[float, float]:
            lo, hi = np.quantile(np.concatenate(values), q)
            return float(lo), max(float(hi), float(lo) + 1e-6)

        out = {}
        for name, target in (("cosine", self.cos_range), ("bank", self.bank_range)):
            for i, v in enumerate(clean[name]):
                if not v:
                    continue
                lo, hi = quantiles(v)
                target[i] = torch.tensor([lo, hi])
                out[f"calib/scale{i}_{name}_lo"], out[f"calib/scale{i}_{name}_hi"] = lo, hi
            if fused[name]:
                lo, hi = quantiles(fused[name])
                self.fused_range[kinds.index(name)] = torch.tensor([lo, hi])
                out[f"calib/fused_{name}_lo"], out[f"calib/fused_{name}_hi"] = lo, hi
            target_views = getattr(self, f"view_{'cos' if name == 'cosine' else 'bank'}_range", None)
            for k in range(views):
                for i, v in enumerate(per_view[name][k]):
                    if v:
                        target_views[k, i] = torch.tensor(quantiles(v))
        self.calibrated.fill_(True)
        if views:
            self.views_calibrated.fill_(True)
        return out

    def _component_weights(self) -> tuple[float, float]:
        """(cosine weight, bank weight), renormalised over the components present."""
        wc = self.cfg.ughf.cos_weight if self.students is not None else 0.0
        wb = self.cfg.ughf.bank_weight if self.banks is not None else 0.0
        total = wc + wb
        if total <= 0:
            raise ValueError("model.ughf.cos_weight and bank_weight give the present components zero weight")
        return wc / total, wb / total

    def _scale_weights(self) -> torch.Tensor:
        """(L,) the weights of the scales in the fused map (ughf.scoring_weights)."""
        if self.cfg.ughf.scoring_weights == "equal":
            return torch.full((self.scales,), 1.0 / self.scales)
        return self.ughf.weights().detach()

    def _fuse(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if self.cfg.ughf.scoring_weights == "equal":
            return self.ughf.fuse(maps, self._scale_weights())
        return self.ughf.fuse(maps)

    def _scales_of(self, kind: str) -> list[int]:
        """The scales at which component ``kind`` enters the score (the bank: samb.scales)."""
        if kind == "bank" and self.cfg.samb.scales is not None:
            # -1 is the coarsest scale, -2 the next, ...; a negative position beyond the teacher's scales is left out
            # (the last two scales of a two-scale teacher are all of them)
            return sorted({i if i >= 0 else self.scales + i for i in self.cfg.samb.scales if -self.scales <= i < self.scales})
        return list(range(self.scales))

    def _bank_factors(self) -> list[float]:
        """Per scale, what the bank's map is multiplied by so that over the scales its fused map is the weighted
        mean over ``samb.scales`` alone: 1 / (their summed weight) at those scales, 0 elsewhere."""
        scales = self._scales_of("bank")
        w = self._scale_weights().tolist()
        total = sum(w[i] for i in scales)
        if total <= 0:  # the scales' weights leave the bank's scales out (one scale alone): no bank
            return [0.0] * self.scales
        return [1.0 / total if i in scales else 0.0 for i in range(self.scales)]

    def _fused_component(self, maps: list[torch.Tensor], kind: str, size) -> torch.Tensor:
        """One component's raw per-scale maps (B, h_l, w_l) -> its fused map (B, H, W) at ``size``."""
        w = self._scale_weights().tolist()
        factors = self._bank_factors() if kind == "bank" else [1.0] * self.scales
        up = lambda m: F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)  # noqa: E731
        return sum(w[i] * factors[i] * up(maps[i].float()) for i in self._scales_of(kind))

    def _normalised(self, maps: list[torch.Tensor], kind: str) -> list[torch.Tensor]:
        """Component ``kind``'s per-scale maps on the scale its normalisation gives them (ughf.normalize)."""
        mode = self._norm_mode(kind)
        if mode == "none":
            return maps
        if not bool(self.calibrated):
            raise RuntimeError("score() before calibrate(): model.ughf.normalize needs calibration normals")
        if mode == "fused":
            lo, hi = self.fused_range[("cosine", "bank").index(kind)].to(maps[0].device)
            return [(m - lo) / (hi - lo) for m in maps]
        r = (self.cos_range if kind == "cosine" else self.bank_range).to(maps[0].device)
        return [(m - r[i, 0]) / (r[i, 1] - r[i, 0]) for i, m in enumerate(maps)]

    def _aligned(self, maps: list[torch.Tensor], kind: str, views: int) -> list[torch.Tensor]:
        """TTSA views' raw maps (n * B, h, w), view-major, each mapped onto the clean image's scale by its view's
        calibration quantiles: (m - lo_k) / (hi_k - lo_k) * (hi - lo) + lo."""
        clean = (self.cos_range if kind == "cosine" else self.bank_range).to(maps[0].device)
        per_view = (self.view_cos_range if kind == "cosine" else self.view_bank_range).to(maps[0].device)
        out = []
        for i, m in enumerate(maps):
            lo_k, hi_k = per_view[:, i, 0].view(-1, 1, 1, 1), per_view[:, i, 1].view(-1, 1, 1, 1)
            lo, hi = clean[i, 0], clean[i, 1]
            v = m.view(views, -1, *m.shape[1:])
            out.append(((v - lo_k) / (hi_k - lo_k) * (hi - lo) + lo).view_as(m))
        return out
