"""masf-bench: MASF anomaly detection, its ablations, and a benchmark runner for MVTec-layout data."""

__version__ = "0.1.0"
