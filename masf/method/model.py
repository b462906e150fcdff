"""MASF assembled: teacher -> SDM -> AMFD student, SAMB banks, UGHF fusion, TTSA views.

A pure ``nn.Module`` with explicit entry points (no train/eval-dependent
return types): ``training_loss`` for the trainer, ``fit`` (the banks) after an
epoch, ``score`` for evaluation and inference. The baselines (patchcore.py,
padim.py) offer the same entry points; ``build_detector`` picks one by
``model.method``.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from masf.config import ModelConfig
from masf.method.amfd import Student, cosine_map, distillation_loss, mask_views
from masf.method.samb import SAMB
from masf.method.scores import Scores, gaussian_blur
from masf.method.sdm import SDM
from masf.method.ttsa import phase_noise, phase_views
from masf.method.ughf import UGHF
from masf.teacher import Teacher


def image_seeds(x: torch.Tensor, seed: int) -> list[int]:
    """One seed per image of ``x`` (B, ...), from its pixels: the same image gets the same seed in any batch."""
    pixels = x.detach().float().cpu().numpy()
    return [zlib.crc32(pixels[i].tobytes(), seed & 0xFFFFFFFF) for i in range(pixels.shape[0])]


class MASF(nn.Module):
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
            nn.ModuleList(Student(c, a.attn_dim, a.heads, a.freq_view) for c in channels) if a.enabled else None
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
        self.ughf = UGHF(self.scales, cfg.ughf.learned)
        t = cfg.ttsa
        self.ttsa_seed = t.seed
        self.test_mask_seed = seed + 7919

    # ------------------------------------------------------------ training

    @property
    def trains(self) -> bool:
        return self.students is not None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student side's parameters; none without a student (nothing is trained then)."""
        if not self.trains:
            return []
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("teacher.")]

    def student_maps(self, feats: list[torch.Tensor], generator: Optional[torch.Generator], masked: bool) -> list[torch.Tensor]:
        """Teacher maps -> student maps S_l (B, C_l, H_l, W_l)."""
        a = self.cfg.amfd
        out = []
        for sdm, student, f in zip(self.sdm, self.students, feats):
            f_spec = sdm(f)
            if masked:
                spatial, freq = mask_views(f_spec, a.spatial_mask_ratio, a.freq_mask_ratio, a.patch_size, generator)
            else:
                spatial = freq = f_spec
            out.append(student(spatial, freq))
        return out

    def training_loss(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised images (B, 3, H, W) -> (UGHF-weighted total, per-scale L_l)."""
        feats = self.teacher(x)
        students = self.student_maps(feats, generator, masked=True)
        per_scale = [distillation_loss(t, s, self.cfg.amfd.spectral_loss_weight) for t, s in zip(feats, students)]
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

    # ------------------------------------------------------------ scoring

    def _component_weights(self) -> tuple[float, float]:
        """(cosine weight, bank weight), renormalised over the components present."""
        wc = self.cfg.ughf.cos_weight if self.students is not None else 0.0
        wb = self.cfg.ughf.bank_weight if self.banks is not None else 0.0
        total = wc + wb
        if total <= 0:
            raise ValueError("model.ughf.cos_weight and bank_weight give the present components zero weight")
        return wc / total, wb / total

    @torch.no_grad()
    def _masked_cosine(self, feats: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
        """Test-time masking: per-scale cosine maps averaged over seeded mask draws, each image with its own seed."""
        a = self.cfg.amfd
        cos = [torch.zeros(f.shape[0], *f.shape[-2:], device=f.device) for f in feats]
        for b, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(seed)
            one = [f[b : b + 1] for f in feats]
            for _ in range(a.test_mask_draws):
                for i, (t, s) in enumerate(zip(one, self.student_maps(one, gen, masked=True))):
                    cos[i][b] += cosine_map(t, s)[0] / a.test_mask_draws
        return cos

    @torch.no_grad()
    def _view_maps(self, x: torch.Tensor, seeds: Optional[list[int]] = None) -> list[torch.Tensor]:
        """Normalised images (B, 3, H, W) -> per-scale s_l at input resolution, L x (B, H, W).

        ``seeds``: one per image for test-time masks (default: from the images' pixels).
        """
        size = x.shape[-2:]
        feats = self.teacher(x)
        wc, wb = self._component_weights()
        maps = [torch.zeros(x.shape[0], *f.shape[-2:], device=x.device) for f in feats]
        if self.students is not None and wc > 0:
            a = self.cfg.amfd
            if a.test_masking:
                cos = self._masked_cosine(feats, seeds if seeds is not None else image_seeds(x, self.test_mask_seed))
            else:
                cos = [cosine_map(t, s) for t, s in zip(feats, self.student_maps(feats, None, masked=False))]
            maps = [m + wc * c for m, c in zip(maps, cos)]
        if self.banks is not None and wb > 0:
            if not all(b.fitted for b in self.banks):
                raise RuntimeError("score() before build_banks()")
            maps = [m + wb * bank.score(t) for m, bank, t in zip(maps, self.banks, feats)]
        return [F.interpolate(m.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1) for m in maps]

    @torch.no_grad()
    def score(self, x: torch.Tensor, ttsa: Optional[bool] = None) -> Scores:
        """Normalised images (B, 3, H, W) -> anomaly maps and image scores.

        ``ttsa`` None follows the config; the n views are scored in one batch.
        """
        use_ttsa = self.cfg.ttsa.enabled if ttsa is None else ttsa
        if use_ttsa:
            t = self.cfg.ttsa
            eps = phase_noise(t.views, x.shape[1], x.shape[2], x.shape[3], t.phase_std, self.ttsa_seed)
            views = phase_views(x, eps)  # (n * B, 3, H, W), view-major
            seeds = None
            if self.cfg.amfd.test_masking and self.students is not None:  # seeded by the images, not the views
                base = image_seeds(x, self.test_mask_seed)
                seeds = [(s + 1_000_003 * k) & 0xFFFFFFFF for k in range(t.views) for s in base]
            maps = [m.view(t.views, x.shape[0], *m.shape[1:]).mean(0) for m in self._view_maps(views, seeds)]
        else:
            maps = self._view_maps(x)
        fused = gaussian_blur(self.ughf.fuse(maps), self.cfg.ughf.blur_sigma)
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
