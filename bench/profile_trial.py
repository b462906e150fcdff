"""Where a MASF trial's time goes: one training step and one scoring of a batch, by stage and by operator,
each stage beside this machine's floor for it.

For each shape set (``cpu``: the packaged EfficientNet-Lite0 at 256 px, maps 24/40/112 channels at strides
4/8/16; ``paper``: WRN-50 at 256 px, 256/512/1024 channels, random init: only the shapes matter) the script
times, on one batch:

- ``train step``: ``MASF.training_loss`` forward (teacher features cached, as from epoch 2 on), backward
  and the optimiser step;
- ``score``: ``MASF.score`` without TTSA and with TTSA (``model.ttsa.views`` views), in the default
  reading's scoring regime (complementary test-time masks, quantile normalisation);
- the evaluation's extra passes (BatchNorm recalibration and calibration cost one scoring pass each per
  image, without TTSA).

Stages are timed by wrapping the modules and functions of masf.method (teacher, SDM, the two views, SSCA
attention, residual blocks and head, losses and cosine maps, SAMB bank search, fusion and blur, per-image
seeds). The floor of a stage is its FLOPs (torch.utils.flop_counter) over this machine's measured throughput
for a plain kernel of the same kind and size (a matmul of the attention's shape, a 3x3 conv of the blocks'
shape, a 1x1 conv as a matmul); stages without a countable kernel (FFT, FAISS, copies) show no floor.

    python -m bench.profile_trial [--shapes cpu,paper] [--batch 8] [--repeats 3] [--threads 2] [--out FILE]
    python -m bench.profile_trial --smoke-test      # seconds: tiny shapes, one repeat
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.report import emit
from masf.config import build_config
from masf.method import amfd as amfd_mod
from masf.method import model as model_mod
from masf.method.model import MASF
from masf.method.teacher import build_teacher

SHAPES = {
    "cpu": ("cpu", ["model.teacher.weights=packaged"]),
    "paper": ("paper", ["model.teacher.weights=none"]),
    "smoke": ("smoke", ["model.teacher.name=resnet18", "model.teacher.weights=none", "data.image_size=32"]),
}


class Stages:
    """Wall seconds per stage, from wrapped modules and functions; nested stages are not counted twice.
    Beside them, the work of the kernels torch's flop counter does not see: softmax attention (its two
    matmuls and one exp per score) and the banks' exact kNN search (one distance per query and prototype)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.work: dict[str, float] = defaultdict(float)  # "attention_flops", "attention_exps", "search_flops"
        self._active: list[str] = []
        self._undo: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._active.append(name)
        try:
            yield
        finally:
            self._active.pop()
            spent = time.perf_counter() - start
            self.seconds[name] += spent
            if self._active:  # time belongs to the innermost stage: taken off the outer one
                self.seconds[self._active[-1]] -= spent

    def wrap_module(self, module: torch.nn.Module, name: str) -> None:
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return original(*args, **kwargs)

        module.forward = forward
        self._undo.append(lambda: setattr(module, "forward", original))

    def wrap_function(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attr, call)
        self._undo.append(lambda: setattr(owner, attr, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def reset(self) -> None:
        self.seconds.clear()
        self.work.clear()

    def count_attention(self) -> None:
        original = amfd_mod.F.scaled_dot_product_attention

        def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            scores = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
            self.work["attention_flops"] += 2.0 * scores * (q.shape[3] + v.shape[3])
            self.work["attention_exps"] += float(scores)
            return original(q, k, v, *args, **kwargs)

        amfd_mod.F.scaled_dot_product_attention = sdpa
        self._undo.append(lambda: setattr(amfd_mod.F, "scaled_dot_product_attention", original))

    def count_search(self, bank: Any) -> None:
        original = bank.search

        def search(queries: Any) -> Any:
            self.work["search_flops"] += 2.0 * queries.shape[0] * len(bank) * queries.shape[1]
            return original(queries)

        bank.search = search
        self._undo.append(lambda: setattr(bank, "search", original))


def instrument(model: MASF) -> Stages:
    st = Stages()
    st.wrap_module(model.teacher, "teacher")
    for i in range(model.scales):
        if not isinstance(model.sdm[i], torch.nn.Identity):
            st.wrap_module(model.sdm[i], "SDM")
        if model.students is not None:
            st.wrap_module(model.students[i].ssca, "attention (SSCA)")
            st.wrap_module(model.students[i].blocks, "residual blocks")
            st.wrap_module(model.students[i].head, "head (1x1)")
        if model.banks is not None:
            st.wrap_function(model.banks[i], "score", "banks (embed + FAISS)")
            st.count_search(model.banks[i].bank)
    st.wrap_function(model_mod, "views", "views (masks, rfft2 view)")
    st.wrap_function(model_mod, "loss_terms", "losses")
    st.wrap_function(model_mod, "cosine_map", "cosine maps")
    st.wrap_function(model_mod, "image_seeds", "per-image seeds (host copy)")
    st.wrap_function(model_mod, "tensor_digest", "digests (host copy)")
    st.wrap_function(model_mod, "gaussian_blur", "fusion and blur")
    st.wrap_function(model_mod, "phase_views", "TTSA views")
    st.wrap_function(model_mod, "complementary_patch_masks", "mask draws")
    st.wrap_function(model_mod, "frequency_mask", "mask draws")
    st.count_attention()
    return st


def build(shapes: str, batch: int, bank_images: int, views: int) -> tuple[MASF, torch.Tensor, Any]:
    preset, overrides = SHAPES[shapes]
    cfg = build_config(preset, overrides + [f"data.batch_size={batch}", f"model.ttsa.views={views}"], variant="full")
    teacher = build_teacher(cfg.model.teacher)
    torch.manual_seed(0)
    model = MASF(cfg.model, teacher, seed=0)
    size = cfg.data.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    normals = torch.randn(bank_images, 3, size, size, generator=gen)
    model.eval()
    model.fit(normals.split(batch))
    model.calibrate(normals[: max(2, bank_images // 4)].split(batch))
    return model, x, cfg


def timed(fn: Callable[[], Any], repeats: int, stages: Stages) -> tuple[float, dict[str, float], dict[str, float]]:
    """(median wall seconds of fn, stage seconds and uncounted work of the median run); one warm-up run first."""
    fn()
    runs = []
    for _ in range(repeats):
        stages.reset()
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0, dict(stages.seconds), dict(stages.work)))
    runs.sort(key=lambda r: r[0])
    return runs[len(runs) // 2]


FLOP_STAGES = {"Teacher": "teacher", "SDM": "SDM", "Student.ssca": "attention (SSCA)", "Student.blocks": "residual blocks",
               "Student.head": "head (1x1)", "SpectralAnchor": "banks (embed + FAISS)"}


def count_flops(fn: Callable[[], Any], model: MASF) -> dict[str, float]:
    """FLOPs by stage, from torch's flop counter (its module names are class names: the scales add up)."""
    with FlopCounterMode(model, display=False) as counter:
        fn()
    counts = counter.get_flop_counts()
    return {stage: float(sum(counts[name].values())) for name, stage in FLOP_STAGES.items() if name in counts}


def _rate(fn: Callable[[], Any], work: float, repeats: int) -> float:
    with torch.no_grad():
        fn()
        runs = []
        for _ in range(max(3, repeats)):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
    return work / statistics.median(runs)


def rates(model: MASF, batch: int, hw: int, repeats: int) -> dict[str, float]:
    """This machine's throughput for plain kernels at scale 0's shapes (the largest map, hw x hw): a large matmul
    (FLOP/s), a 3x3 convolution of the residual blocks' width (FLOP/s) and torch.exp (exps/s)."""
    dim = model.students[0].ssca.dim
    a, b = torch.randn(batch * hw * hw, 256), torch.randn(256, 256)
    conv, t = torch.nn.Conv2d(dim, dim, 3, padding=1, bias=False), torch.randn(batch, dim, hw, hw)
    e = torch.randn(batch * 4 * hw * hw * 512)
    return {"gemm": _rate(lambda: a @ b, 2.0 * a.shape[0] * 256 * 256, repeats),
            "conv3x3": _rate(lambda: conv(t), 2.0 * batch * dim * dim * 9 * hw * hw, repeats),
            "exp": _rate(lambda: torch.exp(e), float(e.numel()), repeats)}


def floors(flops: dict[str, float], work: dict[str, float], rate: dict[str, float]) -> dict[str, tuple[float, float]]:
    """stage -> (GFLOP, floor seconds): convolutions at the conv3x3 or gemm rate, attention's matmuls at the gemm rate
    plus its exps at the exp rate, the bank search's distances at the gemm rate."""
    out = {}
    for stage, f in flops.items():
        out[stage] = (f / 1e9, f / rate["conv3x3" if stage == "residual blocks" else "gemm"])
    if work.get("attention_flops"):
        f, s = out.get("attention (SSCA)", (0.0, 0.0))  # its 1x1 projections
        out["attention (SSCA)"] = (f + work["attention_flops"] / 1e9,
                                   s + work["attention_flops"] / rate["gemm"] + work["attention_exps"] / rate["exp"])
    if work.get("search_flops"):
        f, s = out.get("banks (embed + FAISS)", (0.0, 0.0))
        out["banks (embed + FAISS)"] = (f + work["search_flops"] / 1e9, s + work["search_flops"] / rate["gemm"])
    return out


def profile_ops(fn: Callable[[], Any], rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def report(shapes: str, args: argparse.Namespace) -> list[str]:
    model, x, cfg = build(shapes, args.batch, args.bank_images, args.views)
    st = instrument(model)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    feats = model.teacher(x)
    teacher_of = model.teacher.forward
    cached = lambda _x: [f.clone() for f in feats]  # noqa: E731 - from epoch 2 on the features come from the cache

    def step() -> None:
        model.train()
        loss, _ = model.training_loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward_only() -> None:
        model.train()
        with torch.no_grad():
            model.training_loss(x, gen)

    def score(ttsa: bool) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            model.score(x, ttsa=ttsa)
        return run

    ms = lambda seconds: 1000 * seconds / args.batch  # noqa: E731
    rate = rates(model, args.batch, feats[0].shape[-1], args.repeats)
    model.teacher.forward = cached
    step_s, _, step_work = timed(step, args.repeats, st)
    fwd_s, fwd_stages, fwd_work = timed(forward_only, args.repeats, st)
    fwd_flops, step_flops = count_flops(forward_only, model), count_flops(step, model)
    model.teacher.forward = teacher_of
    teacher_s, _, _ = timed(lambda: model.teacher(x), args.repeats, st)
    fwd_floor = floors(fwd_flops, fwd_work, rate)
    step_floor = floors(step_flops, step_work, rate)
    back_s = sum(s for _, s in step_floor.values()) - sum(s for _, s in fwd_floor.values())  # backward: 2x the forward's work
    back_floor = back_s + 2 * step_work.get("attention_flops", 0.0) / rate["gemm"] + step_work.get("attention_exps", 0.0) / rate["exp"]
    step_total_floor = sum(s for _, s in fwd_floor.values()) + back_floor
    lines = [f"### {shapes} shapes: {cfg.model.teacher.name}, {cfg.data.image_size} px, batch {args.batch}, "
             f"maps {[tuple(f.shape[1:]) for f in feats]}", "",
             f"Train step (teacher cached): {ms(step_s):.1f} ms per image against a floor of {ms(step_total_floor):.1f} "
             f"({step_s / step_total_floor:.1f}x): forward {ms(fwd_s):.1f}, backward and step {ms(step_s - fwd_s):.1f} "
             f"(floor {ms(back_floor):.1f}: the forward's work twice, attention's exps once more); the teacher when not "
             f"cached: {ms(teacher_s):.1f} ms per image.", "",
             "| train step stage (forward) | ms / image | GFLOP / image | floor ms / image | measured / floor |",
             "|---|---:|---:|---:|---:|"]
    lines += stage_rows(fwd_stages, fwd_s, args.batch, fwd_floor)
    for ttsa in (False, True):
        score_s, stages, work = timed(score(ttsa), args.repeats, st)
        floor = floors(count_flops(score(ttsa), model), work, rate)
        label = f"score, TTSA {cfg.model.ttsa.views} views" if ttsa else "score, no TTSA"
        total_floor = sum(s for _, s in floor.values())
        lines += ["", f"{label}: {ms(score_s):.1f} ms per image against a floor of {ms(total_floor):.1f} "
                  f"({score_s / total_floor:.1f}x)", "",
                  f"| {label} stage | ms / image | GFLOP / image | floor ms / image | measured / floor |",
                  "|---|---:|---:|---:|---:|"]
        lines += stage_rows(stages, score_s, args.batch, floor)
    lines += ["", f"Plain kernels on this machine (the floors' rates): matmul {rate['gemm'] / 1e9:.1f} GFLOP/s, "
              f"3x3 convolution {rate['conv3x3'] / 1e9:.1f} GFLOP/s, exp {rate['exp'] / 1e9:.2f} G/s.", ""]
    if args.ops:
        lines += ["```", f"score, TTSA: operators by self CPU time ({shapes} shapes)",
                  profile_ops(score(True), args.ops), "```", ""]
    st.restore()
    return lines


def stage_rows(stages: dict[str, float], total: float, batch: int, floor: dict[str, tuple[float, float]]) -> list[str]:
    rows = []
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        ms = 1000 * seconds / batch
        gflop, floor_s = floor.get(name, (0.0, 0.0))
        floor_ms = 1000 * floor_s / batch
        rows.append(f"| {name} | {ms:.1f} | {gflop / batch:.3f} | {floor_ms:.1f} | {ms / floor_ms:.1f}x |" if floor_s
                    else f"| {name} | {ms:.1f} | | | |")
    rest = total - sum(stages.values())
    rows.append(f"| rest (framework, reshapes, interpolation) | {1000 * rest / batch:.1f} | | | |")
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="cpu,paper", help="comma-separated: cpu, paper, smoke")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bank-images", type=int, default=16, help="normal images the banks are built from")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", type=int, default=0, help="also print the top N operators of a TTSA scoring")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--smoke-test", action="store_true", help="tiny shapes, one repeat: checks the script runs")
    args = ap.parse_args(argv)
    if args.smoke_test:
        args.shapes, args.batch, args.bank_images, args.views, args.repeats, args.out = "smoke", 2, 4, 2, 1, None
    torch.set_num_threads(args.threads)
    lines = [f"- command: `python -m bench.profile_trial --shapes {args.shapes} --batch {args.batch} "
             f"--bank-images {args.bank_images} --views {args.views} --repeats {args.repeats} --threads {args.threads}`",
             f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
             f"torch {torch.__version__}; date {time.strftime('%Y-%m-%d')}", ""]
    for shapes in args.shapes.split(","):
        lines += report(shapes, args)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
