"""Segment drift: the KITTI odometry benchmark's translational and rotational error.

Definition (KITTI devkit ``evaluate_odometry.cpp``, ``calcSequenceErrors``), for poses that are
camera-to-world 4x4 ``T_w_c`` (``(N, 4, 4)``, ground truth and prediction of the same frames):

* the path length ``d[k]`` is the cumulative distance along the **ground-truth** positions;
* for every start frame ``i`` (every ``step``-th frame; the devkit uses 10 at KITTI's 10 Hz) and
  every segment length ``L``, the end frame ``j`` is the first frame with ``d[j] > d[i] + L``
  (as the devkit's ``lastFrameFromSegmentLength``; no such frame: no segment);
* ``E = inv(inv(T_i) T_j of the ground truth) @ (inv(T_i) T_j of the prediction)``; the devkit
  writes the inverse of this product, which has the same translation norm and rotation angle;
* ``t_err = |translation of E| / L`` and ``r_err = rotation angle of E / L``, averaged over all
  ``(i, L)`` pairs (the devkit's sequence figure).

Reported in the field's units: ``t_err`` in % and ``r_err`` in degrees per 100 m. The devkit's
lengths are 100..800 m; :func:`choose_lengths` picks lengths that fit a shorter path. "As
published" scores the prediction as it is (metric only when its scale is: the camera height, a
metric ground truth ...); "after one global scale" multiplies every predicted position by the one
scale of the Sim(3) Umeyama alignment of the whole trajectory to the ground truth (as the ATE's),
which leaves the rotations, so ``r_err`` is the same. Pure numpy, ROS-free.
"""
from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.se3 import invert_pose, matrix_to_axis_angle
from sfm_ros.data.pose_files import as_poses
from sfm_ros.evaluation.trajectory import umeyama

__all__ = ["KITTI_LENGTHS", "KITTI_STEP", "path_distances", "choose_lengths", "segment_errors", "segment_drift",
           "rotation_drift_axes", "drift_report"]

#: the devkit's segment lengths (m) and start-frame step
KITTI_LENGTHS = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
KITTI_STEP = 10


def path_distances(poses: np.ndarray) -> np.ndarray:
    """Cumulative distance along the positions of ``poses`` (N, 4, 4): (N,), ``d[0] = 0``."""
    P = as_poses(poses, "poses")
    steps = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def choose_lengths(path_length: float) -> tuple[float, ...]:
    """Segment lengths (m, or the ground truth's unit) that fit a path of ``path_length``: the
    devkit's 100..800 when the path is longer than 800, else a doubling ladder ``b, 2b, 4b, ...``
    shorter than the path, ``b`` = 10 for paths of 20 or more (10, 20, 40, 80, ...), else the
    power of ten at or below half the path (a 5 m path: 1, 2, 4). Empty for a path that does not move."""
    if not path_length > 0 or not math.isfinite(path_length):
        return ()
    if path_length > KITTI_LENGTHS[-1]:
        return KITTI_LENGTHS
    base = min(10.0, 10.0 ** math.floor(math.log10(path_length / 2)))
    out, L = [], base
    while L < path_length:
        out.append(L)
        L *= 2
    return tuple(out)


def segment_errors(gt_poses: np.ndarray, est_poses: np.ndarray, lengths, step: int = 1) -> np.ndarray:
    """Every segment's error: an (M, 4) array of ``(start frame, length, t_err, r_err)``, ``t_err``
    as a fraction of the length and ``r_err`` in radians per length unit (module doc)."""
    rows = [(i, L, np.linalg.norm(E[:3, 3]) / L, float(np.linalg.norm(matrix_to_axis_angle(E[:3, :3]))) / L)
            for i, L, _, E in _segments(gt_poses, est_poses, lengths, step)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _segments(gt_poses: np.ndarray, est_poses: np.ndarray, lengths, step: int) -> list[tuple]:
    """``(start frame, length, G, E)`` of every segment (module doc): ``G`` (4, 4) the true motion
    over it, ``E`` = G⁻¹ P its error (P the predicted motion)."""
    gt = as_poses(gt_poses, "gt_poses")
    est = as_poses(est_poses, "est_poses")
    if gt.shape != est.shape:
        raise ValueError(f"gt_poses and est_poses must have the same shape, got {gt.shape} and {est.shape}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    Ls = np.asarray(lengths, dtype=np.float64).reshape(-1)
    if Ls.size and not (np.all(np.isfinite(Ls)) and np.all(Ls > 0)):
        raise ValueError(f"segment lengths must be finite and > 0, got {Ls.tolist()}")
    d = path_distances(gt)
    gt_inv, est_inv = invert_pose(gt), invert_pose(est)
    out = []
    for i in range(0, len(gt), step):
        for L in Ls:
            after = np.nonzero(d[i:] > d[i] + L)[0]
            if not after.size:
                continue
            j = i + int(after[0])
            G = gt_inv[i] @ gt[j]
            out.append((i, float(L), G, invert_pose(G) @ (est_inv[i] @ est[j])))
    return out


def rotation_drift_axes(gt_poses: np.ndarray, est_poses: np.ndarray, lengths, step: int = 1) -> np.ndarray | None:
    """The rotation drift split by the axes of the segment's first camera: the mean, over the
    segments of :func:`segment_errors`, of each component's magnitude of the error's rotation
    vector, in degrees per 100 length units, ``(3,)`` (x, y, z; for a forward-looking camera in the
    optical frame: pitch, yaw, roll). Which of them drifts tells what can cure it (the ground fixes
    pitch and roll, not the heading). Their sum bounds ``r_err`` from above. None when no segment fits."""
    # E = G⁻¹ P is a rotation about axes of the segment's end camera; G E G⁻¹, the same error
    # applied on the left, turns its rotation vector into the first camera's axes: R_G ω
    parts = [np.abs(G[:3, :3] @ matrix_to_axis_angle(E[:3, :3])) / L
             for _, L, G, E in _segments(gt_poses, est_poses, lengths, step)]
    if not parts:
        return None
    return np.degrees(np.mean(parts, axis=0)) * 100.0


def segment_drift(gt_poses: np.ndarray, est_poses: np.ndarray, lengths, step: int = 1) -> dict | None:
    """The mean segment drift over every ``(start, length)`` pair (:func:`segment_errors`):
    ``t_err_pct`` (%), ``r_err_deg_per_100m`` (degrees per 100 length units), ``segments`` and
    ``per_length`` (the same per length, lengths without a segment left out); None when no
    segment fits."""
    err = segment_errors(gt_poses, est_poses, lengths, step)
    if not len(err):
        return None

    def figures(e: np.ndarray) -> dict:
        return {"t_err_pct": float(100.0 * e[:, 2].mean()),
                "r_err_deg_per_100m": float(math.degrees(e[:, 3].mean()) * 100.0), "segments": int(len(e))}
    per_length = [{"length": float(L), **figures(err[err[:, 1] == L])} for L in np.unique(err[:, 1])]
    return {**figures(err), "per_length": per_length}


def drift_report(gt_poses: np.ndarray, est_poses: np.ndarray, lengths, step: int = 1) -> dict:
    """Segment drift as published and after one global scale (module doc): ``{"as_published":
    segment_drift or None, "global_scale": segment_drift or None, "scale": the Sim(3) scale or
    None}``; ``global_scale`` is None for a prediction that never moves (no scale to fit)."""
    gt = as_poses(gt_poses, "gt_poses")
    est = as_poses(est_poses, "est_poses")
    out: dict = {"as_published": segment_drift(gt, est, lengths, step), "global_scale": None, "scale": None}
    if out["as_published"] is None or len(gt) < 2:
        return out
    try:
        s = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=True)[0]
    except ValueError as exc:
        if "coincide" not in str(exc):
            raise
        return out
    scaled = est.copy()
    scaled[:, :3, 3] *= s
    out["global_scale"] = segment_drift(gt, scaled, lengths, step)
    out["scale"] = float(s)
    return out
