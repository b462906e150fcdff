"""Record every metric of `full`, `no_ttsa`, `bank_only`, `patchcore` and `padim` on small fixed cases, so that a
speed change can be checked to leave the numbers as they were (tests/test_numbers.py compares against the file).

Cases: the synthetic `bottle` (generated at 64 px, seed 0) and, where ../shared/data/real is beside the checkout,
the real `metal_plate` and `wood`, each with the `smoke` preset (64 px, the packaged backbone, 2 epochs,
evaluated every epoch, 3 TTSA views). `full`, `no_ttsa` and `bank_only` run as one training group, as a sweep
runs them. The file also holds the CPU it was recorded on: float arithmetic can differ from one CPU to another.

    python -m bench.record_numbers [--out tests/numbers_reference.json] [--cases bottle,metal_plate,wood] [--real-root DIR]
    python -m bench.record_numbers --add-new [--cases ...]   # only the numbers the file lacks (new metrics)
    python -m bench.record_numbers --smoke-test     # the synthetic case only, printed, nothing written

--add-new keeps every number of the file: it records the cases again, refuses when the file was recorded on
another CPU or when any number it holds came out otherwise, and adds only the numbers it lacks.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any, Optional

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "numbers_reference.json"
GROUP = ("full", "no_ttsa", "bank_only")
ALONE = ("patchcore", "padim")
SCORED = ("last/", "best_on_val/", "best_on_test/", "val/", "student_only/", "val/student_only/")
OVERRIDES = ("eval.timing_images=0", "eval.figures=false", "model.reading=masked")  # the reading the numbers were recorded with


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scored(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(row.items()) if k.startswith(SCORED)}


def case_numbers(root: Path, category: str, work: Path, extra: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """variant -> its scored metrics, on one category."""
    from masf.config import build_config
    from masf.trial.run import run_group, run_trial

    overrides = [f"data.root={root}", f"data.category={category}", *OVERRIDES, *extra]
    cfgs = {v: build_config("smoke", overrides, variant=v) for v in GROUP + ALONE}
    rows = run_group(cfgs["full"], [(v, cfgs[v]) for v in GROUP], work / "group", group=f"{category}/full+2/seed0", lead_key="full")
    for v in ALONE:
        rows[v] = run_trial(cfgs[v], work / v)
    return {v: scored(rows[v]) for v in GROUP + ALONE}


def record(cases: list[str], extra: tuple[str, ...] = (), real: Path = REAL) -> dict[str, Any]:
    from masf.data.synth import generate_dataset

    out: dict[str, Any] = {"cpu": cpu_name(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        synth = Path(tmp) / "synth"
        if "bottle" in cases:
            generate_dataset(synth, categories=["bottle"], seed=0, size=64, n_train=16, n_test=12)
            out["cases"]["bottle"] = case_numbers(synth, "bottle", Path(tmp) / "bottle", extra)
        for category in (c for c in cases if c != "bottle"):
            if (real / category).is_dir():
                out["cases"][category] = case_numbers(real, category, Path(tmp) / category, extra)
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN is recorded as NaN


def add_new(reference: dict[str, Any], numbers: dict[str, Any]) -> int:
    """Add to ``reference`` the numbers of ``numbers`` (a ``record``) that it lacks; how many. Refused (SystemExit)
    when the two come from different CPUs or a number of ``reference`` was recorded otherwise in ``numbers``."""
    if numbers["cpu"] != reference["cpu"]:
        raise SystemExit(f"the file was recorded on {reference['cpu']!r}, this CPU is {numbers['cpu']!r}: "
                         "new numbers beside old ones must come from the same CPU")
    held = {(c, v, k): x for c, vs in reference["cases"].items() for v, ms in vs.items() for k, x in ms.items()}
    got = {(c, v, k): x for c, vs in numbers["cases"].items() for v, ms in vs.items() for k, x in ms.items()}
    changed = [f"{'/'.join(key)}: {held[key]} -> {x}" for key, x in got.items() if key in held and not _same(held[key], x)]
    if changed:
        raise SystemExit(f"{len(changed)} recorded number(s) came out otherwise, nothing added: " + "; ".join(changed[:5]))
    new = {key: x for key, x in got.items() if key not in held}
    for (case, variant, key), x in new.items():
        reference["cases"].setdefault(case, {}).setdefault(variant, {})[key] = x
    return len(new)


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REFERENCE)
    ap.add_argument("--cases", default="bottle,metal_plate,wood")
    ap.add_argument("--real-root", type=Path, default=REAL, help="the folder of the real categories")
    ap.add_argument("--smoke-test", action="store_true", help="the synthetic case only, printed; nothing written")
    ap.add_argument("--add-new", action="store_true", help="keep the file's numbers, add those it lacks (refused if any it has changed)")
    args = ap.parse_args(argv)
    numbers = record(["bottle"] if args.smoke_test else args.cases.split(","), real=args.real_root)
    text = json.dumps(numbers, indent=1, sort_keys=True)
    if args.smoke_test:
        print(text[:2000])
        return
    if args.add_new:
        reference = json.loads(args.out.read_text())
        added = add_new(reference, numbers)
        args.out.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
        print(f"{added} new numbers of {', '.join(numbers['cases'])} added to {args.out}; every number it held came out the same")
        return
    args.out.write_text(text + "\n")
    print(f"{sum(len(m) for c in numbers['cases'].values() for m in c.values())} numbers of "
          f"{len(numbers['cases'])} case(s) written to {args.out} (CPU: {numbers['cpu']})")


if __name__ == "__main__":
    main()
