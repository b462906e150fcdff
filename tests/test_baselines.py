"""PatchCore and PaDiM as published, checked against direct numpy computations of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from masf.config import build_config
from masf.method.model import build_detector
from masf.method.patchcore import aggregate
from masf.method.teacher import build_teacher

TINY = {"model.teacher.name": "resnet18", "model.teacher.weights": "none"}


def _detector(variant: str, **overrides):
    cfg = build_config(None, {**TINY, **overrides}, variant=variant)
    torch.manual_seed(0)
    return build_detector(cfg.model, build_teacher(cfg.model.teacher), seed=3)


def _images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_aggregate_is_local_mean_then_deeper_map_upsampled_and_concatenated():
    fine, deep = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    out = aggregate([fine, deep], 3)
    assert out.shape == (2, 8, 8, 8)
    padded = F.pad(fine, (1, 1, 1, 1))  # zero padding: the border averages count the zeros
    assert torch.allclose(out[:, :3, 0, 0], padded[:, :, 0:3, 0:3].mean((-2, -1)), atol=1e-6)
    assert torch.allclose(out[:, :3, 4, 5], fine[:, :, 3:6, 4:7].mean((-2, -1)), atol=1e-6)
    deep_avg = F.avg_pool2d(deep, 3, 1, 1, count_include_pad=True)
    assert torch.allclose(out[:, 3:], F.interpolate(deep_avg, size=(8, 8), mode="bilinear", align_corners=False), atol=1e-6)


def test_patchcore_is_one_bank_of_the_middle_layers_scored_by_the_nearest_patch():
    pc = _detector("patchcore", **{"model.patchcore.coreset_ratio": 0.25})
    assert pc.cfg.layers == [1, 2] and pc.cfg.k == 1 and pc.cfg.coreset_max is None
    stats = pc.fit([_images(3, 0), _images(2, 1)])
    feats = pc.teacher(_images(1, 0))
    assert stats["bank/patches"] == 5 * feats[1].shape[-2] * feats[1].shape[-1]  # one bank on the stride-8 grid
    assert stats["bank/prototypes"] == int(np.ceil(0.25 * stats["bank/patches"]))
    x = _images(2, 9)
    patch, image = pc.patch_scores(x)
    q = pc.embed(x).permute(0, 2, 3, 1).reshape(-1, pc.bank.prototypes.shape[1]).numpy().astype(np.float64)
    d = np.sqrt(((q[:, None, :] - pc.bank.prototypes[None].astype(np.float64)) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(patch.ravel(), d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(image, d.reshape(2, -1).max(1), rtol=1e-4, atol=1e-4)
    out = pc.score(x)
    assert out.anomaly_map.shape == (2, 64, 64) and torch.allclose(out.image_score, torch.from_numpy(image).float())


def test_patchcore_reweighting_follows_the_paper():
    pc = _detector("patchcore", **{"model.patchcore.reweight": True, "model.patchcore.reweight_neighbours": 4})
    pc.fit([_images(4, 0)])
    x = _images(1, 5)
    patch, image = pc.patch_scores(x)
    protos = pc.bank.prototypes.astype(np.float64)
    q = pc.embed(x).permute(0, 2, 3, 1).reshape(-1, protos.shape[1]).numpy().astype(np.float64)
    j = int(patch.ravel().argmax())
    star = np.argmin(((protos - q[j]) ** 2).sum(1))
    support = np.argsort(((protos - protos[star]) ** 2).sum(1))[:4]  # N_b(m*), m* itself first
    dist = np.sqrt(((protos[support] - q[j]) ** 2).sum(1))
    w = 1.0 - np.exp(dist[0]) / np.exp(dist).sum()
    assert image[0] == pytest.approx(w * patch.ravel()[j], rel=1e-4)


def test_padim_is_a_gaussian_per_position_with_mahalanobis_distance():
    pd_ = _detector("padim", **{"model.padim.features": 20})
    assert pd_.channels.numel() == 20 and pd_.cfg.layers == [0, 1, 2]
    train = _images(6, 0)
    pd_.fit([train[:4], train[4:]])
    e = pd_.embed(train).double()  # (N, d, h, w)
    n, d, h, w = e.shape
    x = _images(1, 7)
    got = pd_.distances(x)[0].numpy()
    q = pd_.embed(x).double()[0]
    for (i, k) in [(0, 0), (h // 2, w - 1), (h - 1, 3)]:
        samples = e[:, :, i, k].numpy()
        cov = np.cov(samples, rowvar=False) + 0.01 * np.eye(d)
        diff = q[:, i, k].numpy() - samples.mean(0)
        assert got[i, k] == pytest.approx(np.sqrt(diff @ np.linalg.inv(cov) @ diff), rel=2e-3)
    out = pd_.score(x)
    assert out.image_score[0] == out.anomaly_map[0].max()


def test_baseline_channel_subset_and_coreset_follow_the_seed():
    a, b = _detector("padim"), _detector("padim")
    assert torch.equal(a.channels, b.channels)
    cfg = build_config(None, TINY, variant="padim")
    torch.manual_seed(0)
    other = build_detector(cfg.model, build_teacher(cfg.model.teacher), seed=4)
    assert not torch.equal(other.channels, a.channels)
