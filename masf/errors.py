"""The project's own errors: each message is one line naming the file, key or value at fault."""


class MasfError(Exception):
    """Base class; the CLI prints these as one red line and exits 1."""


class DataError(MasfError):
    """A dataset problem (missing file, bad mask, unknown category, ...)."""


class WeightsError(MasfError):
    """Backbone weights could not be had from the configured source."""


class MetricsError(MasfError, ValueError):
    """Metrics cannot be computed from these inputs (e.g. no defective images)."""


class TrainingError(MasfError):
    """A trial cannot produce honest metrics (e.g. every batch was skipped)."""
