#!/usr/bin/env python3
"""The project against the reference port, side by side, on the same frames, size, stride and
step budget.

* ``7scenes``: both train on 7-Scenes redkitchen frames 0-399 and predict the depth of frames
  400-499, scored against the Kinect depth with the same code (``sfm_ros.evaluation.metrics.evaluate_depth``:
  per-image median scaling, 10 m cap) beside the constant-depth baseline.
* ``kitti``: both train on KITTI 00 frames 0-119; the project is scored with ``sfm_eval pose``
  and the reference port's trajectory of frames 120-159 with ``sfm_eval pose --pred-kitti``: the
  5-frame snippet ATE beside the zero-motion and constant-velocity (mean odometry) baselines.

The reference port (``../shared/peers``, MIT, a yardstick only: never imported by the package) runs
in its own process with the project's venv python; it is skipped cleanly when absent. The project
trains through ``sfm_ros.cli.train`` exactly as a user's command would, so the trainer's automatic
choices (input size, frame stride, precision) are part of what is measured unless set here::

    .venv/bin/python bench/bench_vs_peer.py 7scenes --minutes 12            # the plain command
    .venv/bin/python bench/bench_vs_peer.py 7scenes --steps 1285 --size 128x160 --stride 10
    .venv/bin/python bench/bench_vs_peer.py kitti --minutes 20 --no-peer
    .venv/bin/python bench/bench_vs_peer.py 7scenes --config paper --set loss.smooth_weight=0.1

The peer gets the project's step count (and the size and stride the project used), so the two
are compared at an equal number of optimiser steps; its wall time is printed beside. The last
line is the result as JSON after ``@@BENCH_JSON@@``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, KITTI, REPO, SEVENSCENES, emit  # noqa: E402
from checkpoint_candidates import evaluate_run  # noqa: E402

PEERS = Path(os.environ.get("SFM_ROS_PEERS", DATA.parent / "peers")).resolve()
#: Training and reported frames: the reported frames lie on the far side of the sequence, apart from
#: the training frames (a gap of 100 frames, 3.3 s, in 7-Scenes; 20 frames, about 15 m, in KITTI).
SEVEN_TRAIN, SEVEN_TEST = (0, 300), (400, 500)
KITTI_TRAIN, KITTI_TEST = (0, 100), (120, 160)


def _link_frames(src: Path, dst: Path, pattern: str, span: tuple[int, int]) -> list[Path]:
    """Symbolic links to frames ``span`` of ``src`` (natural order) in ``dst``; returns them."""
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    files = sorted(src.glob(pattern), key=key)[span[0]:span[1]]
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = dst / f.name
        if not link.is_symlink():
            link.symlink_to(f.resolve())
    return files


def _run(cmd: list[str], log: Path, timeout: float) -> str:
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    text = log.read_text()
    if proc.returncode != 0:
        tail = text.strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {' | '.join(tail)}")
    return text + f"\n@@wall {time.monotonic() - t0:.1f}\n"


#: The README's training commands for these data, word for word (``test/test_bench_commands.py``
#: checks them against README.md). The project is trained with exactly this command; the harness
#: adds only what it prints beside the figures (:func:`project_command`).
USER_COMMANDS = {
    "7scenes": ('sfm_train --images ../shared/data/sevenscenes_redkitchen --pattern "*.color.jpg" '
                '--fx 585 --fy 585 --cx 320 --cy 240 --max-minutes 12 --out runs/redkitchen'),
    "kitti": "sfm_train --kitti ../shared/data/kitti_odom_00 --max-minutes 20 --out runs/kitti00",
}
#: The file the README names for evaluation and the node.
USER_FILE = "model.pt"


def project_command(dataset: str, work: Path, args) -> tuple[list[str], list[str]]:
    """``(argv, added settings)``: the README's command for ``dataset`` with the data path, ``--out``
    and the harness's own settings (each listed in the second item, printed with the figures)."""
    import shlex

    words = shlex.split(USER_COMMANDS[dataset])
    assert words[0] == "sfm_train"
    argv = [sys.executable, "-m", "sfm_ros.cli.train"] + words[1:]
    data = str(DATA)
    argv = [w.replace("../shared/data", data) for w in argv]
    argv[argv.index("--out") + 1] = str(work / "project")
    span = SEVEN_TRAIN if dataset == "7scenes" else KITTI_TRAIN
    added = [f"--max-frames {span[1]} (trains on frames 0-{span[1] - 1} only)", "--no-progress"]
    argv += ["--max-frames", str(span[1]), "--no-progress"]
    if args.minutes and args.minutes != float(argv[argv.index("--max-minutes") + 1]):
        argv[argv.index("--max-minutes") + 1] = f"{args.minutes:g}"
        added.append(f"--max-minutes {args.minutes:g} (not the README's)")
    if args.steps:
        argv += ["--max-steps", str(args.steps)]
        added.append(f"--max-steps {args.steps}")
    if args.config != "default":
        argv += ["--config", args.config]
        added.append(f"--config {args.config}")
    if args.size:
        h, w = args.size
        argv += ["--height", str(h), "--width", str(w)]
        added.append(f"--height {h} --width {w}")
    if args.stride:
        argv += ["--stride", str(args.stride)]
        added.append(f"--stride {args.stride}")
    if args.threads:
        argv += ["--threads", str(args.threads)]
        added.append(f"--threads {args.threads}")
    if args.candidates:
        argv += ["--set", f"train.snapshot_every={args.candidates}"]
        added.append(f"--set train.snapshot_every={args.candidates} (raw weights saved; training unchanged)")
    for s in args.set or []:
        argv += ["--set", s]
        added.append(f"--set {s}")
    return argv, added


def train_project(dataset: str, work: Path, args) -> dict:
    """The README's ``sfm_train`` command on the training frames; returns the steps, size, stride,
    wall time, the harness's added settings and the file the README names."""
    out = work / "project"
    cmd, added = project_command(dataset, work, args)
    text = _run(cmd, work / "project_train.log", timeout=3600 + 60 * (args.minutes or 60))
    from sfm_ros.core.checkpoint import read_checkpoint

    state = read_checkpoint(out / "last.pt")
    opts = state["options"]
    return {"command": USER_COMMANDS[dataset], "added_settings": added,
            "steps": int(state["step"]), "height": opts["model"]["height"], "width": opts["model"]["width"],
            "stride": opts["data"]["stride"], "wall_s": float(text.rsplit("@@wall", 1)[1]),
            "checkpoint": str(out / USER_FILE), "amp": _grep(text, r"precision[^\n]*"),
            "ended": _grep(text, r"done: [^\n]*")}


def _grep(text: str, pattern: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(0).strip() if m else None


def train_peer(dataset: str, work: Path, steps: int, h: int, w: int, stride: int) -> dict:
    script = PEERS / "peer_train.py"
    cmd = [sys.executable, str(script), str(work / "train"), str(work / "test"), str(work / "peer_out"),
           "--h", str(h), "--w", str(w), "--stride", str(stride), "--steps", str(steps)]
    if dataset == "7scenes":
        cmd += ["--pattern", "*.color.jpg", "--fx", "585", "--fy", "585", "--cx", "320", "--cy", "240",
                "--W0", "640", "--H0", "480"]
    else:
        cmd += ["--pattern", "*.png", "--fx", "718.856", "--fy", "718.856", "--cx", "607.1928",
                "--cy", "185.2157", "--W0", "1241", "--H0", "376", "--pose-out", str(work / "peer_poses.txt")]
    text = _run(cmd, work / "peer_train.log", timeout=7200)  # the script sets 2 torch threads itself
    return {"steps": steps, "wall_s": float(text.rsplit("@@wall", 1)[1])}


def score_7scenes(pred_npys: list[Path], depth_pngs: list[Path]) -> dict:
    import numpy as np

    from sfm_ros.evaluation.metrics import DEPTH_METRIC_KEYS, aggregate, evaluate_depth, load_depth_png

    res, const = [], []
    for p, g in zip(pred_npys, depth_pngs):
        gt = load_depth_png(g, 1000.0, 65535)
        pred = np.load(p)
        try:
            res.append(evaluate_depth(gt, pred, 1e-3, 10.0, median_scaling=True))
            const.append(evaluate_depth(gt, np.ones_like(pred), 1e-3, 10.0, median_scaling=True))
        except ValueError:
            continue
    a, c = aggregate(res), aggregate(const)
    spread = float(np.mean([np.std(np.load(p)) / max(np.mean(np.load(p)), 1e-9) for p in pred_npys]))
    return {"depth": {k: a[k] for k in DEPTH_METRIC_KEYS}, "constant": {k: c[k] for k in DEPTH_METRIC_KEYS},
            "count": len(res), "relative_spread": spread}


def run(dataset: str, args) -> dict:
    from sfm_ros.cli import eval as eval_cli

    root = SEVENSCENES if dataset == "7scenes" else KITTI
    if not root.is_dir():
        return {"error": f"{root} is absent"}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sfm_vs_peer_"))
    work.mkdir(parents=True, exist_ok=True)
    if dataset == "7scenes":
        train_files = _link_frames(root, work / "train", "*.color.jpg", SEVEN_TRAIN)
        test_files = _link_frames(root, work / "test", "*.color.jpg", SEVEN_TEST)
    else:
        train_files = _link_frames(root / "image_0", work / "train", "*.png", KITTI_TRAIN)
        test_files = _link_frames(root / "image_0", work / "test", "*.png", KITTI_TEST)
    out: dict = {"dataset": dataset, "config": args.config, "set": args.set or [], "minutes": args.minutes,
                 "train_frames": len(train_files), "test_frames": len(test_files), "work": str(work)}
    proj = train_project(dataset, work, args)
    out["project"] = proj
    if dataset == "7scenes":
        npy = work / "project_npy"
        eval_cli.run(["depth", "--checkpoint", proj["checkpoint"], "--sevenscenes", str(root), "--frames",
                      f"{SEVEN_TEST[0]}:{SEVEN_TEST[1]}", "--max-depth", "10", "--save-npy", str(npy)])
        gts = [f.with_name(f.name.replace(".color.jpg", ".depth.png")) for f in test_files]
        out["project"].update(score_7scenes(sorted(npy.glob("*.npy")), gts))
    else:
        r = eval_cli.run(["pose", "--checkpoint", proj["checkpoint"], "--kitti", str(root), "--frames",
                          f"{KITTI_TEST[0]}:{KITTI_TEST[1]}", "--train-frames",
                          f"{KITTI_TRAIN[0]}:{KITTI_TRAIN[1]}", "--snippet", "5"])
        m = r["methods"]
        out["project"]["snippet_ate"] = m["model"]["snippet_ate"]["mean"]
        out["zero_motion"] = m["zero_motion"]["snippet_ate"]["mean"]
        out["constant_velocity"] = m["mean_odometry"]["snippet_ate"]["mean"]
    if args.candidates:
        test = f"{(SEVEN_TEST if dataset == '7scenes' else KITTI_TEST)[0]}:{(SEVEN_TEST if dataset == '7scenes' else KITTI_TEST)[1]}"
        out["candidates"] = evaluate_run(Path(proj["checkpoint"]).parent, dataset, test,
                                         None if dataset == "7scenes" else f"{KITTI_TRAIN[0]}:{KITTI_TRAIN[1]}",
                                         log=lambda m: print(m, flush=True))
    if args.no_peer or not (PEERS / "peer_train.py").is_file():
        out["peer"] = None if args.no_peer else f"absent: {PEERS}"
        return out
    peer = train_peer(dataset, work, proj["steps"], proj["height"], proj["width"], proj["stride"])
    out["peer"] = peer
    if dataset == "7scenes":
        gts = [f.with_name(f.name.replace(".color.jpg", ".depth.png")) for f in test_files]
        preds = [work / "peer_out" / (f.name.split(".")[0] + ".npy") for f in test_files]
        peer.update(score_7scenes(preds, gts))
        out["ratio_abs_rel"] = out["project"]["depth"]["abs_rel"] / peer["depth"]["abs_rel"]
    else:
        r = eval_cli.run(["pose", "--pred-kitti", str(work / "peer_poses.txt"), "--kitti", str(root),
                          "--frames", f"{KITTI_TEST[0]}:{KITTI_TEST[1]}", "--snippet", "5"])
        peer["snippet_ate"] = r["methods"]["model"]["snippet_ate"]["mean"] if "model" in r["methods"] \
            else next(iter(r["methods"].values()))["snippet_ate"]["mean"]
        out["ratio_snippet_ate"] = out["project"]["snippet_ate"] / peer["snippet_ate"]
    return out


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--size must be HxW, e.g. 128x160, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=("7scenes", "kitti"))
    p.add_argument("--config", default="default")
    p.add_argument("--set", action="append", metavar="GROUP.KEY=VALUE", help="option override (repeatable)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="project training budget, wall clock (default: the README command's)")
    p.add_argument("--steps", type=int, default=0, help="project training budget, steps")
    p.add_argument("--size", type=_size, help="HxW (default: the trainer's choice)")
    p.add_argument("--stride", type=int, help="frame stride (default: the trainer's choice)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, as the user's command)")
    p.add_argument("--candidates", type=int, default=0, metavar="N",
                   help="also save the raw weights every N steps and score every candidate file "
                        "(bench/checkpoint_candidates.py)")
    p.add_argument("--no-peer", action="store_true", help="train the project only")
    p.add_argument("--work", help="working folder (kept; default a new temporary folder)")
    args = p.parse_args(argv)
    try:
        res = run(args.dataset, args)
    except Exception as exc:  # noqa: BLE001 - reported, not a crash of a suite
        res = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    print(json.dumps(res, indent=1, default=str))
    emit(res)
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
