#!/usr/bin/env python3
"""Would a navigation filter weight the node's odometry sensibly? Its twist, fused with wheel odometry.

    .venv/bin/python bench/bench_fusion.py [--checkpoint models/sfm_default.pt] [--frames 0:160]
        [--camera-height 1.65] [--seeds 5] [--threads 2]

robot_localization's sensor contract for an odometry source: ``nav_msgs/Odometry`` with the
twist in ``child_frame_id`` (``base_link``), the pose in ``header.frame_id`` (``odom``, REP-105),
and covariances that say how much to trust each. This plays KITTI 00 frames through the node's
own pipeline (:class:`sfm_ros.runtime.pipeline.FramePipeline`, the node's defaults, metres from
``camera_height``, the camera's intrinsics as the ``intrinsics`` parameter) and checks what such
a filter does with the published :class:`~sfm_ros.runtime.odometry.OdomEstimate`:

1. the twist's normalised estimation error squared per axis (vx vy vz wx wy wz of ``base_link``)
   against the ground truth's twist, with the published twist covariance, and its 95 %
   chi-square band;
2. a planar EKF with robot_localization's ``two_d_mode`` state and motion model (x y yaw, body
   vx vy vyaw; constant velocity; its default process noise) fusing the twist of a simulated
   wheel odometry (the true speed 2 % long plus 0.05 m/s noise, the true yaw rate plus a
   0.01 rad/s bias and 0.02 rad/s noise, declared as sd 0.05 m/s + 2 % and 0.03 rad/s) alone, the
   node's twist (vx vy vyaw with its covariance) alone, and both: the end position error, the
   largest position error and the end heading error (no alignment: metres from the camera height),
   mean over ``--seeds`` noise draws; and the node's twist measurements' Mahalanobis distance to
   the fused filter's prediction (the share beyond the 99 % gate of three dimensions, 11.34:
   what ``twist0_rejection_threshold`` would reject).

The EKF is a yardstick written here (robot_localization is not installable from PyPI), not part
of the package. The last line is the JSON result.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KITTI, emit, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
#: robot_localization's default process_noise_covariance diagonal for x y yaw vx vy vyaw (per second)
PROCESS_NOISE = (0.05, 0.05, 0.06, 0.025, 0.025, 0.02)
CHI2_3_99 = 11.345
CHI2_2_95 = 5.991


def node_odometry(checkpoint: str, frames: tuple[int, int], camera_height: float):
    """The node pipeline's odometry over KITTI 00 frames ``[a, b)``: (stamps, estimates, true
    base poses in the first frame's base)."""
    import numpy as np

    from sfm_ros.data.sources import read_image, read_kitti_odometry
    from sfm_ros.runtime.frames import InputFrame
    from sfm_ros.runtime.model_loading import load_estimator
    from sfm_ros.runtime.odometry import camera_extrinsic, camera_to_base
    from sfm_ros.runtime.pipeline import FramePipeline, Settings
    from sfm_ros.core.se3 import invert_pose

    seq = read_kitti_odometry(KITTI)
    a, b = frames
    est, _ = load_estimator(checkpoint, device="cpu")
    K = seq.camera.K
    T_base_cam = camera_extrinsic()
    pl = FramePipeline(est, T_base_cam, Settings(camera_height=camera_height,
                                                 intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2])))
    stamps, outs = [], []
    for i in range(a, min(b, len(seq))):
        t = float(seq.stamps[i])
        r = pl.process(InputFrame(stamp=t, t=t, frame_id="camera", recv=0.0, image=read_image(seq.image_paths[i])))
        if r is not None and r.odometry is not None:
            stamps.append(t)
            outs.append((i, r.odometry))
    P0 = invert_pose(seq.poses[a])
    gt = np.stack([camera_to_base(P0 @ seq.poses[i], T_base_cam) for i, _ in outs])
    pl.close()
    return np.asarray(stamps), [o for _, o in outs], gt


def true_twists(stamps, gt):
    """Body twists (vx vy vz wx wy wz of base_link) between consecutive true base poses."""
    import numpy as np

    from sfm_ros.core.se3 import se3_log
    from sfm_ros.evaluation.trajectory import relative_poses

    tw = np.zeros((len(gt), 6))
    tw[1:] = se3_log(relative_poses(gt)) / np.diff(stamps)[:, None]
    return tw


class PlanarEKF:
    """robot_localization's two_d_mode EKF, reduced: state ``[x, y, yaw, vx, vy, vyaw]``, omnidirectional
    constant-velocity motion, twist measurements ``[vx, vy, vyaw]`` with their covariance."""

    def __init__(self):
        import numpy as np

        self.s = np.zeros(6)
        self.P = np.diag([1e-9, 1e-9, 1e-9, 1.0, 1.0, 1.0])

    def predict(self, dt: float) -> None:
        import numpy as np

        x, y, th, vx, vy, w = self.s
        c, s = np.cos(th), np.sin(th)
        self.s = np.array([x + (vx * c - vy * s) * dt, y + (vx * s + vy * c) * dt, th + w * dt, vx, vy, w])
        F = np.eye(6)
        F[0, 2], F[0, 3], F[0, 4] = (-vx * s - vy * c) * dt, c * dt, -s * dt
        F[1, 2], F[1, 3], F[1, 4] = (vx * c - vy * s) * dt, s * dt, c * dt
        F[2, 5] = dt
        self.P = F @ self.P @ F.T + np.diag(PROCESS_NOISE) * dt

    def update_twist(self, z, R) -> float:
        """Fuse ``z = [vx, vy, vyaw]`` with covariance ``R`` (3x3); returns its Mahalanobis distance²."""
        import numpy as np

        H = np.zeros((3, 6))
        H[0, 3] = H[1, 4] = H[2, 5] = 1.0
        nu = np.asarray(z) - H @ self.s
        S = H @ self.P @ H.T + R
        d2 = float(nu @ np.linalg.solve(S, nu))
        Kg = self.P @ H.T @ np.linalg.inv(S)
        self.s = self.s + Kg @ nu
        self.P = (np.eye(6) - Kg @ H) @ self.P
        self.P = 0.5 * (self.P + self.P.T)
        return d2


def _yaw(T) -> float:
    """The heading (rad) of a pose in odom (REP-103: about z)."""
    from sfm_ros.core.se3 import matrix_to_rpy

    return float(matrix_to_rpy(T[:3, :3])[2])


def fuse(stamps, gt, vo, wheel, use_wheel: bool, use_vo: bool) -> dict:
    """Run the EKF over the sequence; errors against the true planar poses."""
    import numpy as np

    ekf = PlanarEKF()
    d2s, traj = [], []
    for k in range(len(stamps)):
        if k:
            ekf.predict(stamps[k] - stamps[k - 1])
        if use_wheel and k:
            ekf.update_twist(*wheel[k])
        if use_vo:
            d2 = ekf.update_twist(*vo[k])
            if k > 2:
                d2s.append(d2)
        traj.append(ekf.s[:3].copy())
    traj = np.asarray(traj)
    pos_err = np.linalg.norm(traj[:, :2] - gt[:, :2, 3], axis=1)
    head = float(np.degrees(math.remainder(traj[-1, 2] - _yaw(gt[-1]), 2 * math.pi)))
    out = {"end_position_error_m": float(pos_err[-1]), "max_position_error_m": float(pos_err.max()),
           "end_heading_error_deg": head}
    if d2s:
        d2s = np.asarray(d2s)
        out |= {"vo_mahalanobis2_median": float(np.median(d2s)), "vo_beyond_99": float(np.mean(d2s > CHI2_3_99))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "sfm_default.pt"))
    ap.add_argument("--frames", default="0:160", help="KITTI 00 frames A:B (default 0:160: the 16 s drive)")
    ap.add_argument("--camera-height", type=float, default=1.65, help="metres (KITTI: 1.65)")
    ap.add_argument("--seeds", type=int, default=5, help="wheel-odometry noise draws (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    from scipy.stats import chi2

    torch.set_num_threads(args.threads)
    if not (KITTI / "image_0").is_dir():
        print(f"no KITTI frames under {KITTI}: nothing measured", file=sys.stderr)
        return 1
    a, b = (int(x) for x in args.frames.split(":"))
    stamps, odo, gt = node_odometry(args.checkpoint, (a, b), args.camera_height)
    tw = true_twists(stamps, gt)
    pub = np.stack([np.r_[o.linear, o.angular] for o in odo])
    cov = np.stack([o.twist_covariance for o in odo])
    n = len(stamps) - 1
    e = (pub - tw)[1:]
    var = np.stack([np.diag(c) for c in cov])[1:]
    nees = (e ** 2 / var).mean(0)
    band = (chi2.ppf(0.025, n) / n, chi2.ppf(0.975, n) / n)
    idx = [0, 1, 5]
    vo = [(p[idx], c[np.ix_(idx, idx)]) for p, c in zip(pub, cov)]
    out = {"machine": machine_info(), "frames": args.frames, "camera_height": args.camera_height,
           "twists": n, "twist_nees": dict(zip(["vx", "vy", "vz", "wx", "wy", "wz"], map(float, nees))),
           "band": list(map(float, band)), "twist_rms_error": dict(zip(["vx", "vy", "vz", "wx", "wy", "wz"],
                                                                       map(float, np.sqrt((e ** 2).mean(0)))))}
    print(f"{n} twists of KITTI 00 {args.frames} through the node's pipeline (camera_height "
          f"{args.camera_height:g} m): NEES per axis vx vy vz wx wy wz "
          + " ".join(f"{x:.2f}" for x in nees) + f" (95 % band [{band[0]:.2f}, {band[1]:.2f}])")
    # the node's own pose at the end (odom, REP-105) against the truth: heading and position, with
    # the published pose covariance
    T_end, P_end = odo[-1].T_odom_base, odo[-1].pose_covariance
    head_err = float(np.degrees(math.remainder(_yaw(T_end) - _yaw(gt[-1]), 2 * math.pi)))
    e_xy = T_end[:2, 3] - gt[-1, :2, 3]
    d2_xy = float(e_xy @ np.linalg.solve(P_end[:2, :2], e_xy))
    out["end_pose"] = {"heading_error_deg": head_err, "heading_2sigma_deg": float(2 * np.degrees(np.sqrt(P_end[5, 5]))),
                       "position_error_m": float(np.linalg.norm(e_xy)), "position_mahalanobis2": d2_xy,
                       "position_sd_m": [float(x) for x in np.sqrt(np.diag(P_end[:2, :2]))]}
    print(f"the node's pose at the end: heading error {head_err:+.2f}° (published 2σ "
          f"{out['end_pose']['heading_2sigma_deg']:.2f}°), position error {np.linalg.norm(e_xy):.2f} m (published sd "
          f"x {np.sqrt(P_end[0, 0]):.2f} m, y {np.sqrt(P_end[1, 1]):.2f} m; Mahalanobis² {d2_xy:.2f}, 95 % of two "
          f"dimensions: {CHI2_2_95})")
    runs = {"wheel": (True, False), "node": (False, True), "wheel + node": (True, True)}
    res = {k: [] for k in runs}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        wheel = []
        for t in tw:
            v, w = t[0], t[5]
            z = np.array([1.02 * v + 0.05 * rng.standard_normal(), 0.0, w + 0.01 + 0.02 * rng.standard_normal()])
            wheel.append((z, np.diag([(0.05 + 0.02 * abs(v)) ** 2, 0.01 ** 2, 0.03 ** 2])))
        for k, (uw, uv) in runs.items():
            res[k].append(fuse(stamps, gt, vo, wheel, uw, uv))
    out["fusion"] = {}
    for k, rs in res.items():
        m = {key: float(np.mean([r[key] for r in rs])) for key in rs[0]}
        out["fusion"][k] = m
        extra = (f"; the node's twist: Mahalanobis² median {m['vo_mahalanobis2_median']:.2f}, "
                 f"{100 * m['vo_beyond_99']:.0f} % beyond the 99 % gate") if "vo_beyond_99" in m else ""
        print(f"{k:>13}: end position error {m['end_position_error_m']:.2f} m, largest "
              f"{m['max_position_error_m']:.2f} m, end heading error {m['end_heading_error_deg']:+.2f}°{extra}")
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
