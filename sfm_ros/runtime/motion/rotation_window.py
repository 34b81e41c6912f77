"""The camera's orientation over a sliding window of frames: each new frame's rotation measured
against several earlier frames of the window, and the measurements that agree averaged.

A frame pair's rotation is measured over one frame step. Its errors add up from step to step, and
on a planar road the five-point solution of one short step now and then picks a rotation 1-3° off
with many inliers (rendered streets, exact poses). Measured over a longer baseline the same
corners fix the rotation better, and a wrong solution of one baseline rarely agrees with the
others. So every frame ``n`` predicts its orientation ``R_w_n`` (the camera's rotation in the
window's world frame) from

- the previous frame's orientation and the step's rotation the caller refined (baseline 1), and
- for each ``k`` of ``baselines`` (2, 4 and 8 frame steps by default): frame ``n - k``'s
  orientation and the rotation :func:`~sfm_ros.runtime.motion.two_view.solve_tracks` finds between
  the corners tracked from that frame into this one (a full solution, a rotation alone, or none
  for corners that did not move);

takes the prediction with the most others within ``agree_deg`` (ties: the step's own) and averages
it with those others (:func:`chordal_mean`, unweighted; the average is then taken again over the
predictions within ``agree_deg`` of it, at most twice). The orientation of earlier frames is not
changed: what was published stays, and the caller tells the window what it published
(:meth:`RotationWindow.published`) when that is not the fused rotation. Measured (BENCHMARKS.md,
issue 24; the node's pipeline, ``bench/bench_drift.py``): rotation drift on rendered streets
700-702 from 12.6 / 12.4 / 27.3 to 1.8 / 3.6 / 3.2 °/100 m, on KITTI 00 0-159 from 3.95 to 3.34
°/100 m. Weighting the baselines by their steps drifted a little less on the streets (1.6 / 3.4 /
2.6) but made KITTI's published roll over-confident (step NEES 2.17, band 0.79-1.23; unweighted
0.90); baselines 4 and 8 alone let street 702 drift 8.4 °/100 m.

Cost, one core, KITTI (500 corners): p50 ~21 ms a frame (the three two-view solutions, each on at
most ``max_points`` shared corners, are two thirds of it).

Corners are detected with :func:`sfm_ros.data.features.detect_corners` and carried from frame to
frame by :func:`~sfm_ros.data.features.track_points` (forward-backward checked); when fewer than
``refill_below`` survive, new corners at least ``min_distance_px`` from the kept ones fill the set
up to ``max_corners`` (the two-view options'). A baseline's solution uses at most ``max_points``
of the corners the two frames share: every n-th in the order they were found (strongest first
within each detection), not a spatial selection, solved by ``estimator`` (default
``magsac_polish``: MAGSAC++ without its local optimisation, ~4.5 ms a frame less than the
two-view options' ``magsac`` on KITTI, push p50 25.5 → 21.1 ms; ``bench/bench_drift.py`` alike:
KITTI r_err 3.30 → 3.34 °/100 m, streets 700-702 1.78 / 3.59 / 3.22 → 1.79 / 3.60 / 3.14, t_err
within 0.03 %; the refiner's ``estimator`` is the frame pair's, not this one's). Each corner keeps
its id, so the corners two frames share are found by id. The window restarts when the views do
not follow on (``ref`` is not the view pushed last as ``new``: a frame the caller skipped, new
views after new intrinsics).

Convention: as :mod:`sfm_ros.runtime.motion.two_view`; ``R_w_n`` maps directions of frame ``n``
into the window's world frame (the frame the window started at); a step's rotation is
``R_ref_new`` (the rotation of ``T_ref_new``). Stateful; numpy, OpenCV and scipy's k-d tree.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial import cKDTree

from sfm_ros.core.se3 import matrix_to_axis_angle
from sfm_ros.data.features import detect_corners, track_points
from sfm_ros.runtime.motion._checks import integer_at_least, matrix
from sfm_ros.runtime.motion.result import WindowFusion
from sfm_ros.runtime.motion.rotation_angle import angle_between_deg
from sfm_ros.runtime.motion.two_view import ESTIMATORS, TwoViewOptions, solve_tracks
from sfm_ros.runtime.motion.view import RefineView

__all__ = ["chordal_mean", "RotationWindow"]


def chordal_mean(rotations, weights=None) -> np.ndarray:
    """The weighted chordal L2 mean of rotations (Hartley, Trumpf, Dai & Li, "Rotation averaging",
    IJCV 2013, Sec. 5.3): the rotation nearest, in the Frobenius norm, to ``Σ wᵢ Rᵢ``. ``rotations``
    (N, 3, 3), N >= 1; ``weights`` (N,) > 0 (default equal)."""
    R = np.asarray(rotations, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or len(R) == 0:
        raise ValueError(f"rotations must be (N, 3, 3) with N >= 1, got shape {R.shape}")
    w = np.ones(len(R)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (len(R),) or not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise ValueError(f"weights must be {len(R)} finite numbers > 0, got {np.asarray(weights).tolist()}")
    U, _, Vt = np.linalg.svd(np.tensordot(w, R, axes=1))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


@dataclass
class _Frame:
    view: RefineView
    ids: np.ndarray   # (M,) int64, ascending
    pts: np.ndarray   # (M, 2) float32
    R_w: np.ndarray   # (3, 3) the orientation published for this frame


@dataclass
class RotationWindow:
    """Corners carried through the last ``max(baselines) + 1`` frames and the orientation fused
    from several baselines (module doc); :meth:`push` each frame pair in order."""

    baselines: tuple[int, ...] = (2, 4, 8)
    agree_deg: float = 0.5
    refill_below: int = 300
    max_points: int = 200
    estimator: str = "magsac_polish"
    spread_frames: int = 30
    _frames: deque = field(default_factory=deque, init=False, repr=False)
    _spread: deque = field(default_factory=deque, init=False, repr=False)
    _aside: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)), init=False, repr=False)
    _own: bool = field(default=True, init=False, repr=False)  # the last frame's orientation is not a fusion
    _next_id: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        b = tuple(self.baselines)
        if not b or not all(integer_at_least(k, 2) for k in b) or len(set(b)) != len(b):
            raise ValueError(f"baselines must be distinct integers >= 2, got {self.baselines!r}")
        self.baselines = tuple(sorted(int(k) for k in b))
        if not (np.isfinite(self.agree_deg) and self.agree_deg > 0):
            raise ValueError(f"agree_deg must be a finite number > 0, got {self.agree_deg!r}")
        if not integer_at_least(self.refill_below, 0):
            raise ValueError(f"refill_below must be an integer >= 0, got {self.refill_below!r}")
        if not integer_at_least(self.max_points, 5):
            raise ValueError(f"max_points must be an integer >= 5 (the five-point solution's), got {self.max_points!r}")
        if not integer_at_least(self.spread_frames, 1):
            raise ValueError(f"spread_frames must be an integer >= 1, got {self.spread_frames!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")

    @property
    def span(self) -> int:
        """Frames the window holds: the longest baseline's and this one."""
        return self.baselines[-1] + 1

    def reset(self) -> None:
        """Forget the window: the next :meth:`push` starts one at its ``ref``."""
        self._frames.clear()
        self._spread.clear()
        self._aside = np.zeros((3, 3))
        self._own = True

    def _corners(self, grey: np.ndarray, ids: np.ndarray, pts: np.ndarray,
                 opts: TwoViewOptions) -> tuple[np.ndarray, np.ndarray]:
        """``ids``, ``pts`` with new corners of ``grey`` added up to ``max_corners`` when fewer than
        ``refill_below`` are left, each at least ``min_distance_px`` from the kept ones."""
        room = int(opts.max_corners) - len(pts)
        if len(pts) >= self.refill_below or room <= 0:
            return ids, pts
        new = detect_corners(grey, opts.max_corners, opts.min_distance_px)
        if len(pts) and len(new):  # the nearest kept corner of each (a k-d tree: ~0.2 ms, not ~4 ms)
            near, _ = cKDTree(pts).query(new, k=1)
            new = new[near >= float(opts.min_distance_px)]
        new = new[:room]
        new_ids = np.arange(self._next_id, self._next_id + len(new), dtype=np.int64)
        self._next_id += len(new)
        return np.concatenate([ids, new_ids]), np.concatenate([pts, new]).astype(np.float32)

    def _start(self, view: RefineView, opts: TwoViewOptions) -> None:
        self.reset()
        ids, pts = self._corners(view.grey, np.zeros(0, np.int64), np.zeros((0, 2), np.float32), opts)
        self._frames.append(_Frame(view, ids, pts, np.eye(3)))

    def _measure(self, old: _Frame, ids: np.ndarray, pts: np.ndarray, K: np.ndarray,
                 opts: TwoViewOptions) -> np.ndarray | None:
        """``R_old_new`` from the corners ``old`` and the new frame share (solved with ``opts``, the
        window's estimator in), or None."""
        _, i_old, i_new = np.intersect1d(old.ids, ids, assume_unique=True, return_indices=True)
        if len(i_old) > self.max_points:  # evenly over the shared corners (they are in detection order)
            pick = np.linspace(0, len(i_old) - 1, self.max_points).round().astype(int)
            i_old, i_new = i_old[pick], i_new[pick]
        sol = solve_tracks(old.pts[i_old], pts[i_new], K, opts, full=False)
        if sol.why == "still":
            return np.eye(3)
        return None if sol.R is None else sol.R.T

    def push(self, ref: RefineView, new: RefineView, R_step: np.ndarray, opts: TwoViewOptions,
             solve: bool = True) -> WindowFusion:
        """The next frame pair ``ref → new`` with the step's rotation ``R_step`` (``R_ref_new``, the
        caller's refinement) and the two-view options ``opts``: the fused step rotation (module
        doc). ``ref`` not the view pushed last as ``new`` starts a window there. ``solve=False``
        (a caller that is behind): the corners are carried and the frame keeps the step's own
        rotation, no baseline is measured (p50 5.1 ms against 20.5 on KITTI, one core); the next
        frames measure against it as against any. Views of two sizes are refused (ValueError)
        before anything changes."""
        R_step = matrix(R_step, (3, 3), "R_step")
        if ref.grey.shape != new.grey.shape:
            raise ValueError(f"views of one size expected, got {ref.grey.shape} and {new.grey.shape}")
        if not self._frames or self._frames[-1].view is not ref:
            self._start(ref, opts)
        last = self._frames[-1]
        _, q, ok = track_points(ref.grey, new.grey, last.pts, opts.max_fb_px, opts.lk_iterations, opts.lk_window)
        ids, pts = last.ids[ok], q[ok]
        tracks = len(ids)
        preds = [last.R_w @ R_step]
        solve_opts = replace(opts, estimator=self.estimator)  # the baselines' options, once a frame
        for k in self.baselines if solve else ():
            if k > len(self._frames):
                break
            R_rel = self._measure(self._frames[-k], ids, pts, new.K, solve_opts)
            if R_rel is not None:
                preds.append(self._frames[-k].R_w @ R_rel)
        R_w, agree = self._fuse(preds)
        spread, dof, set_aside = self._spread_of(R_w, preds, agree)
        R_step = chordal_mean([last.R_w.T @ R_w])
        # the previous frame's set-aside term, turned into this step's axes (its orientation's error
        # ε, R_w(n-1) exp(ε), is the step's error -R_stepᵀ ε)
        before, self._aside = R_step.T @ self._aside @ R_step, set_aside / len(preds)
        after_own, self._own = self._own, bool(agree.sum() < 2)
        ids, pts = self._corners(new.grey, ids, pts, opts)
        self._frames.append(_Frame(new, ids, pts, R_w))
        while len(self._frames) > self.span:
            self._frames.popleft()
        return WindowFusion(R=R_step, predictions=len(preds), agreeing=int(agree.sum()),
                            step_kept=bool(agree[0]), tracks=tracks, frames=len(self._frames), solved=bool(solve),
                            spread=spread, spread_dof=dof, set_aside=set_aside, set_aside_before=before,
                            after_own=after_own)

    def _spread_of(self, R: np.ndarray, preds: list, agree: np.ndarray) -> tuple[np.ndarray | None, int, np.ndarray]:
        """How far the predictions fell from their fusion ``R`` (:class:`WindowFusion`): the pooled
        spread of the agreeing ones over the last ``spread_frames`` frames that had two or more, its
        degrees of freedom, and this frame's set-aside predictions' sum of outer products."""
        dev = np.array([matrix_to_axis_angle(R.T @ p) for p in preds]).reshape(-1, 3)
        if agree.sum() >= 2:
            d = dev[agree]
            self._spread.append((d.T @ d, len(d) - 1))
            while len(self._spread) > self.spread_frames:
                self._spread.popleft()
        dof = sum(k for _, k in self._spread)
        spread = sum(S for S, _ in self._spread) / dof if dof else None
        out = dev[~agree]
        return spread, int(dof), out.T @ out

    def published(self, R_step: np.ndarray) -> None:
        """The step's rotation the caller publishes for the frame pushed last (``R_ref_new``; the
        fused one, or another: a still camera's none, a photometric polish's): the window holds
        that orientation for the frame, so that later frames are measured against what was
        published. Nothing without a pushed frame."""
        R_step = matrix(R_step, (3, 3), "R_step")
        if len(self._frames) >= 2:  # projected onto the rotations: rounding must not compound
            R_w = chordal_mean([self._frames[-2].R_w @ R_step])
            if angle_between_deg(R_w, self._frames[-1].R_w) > 1e-6:  # not the fusion: the next step undoes its error
                self._own = True
            self._frames[-1].R_w = R_w

    def _fuse(self, preds: list) -> tuple[np.ndarray, np.ndarray]:
        """The consensus of the predicted orientations (module doc) and which of them it averages."""
        P = np.stack(preds)
        near = np.eye(len(P), dtype=bool)
        for i in range(len(P)):  # the angle between two is symmetric: each pair once
            for j in range(i + 1, len(P)):
                near[i, j] = near[j, i] = angle_between_deg(P[i], P[j]) <= self.agree_deg
        votes = near.sum(axis=1)
        agree = near[int(np.argmax(votes))]  # ties: the first, the step's own before the baselines
        R = chordal_mean(P[agree])
        for _ in range(2):  # the supporters of the mean, rather than of the one that had most votes
            again = np.array([angle_between_deg(R, p) <= self.agree_deg for p in P])
            if not again.any() or np.array_equal(again, agree):
                break
            agree = again
            R = chordal_mean(P[agree])
        return R, agree
