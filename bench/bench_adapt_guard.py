#!/usr/bin/env python3
"""Online adaptation's hand-over margin, measured prequentially.

One adaptation run over the frames in order (the node's order: each frame is predicted before it is
learnt from); at every frame both the adapter's accepted weights and the starting (frozen) weights
predict it, and after every update the accepted weights' geometric depth error on the held-out
windows (:func:`sfm_ros.training.adapt.geometric_depth_error`) is compared with the starting
weights'. Serving never changes what the learner learns, so one run scores every hand-over
margin ``m``: a frame is served by the accepted weights when, at the last update before it, their
error was at least ``m`` below the starting weights' (``m = -inf``: always the accepted weights, no
hand-over rule). Per block of frames: the served and the frozen
score, and the worst block's served/frozen ratio.

    .venv/bin/python bench/bench_adapt_guard.py 7scenes --frames 0:500 --stride 5
    .venv/bin/python bench/bench_adapt_guard.py 7scenes --frames 400:500 --stride 5
    .venv/bin/python bench/bench_adapt_guard.py kitti --frames 0:160
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KITTI, REPO, SEVENSCENES, emit  # noqa: E402

MARGINS = (float("-inf"), 0.0, 0.02, 0.05, 0.1, 0.15, 0.2)


def _span(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(a), int(b)


def run(dataset: str, frames: tuple[int, int], stride: int, steps: int, block: int, checkpoint: str) -> dict:
    import torch

    from sfm_ros.data.sevenscenes import read_sevenscenes
    from sfm_ros.evaluation.metrics import evaluate_depth, load_depth_png
    from sfm_ros.evaluation.trajectory import snippet_ate, snippet_from_network
    from sfm_ros.runtime.inference import Estimator, to_rgb8
    from sfm_ros.training.adapt import Adapter, AdaptOptions

    est = Estimator(checkpoint, device="cpu")
    opts = AdaptOptions()
    adapter = Adapter(est.model, est.options, opts, started_from=checkpoint)
    from sfm_ros.data.sources import read_image

    if dataset == "7scenes":
        seq = read_sevenscenes(SEVENSCENES)
        images = [read_image(seq.color[i]) for i in range(*frames)]
        K = seq.K
        gts = [seq.depth[i] for i in range(*frames)]
    else:
        from sfm_ros.data.sources import read_kitti_odometry

        seq = read_kitti_odometry(KITTI)
        images = [read_image(seq.image_paths[i]) for i in range(*frames)]
        K = seq.camera.K
        poses = seq.poses[frames[0]:frames[1]]
    K_net = est.scale_intrinsics(K, images[0].shape[:2])
    span = (adapter.seq_len - 1) * stride
    recent: deque = deque(maxlen=span + 1)
    acc_model, acc_count = copy.deepcopy(adapter.accepted).eval(), 0
    ratio = float("nan")  # accepted / starting held-out loss at the last update
    per_frame = []  # (x, accepted model at that time, ratio at that time)
    scores = []
    L = est.seq_len
    window_pairs = []
    for i, img in enumerate(images):
        x = est.preprocess(img)
        if adapter.accepted_updates != acc_count:
            acc_model, acc_count = copy.deepcopy(adapter.accepted).eval(), adapter.accepted_updates
        if adapter.last is not None and np.isfinite(adapter.last.depth_start):
            ratio = adapter.last.depth_accepted / adapter.last.depth_start
        if dataset == "7scenes":
            own = est.model
            est.model = acc_model
            d_acc = est.depth(x)[0, 0].float().numpy()
            est.model = own
            d_frz = est.depth(x)[0, 0].float().numpy()
            gt = load_depth_png(gts[i], 1000.0, 65535)
            try:
                a = evaluate_depth(gt, _resize(d_acc, gt.shape), 1e-3, 10.0, median_scaling=True)["abs_rel"]
                f = evaluate_depth(gt, _resize(d_frz, gt.shape), 1e-3, 10.0, median_scaling=True)["abs_rel"]
                scores.append((i, ratio, a, f))
            except ValueError:
                pass
        else:
            per_frame.append((x, acc_model, ratio))
            if len(per_frame) >= L:
                win = per_frame[-L:]
                xs = [w[0] for w in win]
                own = est.model
                est.model = win[0][1]
                pa = est.poses(xs)[0].double().numpy()
                est.model = own
                pf = est.poses(xs)[0].double().numpy()
                window_pairs.append((i - L + 1, win[0][2], snippet_from_network(pa, L // 2),
                                     snippet_from_network(pf, L // 2)))
        recent.append(to_rgb8(x))
        if len(recent) == span + 1:
            adapter.add_window(np.stack([recent[j * stride] for j in range(adapter.seq_len)]), K_net)
        for _ in range(steps):
            with torch.enable_grad():
                adapter.step()
    if dataset == "kitti":
        sa = snippet_ate(poses, np.asarray([w[2] for w in window_pairs]), snippet_len=L)["per_snippet"]
        sf = snippet_ate(poses, np.asarray([w[3] for w in window_pairs]), snippet_len=L)["per_snippet"]
        scores = [(w[0], w[1], a, f) for w, a, f in zip(window_pairs, sa, sf)]
    out = {"dataset": dataset, "frames": list(frames), "stride": stride, "steps_per_frame": steps, "block": block,
           "metric": "abs rel" if dataset == "7scenes" else f"snippet ATE ({L} frames, m)",
           "adaptation": {k: v for k, v in adapter.stats().items() if k != "options"}, "margins": {}}
    n = len(images)
    for m in MARGINS:
        blocks = []
        for start in range(0, n, block):
            sel = [(r, a, f) for i, r, a, f in scores if start <= i < start + block]
            if not sel:
                continue
            served = [a if np.isfinite(r) and r <= 1 - m else f for r, a, f in sel] if m > float("-inf") \
                else [a for r, a, f in sel]
            blocks.append({"first": frames[0] + start, "served": float(np.mean(served)),
                           "frozen": float(np.mean([f for _, _, f in sel])),
                           "served_share": float(np.mean([s is a for s, (r, a, f) in zip(served, sel)]))})
        allv = [b["served"] for b in blocks]
        out["margins"][f"{m:g}"] = {"blocks": blocks, "worst_ratio": max(b["served"] / b["frozen"] for b in blocks),
                                    "mean_served": float(np.mean(allv)),
                                    "mean_frozen": float(np.mean([b["frozen"] for b in blocks]))}
    return out


def _resize(d: np.ndarray, shape) -> np.ndarray:
    import cv2

    return cv2.resize(d, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=("7scenes", "kitti"))
    p.add_argument("--frames", type=_span, default=None)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--block", type=int, default=50)
    p.add_argument("--checkpoint", default=str(REPO / "models" / "sfm_default.pt"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    frames = a.frames or ((0, 500) if a.dataset == "7scenes" else (0, 160))
    res = run(a.dataset, frames, a.stride, a.steps, a.block, a.checkpoint)
    for m, r in res["margins"].items():
        print(f"margin {m:>5}: worst block served/frozen {r['worst_ratio']:.3f}, mean served {r['mean_served']:.4f} "
              f"vs frozen {r['mean_frozen']:.4f}; blocks " +
              " ".join(f"{b['first']}:{b['served']:.3f}/{b['frozen']:.3f}" for b in r["blocks"]))
    print(json.dumps(res["adaptation"], default=str))
    emit(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
