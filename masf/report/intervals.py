"""Intervals of a difference (variant minus reference, in the unit given), from per-image records (masf/records.py).

- several seeds: ``t_interval`` of the per-seed differences (same seed, same data), the mean
  difference +- t(0.975, n-1) * sd / sqrt(n);
- one seed: the paired bootstrap (``paired_bootstrap``), stratified (good and defective images
  resampled apart, so every draw has both), 95 % percentile interval of the draws' differences shifted
  onto the exact difference: [d + q2.5(D* - D), d + q97.5(D* - D)], with d the difference of the exact
  metrics and D the difference recomputed from the records with every image once (the bins' resolution
  error cancels). With 2000 draws of a category of a hundred images it takes well under a second.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from masf.records import check_pair, metrics_from_statistics, record_digest

DRAWS = 2000
LEVEL = 0.95


class _Memo(dict):
    """A dict that forgets its oldest entries past ``size``."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.lock = threading.Lock()  # paired_bootstrap's threads add entries at once

    def __setitem__(self, key, value) -> None:
        with self.lock:
            while len(self) >= self.size:
                del self[next(iter(self))]
            super().__setitem__(key, value)


def bootstrap_weights(labels: np.ndarray, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """(draws, N) image counts of a stratified bootstrap: good and defective images resampled apart."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(bool)
    w = np.zeros((draws, labels.size))
    for group in (np.flatnonzero(labels), np.flatnonzero(~labels)):
        if group.size:
            picks = group[rng.integers(0, group.size, size=(draws, group.size))]
            np.add.at(w, (np.repeat(np.arange(draws), group.size), picks.ravel()), 1.0)
    return w


# a pair's draws by (digest a, digest b, draws, seed): the selections of a trial are often one epoch (a single
# evaluation, or the last epoch chosen), whose records are alike, and their intervals need one bootstrap
_DRAWN = _Memo(256)


def paired_bootstrap(pairs: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray], Mapping[str, float], Mapping[str, float]]],
                     metrics: Sequence[str], draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> dict[str, tuple[float, float, float]]:
    """Mean difference (a - b) over ``pairs`` and its bootstrap interval, per metric, in the metrics' unit.

    Each pair is (record a, record b, exact metrics a, exact metrics b) of one category; every
    category draws its own images, and a draw's difference is the mean over the categories.
    Returns metric -> (difference, low, high).
    """
    for ra, rb, _, _ in pairs:
        check_pair(ra, rb)

    def draw(i: int) -> tuple[dict, dict, dict, dict]:
        ra, rb = pairs[i][0], pairs[i][1]
        key = (record_digest(ra), record_digest(rb), draws, seed + i)
        found = _DRAWN.get(key)
        if found is None:
            w = bootstrap_weights(ra["label"], draws, seed + i)
            found = (metrics_from_statistics(ra, w), metrics_from_statistics(rb, w), metrics_from_statistics(ra), metrics_from_statistics(rb))
            _DRAWN[key] = found  # (another thread may evict it at once: this call keeps its own)
        return found

    # the categories' draws are independent: numpy leaves the GIL in the large array operations, so threads share the cores
    with ThreadPoolExecutor(max_workers=max(1, min(len(pairs), os.cpu_count() or 1))) as pool:
        drawn = list(pool.map(draw, range(len(pairs))))
    boot = {m: np.zeros(draws) for m in metrics}
    point = {m: 0.0 for m in metrics}
    for (_, _, ma, mb), (da, db, fa, fb) in zip(pairs, drawn):  # summed in the pairs' order: the same numbers as one thread
        for m in metrics:
            exact = float(ma[m]) - float(mb[m])
            point[m] += exact / len(pairs)
            boot[m] += (exact + (da[m] - db[m]) - (fa[m][0] - fb[m][0])) / len(pairs)
    alpha = (1.0 - level) / 2.0
    return {m: (point[m], float(np.quantile(boot[m], alpha)), float(np.quantile(boot[m], 1.0 - alpha))) for m in metrics}


def t_interval(differences: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of paired differences; one difference gives no interval (NaN bounds)."""
    d = np.asarray([x for x in differences if np.isfinite(x)], dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan
    half = float(sps.t.ppf(0.5 + level / 2.0, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def excludes_zero(low: float, high: float, tol: float = 1e-6) -> bool:
    """Whether [low, high] leaves out 0; a bound within ``tol`` of 0 (float rounding of a bound that is 0) counts as 0."""
    return bool(np.isfinite(low) and np.isfinite(high) and (low > tol or high < -tol))
