"""The teacher-feature cache cannot lie (a disk entry is checked on read), and the teacher's batched path."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from masf.config import ConfigError, build_config
from masf.method.feature_cache import ENTRY_FORMAT, FeatureCache, batch_digests, tensor_digest
from masf.method.teacher import build_teacher
from masf.trial.run import run_trial

SCORED = ("last/", "best_on_val/", "best_on_test/", "val/")


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith(SCORED)}


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_suffix(".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def test_swapped_cache_files_are_rejected_and_change_no_metric(synth_root, tiny, tmp_path):
    """The reproduction: a patchcore trial fills a cache, its files are swapped in pairs (each then a valid
    features file of another image), and the same trial into a new folder must not use any of them."""
    cfg = build_config(None, {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0}, variant="patchcore")
    cache = tmp_path / "cache"
    first = FeatureCache(root=cache)
    row_a = run_trial(cfg, tmp_path / "a", feature_cache=first)
    files = sorted(cache.rglob("*.pt"))
    assert len(files) == first.writes >= 4 and first.rejected == 0
    for a, b in zip(files[0::2], files[1::2]):
        _swap(a, b)
    if len(files) % 2:  # the odd one out swaps with the first (every file then holds another image's features)
        _swap(files[0], files[-1])

    second = FeatureCache(root=cache)
    with pytest.warns(UserWarning, match="rejected entries") as caught:
        row_b = run_trial(cfg, tmp_path / "b", feature_cache=second)
    assert sum("rejected entries" in str(w.message) for w in caught) == 1  # once per cache
    assert _metrics(row_b) == _metrics(row_a)  # exactly
    assert row_b["feature_cache_rejected"] == second.rejected == len(files)
    # no swapped entry was used: the same lookups missed (and were recomputed) as in the cold run; the hits
    # are the repeated lookups, from the memory tier, as in the cold run
    assert second.misses == first.misses and second.hits == first.hits and second.writes == len(files)

    # rewritten: a third run reads every entry back from disk, and nothing is rejected
    third = FeatureCache(root=cache, memory_bytes=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        row_c = run_trial(cfg, tmp_path / "c", feature_cache=third)
    assert _metrics(row_c) == _metrics(row_a)
    assert third.rejected == 0 and third.misses == 0 and third.hits > 0

    # train.feature_cache=off: the cache given is not asked, the metrics are the same
    off = build_config(None, {**tiny(synth_root), "train.epochs": 1, "eval.timing_images": 0, "train.feature_cache": "off"},
                       variant="patchcore")
    unused = FeatureCache(root=tmp_path / "unused")
    row_d = run_trial(off, tmp_path / "d", feature_cache=unused)
    assert _metrics(row_d) == _metrics(row_a) and "feature_cache_hits" not in row_d
    assert unused.hits == unused.misses == 0 and not (tmp_path / "unused").exists()


def _entry(tmp_path: Path) -> tuple[FeatureCache, str, str, list[torch.Tensor], Path]:
    cache = FeatureCache(root=tmp_path / "cache")
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2)]
    key = tensor_digest(torch.randn(3, 8, 8))
    cache.put("ns0", key, feats)
    path = next((tmp_path / "cache").rglob("*.pt"))
    return cache, "ns0", key, feats, path


def _read_back(tmp_path: Path, ns: str, key: str):
    fresh = FeatureCache(root=tmp_path / "cache", memory_bytes=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fresh.get(ns, key)
    return fresh, got, [str(w.message) for w in caught]


def test_a_good_entry_reads_back(tmp_path):
    _, ns, key, feats, _ = _entry(tmp_path)
    fresh, got, said = _read_back(tmp_path, ns, key)
    assert said == [] and fresh.hits == 1 and fresh.rejected == 0
    assert all(torch.equal(a, b) for a, b in zip(got, feats))


def test_a_truncated_entry_is_rejected_and_rewritten(tmp_path):
    _, ns, key, feats, path = _entry(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # a torn write, a half-copied folder
    fresh, got, said = _read_back(tmp_path, ns, key)
    assert got is None and fresh.rejected == 1 and fresh.misses == 1 and fresh.hits == 0
    assert len(said) == 1 and str(tmp_path / "cache") in said[0] and str(path) in said[0]
    assert fresh.stats()["feature_cache_rejected"] == 1
    fresh.put(ns, key, feats)  # what the teacher does with a miss: computes and rewrites
    again, got, said = _read_back(tmp_path, ns, key)
    assert said == [] and again.rejected == 0 and all(torch.equal(a, b) for a, b in zip(got, feats))


def test_a_flipped_byte_in_the_tensor_data_is_rejected(tmp_path):
    _, ns, key, feats, path = _entry(tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.find(feats[1].numpy().tobytes())
    assert at > 0
    raw[at + 7] ^= 0x10  # one bit of one float of the second map
    path.write_bytes(bytes(raw))
    fresh, got, said = _read_back(tmp_path, ns, key)
    assert got is None and fresh.rejected == 1 and len(said) == 1


def test_a_consistent_looking_entry_with_other_content_is_rejected(tmp_path):
    """Tensors altered and saved anew with the old checksum, another namespace, the old format: each rejected."""
    _, ns, key, feats, path = _entry(tmp_path)
    entry = torch.load(path, weights_only=True)
    assert entry["format"] == ENTRY_FORMAT and entry["namespace"] == ns and entry["key"] == key
    tampered = {**entry, "features": [entry["features"][0] + 1e-6, entry["features"][1]]}
    torch.save(tampered, path)
    assert _read_back(tmp_path, ns, key)[0].rejected == 1
    # the right file under another namespace's folder
    torch.save(entry, path)
    other = FeatureCache(root=tmp_path / "cache")._path("ns1", key)
    other.parent.mkdir(parents=True)
    other.write_bytes(path.read_bytes())
    fresh, got, _ = _read_back(tmp_path, "ns1", key)
    assert got is None and fresh.rejected == 1
    # an entry of the first format (a bare list of tensors), and a foreign file
    torch.save(feats, path)
    assert _read_back(tmp_path, ns, key)[0].rejected == 1
    path.write_bytes(b"not a torch file")
    assert _read_back(tmp_path, ns, key)[0].rejected == 1
    # the warning is said once per cache, the count goes on
    cache = FeatureCache(root=tmp_path / "cache", memory_bytes=0)
    with pytest.warns(UserWarning, match="rejected entries") as caught:
        cache.get(ns, key)
        cache.get("ns1", key)
    assert cache.rejected == 2 and len([w for w in caught if "rejected" in str(w.message)]) == 1


def test_a_negative_feature_cache_size_is_one_line_error(capsys):
    from masf.cli.main import main
    from masf.errors import MasfError
    from masf.runner.sweep import SweepOptions

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--feature-cache-gb", "-5"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--feature-cache-gb" in err and "-5" in err
    with pytest.raises(MasfError, match="--feature-cache-gb"):
        SweepOptions(feature_cache_gb=float("nan"))
    assert SweepOptions(feature_cache_gb=0).feature_cache_gb == 0  # in memory only, as before


def test_the_feature_cache_key_takes_auto_on_off():
    assert build_config(None, {}).train.feature_cache == "auto"
    assert build_config(None, {"train.feature_cache": "on"}).train.feature_cache == "on"
    with pytest.raises(ConfigError, match="train.feature_cache"):
        build_config(None, {"train.feature_cache": "yes please"})


def test_the_batched_path_matches_the_per_image_path_and_bypasses_the_cache(tmp_path):
    cfg = build_config(None, {"model.teacher.name": "resnet18", "model.teacher.weights": "none"})
    torch.manual_seed(0)
    teacher = build_teacher(cfg.model.teacher)
    assert teacher.batched is None  # auto: batched on CUDA, per image on CPU
    assert not teacher.runs_batched(torch.device("cpu")) and teacher.runs_batched(torch.device("cuda"))
    x = torch.randn(5, 3, 64, 64)
    per_image = teacher(x)
    teacher.batched = True
    try:
        batched = teacher(x)
        for a, b in zip(per_image, batched):
            assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))

        # the batched path leaves the cache alone unless asked
        cache = FeatureCache(root=tmp_path / "cache")
        teacher.cache = cache
        teacher(x)
        assert cache.hits == cache.misses == cache.writes == 0 and not (tmp_path / "cache").exists()
        teacher.cache_batched = True  # train.feature_cache=on
        first = teacher(x)
        assert cache.misses == 5 and cache.writes == 5 and cache.hits == 0
        mixed = torch.cat([x[:2], torch.randn(1, 3, 64, 64), x[2:4]])  # hits and one new image
        got = teacher(mixed)
        assert cache.hits == 4 and cache.misses == 6
        for f, g in zip(first, got):
            assert torch.equal(g[[0, 1, 3, 4]], f[:4])
        assert all(torch.equal(a, b) for a, b in zip(teacher(x), first)) and cache.hits == 9
        # the per-image path's entries are not the batched path's (another namespace)
        assert teacher.namespace(x.device) != teacher.namespace(x.device, batched=True)
    finally:
        teacher.batched, teacher.cache, teacher.cache_batched = None, None, False


def test_a_batch_is_hashed_once_per_image_as_the_per_image_path_does():
    x = torch.randn(4, 3, 16, 16)
    assert batch_digests(x) == [tensor_digest(x[i]) for i in range(4)]
    assert batch_digests(x[1:3]) == [tensor_digest(x[1]), tensor_digest(x[2])]
