#!/usr/bin/env python3
"""Inference speed of the depth + pose networks on the CPU: paper nets vs the ResNet nets.

For every architecture and every inference path, the time of one depth forward (one image) and one
pose forward (target + seq_len-1 sources), batch 1 at 128x416, through the deployment interface of
:mod:`sfm_ros.runtime.export` (``[0, 1]`` images in, normalisation inside, depth = 1/disp out). Paths:

* ``eager``       fp32 in eval mode, as the ``torch`` backend of :class:`sfm_ros.runtime.inference.Estimator` runs it
* ``fold``        fp32 eager with batch norm folded into the convolutions (:func:`sfm_ros.core.resnet.fold_batchnorm`)
* ``cl``          ``fold`` + channels_last memory format (model and inputs)
* ``bf16``        ``fold`` under ``torch.autocast("cpu", bfloat16)`` (only on CPUs with AVX512-BF16/AMX)
* ``jit``         TorchScript: traced, ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``
* ``compile``     ``torch.compile`` (inductor) of ``fold``; slow to compile, only with ``--compile``
* ``ort``         ONNX Runtime CPU on the exported ONNX graph (all graph optimisations)

Timing: every path is warmed up, then measured in ``--reps`` rounds; each round visits all
(architecture, path) pairs in a random order and times ``--block`` consecutive calls of each after one
untimed call, so background load (other processes sharing the cores) hits all of them alike. The
table gives the median and the 90th percentile per call, and the speed-up of the median depth+pose
time over the paper's networks in eager fp32, measured in the same run.

    .venv/bin/python bench/bench_inference.py [--reps 40] [--compile] [--append]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info as common_machine_info  # noqa: E402

from sfm_ros.runtime.export import example_inputs, inference_modules, ort_session, to_onnx, to_torchscript  # noqa: E402
from sfm_ros.runtime.export import DepthExport, PoseExport  # noqa: E402
from sfm_ros.core.device import cpu_has_bf16_instructions  # noqa: E402
from sfm_ros.core.model import SfMModel  # noqa: E402
from sfm_ros.core.options import ModelOptions  # noqa: E402
from sfm_ros.core.resnet import count_parameters  # noqa: E402

ARCHS = {
    # name: (ModelOptions overrides, description)
    "paper": (dict(depth_arch="dispnet", width_mult=1.0, pose_arch="posexp"), "DispNet + PoseExpNet (paper)"),
    "resnet": (dict(depth_arch="resnet", width_mult=1.0, pose_arch="pair"), "ResNet-18 depth + pair pose"),
    "resnet_half": (dict(depth_arch="resnet", width_mult=0.5, pose_arch="pair"), "ResNet-18 x0.5 depth + pair pose"),
    "dispnet_half": (dict(depth_arch="dispnet", width_mult=0.5, pose_arch="posexp"),
                     "DispNet x0.5 + PoseExpNet (the shipped default model's architecture)"),
    "dispnet_sep_half": (dict(depth_arch="dispnet_sep", width_mult=0.5, pose_arch="posexp"),
                         "DispNet x0.5, depthwise-separable convolutions + PoseExpNet"),
    "dispnet_quarter": (dict(depth_arch="dispnet", width_mult=0.25, pose_arch="posexp"),
                        "DispNet x0.25 + PoseExpNet"),
}
MODES = ("eager", "fold", "cl", "bf16", "jit", "compile", "ort")


def machine_info() -> dict:
    """common.machine_info() plus the ONNX Runtime version and torch's CPU instruction set."""
    info = common_machine_info()
    try:
        import onnxruntime

        ort_v = onnxruntime.__version__
    except ImportError:
        ort_v = "absent"
    return {**info, "threads": torch.get_num_threads(), "onnxruntime": ort_v,
            "isa": torch.backends.cpu.get_cpu_capability()}


def build_paths(arch: str, modes: list[str], height: int, width: int, log) -> dict:
    """{mode: (depth_fn, pose_fn)} for one architecture; paths that fail are reported and skipped."""
    torch.manual_seed(0)
    opts = ModelOptions(**ARCHS[arch][0], height=height, width=width)
    model = SfMModel(opts, output_exp=True).eval()
    n = len(model.offsets)
    (img,), (tgt, srcs) = example_inputs(height, width, n)
    raw_d = DepthExport(model.depth_net).eval()
    raw_p = PoseExport(model.pose_net, n).eval()
    fold_d, fold_p = inference_modules(model)
    paths: dict = {}
    info = {"depth_params": count_parameters(model.depth_net), "pose_params": count_parameters(model.pose_net)}
    for mode in modes:
        t0 = time.perf_counter()
        try:
            if mode == "eager":
                fns = (lambda: raw_d(img), lambda: raw_p(tgt, srcs))
            elif mode == "fold":
                fns = (lambda: fold_d(img), lambda: fold_p(tgt, srcs))
            elif mode == "cl":
                import copy

                cl = torch.channels_last
                d = copy.deepcopy(fold_d).to(memory_format=cl)
                p = copy.deepcopy(fold_p).to(memory_format=cl)
                img_cl, tgt_cl = img.contiguous(memory_format=cl), tgt.contiguous(memory_format=cl)
                fns = (lambda: d(img_cl), lambda: p(tgt_cl, srcs))
            elif mode == "bf16":
                if not cpu_has_bf16_instructions():
                    log(f"  {arch}/bf16: skipped (no AVX512-BF16/AMX on this CPU)")
                    continue

                def bf(fn):
                    def run():
                        with torch.autocast("cpu", dtype=torch.bfloat16):
                            return fn()
                    return run
                fns = (bf(lambda: fold_d(img)), bf(lambda: fold_p(tgt, srcs)))
            elif mode == "jit":
                d = torch.jit.optimize_for_inference(to_torchscript(fold_d, (img,)))
                p = torch.jit.optimize_for_inference(to_torchscript(fold_p, (tgt, srcs)))
                fns = (lambda: d(img), lambda: p(tgt, srcs))
            elif mode == "compile":
                # The wrappers share one forward() across archs: without a higher limit, dynamo stops
                # recompiling after 8 variants and silently runs the later archs eagerly.
                import torch._dynamo as dynamo

                for name in ("recompile_limit", "cache_size_limit"):
                    if hasattr(dynamo.config, name):
                        setattr(dynamo.config, name, 64)
                d = torch.compile(fold_d)
                p = torch.compile(fold_p)
                with torch.no_grad():
                    d(img)
                    p(tgt, srcs)
                fns = (lambda: d(img), lambda: p(tgt, srcs))
            elif mode == "ort":
                threads = torch.get_num_threads()
                spin = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
                sd = ort_session(to_onnx(fold_d, (img,), ["image"], "depth"), threads, spin)
                sp = ort_session(to_onnx(fold_p, (tgt, srcs), ["target", "sources"], "poses"), threads, spin)
                fd = {"image": img.numpy()}
                fp = {"target": tgt.numpy(), "sources": srcs.numpy()}
                fns = (lambda: sd.run(None, fd), lambda: sp.run(None, fp))
            else:
                raise ValueError(f"unknown mode {mode}")
        except Exception as exc:  # a path that does not work here is a result, not a crash
            log(f"  {arch}/{mode}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})")
            continue
        setup = time.perf_counter() - t0
        if mode == "compile":
            log(f"  {arch}/compile: compiled in {setup:.0f} s")
        paths[mode] = fns
    return {"paths": paths, "info": info}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run(args) -> str:
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    load0 = os.getloadavg()
    log(f"machine: {info}")
    built = {}
    for arch in args.archs:
        log(f"building {arch} ...")
        built[arch] = build_paths(arch, args.modes, args.height, args.width, log)
    keys = [(a, m) for a in args.archs for m in args.modes if m in built[a]["paths"]]
    times = {k: ([], []) for k in keys}
    cpu = {k: ([], []) for k in keys}
    with torch.inference_mode():
        log("warming up ...")
        for k in keys:
            d, p = built[k[0]]["paths"][k[1]]
            for _ in range(args.warmup):
                d()
                p()
        rng = random.Random(0)
        t_start = time.perf_counter()
        for r in range(args.reps):
            order = keys[:]
            rng.shuffle(order)
            for k in order:
                for which, fn in enumerate(built[k[0]]["paths"][k[1]]):
                    fn()  # untimed: the other runtime's threads may still be spinning
                    for _ in range(args.block):
                        c0 = time.process_time()
                        t0 = time.perf_counter()
                        fn()
                        times[k][which].append((time.perf_counter() - t0) * 1e3)
                        cpu[k][which].append((time.process_time() - c0) * 1e3)
            if (r + 1) % max(1, args.reps // 5) == 0:
                log(f"  round {r + 1}/{args.reps} ({time.perf_counter() - t_start:.0f} s)")
    load1 = os.getloadavg()
    stats = {}
    for k, (dt, pt) in times.items():
        stats[k] = {"d50": statistics.median(dt), "d90": pct(dt, 0.9), "p50": statistics.median(pt),
                    "p90": pct(pt, 0.9)}
        stats[k]["t50"] = stats[k]["d50"] + stats[k]["p50"]
        stats[k]["c50"] = statistics.median(cpu[k][0]) + statistics.median(cpu[k][1])
        stats[k]["t90"] = stats[k]["d90"] + stats[k]["p90"]
    base = stats.get(("paper", "eager"))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"## CPU inference speed, {args.height}x{args.width}, batch 1 ({now})",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['threads']} torch/ORT threads), ISA {info['isa']}, "
        f"AVX512-BF16: {'yes' if info['bf16'] else 'no'}; torch {info['torch']}, onnxruntime {info['onnxruntime']}; "
        f"git {info['git']}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}. "
        f"Load average {load0[0]:.1f} before, {load1[0]:.1f} after "
        f"(cores shared with other jobs: absolute numbers are noisy, compare within the table). "
        f"{args.reps} rounds x {args.block} calls per path, interleaved; wall-clock ms per call, median (p90); "
        f"CPU ms = process CPU time per call (all threads, spinning included), median: with 1 thread it is the "
        f"least load-sensitive figure. "
        f"Depth: one image -> depth; pose: target + {ModelOptions().seq_len - 1} sources -> poses; "
        f"both with [0,1] input normalisation inside (the `sfm_export` graphs).",
        "",
        "| arch | params depth / pose | path | depth ms | pose ms | depth+pose ms | depth+pose CPU ms "
        "| speed-up vs paper eager (wall / CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in args.archs:
        inf = built[a]["info"]
        for m in args.modes:
            if (a, m) not in stats:
                continue
            s = stats[(a, m)]
            sp = f"{base['t50'] / s['t50']:.2f}x / {base['c50'] / s['c50']:.2f}x" if base else "-"
            lines.append(f"| {a} | {inf['depth_params'] / 1e6:.1f} M / {inf['pose_params'] / 1e6:.1f} M | {m} | "
                         f"{s['d50']:.1f} ({s['d90']:.1f}) | {s['p50']:.1f} ({s['p90']:.1f}) | "
                         f"**{s['t50']:.1f}** ({s['t90']:.1f}) | {s['c50']:.1f} | {sp} |")
    lines.append("")
    desc = [f"`{a}` = {ARCHS[a][1]} ({', '.join(f'{k}={v}' for k, v in ARCHS[a][0].items())})" for a in args.archs]
    lines.append("Archs: " + "; ".join(desc) + ".")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated, from {list(ARCHS)}")
    p.add_argument("--modes", default="eager,fold,cl,bf16,jit,ort",
                   help=f"comma-separated, from {list(MODES)} (compile is added by --compile)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    p.add_argument("--reps", type=int, default=40, help="measurement rounds")
    p.add_argument("--block", type=int, default=3, help="timed calls per path per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: torch's default)")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    p.add_argument("--file", default=str(REPO / "BENCHMARKS.md"), help="where --append writes")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.compile and "compile" not in args.modes:
        args.modes.insert(args.modes.index("ort") if "ort" in args.modes else len(args.modes), "compile")
    bad = [a for a in args.archs if a not in ARCHS] + [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"unknown arch/mode {bad}")
    table = run(args)
    print(table)
    if args.append:
        path = Path(args.file)
        new = not path.exists()
        with path.open("a") as f:
            if new:
                f.write("# Benchmarks\n\nMeasured results of the project; each section says how it was measured "
                        "and on which machine. Sections are appended, never rewritten.\n\n")
            f.write(table + "\n")
        print(f"appended to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
