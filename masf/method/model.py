"""MASF assembled: teacher -> SDM -> AMFD student, SAMB banks, UGHF fusion, TTSA views.

A pure ``nn.Module`` with explicit entry points (no train/eval-dependent
return types): ``training_loss`` for the trainer, ``fit`` (the banks) after an
epoch, ``score`` for evaluation and inference. The baselines (patchcore.py,
padim.py) offer the same entry points; ``build_detector`` picks one by
``model.method``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from masf.config import ModelConfig
from masf.errors import ConfigError
from masf.method.amfd import (
    Student,
    complementary_parts,
    complementary_patch_masks,
    cosine_map,
    frequency_mask,
    loss_terms,
    spatial_patch_mask,
    views,
)
from masf.method.feature_cache import tensor_digest
from masf.method.fusion import Fusion
from masf.method.samb import SAMB
from masf.method.scores import Scores, gaussian_blur, image_seeds
from masf.method.sdm import SDM
from masf.method.ttsa import phase_noise, phase_views
from masf.method.ughf import UGHF
from masf.method.teacher import Teacher


class MASF(Fusion, nn.Module):
    def __init__(self, cfg: ModelConfig, teacher: Teacher, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.teacher = teacher
        channels = teacher.channels
        self.scales = len(channels)
        a = cfg.amfd
        self.sdm = nn.ModuleList(
            SDM(c, cfg.sdm.low_ratio, cfg.sdm.gate_reduction) if cfg.sdm.enabled else nn.Identity() for c in channels
        )
        self.students = (
            nn.ModuleList(
                Student(c, a.attn_dim, a.heads, a.freq_view, a.attention_mask, a.pos_encoding, a.norm, a.attention_dtype)
                for c in channels
            )
            if a.enabled
            else None
        )
        s = cfg.samb
        self.banks = (
            nn.ModuleList(
                SAMB(c, s.spectral_anchor, s.local_avg, s.coreset_ratio, s.coreset_max, s.projection_dim, s.k, seed + i, s.device)
                for i, c in enumerate(channels)
            )
            if s.enabled
            else None
        )
        self.ughf = UGHF(self.scales, cfg.ughf.learned, cfg.ughf.log_var_form)
        # per-scale (lo, hi) of the cosine and bank maps on the calibration normals (ughf.normalize)
        self.register_buffer("cos_range", torch.tensor([[0.0, 1.0]] * self.scales))
        self.register_buffer("bank_range", torch.tensor([[0.0, 1.0]] * self.scales))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        t = cfg.ttsa
        # only where the config uses them (checkpoints of other configs keep their keys): the (lo, hi) of each
        # component's fused map (ughf.normalize=fused), and of each TTSA view's per-scale maps (ttsa.calibration=views)
        if "fused" in (self._norm_mode("cosine"), self._norm_mode("bank")):
            self.register_buffer("fused_range", torch.tensor([[0.0, 1.0]] * 2))
        if t.calibration == "views":
            self.register_buffer("view_cos_range", torch.tensor([[[0.0, 1.0]] * self.scales] * t.views))
            self.register_buffer("view_bank_range", torch.tensor([[[0.0, 1.0]] * self.scales] * t.views))
            self.register_buffer("views_calibrated", torch.zeros((), dtype=torch.bool))
        if self.banks is not None and s.scales is not None and (max(s.scales) >= self.scales or not self._scales_of("bank")):
            raise ConfigError(f"model.samb.scales: {s.scales} names a scale the teacher does not have "
                              f"(it has {self.scales}: 0..{self.scales - 1}, or -1 the coarsest, -2 the next, ...)")
        self.ttsa_seed = t.seed
        self.test_mask_seed = seed + 7919
        self.loss_terms: dict[str, float] = {}  # the last training batch's terms, per scale
        # component maps already computed in this evaluation, by (kind, module, input digest, seeds): members of a
        # training group share one (see Trainer.evaluate_members); None: nothing is kept
        self.memo: Optional[dict] = None

    # ------------------------------------------------------------ training

    @property
    def trains(self) -> bool:
        return self.students is not None

    has_student = trains

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student side's parameters; none without a student (nothing is trained then)."""
        if not self.trains:
            return []
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("teacher.")]

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: UGHF's learned log-variances get ``ughf.log_var_lr`` when it is set."""
        params = self.trainable_parameters()
        own = self.cfg.ughf.log_var_lr
        if own is None or not isinstance(self.ughf.log_vars, nn.Parameter) or not params:
            return [{"params": params}] if params else []
        rest = [p for p in params if p is not self.ughf.log_vars]
        return [{"params": rest}, {"params": [self.ughf.log_vars], "lr": own}]

    def _student(self, i: int, f_spec: torch.Tensor, visible: Optional[torch.Tensor], keep: Optional[torch.Tensor]) -> torch.Tensor:
        """Scale i's student on F_spec with a spatial keep-mask (B, 1, H, W) and an rfft2 keep-mask, or unmasked."""
        return self.students[i](*views(f_spec, visible, keep), visible)

    def _draw(self, f: torch.Tensor, generator: Optional[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """(spatial keep-mask, rfft2 keep-mask) of one training-regime draw for f (B, C, H, W)."""
        a = self.cfg.amfd
        b, _, h, w = f.shape
        visible = spatial_patch_mask(b, h, w, a.spatial_mask_ratio, a.patch_size, generator, f.device)
        return visible, frequency_mask(b, h, w, a.freq_mask_ratio, generator, f.device)

    def training_loss(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised images (B, 3, H, W) -> (UGHF-weighted total, per-scale L_l).

        The per-scale cosine and amplitude terms of the batch are left in ``loss_terms``.
        """
        a = self.cfg.amfd
        feats = self.teacher(x)
        per_scale, terms = [], {}
        for i, f in enumerate(feats):
            f_spec = self.sdm[i](f)
            visible, keep = self._draw(f_spec, generator)
            s = self._student(i, f_spec, visible, keep)
            masked = a.loss_region == "masked"
            cos_term, amp_term = loss_terms(
                f, s, a.spectral_loss_weight,
                hidden=1.0 - visible if masked else None, removed=1.0 - keep if masked else None,
                amplitude_error=a.amplitude_error,
            )
            per_scale.append(cos_term + amp_term)
            terms[f"scale{i}/cosine"], terms[f"scale{i}/amplitude"] = float(cos_term.detach()), float(amp_term.detach())
        self.loss_terms = terms
        return self.ughf.loss(per_scale), per_scale

    # ------------------------------------------------------------ banks

    @torch.no_grad()
    def build_banks(self, images: Iterable[torch.Tensor]) -> dict[str, float]:
        """Fit every scale's bank on the teacher maps of the (normal) training images."""
        if self.banks is None:
            return {}
        per_scale: list[list[torch.Tensor]] = [[] for _ in range(self.scales)]
        for x in images:
            for i, f in enumerate(self.teacher(x)):
                per_scale[i].append(f.cpu())
        # the scales' coresets are independent and mostly GIL-free numpy: build them side by side,
        # as many at once as the trial has threads (the result does not depend on the order)
        workers = max(1, min(torch.get_num_threads(), self.scales))
        with ThreadPoolExecutor(workers) as pool:
            built = list(pool.map(lambda i: self.banks[i].build(per_scale[i]), range(self.scales)))
        return {f"bank/scale{i}_{key}": value for i, b in enumerate(built) for key, value in b.items()}

    # the detector interface the trainer uses (shared with the baselines)
    fit = build_banks

    @property
    def fitted(self) -> bool:
        """Whether everything that is fitted on normal images (the banks) is there; True without banks."""
        return self.banks is None or all(b.fitted for b in self.banks)

    def fitted_state(self) -> dict:
        return {"banks": [b.bank.state() for b in self.banks] if self.banks is not None else []}

    def load_fitted_state(self, state: dict) -> None:
        if self.banks is not None:
            for bank, bstate in zip(self.banks, state["banks"]):
                bank.bank.load_state(bstate)

    def fusion_weights(self) -> list[float]:
        return self.ughf.weights().tolist()

    # ------------------------------------------------------------ scoring regime (calibration: masf/method/fusion.py)

    @torch.no_grad()
    def prepare_scoring(self, train_images: Callable[[], Iterable[torch.Tensor]], calibration_images: Callable[[], Iterable[torch.Tensor]],
                        recalibrate: bool = True) -> dict[str, float]:
        """Before an evaluation: the student's BatchNorm statistics recomputed on the training normals in
        the scoring regime (``amfd.bn_recalibration``; ``recalibrate`` False: done already for a student shared
        with another scoring), then the per-scale quantiles on the calibration normals (``ughf.normalize``).
        Returns what it measured, for the epoch's record."""
        out: dict[str, float] = {}
        if self.cfg.amfd.bn_recalibration and self.students is not None and recalibrate:
            self.recalibrate_bn(train_images())
        if self.calibrates:
            out.update(self.calibrate(calibration_images()))
        return out

    def _student_norms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.students.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def recalibrate_bn(self, images: Iterable[torch.Tensor]) -> None:
        """Reset the students' BatchNorm running statistics and recompute them (cumulative average) from
        ``images`` passed through the students exactly as scoring does (its test-time masks, or none)."""
        norms = self._student_norms()
        if not norms:
            return
        self.eval()
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        try:
            for x in images:
                self._cosine_maps(self.teacher(x), image_seeds(x, self.test_mask_seed))
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
                m.eval()

    # ------------------------------------------------------------ scoring

    def _ttsa_views(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[list[int]]]:
        """The n TTSA views of ``x`` (n * B, view-major) and their test-time mask seeds (seeded by the images)."""
        t = self.cfg.ttsa
        eps = phase_noise(t.views, x.shape[1], x.shape[2], x.shape[3], t.phase_std, self.ttsa_seed, t.noise, t.include_clean)
        seeds = None
        if self.cfg.amfd.test_masking and self.students is not None:
            base = image_seeds(x, self.test_mask_seed)
            seeds = [(s + 1_000_003 * k) & 0xFFFFFFFF for k in range(t.views) for s in base]
        return phase_views(x, eps), seeds

    @torch.no_grad()
    def _cosine_maps(self, feats: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
        """Per-scale cosine maps (B, H_l, W_l) in the scoring regime of ``amfd.test_masking``.

        Test-time masks are seeded per image (``seeds``), so an image's map does not depend on its batch.
        """
        a = self.cfg.amfd
        specs = [sdm(f) for sdm, f in zip(self.sdm, feats)]
        if not a.test_masking:
            return [cosine_map(f, self._student(i, s, None, None)) for i, (f, s) in enumerate(zip(feats, specs))]
        if a.test_mask_mode == "complementary":
            return self._complementary_cosine(feats, specs, seeds)
        cos = [torch.zeros(f.shape[0], *f.shape[-2:], device=f.device) for f in feats]
        for b, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(seed)
            for _ in range(a.test_mask_draws):
                for i, (f, s) in enumerate(zip(feats, specs)):
                    visible, keep = self._draw(s[b : b + 1], gen)
                    cos[i][b] += cosine_map(f[b : b + 1], self._student(i, s[b : b + 1], visible, keep))[0] / a.test_mask_draws
        return cos

    def _complementary_cosine(self, feats: list[torch.Tensor], specs: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
        """Every patch hidden exactly once over ``complementary_parts`` masks; each position's cosine is
        taken from the mask that hid it. The parts of a batch go through the student as one batch."""
        a = self.cfg.amfd
        parts = complementary_parts(a.spatial_mask_ratio)
        gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        out = []
        for i, (f, s) in enumerate(zip(feats, specs)):
            bsz, _, h, w = f.shape
            visible = torch.stack([complementary_patch_masks(parts, h, w, a.patch_size, g, f.device) for g in gens], 1)
            keep = torch.stack([frequency_mask(parts, h, w, a.freq_mask_ratio, g, f.device) for g in gens], 1)
            visible, keep = visible.flatten(0, 1), keep.flatten(0, 1)  # (parts * B, 1, ...), part-major
            rep = lambda t: t.repeat(parts, 1, 1, 1)  # noqa: E731
            cos = cosine_map(rep(f), self._student(i, rep(s), visible, keep)).view(parts, bsz, h, w)
            out.append((cos * (1.0 - visible[:, 0].view(parts, bsz, h, w))).sum(0))
        return out

    @torch.no_grad()
    def _components(self, x: torch.Tensor, seeds: Optional[list[int]] = None, bank: bool = True) -> tuple[Optional[list], Optional[list]]:
        """Normalised images -> (per-scale cosine maps or None, per-scale bank maps or None), at feature resolution.
        A bank map at a scale outside ``samb.scales`` is zero (not computed)."""
        memo = self.memo
        digest = tensor_digest(x) if memo is not None else ""
        feats: list[torch.Tensor] = []

        def teacher() -> list[torch.Tensor]:  # the teacher's maps, computed when a component needs them
            if not feats:
                feats.extend(self.teacher(x))
            return feats

        cos = banks = None
        if self.students is not None:
            seeds = seeds if seeds is not None else image_seeds(x, self.test_mask_seed)
            key = ("cosine", id(self.students), digest, tuple(seeds))
            cos = memo.get(key) if memo is not None else None
            if cos is None:
                cos = self._cosine_maps(teacher(), seeds)
                if memo is not None:
                    memo[key] = cos
        if self.banks is not None and bank:
            if not all(b.fitted for b in self.banks):
                raise RuntimeError("score() before build_banks()")
            scales = self._scales_of("bank")
            key = ("bank", id(self.banks), digest, tuple(scales))
            banks = memo.get(key) if memo is not None else None
            if banks is None:
                banks = [b.score(t) if i in scales else t.new_zeros(t.shape[0], *t.shape[-2:])
                         for i, (b, t) in enumerate(zip(self.banks, teacher()))]
                if memo is not None:
                    memo[key] = banks
        return cos, banks

    @torch.no_grad()
    def _view_maps(self, x: torch.Tensor, seeds: Optional[list[int]] = None, student_only: bool = False,
                   views: int = 0) -> list[torch.Tensor]:
        """Normalised images (B, 3, H, W) -> per-scale s_l at input resolution, L x (B, H, W).

        ``seeds``: one per image for test-time masks (default: from the images' pixels).
        ``student_only``: s_l is the (normalised) cosine map alone. ``views``: ``x`` holds that many TTSA
        views (view-major), aligned on the clean scale where they were calibrated (ttsa.calibration=views).
        """
        size = x.shape[-2:]
        wc, wb = (1.0, 0.0) if student_only else self._component_weights()
        cos, banks = self._components(x, seeds, bank=wb > 0)
        if views and bool(getattr(self, "views_calibrated", False)):
            cos = self._aligned(cos, "cosine", views) if cos is not None else None
            banks = self._aligned(banks, "bank", views) if banks is not None else None
        maps = [torch.zeros(x.shape[0], *m.shape[-2:], device=x.device) for m in (cos if cos is not None else banks)]
        if cos is not None and wc > 0:
            maps = [m + wc * c for m, c in zip(maps, self._normalised(cos, "cosine"))]
        if banks is not None and wb > 0:
            if self.cfg.samb.scales is None:
                maps = [m + wb * b for m, b in zip(maps, self._normalised(banks, "bank"))]
            else:  # the bank at its scales alone, as their weighted mean
                f = self._bank_factors()
                maps = [m + (wb * f[i]) * b if f[i] else m for i, (m, b) in enumerate(zip(maps, self._normalised(banks, "bank")))]
        return [F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1) for m in maps]

    @torch.no_grad()
    def score(self, x: torch.Tensor, ttsa: Optional[bool] = None, student_only: bool = False) -> Scores:
        """Normalised images (B, 3, H, W) -> anomaly maps and image scores.

        ``ttsa`` None follows the config; the n views are scored in one batch and combined as
        ``ttsa.aggregate`` says (the mean: of the per-scale maps; median, min: of the views' fused maps,
        the per-scale maps shown combined alike). ``student_only``: the student's cosine maps alone, fused
        over the scales as usual (TTSA as ``ttsa`` says).
        """
        if student_only and self.students is None:
            raise ValueError("student_only scores need a student (model.amfd.enabled)")
        use_ttsa = self.cfg.ttsa.enabled if ttsa is None else ttsa
        if use_ttsa:
            n, aggregate = self.cfg.ttsa.views, self.cfg.ttsa.aggregate
            views, seeds = self._ttsa_views(x)
            per_view = [m.view(n, x.shape[0], *m.shape[1:]) for m in self._view_maps(views, seeds, student_only, views=n)]
            if aggregate == "mean":
                maps = [m.mean(0) for m in per_view]
                fused = self._fuse(maps)
            else:
                combine = (lambda t: t.median(0).values) if aggregate == "median" else (lambda t: t.amin(0))
                maps = [combine(m) for m in per_view]
                fused = combine(torch.stack([self._fuse([m[k] for m in per_view]) for k in range(n)]))
        else:
            maps = self._view_maps(x, student_only=student_only)
            fused = self._fuse(maps)
        fused = gaussian_blur(fused, self.cfg.ughf.blur_sigma)
        return Scores(anomaly_map=fused, image_score=fused.flatten(1).amax(1), scale_maps=maps)


def build_detector(cfg: ModelConfig, teacher: Teacher, seed: int = 0) -> nn.Module:
    """The detector of ``cfg.method`` on ``teacher``: MASF, or the PatchCore / PaDiM baseline."""
    if cfg.method == "patchcore":
        from masf.method.patchcore import PatchCore

        return PatchCore(cfg.patchcore, teacher, seed=seed, device=cfg.samb.device)
    if cfg.method == "padim":
        from masf.method.padim import PaDiM

        return PaDiM(cfg.padim, teacher, seed=seed)
    return MASF(cfg, teacher, seed=seed)
