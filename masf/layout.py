"""The files one trial leaves in its folder (masf/trial.py writes them; the sweep logs them to MLflow), the sweep's shared folders, the user's cache folder."""

import os
from pathlib import Path

RESULT = "result.json"  # the flat result row
STATS_FILE = "test_stats.npz"  # per-image test records of each epoch selection (masf/records.py)
# what the tracker logs of a finished trial (beside its checkpoint): the row, config, history, per-image record, figures
TRIAL_FILES = (RESULT, "config.yaml", "history.json", STATS_FILE, "figures")
FEATURES_DIR = "feature-cache"  # the sweep's teacher-feature cache (masf/method/feature_cache.py), under its storage folder


def cache_dir() -> Path:
    """masf-bench's per-user cache (the synthetic dataset, the teachers built before): MASF_CACHE_DIR, or XDG's."""
    base = os.environ.get("MASF_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "masf-bench")
    return Path(base)
