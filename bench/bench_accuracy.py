#!/usr/bin/env python3
"""Accuracy on real data for one configuration, with a fixed CPU/GPU time budget.

* ``kitti``: train on KITTI 00 frames 0-119 (Trainer API, Sequences from ``prepare_sequence`` at
  128x416, no validation split), then ``sfm_eval pose`` on frames 120-159: the paper's snippet ATE
  (5-frame snippets) beside the zero-motion and mean-odometry (mean GT motion of frames 0-119)
  baselines, plus whole-trajectory ATE/RPE.
* ``7scenes``: train on 7-Scenes redkitchen frames 0-399 (windows of frames 10 apart:
  ``data.stride=10``), then ``sfm_eval depth`` on frames 400-499 against the Kinect depth (median
  scaling, max depth 10 m).

Each run trains in its own process (peak RSS from ``getrusage``, measured right after training)::

    .venv/bin/python bench/bench_accuracy.py kitti --config paper --minutes 20 [--work DIR]
    .venv/bin/python bench/bench_accuracy.py 7scenes --config 'default+loss.smooth_weight=0.01'
    python bench/bench_accuracy.py kitti --config paper --steps 1500 --minutes 10   # a step budget (GPU)

prints the result as JSON (the last line, after ``@@BENCH_JSON@@``). ``bench/run_all.py`` runs
every configuration and dataset and makes the table.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_SIZE, KITTI, SEVENSCENES, bench_options, emit, peak_rss_mib  # noqa: E402

KITTI_TRAIN, KITTI_TEST = (0, 120), (120, 160)
SEVEN_TRAIN, SEVEN_TEST, SEVEN_STRIDE = (0, 400), (400, 500), 10
DATASETS = ("kitti", "7scenes")


def _kitti_sequence(root: Path):
    from sfm_ros.data.datasets import prepare_sequence
    from sfm_ros.data.sources import read_kitti_odometry

    seq = read_kitti_odometry(root)
    frames = ((f.image, f.stamp) for f in itertools.islice(iter(seq), *KITTI_TRAIN))
    return prepare_sequence(frames, seq.camera.K, BENCH_SIZE, name="kitti00[0:120]")


def _sevenscenes_sequence(root: Path):
    from sfm_ros.data.datasets import prepare_sequence
    from sfm_ros.data.sevenscenes import read_sevenscenes
    from sfm_ros.data.sources import read_image

    ss = read_sevenscenes(root)
    idx = range(*SEVEN_TRAIN)
    frames = ((read_image(ss.color[i]), float(ss.stamps[i])) for i in idx)
    return prepare_sequence(frames, ss.K, BENCH_SIZE, name="redkitchen[0:400]")


def run(dataset: str, config: str, minutes: float, work: Path, data: Path | None = None,
        steps: int = 0) -> dict:
    """Train ``config`` on ``dataset`` for ``minutes`` (0: no limit) or ``steps`` (0: no limit),
    whichever comes first, and evaluate; returns a result dict."""
    import torch

    from sfm_ros.cli import eval as eval_cli
    from sfm_ros.training.trainer import Trainer

    root = Path(data) if data else (KITTI if dataset == "kitti" else SEVENSCENES)
    if not root.is_dir():
        return {"error": f"{root} is absent"}
    extra = {"data.stride": SEVEN_STRIDE} if dataset == "7scenes" else {}
    if steps:
        extra["train.max_steps"] = int(steps)
    opts = bench_options(config, minutes or None, extra)
    t0 = time.monotonic()
    seq = _kitti_sequence(root) if dataset == "kitti" else _sevenscenes_sequence(root)
    load_s = time.monotonic() - t0
    torch.manual_seed(0)
    trainer = Trainer(opts, [seq], None, work, progress=False, tensorboard=False, ckpt_every=0)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    rss = peak_rss_mib()
    ckpt = work / "last.pt"
    if dataset == "kitti":
        res = eval_cli.run(["pose", "--checkpoint", str(ckpt), "--kitti", str(root), "--frames",
                            f"{KITTI_TEST[0]}:{KITTI_TEST[1]}", "--train-frames",
                            f"{KITTI_TRAIN[0]}:{KITTI_TRAIN[1]}", "--snippet", "5"])
        m = res["methods"]
        out = {"snippet_ate": _snip(m["model"]), "zero_motion": _snip(m["zero_motion"]),
               "mean_odometry": _snip(m["mean_odometry"]), "ate_rmse": m["model"]["ate"]["rmse"],
               "rpe_trans_rmse": m["model"]["rpe"]["trans_rmse"], "rpe_rot_rmse_deg": m["model"]["rpe"]["rot_rmse_deg"],
               "notes": res["notes"]}
    else:
        res = eval_cli.run(["depth", "--checkpoint", str(ckpt), "--sevenscenes", str(root), "--frames",
                            f"{SEVEN_TEST[0]}:{SEVEN_TEST[1]}", "--max-depth", "10"])
        out = {"depth": res["metrics"], "constant": res["baseline_constant"], "count": res["count"],
               "scale_mean": res["scale_mean"]}
    out.update({"dataset": dataset, "config": config, "minutes_budget": minutes, "steps_budget": steps,
                "train_minutes": summary["minutes"], "steps": summary["steps"],
                "device": str(trainer.device), "amp": str(trainer.amp).replace("torch.", ""),
                "train_frames": len(seq), "windows": len(trainer.train_set), "load_s": load_s,
                "peak_rss_mib": rss, "seq_len": opts.model.seq_len, "batch_size": opts.train.batch_size})
    return out


def _snip(m: dict) -> dict:
    s = m["snippet_ate"]
    return {"mean": s["mean"], "std": s["std"], "count": s["count"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--config", default="default", help="preset[+group.key=value...] (default: default)")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget (wall clock, default 20; 0: none)")
    p.add_argument("--steps", type=int, default=0, help="training budget in optimiser steps (default 0: none)")
    p.add_argument("--work", help="folder for the checkpoints (default: a temporary folder, removed)")
    p.add_argument("--data", help="dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument("--threads", type=int, help="torch threads")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tmp = None
    work = Path(args.work) if args.work else Path(tmp := tempfile.mkdtemp(prefix="sfm_bench_"))
    try:
        if not (args.minutes > 0 or args.steps > 0):
            raise ValueError("give a budget: --minutes > 0 or --steps > 0")
        res = run(args.dataset, args.config, args.minutes, work, args.data, args.steps)
    except Exception as exc:  # reported in the table, not a crash of the whole suite
        res = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(res)
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
