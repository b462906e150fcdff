"""bench/gpu_check.sh as a person runs it, on a machine where CUDA is hidden: every CUDA part says why
it was not checked, and its CPU smoke mode runs the same part functions end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_PARTS = ("weights", "data", "amp_training", "faiss_gpu", "timing", "trial")
SMOKE_PARTS = ("weights", "data", "amp_training", "faiss", "timing", "trial")


def gpu_check(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The wrapper with this interpreter and CUDA hidden (CUDA_VISIBLE_DEVICES=''), from another folder."""
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT")}  # the wrapper sets PYTHONPATH
    full.update(PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="", **(env or {}))
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=600)


def assert_cuda_parts_not_checked(report: dict) -> None:
    assert report["machine"]["cuda_available"] is False and report["machine"]["torch"]
    for key in CUDA_PARTS:
        part = report["parts"][key]
        assert part["status"] == "not checked" and part["reason"] == "no CUDA device", (key, part)
    for key in ("ray", "mlflow"):  # import checks only: never "ok", always a reason
        part = report["parts"][key]
        assert part["status"] == "not checked" and part["reason"], (key, part)
        assert part.get("import") == "ok" and part["version"] or "missing module" in part["reason"]


@pytest.mark.slow
def test_cpu_smoke_runs_every_part(tmp_path):
    out_dir = tmp_path / "figures"
    run = gpu_check(str(out_dir), "--cpu-smoke", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    json_path, md_path = out_dir / "gpu_check_cpu_smoke.json", out_dir / "gpu_check_cpu_smoke.md"
    assert str(json_path) in run.stdout and str(md_path) in run.stdout
    report = json.loads(json_path.read_text())
    assert report["complete"] is True
    assert report["machine"]["command"] == f"bash bench/gpu_check.sh {out_dir} --cpu-smoke" and report["machine"]["date"]
    assert_cuda_parts_not_checked(report)

    smoke = report["cpu_smoke"]
    assert {k: smoke[k]["status"] for k in SMOKE_PARTS} == dict.fromkeys(SMOKE_PARTS, "ok"), smoke
    assert smoke["weights"]["train"] == {"name": "resnet18", "weights": "none"}

    amp = smoke["amp_training"]
    assert amp["device"] == "cpu" and amp["amp"] is False and amp["batches"] == 2 and amp["problems"] == []
    assert amp["loss"] > 0 and amp["skipped_batches"] == 0 and amp["skipped_steps"] == 0 and amp["optimizer_steps"] == 2
    assert amp["ttsa_scores_finite"] is True
    for phase, table in amp["fft_calls"].items():  # every torch.fft call: float32 in and out, autocast off
        for call in table:
            assert call["input_dtype"] in ("torch.float32", "torch.complex64"), (phase, call)
            assert call["output_dtype"] in ("torch.float32", "torch.complex64"), (phase, call)
            assert call["autocast_at_call"] is False and call["calls"] > 0, (phase, call)
    training = {c["via"] for c in amp["fft_calls"]["training"]}
    assert {"masf/method/sdm.py:split", "masf/method/amfd.py:frequency_view", "masf/method/amfd.py:loss_terms"} <= training
    scoring = {c["via"] or c["site"] for c in amp["fft_calls"]["scoring"]}
    assert {"masf/method/ttsa.py:phase_views", "masf/method/samb.py:forward", "masf/method/sdm.py:split"} <= scoring
    for phase in ("training", "scoring"):
        modules = amp["module_output_dtypes"][phase]
        assert set(modules) == {"teacher.body", "sdm0", "sdm1", "sdm2", "student0", "student1", "student2"}, phase

    bank = smoke["faiss"]["memory_bank_cpu"]
    assert bank["index_agreement"] == 1.0 and bank["max_rel_distance_diff"] < 1e-4

    (row,) = smoke["timing"]["rows"]
    assert row["backbone"] == "resnet18" and row["regime"] == "float32" and row["image_size"] == 64
    assert all(row[k] > 0 for k in ("teacher_ms", "teacher_body_batched_ms", "score_ms", "score_ttsa_ms"))
    assert row["bank_on_gpu"] is False and min(row["bank_sizes"]) > 0

    trial = smoke["trial"]
    assert trial["device"] == "cpu" and trial["epochs"] == 1 and trial["image_size"] == 64 and trial["problems"] == []
    assert set(trial["metrics"]) == {"image_auroc", "pixel_auroc", "pro"}
    assert all(0.0 <= v <= 1.0 for v in trial["metrics"].values()), trial["metrics"]
    assert trial["trial_seconds"] > 0 and trial["infer_ms_per_image"] > 0 and trial["test_images"] == 8

    md = md_path.read_text()
    assert "| amp_training | not checked | no CUDA device |" in md and "## CPU smoke" in md and "| trial | ok |" in md


def test_without_cuda_every_cuda_part_says_why_and_out_is_used(tmp_path):
    """No arguments: the figures go to $OUT (the device tool's folder), named gpu_check.*; no smoke section."""
    out_dir = tmp_path / "device-out"
    run = gpu_check(cwd=tmp_path, env={"OUT": str(out_dir)})
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out_dir / "gpu_check.json").read_text())
    assert report["complete"] is True and report["cpu_smoke"] is None
    assert_cuda_parts_not_checked(report)
    assert "| faiss_gpu | not checked | no CUDA device |" in (out_dir / "gpu_check.md").read_text()
