"""The default scoring on a synthetic category's validation split (held-out normals and pseudo-anomalies):
TTSA's views of an image must score like the image (TTSA must not scramble the ranking), and the fused map must
be at least as good as its parts (the student's map alone, the bank's map alone), each within a stated margin.

One training (the `demo` preset's packaged ImageNet teacher at 128 px, three epochs) scored as full, no_ttsa and
bank_only, as a sweep's training group scores them; only validation numbers are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from masf.config import build_config
from masf.data.synth import generate_dataset
from masf.trial.run import run_group

# an AUROC step on this split is 1/(normals x anomalies) = 1/180: the margins are several steps
TTSA_MARGIN = 0.03  # image AUROC with TTSA not below that without by more than this
PARTS_MARGIN = 0.03  # the fused map's metrics not below the better part's by more than this
METRICS = ("image_auroc", "pixel_auroc", "pro")


@pytest.fixture(scope="module")
def validation_rows(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("scoring-validation")
    generate_dataset(root / "data", categories=["carpet"], seed=3, size=128, n_train=30, n_test=4)
    over = {"data.root": str(root / "data"), "data.category": "carpet", "data.val_fraction": 0.4, "data.pseudo_per_normal": 3,
            "train.epochs": 3, "train.warmup_epochs": 1, "train.restart_epochs": 3, "eval.every": 3, "eval.figures": False,
            "train.threads": 2}
    cfgs = {v: build_config("demo", over, variant=v) for v in ("full", "no_ttsa", "bank_only")}
    return run_group(cfgs["full"], list(cfgs.items()), root / "group", group="carpet/scoring/seed0", lead_key="full")


@pytest.mark.slow
def test_ttsa_views_score_like_the_images_on_validation(validation_rows):
    full, plain = validation_rows["full"], validation_rows["no_ttsa"]
    assert full["val/image_auroc"] >= plain["val/image_auroc"] - TTSA_MARGIN, (full["val/image_auroc"],
                                                                                         plain["val/image_auroc"])


# The goal is not reached for pixel AUROC: the fused map's pixel AUROC is below the bank's alone (on this split
# 0.73 against 0.81), as on every development set of bench/RESULTS.md section 20 (a 0.6 / 0.4 mix of the weaker
# student map and the stronger bank map falls between them). Strict: the day it holds, this test says so.
NOT_REACHED = pytest.mark.xfail(strict=True, reason="the fused map's pixel AUROC is below the bank's alone "
                                "(bench/RESULTS.md section 20): the goal of issue 23 is not reached there")


@pytest.mark.slow
@pytest.mark.parametrize("metric", [m if m != "pixel_auroc" else pytest.param(m, marks=NOT_REACHED) for m in METRICS])
def test_the_fused_map_is_at_least_as_good_as_its_parts_on_validation(validation_rows, metric):
    fused = validation_rows["no_ttsa"][f"val/{metric}"]
    student = validation_rows["no_ttsa"][f"val/student_only/{metric}"]
    bank = validation_rows["bank_only"][f"val/{metric}"]
    assert fused >= max(student, bank) - PARTS_MARGIN, (metric, fused, student, bank)
