"""The test split scored only where a selection needs it (``eval.test_split=selected``).

With ``every`` (the default, the paper's protocol) each evaluated epoch scores validation and test, so all
three selections (last, best_on_val, best_on_test) can be read off. With ``selected`` an intermediate
evaluation scores validation only; the epoch that validation ranks best so far keeps a copy of every
member's scoring state (student, UGHF, the recalibrated BatchNorm statistics and calibration ranges: all
that the next scoring reads). At the end the final epoch is scored as usual, and each best-on-validation
epoch that is not the last is scored from its copy: the same weights, statistics, views and masks as at
that epoch, so its numbers are those ``every`` gives. ``best_on_test`` needs the test split at every
epoch, so under ``selected`` it is not available, and the result says so (``best_on_test_available`` 0).

What it saves: on a category with evaluations at epochs 4 and 8 and the best validation epoch 8, one of
the two test scorings (with TTSA the largest part of an evaluation).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch

from masf.trial.evaluation import select_epoch


def scoring_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what scoring reads of a detector (its state less the frozen teacher)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("teacher.")}


class DeferredTests:
    """Per member, the best-on-validation epoch so far and the scoring states of the epochs still needed."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, dict[str, torch.Tensor]]] = {}  # epoch -> member key -> state

    @staticmethod
    def key(name: Optional[str]) -> str:
        return name or ""

    def remember(self, epoch: int, members: Iterable[Any]) -> None:
        """After an intermediate evaluation (validation only): keep the states of this epoch if any member's
        validation ranks it best so far; drop the states no member's best epoch needs any more."""
        members = list(members)
        if any(self.best(m) == epoch for m in members):
            self.states[epoch] = {self.key(m.name): scoring_state(m.model) for m in members}
        needed = {self.best(m) for m in members}
        for e in [e for e in self.states if e not in needed]:
            del self.states[e]

    @staticmethod
    def best(member: Any) -> Optional[int]:
        """The epoch a member's validation ranks best so far (the earliest on ties, as best_on_val picks)."""
        chosen = select_epoch(member.history, "val/composite")
        return int(chosen["epoch"]) if chosen is not None else None

    def pending(self, members: Iterable[Any], last: int) -> list[int]:
        """The epochs, other than ``last``, that some member's validation picks (their test still to score)."""
        return sorted({e for e in (self.best(m) for m in members) if e is not None and e != last and e in self.states})

    def load(self, epoch: int, members: Iterable[Any]) -> None:
        for m in members:
            m.model.load_state_dict(self.states[epoch][self.key(m.name)], strict=False)

    def state(self) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
        return self.states

    def load_state(self, states: dict[int, dict[str, dict[str, torch.Tensor]]]) -> None:
        self.states = {int(e): dict(s) for e, s in (states or {}).items()}
