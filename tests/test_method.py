"""Component contracts of MASF (MASF-SPEC.md), on CPU with tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masf.config import build_config
from masf.method.amfd import SSCA, Student, distillation_loss, frequency_mask, mask_views, spatial_patch_mask
from masf.method.coreset import coverage_radius, greedy_coreset
from masf.method.fft import fft2
from masf.method.memory_bank import MemoryBank
from masf.method.model import MASF, gaussian_blur
from masf.method.samb import SAMB, SpectralAnchor
from masf.method.sdm import SDM, low_pass_mask
from masf.method.ttsa import phase_noise, phase_views
from masf.method.ughf import UGHF
from masf.method.teacher import build_teacher


def test_sdm_bands_sum_to_input():
    f = torch.randn(2, 8, 16, 12)
    low, high = SDM(8).split(f)
    assert torch.allclose(low + high, f, atol=1e-5)
    assert low.dtype == torch.float32 and not torch.allclose(low, torch.zeros_like(low))
    # the low band really is low-pass: its spectrum vanishes outside the box
    mask = low_pass_mask(16, 12, 0.3)
    assert torch.allclose(fft2(low) * (1 - mask), torch.zeros(1, dtype=torch.complex64), atol=1e-4)


def test_low_pass_box_side():
    mask = torch.fft.fftshift(low_pass_mask(20, 64, 0.3))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    # |k| <= 0.3 * 20 / 2 = 3 -> side 7; |k| <= 0.3 * 64 / 2 = 9.6 -> side 19 (0.3 * 64 = 19.2)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (7, 19)
    assert mask[10, 32] == 1  # DC sits at the centre of the box
    assert torch.equal(mask, torch.flip(torch.roll(mask, (-1, -1), (0, 1)), (0, 1)))  # symmetric about DC


def test_fft_stays_float32_under_autocast():
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fft2(x.bfloat16()).dtype == torch.complex64
        low, high = SDM(4).split(x.bfloat16())
        assert low.dtype == torch.float32
        loss = distillation_loss(x.bfloat16(), x.bfloat16() * 0.5)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_mask_ratios():
    gen = torch.Generator().manual_seed(0)
    keep = spatial_patch_mask(64, 32, 32, 0.35, 2, gen, torch.device("cpu"))
    patches = keep[:, 0, ::2, ::2]  # one value per 2x2 patch
    assert torch.equal(keep, patches.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(1))
    dropped = 1 - patches.mean(dim=(1, 2))
    assert torch.allclose(dropped, torch.full_like(dropped, 0.35), atol=1 / 256 + 1e-6)
    fk = frequency_mask(64, 16, 16, 0.25, gen, torch.device("cpu"))
    assert fk.shape == (64, 1, 16, 9)
    assert torch.allclose(1 - fk.mean(dim=(1, 2, 3)), torch.full((64,), 0.25), atol=1 / 144 + 1e-6)
    assert not torch.equal(fk[0], fk[1])  # drawn per sample


def test_masked_views_differ_from_input():
    f = torch.randn(2, 4, 8, 8)
    spatial, freq = mask_views(f, 0.35, 0.25, 2, torch.Generator().manual_seed(1))
    zero_frac = (spatial == 0).float().mean().item()
    assert 0.3 < zero_frac < 0.4
    assert freq.shape == f.shape and not torch.allclose(freq, f)


def test_ssca_and_student_shapes():
    s = Student(24, attn_dim=256, heads=4)
    x = torch.randn(2, 24, 8, 8)
    assert s(x, x).shape == x.shape
    att = SSCA(6, 256, 4)  # d rounded up to a multiple of the heads
    assert att.dim == 8 and att(torch.randn(1, 6, 4, 4), torch.randn(1, 6, 4, 4)).shape == (1, 8, 4, 4)


def test_ssca_cross_attention_reads_the_frequency_view():
    torch.manual_seed(0)
    s = Student(8, heads=4).eval()
    q = torch.randn(1, 8, 6, 6)
    a, b = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
    assert not torch.allclose(s(q, a), s(q, b))
    s_self = Student(8, heads=4, freq_view=False).eval()
    assert torch.allclose(s_self(q, a), s_self(q, b))  # K = V = Q: the second view is ignored


def test_ughf_weights_and_loss():
    u = UGHF(3, learned=True)
    with torch.no_grad():
        u.log_vars.copy_(torch.tensor([0.0, 1.0, -0.5]))
    w = u.weights()
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and w[2] > w[0] > w[1]
    losses = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)]
    v = u.log_vars.detach()
    assert torch.isclose(u.loss(losses), (torch.exp(-v) * torch.tensor([1.0, 2.0, 3.0]) + v).sum())
    fixed = UGHF(3, learned=False)
    assert torch.allclose(fixed.weights(), torch.full((3,), 1 / 3))
    assert torch.isclose(fixed.loss(losses), torch.tensor(6.0)) and not list(fixed.parameters())


def test_ttsa_keeps_amplitude_and_changes_phase():
    x = torch.randn(2, 3, 16, 14)
    eps = phase_noise(5, 3, 16, 14, 0.1, seed=0)
    views = phase_views(x, eps).view(5, 2, 3, 16, 14)
    assert torch.allclose(fft2(views).abs(), fft2(x).abs().expand_as(views), atol=1e-4)
    assert not torch.allclose(views[0], x, atol=1e-3)
    assert abs(eps.std().item() - 0.1) < 0.01
    assert torch.equal(eps, phase_noise(5, 3, 16, 14, 0.1, seed=0))  # seeded


def test_coreset_matches_plain_greedy_and_beats_random():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16)) * 4
    x = (centres[rng.integers(20, size=3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    idx = greedy_coreset(x, 150, seed=3)
    # plain greedy k-center, written out
    first = int(np.random.default_rng(3).integers(len(x)))
    plain = [first]
    d = np.linalg.norm(x - x[first], axis=1)
    for _ in range(149):
        plain.append(int(np.argmax(d)))
        d = np.minimum(d, np.linalg.norm(x - x[plain[-1]], axis=1))
    assert np.mean(idx == np.array(plain)) > 0.97  # the same selection, up to float ties
    greedy_r = coverage_radius(x, x[idx])
    assert greedy_r == pytest.approx(coverage_radius(x, x[plain]), rel=1e-4)
    random_r = max(coverage_radius(x, x[rng.choice(len(x), 150, replace=False)]) for _ in range(3))
    assert greedy_r < random_r
    assert len(set(idx.tolist())) == 150


def test_memory_bank_knn_mean_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(7, 8)).astype(np.float32)
    bank = MemoryBank(k=3, device="cpu").fit(protos)
    dists = np.linalg.norm(queries[:, None] - protos[None], axis=2)
    expected = np.sort(dists, axis=1)[:, :3].mean(axis=1)
    assert np.allclose(bank.search(queries), expected, atol=1e-4)
    bank.save(tmp_path / "bank.pt")
    again = MemoryBank.load(tmp_path / "bank.pt", device="cpu")
    assert np.allclose(again.search(queries), expected, atol=1e-4) and len(again) == 50


def test_spectral_anchor_prototypes_are_unit_and_fixed():
    p = torch.randn(10, 12)
    a, b = SpectralAnchor(12, seed=5), SpectralAnchor(12, seed=5)
    q = a(p)
    assert torch.allclose(q.norm(dim=1), torch.ones(10), atol=1e-5)
    assert torch.equal(q, b(p)) and not any(t.requires_grad for t in a.parameters())


def test_samb_coreset_cap_and_score_shape():
    bank = SAMB(6, coreset_ratio=0.5, coreset_max=20, k=2)
    stats = bank.build([torch.randn(2, 6, 5, 5), torch.randn(1, 6, 5, 5)])
    assert stats == {"patches": 75, "prototypes": 20}
    assert bank.score(torch.randn(2, 6, 5, 5)).shape == (2, 5, 5)


def test_gaussian_blur_preserves_constant_and_mass_centre():
    const = torch.full((1, 20, 20), 3.0)
    assert torch.allclose(gaussian_blur(const, 4.0), const, atol=1e-5)
    spike = torch.zeros(1, 41, 41)
    spike[0, 20, 20] = 1.0
    out = gaussian_blur(spike, 2.0)
    assert out.argmax() == 20 * 41 + 20 and out.sum() == pytest.approx(1.0, abs=1e-4)


def _model(variant: str) -> MASF:
    cfg = build_config(None, {"model.teacher.name": "resnet18", "model.teacher.weights": "none", "model.ttsa.views": 2}, variant=variant)
    torch.manual_seed(0)
    return MASF(cfg.model, build_teacher(cfg.model.teacher))


def test_scoring_end_to_end_on_random_teacher():
    m = _model("full")
    x = torch.randn(2, 3, 32, 32)
    loss, parts = m.training_loss(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and len(parts) == 3
    loss.backward()
    assert all(p.grad is not None for p in m.trainable_parameters())
    assert all(p.grad is None for p in m.teacher.parameters())  # frozen
    m.build_banks([torch.randn(2, 3, 32, 32)])
    m.calibrate([torch.randn(2, 3, 32, 32)])  # the default reading's quantile normalisation
    out = m.eval().score(x)
    assert out.anomaly_map.shape == (2, 32, 32) and out.image_score.shape == (2,)
    assert torch.allclose(out.image_score, out.anomaly_map.flatten(1).amax(1))
    plain = m.score(x, ttsa=False)
    assert not torch.allclose(plain.anomaly_map, out.anomaly_map)


@pytest.mark.parametrize("ttsa", [False, True])
def test_test_time_masks_are_seeded_per_image_not_per_batch(ttsa):
    """With test-time masking, an image's score does not depend on the evaluation batch it is in."""
    m = _model("full")
    m.cfg.amfd.test_masking, m.cfg.amfd.test_mask_draws = True, 2
    m.build_banks([torch.randn(2, 3, 32, 32)])
    m.calibrate([torch.randn(2, 3, 32, 32)])
    m.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    whole = m.score(x, ttsa=ttsa)
    halves = [m.score(x[:2], ttsa=ttsa), m.score(x[2:], ttsa=ttsa)]
    reordered = m.score(x.flip(0), ttsa=ttsa)
    assert torch.allclose(whole.anomaly_map, torch.cat([h.anomaly_map for h in halves]), atol=1e-5)
    assert torch.allclose(whole.image_score, reordered.image_score.flip(0), atol=1e-5)
    m.cfg.amfd.test_masking = False
    assert not torch.allclose(whole.anomaly_map, m.score(x, ttsa=ttsa).anomaly_map)  # the masks were in play


def test_the_test_scoring_keeps_the_heatmap_rows_as_a_rescoring_gives_them():
    """The heatmap figure takes its per-scale maps from the test scoring: the same maps scoring those images again gives."""
    from masf.trial.evaluation import heatmap_indices, score_split

    m = _model("full")
    m.build_banks([torch.randn(2, 3, 32, 32)])
    m.calibrate([torch.randn(2, 3, 32, 32)])
    m.eval()
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    labels = np.array([0, 1, 1, 0, 1])
    masks = torch.zeros(5, 1, 32, 32)
    masks[labels == 1, :, 8:16, 8:16] = 1.0
    loader = [{"image": x[i:i + 2], "label": labels[i:i + 2], "mask": masks[i:i + 2]} for i in (0, 2, 4)]
    rows = heatmap_indices(labels, ["good", "crack", "cut", "good", "crack"], 3)
    assert rows == (1, 2, 0)  # one per defect type, then one good image
    ev = score_split(m, loader, torch.device("cpu"), False, 0.3, keep=rows)
    again = m.score(x[list(rows)])
    assert ev.kept == rows and len(ev.scale_maps) == len(again.scale_maps)
    for kept, fresh in zip(ev.scale_maps, again.scale_maps):
        np.testing.assert_allclose(kept, fresh.numpy(), atol=1e-5)
    assert score_split(m, loader, torch.device("cpu"), False, 0.3).scale_maps is None
