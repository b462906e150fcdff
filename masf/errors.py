"""The project's own errors: each message is one line naming the file, key or value at fault."""


class MasfError(Exception):
    """Base class; the CLI prints these as one red line and exits 1."""


class ConfigError(MasfError, ValueError):
    """A configuration problem; the message names the key or file at fault."""


class DataError(MasfError):
    """A dataset problem (missing file, bad mask, unknown category, ...)."""


class WeightsError(MasfError):
    """Backbone weights could not be had from the configured source."""


class MetricsError(MasfError, ValueError):
    """Metrics cannot be computed from these inputs (e.g. no defective images)."""


class TrainingError(MasfError):
    """A trial cannot produce honest metrics (e.g. every batch was skipped)."""


TIMED_OUT = "timed out"  # every reason the sweep's watchdog gives for stopping a trial starts with it: "timed out: ..."


def is_timeout(error: str) -> bool:
    """Whether a trial's error is the watchdog's reason for stopping it (masf/runner/watchdog.py)."""
    return str(error).startswith(f"{TIMED_OUT}:")


class LeaderboardError(MasfError):
    """The runs cannot give the requested table (no runs, unknown variant or sweep, bad option)."""
