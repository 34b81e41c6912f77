"""The direction of travel over a chord of several frame steps: corners carried from frame to
frame, and the two-view solution between the chord's first and last view.

A frame pair's direction of travel is poorly fixed in elevation: a forward step of ``s`` metres
moves a point ``Z`` metres ahead like a pitch of ``s ε / Z`` radians does when the direction is
tilted by ``ε``, so a pitch error of a hundredth of a degree trades for half a degree of
elevation (the rotation-translation coupling of the five-point solution). Over ``steps`` frame
steps the baseline is that many times longer and the same pitch error trades for that many times
less. Measured on rendered streets (exact poses), the median elevation error of the direction
read from the corners, one frame pair against chords of 8 steps: -0.37° / -0.86° (streets 700 /
701) against -0.00° / -0.26° / +0.01° (700 / 701 / 702; BENCHMARKS.md, issue 24). On KITTI 00 it
reads 0.5° below the ground truth's at every chord length, a difference that does not shrink with
the baseline, so it is not the coupling.

The corners are detected in the chord's first view (:func:`sfm_ros.data.features.detect_corners`,
the two-view options' ``max_corners`` and ``min_distance_px``) and tracked into each next view
(:func:`sfm_ros.data.features.track_points`, forward-backward checked at ``max_fb_px``); a corner
lost once is dropped. At the chord's end, :func:`~sfm_ros.runtime.motion.two_view.solve_tracks`
solves the chord, and the next chord starts at its last view. A chord restarts when the views do
not follow on (``ref`` is not the view pushed last as ``new``: a frame the caller skipped, new
views after new intrinsics) or when fewer than ``min_inliers`` corners survive.

Convention: as :mod:`sfm_ros.runtime.motion.two_view`; the solution's ``T_new_ref`` maps the
chord's first view into its last. Stateful (the chord in progress); numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sfm_ros.data.features import detect_corners, track_points
from sfm_ros.runtime.motion._checks import integer_at_least
from sfm_ros.runtime.motion.two_view import TwoViewOptions, TwoViewSolution, solve_tracks
from sfm_ros.runtime.motion.view import RefineView

__all__ = ["TravelChord"]


@dataclass
class TravelChord:
    """Corners carried over ``steps`` frame pairs (``steps + 1`` frames; module doc); :meth:`push`
    each pair in order.

    State: the chord's first view and its corners there (``start``, ``p0``), where they are in the
    last view pushed (``last``, ``cur``) and ``pairs`` (pairs pushed into this chord)."""

    steps: int = 8
    start: RefineView | None = field(default=None, repr=False)
    last: RefineView | None = field(default=None, repr=False)
    p0: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32), repr=False)
    cur: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32), repr=False)
    pairs: int = 0

    def __post_init__(self) -> None:
        if not integer_at_least(self.steps, 2):
            raise ValueError(f"a chord needs steps >= 2 (an integer), got {self.steps!r}")

    def reset(self) -> None:
        """Forget the chord in progress: the next :meth:`push` starts one."""
        self.start = self.last = None
        self.p0 = self.cur = np.zeros((0, 2), np.float32)
        self.pairs = 0

    def _begin(self, view: RefineView, opts: TwoViewOptions) -> None:
        self.p0 = detect_corners(view.grey, opts.max_corners, opts.min_distance_px)
        self.cur = self.p0.copy()
        self.start = self.last = view
        self.pairs = 0

    def push(self, ref: RefineView, new: RefineView, opts: TwoViewOptions) -> TwoViewSolution | None:
        """The next frame pair ``ref → new`` (``ref`` the view pushed last as ``new``, else a
        chord starts at ``ref``) with the two-view options ``opts``. Returns the chord's two-view
        solution when this pair ends it (its ``why`` says whether it is a full solution), else
        None. Views of two sizes are refused (ValueError) before anything changes."""
        if ref.grey.shape != new.grey.shape:
            raise ValueError(f"views of one size expected, got {ref.grey.shape} and {new.grey.shape}")
        if self.last is not ref or self.start is None:
            self._begin(ref, opts)
        _, q, ok = track_points(ref.grey, new.grey, self.cur, opts.max_fb_px, opts.lk_iterations, opts.lk_window)
        self.p0, self.cur = self.p0[ok], q[ok]
        self.last = new
        self.pairs += 1
        if len(self.p0) < opts.min_inliers:  # too few carried: the next chord starts here
            self._begin(new, opts)
            return None
        if self.pairs < self.steps:
            return None
        sol = solve_tracks(self.p0, self.cur, self.start.K, opts)
        self._begin(new, opts)
        return sol
