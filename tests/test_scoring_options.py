"""MASF's scoring options (masf/method/model.py): how the components are normalised and where the bank enters
(model.ughf.normalize / bank_normalize, model.samb.scales, model.ughf.scoring_weights), and the TTSA readings
(model.ttsa.aggregate, model.ttsa.calibration). Each is checked against what it is defined to compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from masf.config import ConfigError, build_config
from masf.method.model import MASF
from masf.method.scores import gaussian_blur
from masf.method.teacher import build_teacher

SIZE = 32


def _model(**extra) -> MASF:
    over = {"model.reading": "masked", "model.teacher.name": "resnet18", "model.teacher.weights": "none", "model.ttsa.views": 3,
            "model.amfd.bn_recalibration": False, **extra}
    cfg = build_config(None, over)
    torch.manual_seed(0)
    m = MASF(cfg.model, build_teacher(cfg.model.teacher)).eval()
    m.build_banks([torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))])
    return m


def _calibrated(**extra) -> tuple[MASF, torch.Tensor]:
    m = _model(**extra)
    calib = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    m.calibrate([calib])
    return m, calib


def _up(m: torch.Tensor) -> torch.Tensor:
    return F.interpolate(m.unsqueeze(1), size=(SIZE, SIZE), mode="bilinear", align_corners=False).squeeze(1)


def test_fused_normalisation_maps_each_components_fused_map_to_its_calibration_quantiles():
    m, calib = _calibrated(**{"model.ughf.normalize": "fused"})
    assert m.calibrates and "calib/fused_cosine_lo" in m.calibrate([calib])
    w = m.ughf.weights()
    cos, banks = m._components(calib)
    for kind, maps in (("cosine", cos), ("bank", banks)):
        fused = sum(w[i] * _up(x) for i, x in enumerate(m._normalised(maps, kind)))
        lo, hi = np.quantile(fused.numpy().ravel(), m.cfg.ughf.quantiles)
        assert abs(lo) < 1e-4 and abs(hi - 1.0) < 1e-4, kind
    # the scales keep their raw proportions: one affine map for the whole component
    raw = sum(w[i] * _up(x) for i, x in enumerate(cos))
    lo, hi = m.fused_range[0]
    assert torch.allclose(sum(w[i] * _up(x) for i, x in enumerate(m._normalised(cos, "cosine"))), (raw - lo) / (hi - lo), atol=1e-5)


def test_bank_normalize_overrides_the_banks_normalisation_only():
    m, calib = _calibrated(**{"model.ughf.bank_normalize": "none"})
    cos, banks = m._components(calib)
    assert m._normalised(banks, "bank") is banks  # raw
    assert not torch.equal(m._normalised(cos, "cosine")[0], cos[0])  # per-scale quantiles
    none = _model(**{"model.ughf.normalize": "none", "model.ttsa.enabled": False})
    assert not none.calibrates  # nothing to calibrate: no normals needed


def test_the_bank_at_chosen_scales_is_their_weighted_mean_and_absent_elsewhere():
    full, calib = _calibrated(**{"model.ughf.normalize": "none", "model.ughf.cos_weight": 0.0, "model.ughf.bank_weight": 1.0,
                                 "model.ttsa.enabled": False})
    some, _ = _calibrated(**{"model.ughf.normalize": "none", "model.ughf.cos_weight": 0.0, "model.ughf.bank_weight": 1.0,
                             "model.ttsa.enabled": False, "model.samb.scales": [1, 2]})
    _, banks = full._components(calib)
    w = full.ughf.weights()
    expected = (w[1] * _up(banks[1]) + w[2] * _up(banks[2])) / (w[1] + w[2])
    got = some.score(calib)
    assert torch.allclose(got.anomaly_map, gaussian_blur(expected, some.cfg.ughf.blur_sigma), atol=1e-5)
    assert torch.count_nonzero(got.scale_maps[0]) == 0  # no bank at scale 0
    with pytest.raises(ConfigError, match="model.samb.scales"):
        _model(**{"model.samb.scales": [0, 5]})
    assert _model(**{"model.samb.scales": [-2, -1]})._scales_of("bank") == [1, 2]
    with pytest.raises(ConfigError, match="model.samb.scales"):
        build_config(None, {"model.samb.scales": [1, 1]})


def test_equal_scoring_weights_fuse_the_scales_equally():
    m, calib = _calibrated(**{"model.ughf.scoring_weights": "equal", "model.ttsa.enabled": False})
    with torch.no_grad():
        m.ughf.log_vars.copy_(torch.tensor([0.0, 1.0, 2.0]))  # learned weights far from equal
    s = m.score(calib)
    expected = gaussian_blur(sum(x / 3 for x in s.scale_maps), m.cfg.ughf.blur_sigma)
    assert torch.allclose(s.anomaly_map, expected, atol=1e-6)


@pytest.mark.parametrize("aggregate", ["median", "min"])
def test_ttsa_aggregates_the_views_fused_maps(aggregate):
    m, calib = _calibrated(**{"model.ttsa.aggregate": aggregate})
    mean, _ = _calibrated()
    views, seeds = m._ttsa_views(calib)
    per_view = [x.view(3, calib.shape[0], SIZE, SIZE) for x in m._view_maps(views, seeds, views=3)]
    fused = torch.stack([m.ughf.fuse([x[k] for x in per_view]) for k in range(3)])
    combined = fused.median(0).values if aggregate == "median" else fused.amin(0)
    s = m.score(calib)
    assert torch.allclose(s.anomaly_map, gaussian_blur(combined, m.cfg.ughf.blur_sigma), atol=1e-6)
    if aggregate == "min":  # never above the mean of the same views
        assert bool((s.anomaly_map <= mean.score(calib).anomaly_map + 1e-5).all())


def test_views_calibrated_put_each_views_maps_on_the_clean_scale():
    m, calib = _calibrated(**{"model.ttsa.calibration": "views", "model.ttsa.phase_std": 0.5})
    assert bool(m.views_calibrated)
    views, seeds = m._ttsa_views(calib)
    cos, banks = m._components(views, seeds)
    q = m.cfg.ughf.quantiles
    for kind, maps, clean in (("cosine", cos, m.cos_range), ("bank", banks, m.bank_range)):
        aligned = m._aligned(maps, kind, 3)
        for i in range(m.scales):
            for k in range(3):  # each view, over the calibration normals, has the clean image's quantiles
                lo, hi = np.quantile(aligned[i].view(3, -1)[k].numpy(), q)
                assert abs(lo - float(clean[i, 0])) < 1e-4 and abs(hi - float(clean[i, 1])) < 1e-4, (kind, i, k)
    # the buffers exist only where the config uses them, so other checkpoints keep their keys
    assert "view_cos_range" in m.state_dict() and "view_cos_range" not in _model().state_dict()
    assert "fused_range" not in _model().state_dict()
    # and a model without them still scores a TTSA view as before
    plain, _ = _calibrated()
    assert torch.allclose(plain.score(calib, ttsa=True).anomaly_map, plain.score(calib).anomaly_map)


def test_the_default_scoring_is_the_per_scale_quantile_mean_of_the_views():
    """The defaults compute what they did before these options (the numbers test checks it to the last bit)."""
    m, calib = _calibrated()
    views, seeds = m._ttsa_views(calib)
    per_view = m._view_maps(views, seeds, views=3)
    expected = gaussian_blur(m.ughf.fuse([x.view(3, calib.shape[0], SIZE, SIZE).mean(0) for x in per_view]), m.cfg.ughf.blur_sigma)
    assert torch.equal(m.score(calib).anomaly_map, expected)
