#!/usr/bin/env python3
"""The sfm_ros benchmark suite in one command (``make bench``): one markdown table, appended to
BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--configs paper,default] [--minutes 20] [--only kitti,7scenes,speed]
                                      [--out-json results.json] [--no-append]
    # on a GPU machine: an equal step budget, several runs at a time, data packed by bench/pack_data.py
    SFM_ROS_DATA=packed python3 bench/run_all.py --steps 1500 --minutes 0 --jobs 6 --only kitti,7scenes

Columns are configurations: a preset name or ``preset+group.key=value+...`` (ablations, e.g.
``paper+loss.photometric=ssim_l1``). Rows:

* accuracy (``bench/bench_accuracy.py``; every configuration gets the same wall-clock training
  budget ``--minutes`` on the same machine, 128x416, Trainer API): KITTI 00 trained on frames 0-119,
  snippet ATE (5 frames) on 120-159 beside the zero-motion and mean-odometry baselines, whole
  trajectory ATE; 7-Scenes redkitchen trained on frames 0-399 (windows of frames 10 apart), depth
  metrics on 400-499 (median scaling, max 10 m); the peak RSS of training;
* speed (``bench/bench_speed.py``): depth + pose inference per frame (128x416, batch 1, CPU, and
  CUDA when present), training step (batch 4, fp32 and bf16 autocast when the CPU supports it),
  bag ingestion (frames/s), node stamp→publish latency p50/p95 and peak RSS.

Every measurement runs in its own process, one after another. The real data is read in place
from ``../shared/data`` (``SFM_ROS_DATA``); missing data gives "n/a" rows. The node runs with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the bench's own ``ROS_DOMAIN_ID`` (90-99, or
``SFM_BENCH_DOMAIN``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (BENCHMARKS_MD, KITTI, SEVENSCENES, append_markdown, bench_domain, fmt,  # noqa: E402
                    machine_info, now_utc, parse_config, ros_env, run_worker)

HERE = Path(__file__).resolve().parent
PARTS = ("kitti", "7scenes", "speed")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _arch_key(spec: str) -> tuple:
    o = parse_config(spec).model
    return (o.depth_arch, o.width_mult, o.pose_arch, o.seq_len)


def collect(args) -> dict:
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    only = set(args.only.split(",")) if args.only else set(PARTS)
    bad = only - set(PARTS)
    if bad:
        raise SystemExit(f"run_all: error: --only {','.join(sorted(bad))}: expected some of {', '.join(PARTS)}")
    for c in configs:
        try:
            parse_config(c)
        except ValueError as exc:
            raise SystemExit(f"run_all: error: config {c!r}: {exc}")
    res: dict = {"machine": machine_info(), "configs": configs, "minutes": args.minutes, "steps": args.steps,
                 "jobs": args.jobs, "only": sorted(only),
                 "command": "bench/run_all.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                 "date": now_utc(), "accuracy": {}, "speed": {}}
    budget = 60 * args.minutes if args.minutes else 6 * 3600
    what = (f"{args.steps} steps" if args.steps else "") + (" or " if args.steps and args.minutes else "") + \
        (f"{args.minutes:g} min" if args.minutes else "")
    runs = [(ds, c) for ds in ("kitti", "7scenes") if ds in only for c in configs]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    def one(run: tuple[str, str]) -> None:
        ds, c = run
        _log(f"accuracy {ds} {c}: training {what}")
        cmd = [str(HERE / "bench_accuracy.py"), ds, "--config", c, "--minutes", str(args.minutes),
               "--steps", str(args.steps)] + (["--threads", str(threads)] if args.jobs > 1 else [])
        r = run_worker(cmd, timeout=budget * 1.5 + 900)
        _log(f"  {ds} {c} -> {json.dumps({k: v for k, v in r.items() if k in ('steps', 'snippet_ate', 'depth', 'error')})}")
        res["accuracy"].setdefault(ds, {})[c] = r

    # --jobs > 1 only on a GPU machine: concurrent runs on a CPU share its cores (and a
    # wall-clock budget would then mean less work per run).
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, runs))
    if "speed" in only:
        arch_done: dict = {}
        for c in configs:
            s: dict = {}
            key = _arch_key(c)
            if key in arch_done:
                s["infer"] = dict(arch_done[key], same_as=arch_done[key].get("config"))
            else:
                _log(f"speed: inference {c}")
                s["infer"] = run_worker([str(HERE / "bench_speed.py"), "infer", "--config", c,
                                         "--reps", str(args.reps)], timeout=1800)
                s["infer"]["config"] = c
                arch_done[key] = s["infer"]
            _log(f"speed: training step {c}")
            s["train"] = run_worker([str(HERE / "bench_speed.py"), "train", "--config", c, "--steps",
                                     str(args.train_steps)], timeout=3600)
            res["speed"][c] = s
        _log("speed: bag ingestion")
        res["speed"]["_bag"] = run_worker([str(HERE / "bench_speed.py"), "bag"], timeout=1800)
        if args.node_seconds > 0:
            _log(f"speed: node latency ({args.node_seconds:g} s at 10 Hz, ROS_DOMAIN_ID {bench_domain()})")
            res["speed"]["_node"] = run_worker(
                [str(HERE / "bench_speed.py"), "node", "--config", configs[0], "--seconds", str(args.node_seconds)],
                timeout=args.node_seconds + 400, env=ros_env(bench_domain()) | {"SFM_BENCH_DOMAIN": str(bench_domain())})
            res["speed"]["_node"]["config"] = configs[0]
        else:
            res["speed"]["_node"] = {"error": "skipped (--node-seconds 0)"}
    return res


# ------------------------------------------------------------------------------------------ table
def _err(r: dict | None) -> str | None:
    if r is None:
        return "not run"
    if "error" in r:
        return "n/a (" + r["error"].replace("|", "/")[:120] + ")"
    return None


def _pm(d: dict | None) -> str:
    return f"{d['mean']:.4f} ± {d['std']:.4f}" if d else "n/a"


def is_smoke(res: dict) -> bool:
    """A run too short to mean anything: accuracy runs of under 200 steps (or, without any, a
    budget under 5 minutes)."""
    steps = [r.get("steps", 0) for ds in res["accuracy"].values() for r in ds.values() if "error" not in r]
    if steps:
        return max(steps) < 200
    return (res.get("steps") or 0) < 200 and res["minutes"] < 5


def make_table(res: dict, smoke: bool = False) -> str:
    m = res["machine"]
    configs = res["configs"]
    acc = res["accuracy"]
    sp = res["speed"]
    lines = [f"## Benchmark run {res['date']}{' (SMOKE RUN: tiny budget, numbers meaningless)' if smoke else ''}", ""]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, torch {m['torch_threads']} "
                 f"threads), {m['memory_gb']} GiB RAM, GPU: {m['gpu']}; torch {m['torch']}, CPU bf16: "
                 f"{'yes' if m['bf16'] else 'no'}. Git revision: `{m['git']}`. Command: `{res['command']}`.")
    lines.append("")
    if res.get("steps"):
        budget = f"budget of **{res['steps']} optimiser steps**" + (
            f" (capped at {res['minutes']:g} min)" if res["minutes"] else "")
    else:
        budget = f"wall-clock budget of **{res['minutes']:g} min**"
    if res.get("jobs", 1) > 1:
        budget += f", {res['jobs']} runs at a time sharing the machine"
    text = []
    if acc:
        text.append(f"Accuracy: every configuration trained for the same {budget} "
                    "per dataset (Trainer API, 128x416, batch 4, `train.amp=auto`, seed 0, no validation split), "
                    "then evaluated with `sfm_eval`. KITTI 00: trained on frames 0-119, evaluated on 120-159. "
                    "7-Scenes redkitchen: trained on frames 0-399 (windows of frames 10 apart), depth on 400-499 "
                    "against the Kinect depth (not registered to the colour camera: ~10 px edge offsets), median "
                    "scaling, max 10 m.")
    if sp:
        text.append("Speed: 128x416, medians after warm-up.")
    lines += [" ".join(text), ""]
    lines.append("| measurement | " + " | ".join(f"`{c}`" for c in configs) + " |")
    lines.append("|---|" + "---:|" * len(configs))

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def acc_cells(ds: str, fn) -> list[str]:
        out = []
        for c in configs:
            r = acc.get(ds, {}).get(c)
            e = _err(r)
            out.append(e if e else fn(r))
        return out

    if "kitti" in acc:
        row("KITTI 00 120-159: snippet ATE (m, 5 frames), mean ± std", acc_cells("kitti", lambda r: _pm(r["snippet_ate"])))
        row("  baseline zero motion (same snippets)", acc_cells("kitti", lambda r: _pm(r["zero_motion"])))
        row("  baseline mean odometry (GT of 0-119)", acc_cells("kitti", lambda r: _pm(r["mean_odometry"])))
        row("  whole-trajectory ATE sim3 / RPE trans (m)",
            acc_cells("kitti", lambda r: f"{r['ate_rmse']:.3f} / {r['rpe_trans_rmse']:.3f}"))
        row("  training steps in budget (seq_len, amp)",
            acc_cells("kitti", lambda r: f"{r['steps']} (seq_len {r['seq_len']}, {r['amp']})"))
        row("  training peak RSS (MiB)", acc_cells("kitti", lambda r: f"{r['peak_rss_mib']:.0f}"))
    if "7scenes" in acc:
        row("7-Scenes 400-499 depth: abs_rel / sq_rel",
            acc_cells("7scenes", lambda r: f"{r['depth']['abs_rel']:.4f} / {r['depth']['sq_rel']:.4f}"))
        row("  baseline constant depth, median-scaled: abs_rel / sq_rel",
            acc_cells("7scenes", lambda r: f"{r['constant']['abs_rel']:.4f} / {r['constant']['sq_rel']:.4f}"
                      if r.get("constant") else "n/a"))
        row("  rmse / rmse_log", acc_cells("7scenes", lambda r: f"{r['depth']['rmse']:.4f} / {r['depth']['rmse_log']:.4f}"))
        row("  a1 / a2 / a3", acc_cells("7scenes", lambda r: f"{r['depth']['a1']:.3f} / {r['depth']['a2']:.3f} / "
                                                             f"{r['depth']['a3']:.3f}"))
        row("  training steps in budget", acc_cells("7scenes", lambda r: str(r["steps"])))
        row("  training peak RSS (MiB)", acc_cells("7scenes", lambda r: f"{r['peak_rss_mib']:.0f}"))
    if sp:
        def sp_cells(fn) -> list[str]:
            out = []
            for c in configs:
                r = sp.get(c)
                e = _err(r)
                out.append(e if e else fn(r))
            return out

        def infer(dev):
            def f(r):
                i = r["infer"]
                if _err(i):
                    return _err(i)
                if dev not in i:
                    return "n/a (no CUDA)"
                d = i[dev]
                return (f"{d['depth']['median_ms']:.1f} + {d['pose']['median_ms']:.1f} "
                        f"(+{d['preprocess']['median_ms']:.1f} resize) = {d['total_ms']:.1f}")
            return f
        row("depth + pose inference per frame, CPU fp32 (ms)", sp_cells(infer("cpu")))
        if any("cuda" in (sp.get(c, {}).get("infer") or {}) for c in configs):
            row("depth + pose inference per frame, CUDA fp32 (ms)", sp_cells(infer("cuda")))
            row("depth + pose inference per frame, CUDA fp16 autocast (ms)", sp_cells(infer("cuda_fp16")))
        row("  architecture", sp_cells(lambda r: (r["infer"].get("arch") or "n/a") if not _err(r["infer"]) else "n/a"))

        def train(mode):
            def f(r):
                t = r["train"]
                if _err(t):
                    return _err(t)
                x = t.get(mode, {})
                if "median_ms" not in x:
                    return "n/a (" + x.get("skipped", "not run") + ")"
                return f"{x['median_ms']:.0f} ({x['device']})"
            return f
        row("training step, batch 4, fp32 (ms)", sp_cells(train("fp32")))
        row("training step, batch 4, bf16 autocast (ms)", sp_cells(train("bf16")))
        row("  training peak RSS, step benchmark (MiB)",
            sp_cells(lambda r: _err(r["train"]) or f"{r['train']['peak_rss_mib']:.0f}"))
        b = sp.get("_bag")
        blank = ["″"] * (len(configs) - 1)
        if b is not None:
            row("bag ingestion: read + decode + resize (frames/s)",
                [_err(b) or f"{b['fps']:.1f} ({b['frames']} frames, {b['encoding']}, mcap)"] + blank)
        n = sp.get("_node")
        if n is not None:
            e = _err(n)
            row("node stamp→`depth/image` receipt latency p50 / p95 (s), 10 Hz",
                [e or f"{fmt(n['latency_p50_s'], '.3f')} / {fmt(n['latency_p95_s'], '.3f')} "
                      f"({n['received_depth']}/{n['sent']} frames, {n['node_dropped']} dropped)"] + blank)
            if not e:
                row("  node's own diagnostics: stamp latency p50 / p95 (s), inference p50 (ms)",
                    [f"{n['node_latency_stamp_p50_s']:.3f} / {n['node_latency_stamp_p95_s']:.3f}, "
                     f"{n['node_inference_p50_ms']:.0f} ({n['node_device']})"] + blank)
                row("  node peak RSS (MiB)", [fmt(n["node_peak_rss_mib"], ".0f")] + blank)
    lines.append("")
    notes = []
    for c in configs:
        r = acc.get("kitti", {}).get(c)
        if r and "notes" in r:
            notes += [n for n in r["notes"] if n not in notes]
    if "_node" in sp and not _err(sp["_node"]):
        notes.append(f"node: `python -m sfm_ros.ros.node` with the `{sp['_node'].get('config')}` architecture (untrained "
                     "weights), KITTI frames (1241x376 mono8) published at 10 Hz stamped at publish time; "
                     "config-independent rows (″) are measured once.")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--configs", default="paper,default", help="comma-separated configurations (default paper,default)")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="training budget per configuration and dataset (default 20; 0: none, with --steps)")
    p.add_argument("--steps", type=int, default=0,
                   help="training budget in optimiser steps (default 0: none); with --minutes, whichever comes first")
    p.add_argument("--jobs", type=int, default=1,
                   help="accuracy runs at a time (default 1; more only on a GPU machine, never on a CPU)")
    p.add_argument("--only", help="comma-separated subset of kitti,7scenes,speed")
    p.add_argument("--out-json", help="write every number as JSON")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    p.add_argument("--file", default=str(BENCHMARKS_MD), help="the markdown file appended to")
    p.add_argument("--reps", type=int, default=50, help="timed inference calls (default 50)")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (default 5)")
    p.add_argument("--node-seconds", type=float, default=20.0, help="node feed duration; 0 skips (default 20)")
    args = p.parse_args(argv)
    if not (args.minutes > 0 or args.steps > 0) or args.minutes < 0 or args.steps < 0:
        p.error("give a training budget: --minutes > 0 or --steps > 0")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    for d, what in ((KITTI, "kitti"), (SEVENSCENES, "7scenes")):
        if not d.is_dir():
            _log(f"{d} is absent: the {what} rows will be n/a")
    res = collect(args)
    table = make_table(res, smoke=is_smoke(res))
    print(table)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    if not args.no_append:
        append_markdown(table, Path(args.file))
        _log(f"appended to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
