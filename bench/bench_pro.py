"""Time ``pro_score`` on a full MVTec-sized category and check it against two independent implementations.

    python -m bench.bench_pro [--images 100] [--size 256] [--repeats 5] [--smoke-test]

Maps are smooth noise raised on the defects; half the images are defective, each
with 2-5 rectangular regions. The references, run on a smaller case at FPR limits 0.3,
0.05 and 1.0: the slow, plain implementation of the definition in tests/test_metrics.py,
and AU-PRO computed the way the official MVTec AD evaluation code computes it (its PRO
curve and its trapezoid integration up to the limit) in tests/test_metrics_field.py;
``compute_metrics``' ``pro`` and ``pro_strict`` (0.3 and 0.05) are checked against them too.
It prints its figures (no file).

--smoke-test: the same reference check, then 6 maps of 64x64 timed once.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy import ndimage

from masf.metrics import METRIC_KEYS, compute_metrics, pro_score

ROOT = Path(__file__).resolve().parents[1]


def load_reference(name: str = "test_metrics") -> ModuleType:
    """tests/NAME.py as a module, for its reference implementations (the tests' references, not copies)."""
    spec = importlib.util.spec_from_file_location(f"reference_{name}", ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_difference(maps: np.ndarray, masks: np.ndarray) -> float:
    """The largest |difference| of ``pro_score`` and ``compute_metrics`` from both references at limits 0.3, 0.05, 1.0."""
    plain, official = load_reference().reference_pro, load_reference("test_metrics_field").mvtec_au_pro
    labels = masks.any(axis=(1, 2))
    both = compute_metrics(maps.max(axis=(1, 2)), labels, maps, masks, fpr_limit=0.3, fpr_limit_strict=0.05)
    worst = 0.0
    for limit in (0.3, 0.05, 1.0):
        fast = [pro_score(maps, masks, limit)] + [both[k] for k, at in (("pro", 0.3), ("pro_strict", 0.05)) if at == limit]
        slow = (plain(maps, masks, limit), official(maps, masks, limit))
        worst = max([worst] + [abs(f - r) for f in fast for r in slow])
    return worst


def make_category(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) float32 maps and bool masks: images n // 2 .. n - 1 defective."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n // 2, n):
        for _ in range(rng.integers(2, 6)):
            h, w = rng.integers(size // 40 + 1, size // 5 + 2, size=2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            masks[i, y : y + h, x : x + w] = True
    noise = ndimage.gaussian_filter(rng.random((n, size, size), dtype=np.float32), sigma=(0, 4, 4))
    lift = rng.uniform(0.0, 0.05, size=(n, 1, 1)).astype(np.float32)
    return noise + lift * masks, masks


def median_ms(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="maps per category")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    parser.add_argument("--smoke-test", action="store_true", help="a cheap run of the same code: 6 maps of 64x64, timed once")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.images, args.size, args.repeats = 6, 64, 1

    small_maps, small_masks = make_category(10, 48, seed=1)
    worst = reference_difference(np.round(small_maps, 3), small_masks)  # ties as well
    print(f"reference check (10 maps, 48x48, limits 0.3 / 0.05 / 1.0, the definition and MVTec AD's evaluation code): "
          f"max |difference| = {worst:.1e}")
    if worst > 1e-6:
        raise SystemExit("pro_score or compute_metrics disagrees with a reference implementation")

    maps, masks = make_category(args.images, args.size, seed=0)
    labels = masks.any(axis=(1, 2))
    n_regions = sum(ndimage.label(m, structure=np.ones((3, 3)))[1] for m in masks)
    print(f"category: {args.images} maps {args.size}x{args.size}, {n_regions} regions, {masks.mean():.2%} defect pixels")
    per_100 = 100 / args.images
    for limit in (0.3, 0.05, 1.0):
        ms = median_ms(lambda: pro_score(maps, masks, limit), args.repeats)
        print(f"pro_score(fpr_limit={limit}): {ms:.0f} ms, {ms * per_100:.0f} ms per 100 maps (median of {args.repeats})")
    ms = median_ms(lambda: compute_metrics(maps.max(axis=(1, 2)), labels, maps, masks), 1)
    print(f"compute_metrics (all {len(METRIC_KEYS)} metrics): {ms:.0f} ms, {ms * per_100:.0f} ms per 100 maps (1 run)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")


if __name__ == "__main__":
    main()
