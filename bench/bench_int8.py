#!/usr/bin/env python3
"""What int8 costs and gains: the shipped model through ONNX Runtime in fp32 (the
node's CPU path) and int8 (:mod:`sfm_ros.runtime.quantize`), same frames, same commands.

* **Accuracy**, through ``sfm_eval``'s own runs (:mod:`sfm_ros.evaluation.runs`) with the estimator
  swapped for the ONNX Runtime one (the only setting added, printed): KITTI 00 pose on frames
  120-159, the pose network alone and with the node's defaults (``--pose-flip --refine epipolar
  --camera-height 1.65``; snippet ATE and segment drift), int8 calibrated on frames 0-69 of the same drive; 7-Scenes depth abs rel on
  frames 400-499 (median scaling), calibrated on frames 0-69 of the room (every frame at 30 Hz).
  Neither calibration set overlaps the scored frames.
* **Speed**: depth and pose forward, one thread, median of ``--runs`` calls (fp32 and int8
  alternating in rounds, so background load hits both alike), the CPU model printed.

    .venv/bin/python bench/bench_int8.py [--data ../shared/data] [--runs 40]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from common import machine_info  # noqa: E402
from sfm_ros.cli.eval import build_parser  # noqa: E402
from sfm_ros.data.sources import natural_key, read_image  # noqa: E402
from sfm_ros.evaluation import runs  # noqa: E402
from sfm_ros.runtime.inference import Estimator  # noqa: E402

MODEL = REPO / "models" / "sfm_default.pt"


def _frames(folder: Path, pattern: str, first: int, last: int) -> list[np.ndarray]:
    files = sorted(folder.glob(pattern), key=natural_key)[first:last]
    return [read_image(f) for f in files]


def _run(argv: list[str], precision: str, calibration) -> dict:
    """An ``sfm_eval`` run with the ONNX Runtime estimator of ``precision``."""
    args = build_parser().parse_args(argv)

    def estimator(a):
        return Estimator(a.checkpoint, device="cpu", precision=precision, backend="onnxruntime", threads=1,
                         pose_flip=getattr(a, "pose_flip", False), calibration=calibration)

    saved = runs.load_estimator
    runs.load_estimator = estimator
    try:
        return (runs.run_pose if argv[0] == "pose" else runs.run_depth)(args)
    finally:
        runs.load_estimator = saved


def _speed(ests: dict, x: torch.Tensor, runs_: int) -> dict:
    window = [x] * next(iter(ests.values())).seq_len
    t = {f"{part}_{name}": [] for name in ests for part in ("depth", "pose")}
    for e in ests.values():
        for _ in range(3):
            e.depth(x)
            e.poses(window, flip=False)
    for _ in range(runs_):
        for name, e in ests.items():
            t0 = time.perf_counter()
            e.depth(x)
            t1 = time.perf_counter()
            e.poses(window, flip=False)
            t2 = time.perf_counter()
            t[f"depth_{name}"].append(t1 - t0)
            t[f"pose_{name}"].append(t2 - t1)
    return {k: 1000.0 * float(np.median(v)) for k, v in t.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--runs", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    kitti, scenes = args.data / "kitti_odom_00", args.data / "sevenscenes_redkitchen"
    if not kitti.is_dir() or not scenes.is_dir():
        print(f"skipped: {kitti} or {scenes} is absent")
        return 0
    print(f"CPU: {machine_info()['cpu']}; torch {torch.__version__}; one thread; model {MODEL.relative_to(REPO)}")
    k_cal = _frames(kitti / "image_0", "*.png", 0, 70)
    s_cal = _frames(scenes, "*.color.jpg", 0, 70)
    pose_cmd = ["pose", "--checkpoint", str(MODEL), "--kitti", str(kitti), "--frames", "120:160",
                "--pose-flip", "--refine", "epipolar", "--camera-height", "1.65"]
    net_cmd = pose_cmd[:7]  # the pose network alone: no flip, no refinement, no metric scale
    depth_cmd = ["depth", "--checkpoint", str(MODEL), "--sevenscenes", str(scenes), "--frames", "400:500"]
    print("sfm_eval " + " ".join(pose_cmd[:1] + pose_cmd[1:]).replace(str(REPO) + "/", "")
          + "  [+ backend onnxruntime, int8 calibrated on KITTI 00 frames 0-69]")
    print("sfm_eval " + " ".join(depth_cmd).replace(str(REPO) + "/", "")
          + "  [+ backend onnxruntime, int8 calibrated on 7-Scenes frames 0-69]")
    print("sfm_eval " + " ".join(net_cmd).replace(str(REPO) + "/", "") + "  [the same, the network alone]")
    for precision in ("fp32", "int8"):
        net = _run(net_cmd, precision, k_cal if precision == "int8" else None)["methods"]["model"]
        pose = _run(pose_cmd, precision, k_cal if precision == "int8" else None)
        depth = _run(depth_cmd, precision, s_cal if precision == "int8" else None)
        m = pose["methods"]["model"]
        drift = m["segment_drift"]["as_published"]
        print(f"{precision}: KITTI 00 120-159 network alone: snippet ATE {net['snippet_ate']['mean']:.4f} m, "
              f"r_err {net['segment_drift']['as_published']['r_err_deg_per_100m']:.2f} deg/100 m; node defaults: "
              f"snippet ATE {m['snippet_ate']['mean']:.4f} m, segment drift "
              f"t_err {drift['t_err_pct']:.2f} % r_err {drift['r_err_deg_per_100m']:.2f} deg/100 m "
              f"(lengths {pose['segment_drift']['lengths']}); 7-Scenes 400-499 abs rel "
              f"{depth['metrics']['abs_rel']:.4f} (constant depth {depth['baseline_constant']['abs_rel']:.4f})",
              flush=True)
    ests = {"ORT fp32": Estimator(MODEL, device="cpu", precision="fp32", backend="onnxruntime", threads=1),
            "torch fp32": Estimator(MODEL, device="cpu", precision="fp32", backend="torch"),
            "torch bf16": Estimator(MODEL, device="cpu", precision="bf16", backend="torch"),
            "ORT int8": Estimator(MODEL, device="cpu", precision="int8", backend="onnxruntime", threads=1,
                                  calibration=k_cal)}
    e0 = ests["ORT fp32"]
    sp = _speed(ests, e0.preprocess(k_cal[0]), args.runs)
    print(f"one thread, {e0.height}x{e0.width}, median of {args.runs} rounds (paths alternating):")
    for name in ests:
        print(f"  {name:<11} depth {sp['depth_' + name]:5.1f} ms  pose {sp['pose_' + name]:4.1f} ms  depth + pose "
              f"{sp['depth_' + name] + sp['pose_' + name]:5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
