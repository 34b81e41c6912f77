#!/usr/bin/env python3
"""Metric drift of the node's odometry over distance: segment drift and the step-length
ratio of what the node publishes, with its defaults and ``camera_height``, no alignment.

    .venv/bin/python bench/bench_drift.py [--checkpoint models/sfm_default.pt] [--seeds 700,701,702]
        [--frames 400] [--kitti ../shared/data/kitti_odom_00] [--threads 1] [--set NAME=VALUE ...]

Frames are played through the node's own pipeline (:class:`sfm_ros.runtime.pipeline.FramePipeline`,
``Settings`` defaults: ``refine_pose epipolar``, ``pose_flip``; ``camera_height`` the drive's; the
intrinsics as the ``intrinsics`` parameter); the published ``odom -> base_link`` poses become camera
poses through the mount and are scored against the ground truth with
:mod:`sfm_ros.evaluation.segment_drift` (KITTI devkit definition, every frame a start, the lengths
printed) as published and after one global scale, plus the median ratio of the predicted to the
true step length, the 5-frame snippet ATE and the published increments' NEES per base-frame axis
(their errors as published over the covariance the node publishes with them: issue 24 item 4).

KITTI's frames 120-159 are also scored alone (``--kitti-tail``): the node running from frame 0, as a
robot's would, has learned its tilt and scale on the frames before, without labels; ``sfm_eval pose
--frames 120:160`` starts cold on them.

Drives: rendered streets (:func:`sfm_ros.data.synthetic.render_sequence`, 128x416, 10 Hz, 6 m/s,
camera 1.5 m, mean yaw rates ``--yaw-rates``; the shipped model trained on seeds 0-39, ``make demo``
plays 999, bench_streets 500-502: seeds 700+ are untuned) of ``--frames`` frames, stopping where ``--stops``
says (``START:DURATION,...`` seconds: the car brakes, stands still and pulls away,
:mod:`sfm_ros.data.speed_profile`; printed) and climbing and falling with grades up to ``--hills``
(rise over run, :mod:`sfm_ros.data.terrain`; printed), and KITTI 00 frames 0-159 (camera 1.65 m) when
``--kitti`` exists.
A long drive: ``--seeds 730 --frames 1900 --yaw-rates 0.015 --stops 40:6,95:10,150:4 --kitti /nonexistent``
(985 m, three stops; a kilometre needs a gentle curve: at the default rates the street winds back
into itself); add ``--hills 0.06`` for 6 % grades. ``--set refine_pose=none`` etc. change a setting (printed).
The node's corner budget (which takes corners off when a frame takes too long on the running
CPU) is held at the refiner's default, so the figures do not depend on the machine's load (printed).
The last line is the JSON result.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def play(est, images, stamps, K, camera_height: float, settings: dict, hurry_every: int = 0):
    """The node pipeline's camera poses (odom frame, first camera at the identity) over ``images``,
    the indices of the frames that produced them, and the per-frame time (ms). ``hurry_every`` > 0:
    the rotation window measures no baseline on every N-th refined frame (the node's hurry)."""
    import numpy as np

    from sfm_ros.core.se3 import invert_pose
    from sfm_ros.runtime.frames import InputFrame
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.runtime.pipeline import FramePipeline, Settings

    T_base_cam = camera_extrinsic()
    pl = FramePipeline(est, T_base_cam, Settings(camera_height=camera_height,
                                                 intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]), **settings))
    idx, poses, ms, covs = [], [], [], []
    if hurry_every > 0:  # as the node when a newer frame waits: the window measures no baseline
        calls = itertools.count()
        pl.behind = lambda: next(calls) % hurry_every == hurry_every - 1
    for i, (img, t) in enumerate(zip(images, stamps)):
        t0 = time.perf_counter()
        r = pl.process(InputFrame(stamp=float(t), t=float(t), frame_id="camera", recv=0.0, image=img))
        ms.append(1000.0 * (time.perf_counter() - t0))
        if r is not None and r.odometry is not None:
            idx.append(i)
            poses.append(r.odometry.T_odom_base @ T_base_cam)
            covs.append(None if r.odometry.first else r.odometry.twist_covariance)
    r = pl._refiner
    play.tilt = (f"{r.tilt.tilt_deg:.2f} deg ({len(r.tilt.measurements)} measurements)"
                 if r is not None and r.ground_tilt else "off")
    pl.close()
    play.twist_covariances = covs
    poses = np.stack(poses)
    return np.asarray(idx), invert_pose(poses[0]) @ poses, np.asarray(ms)


def step_nees(gt, est, twist_cov, stamps) -> tuple[list, list]:
    """The published increments' NEES per base-frame axis (x y z roll pitch yaw): each increment's
    error against the truth's (translation in metres as published, rotation as a rotation vector,
    in the base frame it starts from) over its covariance, the twist covariance times dt² (``None``:
    the odometry restarted there, no increment published); the mean over increments, and the band in which 95 % of the means fall for a consistent one
    (chi-square of one degree, averaged over the increments)."""
    import numpy as np
    from scipy.stats import chi2

    from sfm_ros.core.se3 import invert_pose, matrix_to_pose_vec
    from sfm_ros.runtime.odometry import camera_extrinsic

    B = camera_extrinsic()
    Bi = invert_pose(B)
    err, var = [], []
    for k in range(1, len(est)):
        dt = float(stamps[k] - stamps[k - 1])
        if dt <= 0 or twist_cov[k] is None:
            continue
        g = B @ invert_pose(gt[k - 1]) @ gt[k] @ Bi
        e = B @ invert_pose(est[k - 1]) @ est[k] @ Bi
        err.append(matrix_to_pose_vec(invert_pose(g) @ e))
        var.append(np.diag(twist_cov[k]) * dt * dt)
    err, var = np.asarray(err), np.asarray(var)
    n = len(err)
    return list(map(float, (err ** 2 / var).mean(0))), [float(chi2.ppf(0.025, n) / n), float(chi2.ppf(0.975, n) / n)]


def score(gt, est) -> dict:
    """Segment drift, step-length ratio and snippet ATE of camera poses ``est`` against ``gt``."""
    import numpy as np

    from sfm_ros.evaluation.segment_drift import choose_lengths, drift_report, path_distances, rotation_drift_axes
    from sfm_ros.evaluation.trajectory import relative_poses, snippet_ate

    lengths = choose_lengths(float(path_distances(gt)[-1]))
    rep = drift_report(gt, est, lengths)
    step_gt = np.linalg.norm(relative_poses(gt)[:, :3, 3], axis=1)
    step_est = np.linalg.norm(relative_poses(est)[:, :3, 3], axis=1)
    moving = step_gt > 0.05
    ratio = step_est[moving] / step_gt[moving]
    sn = snippet_ate(gt, est, 5, est_is_relative=False)
    axes = rotation_drift_axes(gt, est, lengths)
    return {"path_m": float(path_distances(gt)[-1]), "lengths": list(lengths),
            "t_err_pct": rep["as_published"]["t_err_pct"], "r_err_deg_per_100m": rep["as_published"]["r_err_deg_per_100m"],
            "r_err_pitch_yaw_roll": [float(v) for v in axes] if axes is not None else None,
            "t_err_pct_global_scale": rep["global_scale"]["t_err_pct"],
            "step_ratio_median": float(np.median(ratio)),
            "step_ratio_quartiles": [float(np.percentile(ratio, 25)), float(np.percentile(ratio, 75))],
            "snippet_ate": float(sn["mean"])}


def _typed(pairs: list[str], defaults) -> dict:
    """``NAME=VALUE`` texts as values of the type of ``defaults``' attribute NAME (bools: true/false)."""
    out = {}
    for pair in pairs:
        k, v = pair.split("=", 1)
        default = getattr(defaults, k)
        out[k] = (v.lower() == "true") if isinstance(default, bool) else type(default)(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "sfm_default.pt"))
    ap.add_argument("--seeds", default="700,701,702")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--yaw-rates", default="0.04,-0.05,0.03",
                    help="mean yaw rate (rad/s) of each street: long drives need gentle curves (default 0.04,-0.05,0.03)")
    ap.add_argument("--kitti", type=Path, default=REPO.parent / "shared" / "data" / "kitti_odom_00")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="a pipeline setting NAME=VALUE (repeatable)")
    ap.add_argument("--kitti-tail", type=int, default=120, metavar="N",
                    help="also score KITTI's frames N-159 alone, as the node published them running from frame 0 "
                         "(its tilt and scale learned online, without labels, on the frames before; default 120; "
                         "0: not)")
    ap.add_argument("--hurry-every", type=int, default=0, metavar="N",
                    help="the rotation window measures no baseline on every N-th refined frame, as the node's "
                         "does when a newer frame waits (0: never, the default; printed)")
    ap.add_argument("--stops", default="", metavar="START:DURATION,...",
                    help="the rendered streets stop at these seconds for these seconds (default: none; printed)")
    ap.add_argument("--hills", type=float, default=0.0, metavar="GRADE",
                    help="the rendered streets climb and fall with grades up to GRADE (rise over run, e.g. 0.06; "
                         "default 0: flat; printed)")
    ap.add_argument("--refiner", action="append", default=[],
                    help="a Refiner option NAME=VALUE (repeatable; e.g. tilt_chord=4; ground_tilt is the "
                         "node's setting: --set ground_tilt=false)")
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.runtime.model_loading import load_estimator

    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    from sfm_ros.runtime.settings import Settings

    settings = _typed(args.set, Settings())
    est, _ = load_estimator(args.checkpoint, device="cpu", num_threads=args.threads)
    # The node's corner budget adapts the refiner's corners to the time a frame takes on this CPU
    # (and its load); fixed here at the refiner's default, so that figures do not depend on the load.
    import sfm_ros.runtime.motion as motion

    class FixedBudget(motion.CornerBudget):
        def update(self, *a, **k) -> None:
            pass

    motion.CornerBudget = FixedBudget
    refiner_opts = _typed(args.refiner, motion.Refiner())
    if "ground_tilt" in refiner_opts:  # the pipeline passes its setting, which would win
        ap.error("ground_tilt is the node's setting: give it as --set ground_tilt=false")
    if refiner_opts:
        base = motion.Refiner

        def refiner(mode="epipolar", **kw):
            return base(mode, **{**refiner_opts, **kw})
        motion.Refiner = refiner
    from common import machine_info  # noqa: E402

    if args.hurry_every < 0:
        ap.error(f"--hurry-every must be >= 0, got {args.hurry_every}")
    from sfm_ros.data.speed_profile import parse_stops

    try:
        stops = parse_stops(args.stops)
    except ValueError as e:
        ap.error(f"--stops: {e}")
    from sfm_ros.data.terrain import MAX_GRADE

    if not 0.0 <= args.hills <= MAX_GRADE:
        ap.error(f"--hills must be a grade (rise over run) in [0, {MAX_GRADE}], got {args.hills}")
    hurry = f"; window hurried on every {args.hurry_every}-th refined frame" if args.hurry_every > 0 else ""
    print(f"{machine_info()}; checkpoint {args.checkpoint}; settings {settings or 'node defaults'}; refiner "
          f"{refiner_opts or 'defaults'}{hurry}; streets' stops {list(stops) or 'none'}, hills {args.hills or 'none'}; corner budget fixed "
          f"at the refiner's {motion.Refiner().max_corners} corners", flush=True)
    results = {}
    drives = [("seed", int(s)) for s in args.seeds.split(",") if s] + ([("kitti", 0)] if args.kitti.is_dir() else [])
    yaws = [float(y) for y in args.yaw_rates.split(",")]
    for d, (kind, seed) in enumerate(drives):
        if kind == "seed":
            seq = render_sequence(num_frames=args.frames, seed=seed, yaw_rate=yaws[d % len(yaws)],
                                  stops=stops, hills=args.hills)
            images, stamps, K, gt, h, name = seq.images, seq.timestamps, seq.K, seq.poses, 1.5, f"street {seed}"
        else:
            from sfm_ros.data.sources import read_image, read_kitti_odometry

            k = read_kitti_odometry(args.kitti)
            n = min(len(k), 160)
            images = [read_image(p) for p in k.image_paths[:n]]
            stamps, K, gt, h, name = k.stamps[:n], k.camera.K, k.poses[:n], 1.65, "KITTI 00 0-159"
        idx, poses, ms = play(est, images, stamps, K, h, settings, args.hurry_every)
        from sfm_ros.core.se3 import invert_pose

        g = invert_pose(gt[idx[0]]) @ gt[idx]
        r = score(g, poses)
        r["step_nees"], r["nees_band"] = step_nees(g, poses, play.twist_covariances, np.asarray(stamps)[idx])
        r["frame_ms_p50"], r["frame_ms_p95"] = float(np.median(ms)), float(np.percentile(ms, 95))
        r["ground_tilt"] = play.tilt
        results[name] = r
        print(f"{name}: {r['path_m']:.0f} m, lengths {r['lengths']}: t_err {r['t_err_pct']:.2f} % "
              f"(one global scale {r['t_err_pct_global_scale']:.2f} %), r_err {r['r_err_deg_per_100m']:.2f} deg/100 m "
              f"(by the camera's axes, pitch / yaw / roll {' / '.join(f'{v:.2f}' for v in r['r_err_pitch_yaw_roll'] or [])}), "
              f"step ratio {r['step_ratio_median']:.3f} ({r['step_ratio_quartiles'][0]:.3f}-"
              f"{r['step_ratio_quartiles'][1]:.3f}), snippet ATE {r['snippet_ate']:.4f} m, frame "
              f"{r['frame_ms_p50']:.0f}/{r['frame_ms_p95']:.0f} ms p50/p95, ground tilt {r['ground_tilt']}; step NEES "
              f"x y z / roll pitch yaw {' '.join(f'{v:.2f}' for v in r['step_nees'][:3])} / "
              f"{' '.join(f'{v:.2f}' for v in r['step_nees'][3:])} (95 % band {r['nees_band'][0]:.2f}-"
              f"{r['nees_band'][1]:.2f})", flush=True)
        if kind == "kitti" and 0 < args.kitti_tail < n - 10:
            sel = idx >= args.kitti_tail
            g_t, p_t = invert_pose(g[sel][0]) @ g[sel], invert_pose(poses[sel][0]) @ poses[sel]
            t = score(g_t, p_t)
            results[f"KITTI 00 {args.kitti_tail}-{n - 1} (the node from frame 0)"] = t
            print(f"KITTI 00 {args.kitti_tail}-{n - 1} alone, as the node published them running from frame 0: "
                  f"{t['path_m']:.0f} m, lengths {t['lengths']}: t_err {t['t_err_pct']:.2f} % (one global scale "
                  f"{t['t_err_pct_global_scale']:.2f} %), r_err {t['r_err_deg_per_100m']:.2f} deg/100 m, step ratio "
                  f"{t['step_ratio_median']:.3f}, snippet ATE {t['snippet_ate']:.4f} m", flush=True)
    streets = [v for k, v in results.items() if k.startswith("street")]
    if streets:
        print(f"streets mean: t_err {np.mean([v['t_err_pct'] for v in streets]):.2f} %, r_err "
              f"{np.mean([v['r_err_deg_per_100m'] for v in streets]):.2f} deg/100 m, step ratio "
              f"{np.mean([v['step_ratio_median'] for v in streets]):.3f}")
    print(json.dumps({"settings": settings, "refiner": refiner_opts, "hurry_every": args.hurry_every,
                      "stops": list(stops), "hills": args.hills, "results": results}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
