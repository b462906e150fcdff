"""The teacher's per-image path (CPU): images the cache lacks run through the body together only where that
was checked to give, to the last bit, what one image at a time gives (masf/method/teacher.py)."""

from __future__ import annotations

import torch

from masf.config import TeacherConfig
from masf.method.teacher import build_teacher


def _teacher():
    t = build_teacher(TeacherConfig(name="resnet18", out_indices=[1, 2, 3], weights="none"))
    t.batched = False  # the per-image path, as on CPU
    return t


def _one_at_a_time(t, x):
    return [torch.cat(maps) for maps in zip(*[[f.float() for f in t.body(x[i : i + 1])] for i in range(len(x))])]


def test_a_batch_gives_the_maps_of_one_image_at_a_time_and_is_checked_once():
    t = _teacher()
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first, second = t(x), t(x.flip(0))  # the first batch of its kind is run both ways, the second trusts the check
    reference = _one_at_a_time(t, x)
    assert all(torch.equal(a, b) for a, b in zip(first, reference))
    assert all(torch.equal(a, b.flip(0)) for a, b in zip(second, reference))
    assert list(t.invariant.values()) == [True] and next(iter(t.invariant))[0] == (5, 3, 32, 32)


def test_a_kind_of_batch_that_is_not_exact_runs_one_image_at_a_time():
    t = _teacher()
    forward = t.body.forward
    # a body whose output depends on its batch (as a kernel chosen by batch size could): never trusted
    t.body.forward = lambda x: [f + 1e-3 * (x.shape[0] > 1) for f in forward(x)]
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        out = t(x)
        assert all(torch.equal(a, b) for a, b in zip(out, _one_at_a_time(t, x)))
    assert list(t.invariant.values()) == [False]


def test_larger_batches_go_through_in_chunks():
    t = _teacher()
    x = torch.randn(t.CHUNK + 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = t(x)
    assert out[0].shape[0] == len(x)
    assert all(torch.equal(a, b) for a, b in zip(out, _one_at_a_time(t, x)))
    assert sorted(k[0][0] for k in t.invariant) == [3, t.CHUNK]
