#!/usr/bin/env python3
"""Pose accuracy of a checkpoint on rendered streets it never trained on, with the node's refinement.

    .venv/bin/python bench/bench_streets.py [--checkpoint models/sfm_default.pt] [--seeds 500,501,502]
        [--frames 60] [--refine epipolar] [--threads 2]

For each seed, :func:`sfm_ros.data.synthetic.render_sequence` renders a street (128x416, 10 Hz, 6 m/s;
the shipped model trained on seeds 0-39, ``make demo`` plays seed 999), the pose network runs on
every 3-frame window (:func:`sfm_ros.evaluation.pose_eval.network_snippets`, averaged into
frame-to-frame increments as ``sfm_eval pose`` does, without ``--pose-flip``) and the refiner
(``--refine``, default the node's ``epipolar``) refines them with the predicted depth, as
``sfm_eval pose --refine`` does. Prints the 5-frame snippet ATE and the Sim(3) ATE of the network
alone and refined per seed and their means; the last line is the JSON result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "sfm_default.pt"))
    ap.add_argument("--seeds", default="500,501,502", help="street seeds, comma-separated (default 500,501,502)")
    ap.add_argument("--frames", type=int, default=60, help="frames per street (default 60)")
    ap.add_argument("--refine", default="epipolar", help="refine mode (default epipolar)")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2)")
    args = ap.parse_args(argv)
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.evaluation.pose_eval import network_increments, network_snippets
    from sfm_ros.evaluation.trajectory import ate, chain, snippet_ate
    from sfm_ros.runtime.inference import Estimator
    from sfm_ros.runtime.motion import Refiner, refine_sequence

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    est = Estimator(args.checkpoint, device="cpu")
    out = {"machine": machine_info(), "checkpoint": args.checkpoint, "refine": args.refine, "seeds": {}}
    for seed in seeds:
        seq = render_sequence(num_frames=args.frames, height=est.height, width=est.width, seed=seed)
        x = [est.preprocess(im) for im in seq.images]
        rel = network_increments(network_snippets(est, x))
        depths = [est.depth(t)[0, 0].float().cpu().numpy() for t in x]
        refiner = Refiner(args.refine)
        views = [refiner.view(im, seq.K) for im in seq.images]
        inc, results = refine_sequence(refiner, views, depths[:-1], rel)
        r = {name: {"snippet_ate": float(snippet_ate(seq.poses, m, 5, est_is_relative=True)["mean"]),
                    "ate": float(ate(seq.poses, chain(m), align="sim3")["rmse"])}
             for name, m in (("network", rel), ("refined", inc))}
        r["network_kept"] = int(sum(x.network_kept for x in results))
        out["seeds"][seed] = r
        print(f"seed {seed}: snippet ATE network {r['network']['snippet_ate']:.4f} refined "
              f"{r['refined']['snippet_ate']:.4f}; ATE network {r['network']['ate']:.3f} refined "
              f"{r['refined']['ate']:.3f} m; network's motion kept on {r['network_kept']} of {len(results)}")
    for name in ("network", "refined"):
        out[name] = {k: float(np.mean([v[name][k] for v in out["seeds"].values()])) for k in ("snippet_ate", "ate")}
        print(f"mean {name}: snippet ATE {out[name]['snippet_ate']:.4f}, ATE {out[name]['ate']:.3f} m")
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
