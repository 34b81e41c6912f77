#!/usr/bin/env python3
"""Cost of the node's pose refinement (``refine_pose``) per frame, on one core.

    .venv/bin/python bench/bench_refine.py [--frames 0:160] [--repeat 3] [--threads 1] [--mode epipolar ...]
        [--camera-height 1.65]

Times exactly what the node adds per frame for ``refine_pose: MODE`` (each ``--mode``, default
``epipolar``; ``all``: every mode but ``none``): the new frame's view
(:meth:`sfm_ros.runtime.motion.Refiner.view`: grey, resized to the paper's pixel budget; the
reference frame's view is the one made for it a frame before, as in the node, so the three-view
length prediction runs) and :meth:`~sfm_ros.runtime.motion.Refiner.refine` against a given network
motion, on consecutive KITTI 00
frames (128x416 views of the 1241x376 camera) and 7-Scenes frames 10 apart (192x256 views of the
640x480 camera) from ``../shared/data``. The depth for the baseline (and the photometric warp) is
a plane in front of the camera: the epipolar cost does not depend on the depth's values; the
photometric cost depends on them only through the iterations the alignment takes (at most
``photo_iterations`` per level), so its p95 is close to its worst case. OpenCV and torch are held to
``--threads`` threads (1: the node's refinement budget, 15 ms a frame, is for one core). Prints the
per-frame p50/p95 in ms and what each refinement was made of; the last line is the JSON result.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KITTI, SEVENSCENES, emit, machine_info  # noqa: E402


def _percentile(xs, q):
    import numpy as np

    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def time_refiner(images, K, repeat: int, mode: str = "epipolar", camera_height: float = 0.0) -> dict:
    import numpy as np

    from sfm_ros.core.se3 import make_pose
    from sfm_ros.runtime.motion import Refiner

    refiner = Refiner(mode)
    T_net = make_pose(t=[0.0, 0.0, 1.0])
    ground = (np.array([0.0, 1.0, 0.0]), camera_height) if camera_height > 0 else None  # a level camera
    times, used = [], {}
    for _ in range(repeat):
        refiner.reset_scale()
        va = refiner.view(images[0], K)
        for b in images[1:]:
            t0 = time.perf_counter()
            vb = refiner.view(b, K)
            depth = np.full(va.grey.shape, 10.0, np.float32)
            r = refiner.refine(va, vb, T_net, depth, ground=ground)
            times.append(1000.0 * (time.perf_counter() - t0))
            key = r.used + (f" ({r.scale_from})" if r.scale_from else "")
            used[key] = used.get(key, 0) + 1
            va = vb
    return {"frames": len(images) - 1, "view": list(va.grey.shape), "p50_ms": _percentile(times, 50),
            "p95_ms": _percentile(times, 95), "max_ms": max(times), "used": used}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="0:160", help="KITTI frames A:B (default 0:160)")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the frames (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads (default 1)")
    ap.add_argument("--mode", action="append", metavar="MODE",
                    help="refine_pose mode to time (repeatable; default epipolar; all: every mode but none)")
    ap.add_argument("--camera-height", type=float, default=0.0, metavar="M",
                    help="also measure each step's metres from the ground's homography, as the node does "
                         "with camera_height (a level camera M metres above the ground; KITTI: 1.65)")
    args = ap.parse_args(argv)
    import cv2
    import torch

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    from sfm_ros.data.sources import read_image, read_kitti_odometry

    from sfm_ros.runtime.motion import REFINE_MODES

    modes = args.mode or ["epipolar"]
    if "all" in modes:
        modes = [m for m in REFINE_MODES if m != "none"]
    bad = [m for m in modes if m not in REFINE_MODES]
    if bad:
        ap.error(f"--mode must be one of {', '.join(REFINE_MODES)} or all, got {bad[0]!r}")
    out = {"threads": args.threads, "machine": machine_info()}
    a, b = (int(x) for x in args.frames.split(":"))
    data = {}
    if (KITTI / "image_0").is_dir():
        seq = read_kitti_odometry(KITTI)
        data["kitti"] = ([read_image(seq.image_paths[i]) for i in range(a, min(b, len(seq)))], seq.camera.K)
    if SEVENSCENES.is_dir():
        from sfm_ros.data.sevenscenes import read_sevenscenes

        ss = read_sevenscenes(SEVENSCENES)
        data["7scenes"] = ([read_image(ss.color[i]) for i in range(0, min(500, len(ss)), 10)], ss.K)
    if not data:
        print(f"no data under {KITTI.parent}: nothing measured", file=sys.stderr)
        return 1
    for mode in modes:
        for k, (imgs, K) in data.items():
            # the first mode keeps the keys of the single-mode output ("kitti", "7scenes")
            key = k if mode == modes[0] else f"{k}/{mode}"
            r = out[key] = dict(time_refiner(imgs, K, args.repeat, mode, args.camera_height), mode=mode,
                                camera_height=args.camera_height)
            print(f"{k} {mode}: {r['frames']} frame pairs x {args.repeat}, views {r['view'][1]}x{r['view'][0]}, "
                  f"{args.threads} thread(s): p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                  f"max {r['max_ms']:.1f} ms; {r['used']}")
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
