"""Two-view priors of training pairs: the geometry of each (target, source) pair, from its frames alone.

With ``loss.epipolar_weight`` the trainer solves every training pair once before training with the
node's two-view solver (:func:`sfm_ros.runtime.motion.two_view.solve_two_view`: tracked corners, the
essential matrix, cheirality; a rotation alone where the pair shows too little parallax) and the
pose network is pulled towards it (:func:`sfm_ros.core.losses.epipolar_prior_loss`); no labels are
used. The inlier corners of a full solution, triangulated with its motion, give the target's depth at
those corners up to one scale a pair (``points``, ``depths``), which the sparse depth prior pulls the
depth network's shape towards (:func:`sfm_ros.core.losses.sparse_depth_loss`). Online adaptation
(:mod:`sfm_ros.training.adapt`) solves each window's pairs the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sfm_ros.core.losses import SPARSE_MIN_POINTS
from sfm_ros.core.se3 import invert_pose, make_pose, matrix_to_axis_angle
from sfm_ros.data.camera import resize_pixels
from sfm_ros.data.augment import PRIOR_POINTS
from sfm_ros.data.datasets import Sequence
from sfm_ros.runtime.motion.triangulation import triangulate_depths
from sfm_ros.runtime.motion.two_view import TwoViewOptions, TwoViewSolution, solve_two_view
from sfm_ros.runtime.motion.view import RefineView, make_view

#: the translation a prior carries where only its rotation is found (weighted 0): unit, forward
_UNIT = make_pose(t=[0.0, 0.0, 1.0])
#: the most triangulated corners a pair keeps (evenly over its inliers): what a training item carries
MAX_POINTS = PRIOR_POINTS
#: a pair keeps its corners only when at least as many triangulate in front of both cameras as the
#: sparse depth loss needs to count a pair
MIN_POINTS = SPARSE_MIN_POINTS
#: corners triangulated farther than this times the pair's median depth are dropped (too little parallax)
MAX_DEPTH_RATIO = 20.0


@dataclass
class EpipolarPrior:
    """The two-view geometry of one (target, source) pair (:func:`sfm_ros.runtime.motion.two_view.solve_two_view`):
    ``T_src_tgt`` with a unit translation; ``w_rot``/``w_dir`` 1 where its rotation / direction of
    translation was found (a rotation alone when the pair shows too little parallax), else 0.
    ``points`` (P, 2) float32: inlier corners in the target frame's pixels (pixel centres, the
    frame's size), ``depths`` (P,) float32 > 0 their depths per unit baseline (P = 0 without a full
    solution or with fewer than :data:`MIN_POINTS`)."""

    T_src_tgt: np.ndarray
    w_rot: float
    w_dir: float
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    depths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def epipolar_priors(sequences: list[Sequence], items: list[tuple[int, list[int]]],
                    seq_len: int) -> dict[tuple[int, int, int], EpipolarPrior]:
    """:class:`EpipolarPrior` of every (sequence, target frame, source frame) pair of ``items``,
    computed once from the frames at the training size (about 5 ms a pair on one core)."""
    options = TwoViewOptions(still_px=0.0)  # no test for a camera at rest: training pairs move
    mid = seq_len // 2
    views: dict[tuple[int, int], RefineView] = {}
    out: dict[tuple[int, int, int], EpipolarPrior] = {}

    def view(si: int, i: int) -> RefineView:
        if (si, i) not in views:
            views[(si, i)] = make_view(sequences[si].frames[i], sequences[si].K)
        return views[(si, i)]

    for si, idx in items:
        t = idx[mid]
        for j in idx[:mid] + idx[mid + 1:]:
            if (si, t, j) in out:
                continue
            tgt, src = view(si, t), view(si, j)
            prior = _prior(solve_two_view(tgt.grey, src.grey, tgt.K, options), tgt.K)
            if len(prior.points):  # the view's pixels -> the frame's
                frame_hw = sequences[si].frames[t].shape[:2]
                prior.points = resize_pixels(prior.points, tgt.grey.shape, frame_hw).astype(np.float32)
            out[(si, t, j)] = prior
    return out


def window_rotations(sequences: list[Sequence], items: list[tuple[int, list[int]]], seq_len: int,
                     max_windows: int = 48) -> np.ndarray:
    """The rotations between the frames of up to ``max_windows`` windows spread evenly over
    ``items``: the rotation vectors (N, 3), degrees, target→source in the target's optical frame
    (x right, y down: the y component is the yaw), of each pair whose rotation the two-view
    geometry found (:func:`epipolar_priors`; about 5 ms a pair). Label-free: how much a recording
    turns between the frames a window shows the pose network."""
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    pick = np.unique(np.linspace(0, len(items) - 1, min(max_windows, len(items))).round().astype(int)) if items else []
    priors = epipolar_priors(sequences, [items[i] for i in pick], seq_len)
    rv = [np.degrees(matrix_to_axis_angle(p.T_src_tgt[:3, :3])) for p in priors.values() if p.w_rot > 0]
    return np.asarray(rv, dtype=np.float64).reshape(-1, 3)


def triangulated_corners(solution: TwoViewSolution, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points, depths)`` of a full two-view solution of images with intrinsics ``K``: its inlier
    corners in the reference image (at most :data:`MAX_POINTS`, evenly over them) and their depths per
    unit baseline, those in front of both cameras and nearer than :data:`MAX_DEPTH_RATIO` times their
    median; empty when fewer than :data:`MIN_POINTS` are left."""
    empty = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    if solution.why != "" or solution.p_in is None or len(solution.p_in) < MIN_POINTS:
        return empty
    z_ref, z_new = triangulate_depths(solution.p_in, solution.q_in, K, solution.T_new_ref)
    ok = np.isfinite(z_ref) & np.isfinite(z_new) & (z_ref > 0) & (z_new > 0)
    if ok.sum() < MIN_POINTS:
        return empty
    ok &= z_ref <= MAX_DEPTH_RATIO * float(np.median(z_ref[ok]))
    p, z = solution.p_in[ok], z_ref[ok]
    if len(z) < MIN_POINTS:
        return empty
    if len(z) > MAX_POINTS:
        keep = np.linspace(0, len(z) - 1, MAX_POINTS).round().astype(int)
        p, z = p[keep], z[keep]
    return p.astype(np.float32), z.astype(np.float32)


def _prior(solution: TwoViewSolution, K: np.ndarray) -> EpipolarPrior:
    """The prior of one pair from its two-view solution (reference: the target, new: the source;
    ``K`` the images' intrinsics)."""
    if solution.why == "":  # rotation and direction
        return EpipolarPrior(invert_pose(solution.T_ref_new), 1.0, 1.0, *triangulated_corners(solution, K))
    if solution.why == "low parallax":  # the rotation alone
        T_tgt_src = _UNIT.copy()
        T_tgt_src[:3, :3] = solution.R.T
        return EpipolarPrior(invert_pose(T_tgt_src), 1.0, 0.0)
    return EpipolarPrior(invert_pose(_UNIT), 0.0, 0.0)
