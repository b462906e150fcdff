"""The sweep's watchdog: a per-attempt wall limit and a no-progress limit for every trial.

A hung trial (a dataloader or CUDA hang, a stalled filesystem) reports nothing, so nothing that
waits for its next report can stop it. The driver's Tune callback (``ray_tune._Bridge``) asks
``Watchdog.due`` on every step of Tune's control loop, which runs whether or not any trial
reports, and stops each trial named there from outside (it kills the trial's actor). Tune counts
that as a failed attempt and retries the trial from its last checkpoint within --max-failures;
the reason given here replaces Ray's "actor died" text in the retry line, the failure and MLflow.

This module is the bookkeeping and the decision only, with no Ray, so it is tested with plain numbers.
Limits come from each trial's resolved config: ``train.wall_limit_s`` (longest attempt) and
``train.stall_limit_s`` (longest time without an epoch report, counted from the attempt's start
or its last report); None is no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from masf.errors import TIMED_OUT

@dataclass(frozen=True)
class Limits:
    wall_s: Optional[float] = None  # longest attempt; None: no limit
    stall_s: Optional[float] = None  # longest time without an epoch report; None: no limit

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "Limits":
        """The limits of a resolved config (``Config.to_dict()``)."""
        train = config.get("train", {})
        return cls(train.get("wall_limit_s"), train.get("stall_limit_s"))


@dataclass
class Attempt:
    """One attempt of one trial, on the driver's monotonic clock."""

    limits: Limits
    started: float
    last_report: Optional[float] = None
    stopping: bool = False  # named by ``due`` once; its stop is under way


def over_limit(attempt: Attempt, now: float) -> Optional[str]:
    """Why ``attempt`` is past one of its limits at ``now`` (the limit passed first), or None."""
    passed = []  # (when the limit was passed, reason)
    wall, stall = attempt.limits.wall_s, attempt.limits.stall_s
    if wall is not None and now - attempt.started > wall:
        passed.append((attempt.started + wall, f"{TIMED_OUT}: attempt ran {now - attempt.started:.0f} s (train.wall_limit_s={wall:g})"))
    quiet_since = attempt.started if attempt.last_report is None else attempt.last_report
    if stall is not None and now - quiet_since > stall:
        passed.append((quiet_since + stall, f"{TIMED_OUT}: no epoch report for {now - quiet_since:.0f} s (train.stall_limit_s={stall:g})"))
    return min(passed)[1] if passed else None


def overdue(attempts: Mapping[str, Attempt], now: float) -> dict[str, str]:
    """Trial key -> reason, for every attempt past a limit at ``now`` that is not being stopped already."""
    out = {}
    for key, attempt in attempts.items():
        reason = None if attempt.stopping else over_limit(attempt, now)
        if reason:
            out[key] = reason
    return out


class Watchdog:
    """The running attempts of a sweep's trials and why the watchdog stopped any of them.

    Only attempts that started (Tune's ``on_trial_start``: the trial has its actor) are watched,
    so a trial waiting to be scheduled is never stopped; an attempt is watched until ``ended``.
    """

    def __init__(self) -> None:
        self.attempts: dict[str, Attempt] = {}
        self.reasons: dict[str, str] = {}  # key -> why its current attempt is being stopped

    def started(self, key: str, limits: Limits, now: float) -> None:
        self.attempts[key] = Attempt(limits, now)
        self.reasons.pop(key, None)

    def reported(self, key: str, now: float) -> None:
        if key in self.attempts:
            self.attempts[key].last_report = now

    def due(self, now: float) -> dict[str, str]:
        """Key -> reason of each attempt that has just passed a limit; each attempt is named once."""
        found = overdue(self.attempts, now)
        for key, reason in found.items():
            self.attempts[key].stopping = True
            self.reasons[key] = reason
        return found

    def ended(self, key: str) -> Optional[str]:
        """The attempt is over (finished, failed, to be retried): stop watching it; why the watchdog stopped it, if it did."""
        self.attempts.pop(key, None)
        return self.reasons.pop(key, None)
