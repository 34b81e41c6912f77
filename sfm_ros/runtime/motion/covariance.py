"""The covariance of a refined frame-to-frame motion, from what the refinement measured: the
two-view (Sampson) residuals, inliers and parallax, the photometric alignment's Gauss-Newton
information and residual, or the pose network's calibrated errors; a rotation the rotation window
fused, from how far the window's predictions of it fell apart.

Convention: a (6, 6) covariance of ``Refinement.T`` (``T_ref_new``) in the reference camera's
optical frame, ordered ``[tx, ty, tz, rx, ry, rz]``, translation in the network's depth units,
rotation errors right-multiplied (``R exp(δ)``). ROS-free, numpy only.

The constants are calibrated on KITTI 00 frames 0-119 against ground truth (a model trained on
those frames; the reported frames 120-159 and 7-Scenes never used) unless a comment says
otherwise; each comment names the measurement. ``*_GAIN`` constants are dimensionless factors
between a measured spread and the error it predicts.
"""
from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.se3 import matrix_to_axis_angle, skew
from sfm_ros.runtime.motion.result import Refinement, ScaleFrom, Used, WindowFusion

__all__ = ["motion_covariance", "epipolar_covariance", "epipolar_noise_var", "fused_rotation_covariance",
           "rotation_from_window"]

#: rotation error of a rotation-only refinement = ROT_GAIN x residual / (focal x sqrt(inliers)) per
#: axis (measured 30-34 for epipolar refinements)
ROT_GAIN = 32.0
#: relative error of a step length put on the depth's scale on this frame (``scale_from`` depth) =
#: LEN_GAIN x the spread of the per-corner depth ratios (inter-quartile range / median / sqrt(corners))
#: (measured 12.3 and 14.5 for two models)
LEN_GAIN = 13.0
#: least relative error of such a length (a floor, not measured apart)
MIN_LEN_REL = 0.05
#: least relative error of a length from the length filter on the depth's scale: its variance
#: treats the depth comparisons as independent, but the learned depth's scale wanders with
#: correlated errors from frame to frame (std of log(depth baseline / true length) 0.143 on KITTI
#: 00 frames 0-119, of the filtered length 0.067). Stretches where it swings more are taken by the
#: filter's measured wander (:meth:`sfm_ros.runtime.motion.length_filter.LengthFilter.wander`; 0.21
#: on 120-159), so the floor is the filtered error with a margin (length NEES on 0-119: 0.34 with
#: this floor, 0.19 with 0.15). With the ground's homography the floor is GROUND_LEN_REL.
MIN_FILTERED_LEN_REL = 0.10
#: relative error of a step length measured by the ground's homography (``camera_height``; measured
#: std of its log 0.077 on KITTI 00 frames 0-119 with the nominal "down")
GROUND_LEN_REL = 0.08
#: relative sd of the error of the ground's metres that persists over a run (the odometry's
#: ``OdomNoise.scale_rel`` with ``camera_height``): the lengths move ~9 % per degree of the
#: mount's pitch (measured on KITTI 00), taken as known to 0.5°; the median step ratio was 1.04 on
#: KITTI 00 0-119 and 1.09 on 120-159 with the nominal "down". With the tilt measured from the
#: direction of travel (the Refiner's ``ground_tilt``, on by default) the drives of bench_drift.py
#: read 0.973-1.038 (KITTI 00 0-159: 1.010); kept, as the chords' tilt wanders by ±0.5° along a
#: real road (KITTI 00) and a drive it has not seen may sit further off
GROUND_SCALE_REL = 0.05
#: relative error of a step length on the depth's scale of recent frames (also used, not calibrated
#: apart, for the network's length on the ground's scale of recent frames) (``scale_from`` depth ratio;
#: measured rms 0.165 with the shipped model)
DEPTH_RATIO_LEN_REL = 0.2
#: the pose network's own motion: rotation per camera axis x, y, z (rad; measured rms 0.0027, 0.019-0.022,
#: 0.0028 for two models: the turn about the vertical y is what it gets most wrong), direction
#: (rad; measured 14-15° mean), length (relative)
NETWORK_ROT = (0.004, 0.025, 0.004)
NETWORK_DIR = 0.3
NETWORK_LEN_REL = 0.5
#: the Gauss-Newton covariance of a two-view motion is GN_GAIN² x residual² x (JᵀJ)⁻¹ (calibrated
#: with the floors below on the NEES per camera axis of KITTI 00 0-119's epipolar motions;
#: BENCHMARKS.md, "Odometry covariance from the refinement")
GN_GAIN = 6.0
#: below this many inliers the covariance grows as 1/n² rather than 1/n (unmodelled errors
#: dominate; a choice, not measured apart)
FEW_INLIERS = 100
#: least Sampson residual spread (pixels) the covariance assumes (a floor, not measured apart)
MIN_RESIDUAL_PX = 0.05
#: a still camera's translation standard deviation (network units) when no depth bounds it (a
#: floor, not measured)
STILL_LEN = 0.01
#: floors (rad): no rotation is known better than this (KITTI 00 0-119: with 2e-4 the frames that
#: barely turn had rotation NEES 3.0-3.4 about x and z)
MIN_ROT = 5e-4
#: a rotation measured from corners while the camera moves sideways is further off by up to this
#: fraction of its angle, per axis, scaled by the sideways share of the motion (``|t_xy| / |t|``):
#: a turn about the camera's x or y trades with a sideways translation (the bas-relief ambiguity
#: of a narrow field of view), which forward motion does not have. Chosen on the tuning frames
#: (KITTI 00 0-119, forward, sideways share 0.02; 7-Scenes redkitchen 0-399, hand-held, 0.94),
#: where 7-Scenes' rotations about x and y came out 15-22 % short of its ground truth
ROT_REL = 0.15
#: floor of the direction's error (rad, 0.46°; KITTI 00 0-119: ty NEES 1.60 with 5e-3, 1.18 with 8e-3)
MIN_DIR = 8e-3
#: the covariance of a photometric motion is PHOTO_GAIN² x residual² x (JᵀWJ)⁻¹ (the pixels' errors
#: are neither independent nor only image noise: the learned depth's errors dominate; calibrated
#: in photometric mode so that no axis is over-confident on KITTI 00 0-119: NEES 0.28-1.02)
PHOTO_GAIN = 9.0
#: relative error of a photometric step length (the learned depth's scale between frames;
#: calibrated with PHOTO_GAIN)
PHOTO_LEN_REL = 0.2
#: least photometric residual spread (grey levels) the covariance assumes (a floor, not measured apart)
MIN_PHOTO_RESIDUAL = 0.5
#: the rotation window's fused rotation (:func:`fused_rotation_covariance`): its covariance is the
#: window's pooled spread of the agreeing predictions over their number, plus the outer products of
#: the predictions it set aside over all predictions (this frame's, and the previous frame's: the
#: step starts from that frame's orientation), plus ``(FUSED_MIN_ROT² + (FUSED_ROT_REL x turn)²)
#: I`` (and the sideways-turn term of ``ROT_REL``, ~0 on forward drives): errors no baseline sees
#: (they share the new frame's corners and the camera's calibration). Not used on the step after a
#: frame whose orientation was not such a fusion (``WindowFusion.after_own``).
#: Calibrated on the step NEES of KITTI 00 frames 0-118 and rendered streets 720-722 (BENCHMARKS.md,
#: session 24): the spread alone read NEES 8-39 on KITTI, whose predictions agree to ~0.01° while
#: its steps are off by ~0.045° against its ground truth; without the set-aside terms street 721
#: read 14-79 (a few frames whose two agreeing predictions were 5° off)
FUSED_MIN_ROT = 7e-4
FUSED_ROT_REL = 0.02
#: least degrees of freedom of the window's pooled spread before it is used (fewer: the frame
#: pair's own covariance)
FUSED_MIN_DOF = 6


def motion_covariance(r: Refinement, focal_px: float) -> np.ndarray:
    """(6, 6) covariance of ``r.T`` (module doc) from what the refinement measured: the epipolar
    residual, the inliers and the parallax for a refined motion (its rotation also ``ROT_REL`` of
    the turn times the sideways share of the motion), the network's calibrated errors otherwise
    (constants above). Translation: the length's error along the motion, the direction's error
    across it. A rotation the rotation window fused (:func:`rotation_from_window`) has the
    fusion's covariance (:func:`fused_rotation_covariance`) plus the sideways-turn term above
    (``ROT_REL``: the baselines share the bas-relief ambiguity of a narrow field of view),
    uncorrelated with the translation (which stays the frame pair's)."""
    C = _pair_covariance(r, focal_px)
    R = _window_rotation_covariance(r)
    if R is None:
        return C
    C = C.copy()
    C[:3, 3:] = 0.0
    C[3:, :3] = 0.0
    C[3:, 3:] = R + _sideways_turn(r.T) ** 2 * np.eye(3)
    return C


def rotation_from_window(r: Refinement) -> bool:
    """Whether :func:`motion_covariance` gives ``r``'s rotation the rotation window's covariance: the
    window fused it (not a still camera's, not a photometric polish's) from two or more
    predictions, has measured ``FUSED_MIN_DOF`` degrees of its spread, and the frame before was a
    fusion too (``WindowFusion.after_own`` false); the covariance is finite."""
    return _window_rotation_covariance(r) is not None


def _window_rotation_covariance(r: Refinement) -> np.ndarray | None:
    """:func:`fused_rotation_covariance` of ``r``'s window when :func:`rotation_from_window` holds, else None."""
    w = r.window
    if w is None or r.used in (Used.STILL, Used.PHOTOMETRIC) or w.after_own:
        return None
    return fused_rotation_covariance(w, _turn(r.T))


def _turn(T: np.ndarray) -> float:
    """The angle of ``T``'s rotation (rad)."""
    return float(np.linalg.norm(matrix_to_axis_angle(T[:3, :3])))


def fused_rotation_covariance(w: WindowFusion, turn_rad: float) -> np.ndarray | None:
    """(3, 3) covariance of the rotation window's fused step rotation (rad², right-multiplied) from
    how far its predictions fell apart (:class:`~sfm_ros.runtime.motion.result.WindowFusion`):
    ``spread / agreeing + set_aside / predictions + set_aside_before + (FUSED_MIN_ROT² + (FUSED_ROT_REL
    turn)²) I``;
    None when the window fused fewer than two predictions, has measured fewer than
    ``FUSED_MIN_DOF`` degrees of its spread, or the sum is not finite."""
    if w.agreeing < 2 or w.spread is None or w.spread_dof < FUSED_MIN_DOF:
        return None
    C = np.asarray(w.spread, dtype=np.float64) / w.agreeing
    if w.set_aside is not None:
        C = C + np.asarray(w.set_aside, dtype=np.float64) / w.predictions
    if w.set_aside_before is not None:
        C = C + np.asarray(w.set_aside_before, dtype=np.float64)
    C = 0.5 * (C + C.T) + (FUSED_MIN_ROT ** 2 + (FUSED_ROT_REL * turn_rad) ** 2) * np.eye(3)
    return C if np.all(np.isfinite(C)) else None


def _sideways_turn(T: np.ndarray) -> float:
    """``ROT_REL`` of the turn times the sideways share of the motion (rad; constants above)."""
    t = T[:3, 3]
    L = float(np.linalg.norm(t))
    d = t / L if L > 1e-12 else np.array([0.0, 0.0, 1.0])
    return ROT_REL * float(np.linalg.norm(d[:2])) * _turn(T)


def _pair_covariance(r: Refinement, focal_px: float) -> np.ndarray:
    """:func:`motion_covariance` of the frame pair's own measurements (the rotation window aside)."""
    t = r.T[:3, 3]
    L = float(np.linalg.norm(t))
    d = t / L if L > 1e-12 else np.array([0.0, 0.0, 1.0])
    turn = _sideways_turn(r.T)
    n = max(r.inliers, 1)
    if r.used == Used.PHOTOMETRIC and r.photo_info is not None:
        C = _photometric_covariance(r, L, d)
        if C is not None:
            return C
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    elif r.used == Used.EPIPOLAR and r.motion_cov is not None:
        if math.isfinite(r.length_rel_sd):  # the length filter's (log) standard deviation, floored
            s_len = r.length_rel_sd * L
        else:
            s_len = {ScaleFrom.DEPTH: max(MIN_LEN_REL, LEN_GAIN * r.length_spread),
                     ScaleFrom.DEPTH_RATIO: DEPTH_RATIO_LEN_REL}.get(r.scale_from, NETWORK_LEN_REL) * L
        S, B, R = r.motion_cov.cov, r.motion_cov.across, r.motion_cov.R
        # ω, β perturb T_new_ref (R exp(ω), the direction along B); T_ref_new = inv: its rotation's
        # right-multiplied error is -R ω, its translation -exp(-ω) Rᵀ L t̂(β) moves by L [d]× ω - L Rᵀ B β
        # (Rᵀ t̂ = -d): the turn and the sideways direction stay correlated, as the residuals say
        J = np.zeros((6, 5))
        J[:3, :3] = L * skew(d)
        J[:3, 3:] = -L * (R.T @ B)
        J[3:, :3] = -R
        C = J @ S @ J.T
        P = np.outer(d, d)
        C[:3, :3] += s_len ** 2 * P + (MIN_DIR * L) ** 2 * (np.eye(3) - P)
        C[3:, 3:] += (MIN_ROT ** 2 + turn ** 2) * np.eye(3)
        C = 0.5 * (C + C.T)
        if np.all(np.isfinite(C)):
            return C
        s_rot, s_dir = NETWORK_ROT, NETWORK_DIR
    elif r.used == Used.STILL:  # no motion: as small as the corners' stillness allows
        s_rot = max(MIN_ROT, r.residual_px / focal_px) if math.isfinite(r.residual_px) else MIN_ROT
        s_len = r.still_length if math.isfinite(r.still_length) and r.still_length > 0 else STILL_LEN
        C = np.diag([s_len ** 2] * 3 + [s_rot ** 2] * 3)
        return C
    elif r.used == Used.ROTATION:
        s_rot = math.hypot(max(MIN_ROT, ROT_GAIN * r.residual_px / (focal_px * math.sqrt(n))), turn)
        s_dir, s_len = NETWORK_DIR, NETWORK_LEN_REL * L
    else:
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    if not all(np.all(np.isfinite(x)) for x in (s_rot, s_dir, s_len)):
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    C = np.zeros((6, 6))
    P = np.outer(d, d)
    C[:3, :3] = s_len ** 2 * P + (s_dir * L) ** 2 * (np.eye(3) - P)
    C[3:, 3:] = np.diag(np.broadcast_to(np.square(s_rot), (3,)))
    return C


def epipolar_noise_var(residual_px: float, inliers: int) -> float:
    """The variance (pixels²) per Sampson residual that the epipolar covariance assumes:
    ``GN_GAIN² · residual²``, grown as 1/n² below ``FEW_INLIERS`` inliers (the residuals' errors
    are neither independent nor only image noise)."""
    return (GN_GAIN * max(residual_px, MIN_RESIDUAL_PX)) ** 2 * max(1.0, FEW_INLIERS / max(inliers, 1))


def epipolar_covariance(info: np.ndarray, residual_px: float, inliers: int) -> np.ndarray:
    """(5, 5) covariance of a two-view motion's rotation ``ω`` and direction ``β`` (the parameters
    of :func:`sfm_ros.runtime.motion.sampson.epipolar_information`) from the Sampson residuals'
    ``JᵀJ`` (5, 5): :func:`epipolar_noise_var` ``· (JᵀJ)⁻¹``."""
    info = np.asarray(info, dtype=np.float64)
    if info.shape != (5, 5):
        raise ValueError(f"info must be 5x5, got shape {info.shape}")
    return epipolar_noise_var(residual_px, inliers) * np.linalg.pinv(info)


def _photometric_covariance(r: Refinement, L: float, d: np.ndarray) -> np.ndarray | None:
    """:func:`motion_covariance` of a photometric motion: the Gauss-Newton covariance of the pose
    (``PHOTO_GAIN² σ² (JᵀWJ)⁻¹`` over ``exp(δ) T_new_ref``, δ in the new camera), moved to
    ``T_ref_new``'s translation and right-multiplied rotation, plus the step length's error along
    the motion and the floors; None when it is not finite."""
    sigma = max(float(r.photo_residual), MIN_PHOTO_RESIDUAL)
    try:
        S = (PHOTO_GAIN * sigma) ** 2 * np.linalg.inv(r.photo_info)
    except np.linalg.LinAlgError:
        return None
    # T_ref_new' = T_ref_new exp(-δ): translation error -R v, rotation error -ω
    A = np.zeros((6, 6))
    A[:3, :3] = -r.T[:3, :3]
    A[3:, 3:] = -np.eye(3)
    C = A @ S @ A.T
    C = 0.5 * (C + C.T)
    P = np.outer(d, d)
    C[:3, :3] += (PHOTO_LEN_REL * L) ** 2 * P + (MIN_DIR * L) ** 2 * (np.eye(3) - P)
    C[3:, 3:] += MIN_ROT ** 2 * np.eye(3)
    return C if np.all(np.isfinite(C)) else None
