"""Every metric of full, no_ttsa, bank_only, patchcore and padim as recorded before the speed work
(tests/numbers_reference.json, written by ``python -m bench.record_numbers``): a change that should leave the
arithmetic alone must leave every number alone.

On the CPU the file was recorded on the numbers must be equal to the last bit. Float arithmetic can differ
between CPUs (vector widths, library kernels), so elsewhere each number must be within 0.02 (two points) and
the test says that it compared loosely.
"""

from __future__ import annotations

import json
import warnings

import pytest

from bench.record_numbers import REAL, REFERENCE, cpu_name, record

EXACT_ON_SAME_CPU = 0.0
ELSEWHERE = 0.02


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bottle", "metal_plate", "wood"])
def test_numbers_equal_those_recorded_before(case, reference):
    if case != "bottle" and not (REAL / case).is_dir():
        pytest.skip(f"real data not found at {REAL}")
    expected = reference["cases"][case]
    got = record([case])["cases"][case]
    tolerance = EXACT_ON_SAME_CPU if cpu_name() == reference["cpu"] else ELSEWHERE
    if tolerance:
        warnings.warn(f"numbers recorded on {reference['cpu']!r}, compared on {cpu_name()!r}: within {tolerance}")
    assert set(got) == set(expected)
    for variant, metrics in expected.items():
        assert set(got[variant]) == set(metrics), variant
        off = {k: (v, got[variant][k]) for k, v in metrics.items()
               if not (abs(got[variant][k] - v) <= tolerance or (v != v and got[variant][k] != got[variant][k]))}
        assert not off, f"{case}/{variant}: {off}"
