"""Greedy k-center coreset selection (PatchCore), exact and pruned.

Plain greedy k-center keeps, for every point, its distance to the nearest
selected centre and updates all N of them after each pick: N x d work per
step. Here each point also remembers *which* centre is nearest. When a new
centre c arrives, a point x assigned to centre a can only move to c if
d(c, a) < 2 * mindist(x) (triangle inequality), so only those points are
measured. The selection is the same as plain greedy (same start, same
argmax order), at a fraction of the distance computations once a few hundred
centres exist.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def random_projection(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Seeded Gaussian projection (N, D) -> (N, dim); identity when D <= dim."""
    if x.shape[1] <= dim:
        return np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((x.shape[1], dim)).astype(np.float32) / np.sqrt(dim)
    return np.ascontiguousarray(x.astype(np.float32, copy=False) @ proj)


def _dist_to(points: np.ndarray, sq_norms: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Euclidean distances from ``center`` (d,) to ``points`` (n, d)."""
    d2 = sq_norms + float(center @ center) - 2.0 * (points @ center)
    return np.sqrt(np.maximum(d2, 0.0))


def greedy_coreset(x: np.ndarray, n_select: int, seed: int = 0) -> np.ndarray:
    """Indices (n_select,) of a greedy k-center selection over the rows of ``x`` (N, d).

    The first centre is drawn with ``seed``; each next centre is the point
    farthest from all centres chosen so far.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    n_select = int(min(max(n_select, 1), n))
    sq = np.einsum("ij,ij->i", x, x)
    first = int(np.random.default_rng(seed).integers(n))
    selected = np.empty(n_select, dtype=np.int64)
    selected[0] = first
    mindist = _dist_to(x, sq, x[first]).astype(np.float32)
    assign = np.zeros(n, dtype=np.int32)  # position in ``selected`` of each point's nearest centre
    centers = np.empty((n_select, x.shape[1]), dtype=np.float32)
    centers[0] = x[first]
    c_sq = np.empty(n_select, dtype=np.float32)
    c_sq[0] = sq[first]
    for i in range(1, n_select):
        new = int(np.argmax(mindist))
        selected[i] = new
        c = x[new]
        centers[i] = c
        c_sq[i] = sq[new]
        # distance from the new centre to every earlier centre: i x d, small
        dcc = np.sqrt(np.maximum(c_sq[:i] + c_sq[i] - 2.0 * (centers[:i] @ c), 0.0))
        # small slack so float rounding never prunes a point plain greedy would update
        cand = np.flatnonzero(dcc[assign] < 2.0 * mindist * (1.0 + 1e-5) + 1e-6)
        if cand.size:
            d = _dist_to(x[cand], sq[cand], c)
            closer = d < mindist[cand]
            idx = cand[closer]
            mindist[idx] = d[closer]
            assign[idx] = i
        mindist[new] = 0.0
    return selected


def coreset_subsample(points: np.ndarray, ratio: float, cap: Optional[int], projection_dim: int, seed: int) -> np.ndarray:
    """The rows of ``points`` (N, D) a greedy k-center coreset of ceil(ratio * N) (at most ``cap``) keeps,
    selected on a seeded random projection, in their original order; all rows when that is not fewer."""
    n = len(points)
    n_select = int(np.ceil(ratio * n))
    if cap is not None:
        n_select = min(n_select, cap)
    if n_select >= n:
        return points
    idx = greedy_coreset(random_projection(points, projection_dim, seed), n_select, seed)
    return points[np.sort(idx)]


def coverage_radius(x: np.ndarray, centers: np.ndarray, chunk: int = 65536) -> float:
    """max over points of the distance to the nearest centre (smaller is better)."""
    import faiss

    index = faiss.IndexFlatL2(centers.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    worst = 0.0
    for start in range(0, x.shape[0], chunk):
        d2, _ = index.search(np.ascontiguousarray(x[start : start + chunk], dtype=np.float32), 1)
        worst = max(worst, float(np.sqrt(max(d2.max(), 0.0))))
    return worst
