"""One trial, or one training group, as a plain function: no Ray, no MLflow, no screen.

- ``run``: ``run_trial`` / ``run_group``: datasets, teacher, trainer, result row, files, figures;
- ``trainer``: the training loop, checkpoints, the evaluations at chosen epochs; ``outcome``: its members
  (the scorings of one trained model) and what each gets;
- ``evaluation``: scoring a split and choosing an epoch (last, best_on_val, best_on_test);
- ``deferred``: the test split scored only where a selection needs it (``eval.test_split=selected``);
- ``sharing``: which trials share one training (scoring-only variants);
- ``figures``: a trial's heatmaps, ROC curve, score histogram and training curves;
- ``memory``: a trial's own peak resident memory.

May import: the base (``masf.config``, ``masf.metrics``, ``masf.records``, ``masf.fingerprint``, ...),
``masf.data`` and ``masf.method``; never ``masf.runner``, ``masf.report`` or ``masf.cli``.

``run_trial`` and ``run_group`` are the public entry points (``from masf.trial import run_trial``).
They load on first use: the sweep's driver imports ``masf.trial.sharing`` to plan its groups, and
that must not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_group", "run_trial"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from masf.trial import run

        return getattr(run, name)
    raise AttributeError(f"module 'masf.trial' has no attribute {name!r}")
