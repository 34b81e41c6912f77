"""Run-time refinement of the pose network's frame-to-frame motion against the images.

The pose network is the first estimate; a geometric solver on the two images refines it, and the
network's estimate stays the fallback whenever the solver cannot be trusted. One refiner serves
the node (:mod:`sfm_ros.ros.node`, parameter ``refine_pose``) and the evaluation
(``sfm_eval pose --refine``), through the same :meth:`Refiner.refine` call.

Modes
-----
``none``
    The network's motion, unchanged.
``epipolar`` (DF-VO, Zhan et al. 2020)
    Corners tracked from the reference frame into the new frame (:func:`sfm_ros.data.features.track_corners`),
    the essential matrix by RANSAC (five-point solver) and its decomposition (cheirality) give the
    rotation and the direction of translation, unless the corners cannot tell the pose network's
    rotation and direction from that solution (``prefer_network``: a chi-square test on the
    Sampson residuals; few or distant corners fit a wrong five-point solution as well), and then
    the network's are kept. The translation's length is on the learned depth's scale (with
    ``ground``: in metres), filtered over time (a Kalman filter on the log of the length, 3-sigma
    gated, restarted after ``restart_after`` rejected measurements):

    * *measured*: the corners are triangulated with a unit baseline and compared with the
      predicted depth of the reference frame at the same pixels; the median ratio is the depth's
      baseline, its spread the measurement's variance. Noisy (the learned depth's scale wanders
      from frame to frame). With ``ground`` (the node's ``camera_height``) the measurement is
      instead the step in metres that aligns the ground in the lower image
      (:mod:`sfm_ros.runtime.ground_motion`).
    * *predicted* (``scale_tracking``, the classic monocular-VO relative scale): the reference
      frame's inlier corners are tracked back into the frame before it; triangulated with the
      previous step's unit motion and with this step's, the same corners have two depths in the
      reference frame, and the median of their log ratio is the log of this step's length over the
      previous one (1.3 % median error on KITTI 0-30, BENCHMARKS.md). It needs the previous
      refinement to be an epipolar one whose new view is this reference view; a ratio beyond
      ``max_step_ratio`` is not taken (the measurement alone sets that step).
    * otherwise predicted from the network's length times the median, over the last
      ``scale_window`` frames where a measurement held, of measured length / network length (the
      network's translation, where it is kept by a fallback, is put on that scale too).

    Before any depth comparison held, or without depth, the network's own length (so the first
    steps of a run can be in the network's units, then switch to the depth's);
    :meth:`Refiner.reset_scale` forgets the ratios and the filter (the node calls it when the
    weights change).
    Falls back to the network's motion when too few corners are tracked or agree with one
    essential matrix; keeps the network's translation and only takes the rotation when the motion
    shows too little parallax to fix a translation direction (a rotation, or a camera at rest).
``photometric`` (direct alignment: DSO, Engel et al. 2018; D3VO, Yang et al. 2020)
    The photometric error of warping the new frame onto the reference frame's sparse high-gradient
    pixels (DSO-style: the strongest gradient of every small cell, up to ``photo_points``) with the
    reference frame's predicted depth, minimised over the 6 pose parameters (and an affine change
    of brightness) from the network's motion: Levenberg-Marquardt on SE(3) (``exp(δ) T_new_ref``),
    efficient second-order (ESM) Jacobians, Huber weights, coarse to fine over ``photo_levels``
    image halvings. Pixels on depth edges are left out (``photo_max_depth_step``). The step's
    length is in the depth's units. Falls back to the starting motion (with the reason) without
    depth, with too few textured pixels, when too few stay inside the new image, when the energy
    ends no lower than at the start, when the rotation moves more than ``photo_max_rotation_deg``
    from the start (diverged), or on a singular or non-finite solution. Only as good as the
    learned depth: with the exact depth of the rendered streets it is more accurate than
    ``epipolar``, with the shipped model's depth on KITTI it is not (BENCHMARKS.md).
``epipolar+photometric``
    ``epipolar`` first, then the photometric alignment from its outcome (from the network's motion
    where the epipolar refinement fell back); a failed photometric alignment keeps the epipolar
    outcome, with the photometric reason appended.

Convention
----------
As :mod:`sfm_ros.core.geometry`: optical camera frame (x right, y down, z forward), pixel centres at
integer coordinates, ``T_a_b`` maps points of frame ``b`` into frame ``a``. The motion refined
here is ``T_ref_new``: the pose of the new camera in the reference camera's frame (what
:func:`sfm_ros.runtime.odometry.window_increment` returns), in the network's depth units. The images are
refined at their own aspect ratio and a fixed pixel budget (:meth:`Refiner.view`), not at the
network's input size.

The photometric solver lives in :mod:`sfm_ros.runtime.photometric`, the covariance of every
refined motion in :mod:`sfm_ros.runtime.motion_covariance`. ROS-free and torch-free: numpy and
OpenCV only.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from sfm_ros.data.autoconfig import auto_size
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.features import to_grey, track_corners, track_points
from sfm_ros.core.se3 import axis_angle_to_matrix, invert_pose, make_pose, matrix_to_axis_angle
from sfm_ros.runtime.ground_motion import GroundLength, ground_step_length
from sfm_ros.runtime.motion_covariance import (DEPTH_RATIO_LEN_REL, GROUND_LEN_REL, K_LEN, MIN_FILTERED_LEN_REL,
                                               MIN_LEN_REL, epipolar_covariance, epipolar_noise_var,
                                               motion_covariance)
from sfm_ros.runtime.photometric import PhotoResult, photometric_align, robust_spread

__all__ = ["REFINE_MODES", "RefineView", "Refinement", "Refiner", "CornerBudget", "refine_sequence",
           "motion_covariance"]

REFINE_MODES = ("none", "epipolar", "photometric", "epipolar+photometric")
_ESTIMATORS = {"magsac": cv2.USAC_MAGSAC, "accurate": cv2.USAC_ACCURATE, "ransac": cv2.RANSAC}


@dataclass
class RefineView:
    """One frame as the refiner sees it: ``grey`` (h, w) uint8 at the refinement size and ``K``,
    the intrinsics of that size. Build it with :meth:`Refiner.view`."""

    grey: np.ndarray
    K: np.ndarray


@dataclass
class Refinement:
    """The outcome of one refinement.

    ``T``: the motion to use (4x4 ``T_ref_new``); ``used``: what it is made of (``network``,
    ``epipolar``, ``rotation`` = epipolar rotation with the network's translation, ``photometric``
    = the direct alignment's); ``reason``: why the network's (or, chained, the epipolar) estimate
    was (partly) kept, empty otherwise; ``tracks``/``inliers``: corners tracked and consistent with
    the essential matrix; ``scale_from``: where the length's scale came from (module doc):
    ``depth`` / ``ground`` (the depth comparison, or with ``ground`` the ground's homography, held
    on this frame and updated the filter), ``tracked`` (the previous length times the three-view
    ratio), ``depth ratio`` / ``ground ratio`` (the network's length on the scale of recent
    measurements), ``network`` (the network's length) or ``""``;
    ``length_rel_sd``: the filter's standard deviation of the length, relative, at least the
    calibrated floor of its measurements and their recent wander (:meth:`Refiner.length_wander`;
    NaN when the length is the network's); ``step_ratio``: the three-view ratio of this length to
    the previous one (NaN when not measured); ``unit_motion``: the epipolar ``T_new_ref`` with a unit translation;
    ``rotation_change_deg``: the angle between the network's rotation and the refined one; ``why``:
    a short key of ``reason`` (``off``, ``few tracks``, ``no essential matrix``, ``few inliers``,
    ``low parallax``; ``photometric: `` + ``no depth``, ``few pixels``, ``few valid pixels``,
    ``residual worse``, ``diverged``, ``singular``, ``degenerate``, ``non-finite``) for counting.
    ``start`` and ``photo_*``: what the photometric alignment started from and measured (pixels,
    pixels inside the new image at the end, robust residual spread at the start and the end in grey
    levels, iterations, the pose information matrix its covariance is made of).
    """

    T: np.ndarray
    used: str = "network"
    reason: str = ""
    tracks: int = 0
    inliers: int = 0
    scale_from: str = ""
    rotation_change_deg: float = 0.0
    why: str = ""
    residual_px: float = float("nan")
    parallax_px: float = float("nan")
    covariance: np.ndarray | None = None
    length_spread: float = float("nan")
    length_rel_sd: float = float("nan")
    step_ratio: float = float("nan")
    unit_motion: np.ndarray | None = None
    ground_length: float = float("nan")  # metres, the ground homography's (with ``ground``)
    still_length: float = float("nan")  # ``still``: the largest step the corners' stillness allows
    ground_reason: str = ""              # why it failed
    motion_cov: tuple | None = None  # (S, B, R): the (5, 5) covariance of ω, β (:func:`_epipolar_information`)
    network_kept: bool = False  # the network's rotation and direction kept (``prefer_network``)
    start: str = ""  # what the photometric alignment started from: network | epipolar | rotation
    photo_pixels: int = 0  # reference pixels of the photometric alignment (finest level)
    photo_valid: int = 0   # of which inside the new image at the end
    photo_residual: float = float("nan")        # robust residual spread at the end (grey levels)
    photo_residual_start: float = float("nan")  # the same at the start
    photo_iterations: int = 0
    photo_info: np.ndarray | None = None  # (6, 6) pose information JᵀWJ of the final residuals

    @property
    def refined(self) -> bool:
        return self.used != "network"

    @property
    def untracked(self) -> bool:
        """Too few corners could be tracked at all (a covered lens, a scene without texture, a
        blur): the network's motion, kept here, is then a guess; the node and
        :func:`refine_sequence` integrate no motion instead (:mod:`sfm_ros.runtime.motion_evidence`).
        Too few corners fitting the essential matrix is not this: small or repetitive images
        give it while the camera moves, and the network's motion is kept."""
        return self.why in UNTRACKED


@dataclass
class Refiner:
    """Refines ``T_ref_new`` between two frames; see the module doc.

    Args:
        mode: one of :data:`REFINE_MODES`.
        max_corners: corners detected in the reference frame.
        min_distance_px: least distance between two corners (pixels).
        max_fb_px: forward-backward tracking error (pixels) above which a track is dropped.
        lk_iterations: Lucas-Kanade iterations per pyramid level at most. Measured on the tuning
            frames (snippet ATE, 30 / 20 / 15): KITTI 0-119 0.0170 / 0.0175 / 0.0179, 7-Scenes
            0-399 0.0140 / 0.0112 / 0.0110; 30 for driving (issue 11's targets), 20 is ~20 %
            cheaper and better on the hand-held frames (at the 21-pixel window).
        lk_window: the Lucas-Kanade window (pixels, square). Measured on the tuning frames (snippet
            ATE, 21 / 17 / 13 / 11 / 9 / 7): KITTI 0-119 0.0170 / 0.0162 / 0.0153 / 0.0152 / 0.0148 /
            0.0152, 7-Scenes 0-399 0.0140 / 0.0105 / 0.0101 / 0.0112 / 0.0114 / 0.0147; 11 is
            better than 21 on both and its tracking costs ~0.4x as much (BENCHMARKS.md).
        min_inliers: fewest corners consistent with the essential matrix to trust it.
        ransac_px: RANSAC threshold (pixels, at the given image size).
        estimator: the robust essential-matrix estimator: ``magsac`` (OpenCV's USAC MAGSAC++,
            with local optimisation), ``accurate`` (USAC with graph-cut local optimisation),
            ``ransac`` (plain RANSAC).
        min_parallax_px: median corner motion left once the rotation is removed (pixels) below
            which the translation direction is not trusted (only the rotation is taken).
        still_px: median motion of the tracked corners (pixels) below which the camera did not
            move: no motion, ``used == "still"`` (a sensor's noise and a frozen image move them
            less; 0 = off, as the training priors, whose pairs always move, use it).
        max_scale_spread: the depth-derived baseline is used only when the inter-quartile range of
            the per-corner ratios is below this fraction of their median.
        max_depth_step: corners whose 3x3 neighbourhood spans a larger depth ratio (a depth edge)
            are left out of the baseline.
        scale_window: frames (where the depth comparison held) over which the depth baseline /
            network length ratio is taken (median); chosen on KITTI 00 frames 0-119 (3 over 5-1000).
        scale_tracking: predict each length from the previous one by the three-view ratio.
        prefer_network: keep the pose network's rotation and direction when the corners cannot
            tell them from the five-point solution (:func:`_network_agrees`).
        network_chi2: the rise of the Sampson residuals (chi-square, five parameters, in the
            epipolar covariance's inflated noise) below which the network's motion is "not told
            apart"; 11.07 is the 95 % value (not tuned).
        track_step_var: variance (log length², per step) the three-view prediction adds on top of
            its measured spread; chosen on KITTI 00 frames 0-119.
        track_min_points: fewest corners seen in all three frames to measure the three-view ratio.
        max_step_ratio: a three-view ratio further than this from 1 (either way) is taken as failed
            (a dropped frame doubles a step).
        restart_after: measurements (depth comparisons, or the ground's) rejected (3 sigma off the
            filter) with none accepted in between, after which the filter restarts from the last
            one: a wrong prediction does not lock the length's scale.
        wander_window, wander_min: the innovations (measured minus three-view-predicted log
            length) over which :meth:`length_wander` is taken, and the fewest it needs.
        track_max_points: most corners tracked back for it (those with the most parallax: the
            tracking costs ~6 µs per corner, forward and back, on one core at the 11-pixel window).
        photo_levels: pyramid levels of the photometric alignment (each half the size).
        photo_points: most reference pixels at the finest level (one per cell of that many).
        photo_grad_min: a pixel is used when its gradient exceeds the median by this (grey
            levels per pixel).
        photo_huber: Huber threshold of the photometric residuals (grey levels).
        photo_blur: Gaussian sigma (pixels) applied to every level before the alignment (0: none).
        photo_esm: efficient second-order Jacobians (the mean of both images' gradients).
        photo_block_shrink: the cell size shrinks by this factor per coarser level (1: the same).
        photo_outlier: residuals above this (grey levels) get no weight (default: none).
        photo_iterations: Levenberg-Marquardt iterations per level at most.
        photo_lambda: initial Levenberg-Marquardt damping (times the Hessian's diagonal).
        photo_min_pixels: fewest textured reference pixels with depth (and inside the new image at
            the end) to trust the alignment.
        photo_min_valid: least fraction of those pixels inside the new image at the end.
        photo_max_rotation_deg: a rotation further than this from the start is taken as diverged.
        photo_max_depth_step: pixels whose 3x3 depth neighbourhood spans a larger ratio (a depth
            edge) are left out; 0 keeps them.
        The photometric constants were chosen on KITTI 00 frames 0-119 only (BENCHMARKS.md).
    """

    mode: str = "epipolar"
    max_corners: int = 500
    min_distance_px: int = 5
    max_fb_px: float = 1.0
    lk_iterations: int = 30
    lk_window: int = 11
    min_inliers: int = 20
    ransac_px: float = 0.3
    estimator: str = "magsac"
    min_parallax_px: float = 0.5
    still_px: float = 0.1
    max_scale_spread: float = 0.5
    max_depth_step: float = 1.1
    scale_window: int = 3
    scale_tracking: bool = True
    prefer_network: bool = True
    network_chi2: float = 11.07
    track_step_var: float = 1e-3
    track_min_points: int = 20
    track_max_points: int = 100
    max_step_ratio: float = 3.0
    restart_after: int = 3
    wander_window: int = 20
    wander_min: int = 5
    photo_levels: int = 3
    photo_points: int = 2000
    photo_grad_min: float = 4.0
    photo_huber: float = 9.0
    photo_blur: float = 0.0
    photo_esm: bool = True
    photo_block_shrink: float = 1.0
    photo_outlier: float = np.inf
    photo_iterations: int = 10
    photo_lambda: float = 1e-3
    photo_min_pixels: int = 100
    photo_min_valid: float = 0.5
    photo_max_rotation_deg: float = 5.0
    photo_max_depth_step: float = 1.1
    counts: dict = field(default_factory=dict)
    #: log(measured length, in the filter's units / network length) of the recent measurements
    ratios: deque = field(default_factory=deque, init=False, repr=False, compare=False)
    #: the length filter: log length (depth units) and its variance of the last epipolar motion
    log_length: float | None = field(default=None, init=False, repr=False, compare=False)
    log_length_var: float = field(default=float("nan"), init=False, repr=False, compare=False)
    #: (reference view, new view, unit T_new_ref) of the last epipolar motion: the three-view chain
    _last: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _scale: float | None = field(default=None, init=False, repr=False, compare=False)  # the last call's
    _metric: bool = field(default=False, init=False, repr=False, compare=False)  # the last call's ground given
    _gated: int = field(default=0, init=False, repr=False, compare=False)  # measurements rejected in a row
    #: the length filter's recent innovations (measured minus predicted log length, three-view
    #: predictions only): how much the measurements wander against the corners' own chain
    innovations: deque = field(default_factory=deque, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if int(self.scale_window) < 1:
            raise ValueError(f"scale_window must be >= 1, got {self.scale_window!r}")
        self.ratios = deque(maxlen=int(self.scale_window))
        if int(self.lk_window) < 3:
            raise ValueError(f"lk_window must be >= 3 pixels, got {self.lk_window!r}")
        if int(self.wander_window) < 1:
            raise ValueError(f"wander_window must be >= 1, got {self.wander_window!r}")
        self.innovations = deque(maxlen=int(self.wander_window))
        if self.mode not in REFINE_MODES:
            raise ValueError(f"refine mode must be one of {', '.join(REFINE_MODES)}, got {self.mode!r}")
        if self.estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(_ESTIMATORS)}, got {self.estimator!r}")
        for name in ("photo_levels", "photo_points", "photo_iterations", "photo_min_pixels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("photo_huber", "photo_max_rotation_deg"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.max_step_ratio) > 1.0:
            raise ValueError(f"max_step_ratio must be > 1, got {self.max_step_ratio!r}")
        if int(self.restart_after) < 1:
            raise ValueError(f"restart_after must be >= 1, got {self.restart_after!r}")
        if not float(self.track_step_var) >= 0.0:
            raise ValueError(f"track_step_var must be >= 0, got {self.track_step_var!r}")
        if not 0.0 <= self.photo_min_valid <= 1.0:
            raise ValueError(f"photo_min_valid must be in [0, 1], got {self.photo_min_valid!r}")

    def reset_scale(self) -> None:
        """Forget the recent depth/network length ratios and the length filter (new weights: the
        network's or the depth's units may have changed); until the next depth comparison holds,
        lengths are the network's."""
        self.ratios.clear()
        self.innovations.clear()
        self.log_length, self.log_length_var, self._last, self._scale = None, float("nan"), None, None
        self._gated = 0

    def view(self, image: np.ndarray, K: np.ndarray) -> RefineView:
        """A camera image ((H, W[, 3]), uint8 or float in [0, 1]) with its intrinsics ``K`` → the
        refiner's view of it: grey, resized to the paper's pixel budget at the image's aspect ratio
        (:func:`sfm_ros.data.autoconfig.auto_size`: 128x416 for KITTI, 192x256 for 640x480), whatever the
        network's input size, so that the cost per frame is bounded and a small network input
        does not cost accuracy."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got {K.shape}")
        h, w = image.shape[:2]
        rh, rw = auto_size(w, h)
        grey = to_grey(image)
        if (rh, rw) != (h, w):
            grey = cv2.resize(grey, (rw, rh), interpolation=cv2.INTER_AREA)
            K = CameraModel(w, h, K).scaled(rw, rh).K
        return RefineView(grey, K)

    def refine(self, ref: RefineView, new: RefineView, T_net: np.ndarray,
               depth_ref: np.ndarray | None = None, scale: float = 1.0,
               ground: tuple[np.ndarray, float] | None = None) -> Refinement:
        """Refine the network's ``T_net`` (4x4 ``T_ref_new``) between the views ``ref`` and ``new``
        (:meth:`view`, one size) with, optionally, the predicted depth of ``ref`` ((H, W) at any
        size, network units) for the translation's length.

        ``scale``: the factor the caller will multiply the returned translation by (metres per
        network unit of this frame: the node's ``camera_height`` scale follows the learned depth's
        scale from frame to frame). The length filter runs in those units and the length is
        returned divided by it, so that the scaled lengths are consistent from frame to frame.
        Without ``ground``, a change of more than 2x from one call to the next is a change of units
        (a caller's new calibration): the filter starts again.

        ``ground``: ``(down, height)``, the ground's normal in the reference camera's optical frame
        (unit, towards the ground) and the camera's height above it in metres (the node's
        ``camera_height``). Then the length filter runs in metres and is measured by the ground's
        homography (:mod:`sfm_ros.runtime.ground_motion`) instead of the depth comparison (the
        learned depth's scale of the corners wanders from the depth of the road); ``scale`` only
        converts the result back. Switching ``ground`` on or off restarts the filter."""
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if ground is not None:
            down, height = np.asarray(ground[0], dtype=np.float64).reshape(-1), float(ground[1])
            if down.shape != (3,) or not np.all(np.isfinite(down)) or np.linalg.norm(down) < 1e-9:
                raise ValueError(f"ground's down must be a non-zero 3-vector, got {ground[0]!r}")
            if not (math.isfinite(height) and height > 0):
                raise ValueError(f"ground's height must be a positive number of metres, got {ground[1]!r}")
            ground = (down / np.linalg.norm(down), height)
        metric = ground is not None
        if metric != self._metric or (not metric and self._scale is not None
                                      and abs(math.log(scale / self._scale)) > math.log(2.0)):
            self.reset_scale()
        self._scale, self._metric = scale, metric
        T_net = np.asarray(T_net, dtype=np.float64)
        if T_net.shape != (4, 4):
            raise ValueError(f"T_net must be 4x4, got {T_net.shape}")
        if not np.all(np.isfinite(T_net)):
            raise ValueError("T_net must be finite")
        if depth_ref is not None and np.ndim(depth_ref) != 2:
            raise ValueError(f"depth_ref must be (H, W), got shape {np.shape(depth_ref)}")
        if ref.grey.shape != new.grey.shape:
            raise ValueError(f"views of one size expected, got {ref.grey.shape} and {new.grey.shape}")
        if self.mode == "none":
            out = Refinement(T_net.copy(), reason="refinement off", why="off")
        else:
            if depth_ref is not None and depth_ref.shape != ref.grey.shape:
                depth_ref = cv2.resize(np.asarray(depth_ref, np.float32), ref.grey.shape[::-1],
                                       interpolation=cv2.INTER_NEAREST)
            out = epi = None
            if self.mode in ("epipolar", "epipolar+photometric"):
                last = self._last
                prev = (last[0].grey, last[2]) if last is not None and last[1] is ref and \
                    last[0].grey.shape == ref.grey.shape else None
                out = epi = self._epipolar(ref.grey, new.grey, ref.K, T_net, depth_ref, prev, scale, ground)
                if out.scale_from in ("", "network") and self.ratios and out.used != "still":
                    # the network's translation kept (a fallback, a rotation alone): on the scale of
                    # the recent measurements, in the caller's units as the refined lengths are
                    out.T = out.T.copy()
                    out.T[:3, 3] *= math.exp(self._recent_log_length(0.0)) / scale  # log of a unit length
                    out.scale_from = "ground ratio" if ground is not None else "depth ratio"
            if self.mode in ("photometric", "epipolar+photometric"):
                out = self._photometric(ref.grey, new.grey, ref.K, T_net, depth_ref, out)
            self._last = (ref, new, epi.unit_motion) if epi is not None and epi.unit_motion is not None else None
        out.covariance = motion_covariance(out, 0.5 * (ref.K[0, 0] + ref.K[1, 1]))
        self.counts[out.used] = self.counts.get(out.used, 0) + 1
        return out

    # ------------------------------------------------------------------ epipolar
    def _epipolar(self, a: np.ndarray, b: np.ndarray, K: np.ndarray, T_net: np.ndarray,
                  depth: np.ndarray | None, prev: tuple[np.ndarray, np.ndarray] | None = None,
                  scale: float = 1.0, ground: tuple[np.ndarray, float] | None = None) -> Refinement:
        """The epipolar refinement of ``a → b``; ``prev``: (grey image of the frame before ``a``, its
        unit ``T_a_prev``) for the three-view length prediction, or None; ``scale``, ``ground``:
        :meth:`refine`'s."""
        p, q = track_corners(a, b, max_corners=self.max_corners, min_distance=self.min_distance_px,
                             iterations=self.lk_iterations, window=self.lk_window,
                             max_fb_error=self.max_fb_px)
        n = len(p)
        if n < self.min_inliers:
            return Refinement(T_net.copy(), reason=f"{n} corners tracked (< {self.min_inliers})", tracks=n,
                              why="few tracks")
        flow = float(np.median(np.linalg.norm(q - p, axis=1)))
        if flow < self.still_px:  # the corners did not move: neither did the camera
            net_angle = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3]))))
            return Refinement(np.eye(4), "still", f"the tracked corners moved {flow:.2f} px (median, < "
                              f"{self.still_px:g}): no motion", n, n, "still", net_angle, "still",
                              residual_px=flow, parallax_px=flow,
                              still_length=_still_length(p, depth, K, self.still_px))
        R_rot, residual = _rotation_only(p, q, K)
        if R_rot is not None and residual < self.min_parallax_px:
            T = T_net.copy()
            T[:3, :3] = R_rot.T
            d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ T[:3, :3]))))
            return Refinement(T, "rotation", f"a rotation explains the motion to {residual:.2f} px "
                              f"(< {self.min_parallax_px:g}): translation from the network", n, n, "network",
                              d_rot, "low parallax", residual_px=residual, parallax_px=residual)
        E, mask = cv2.findEssentialMat(p, q, K, method=_ESTIMATORS[self.estimator], prob=0.999,
                                       threshold=self.ransac_px)
        if E is not None and E.ndim == 2 and E.shape[0] > 3 and E.shape[0] % 3 == 0:
            E = E[:3]  # several solutions stacked: the first is the best scored
        if E is None or E.shape != (3, 3) or mask is None:
            return Refinement(T_net.copy(), reason="no essential matrix", tracks=n, why="no essential matrix")
        inl, R, t, mask = cv2.recoverPose(E, p, q, K, mask=mask.copy())
        inl = int(inl)
        if inl < self.min_inliers:
            return Refinement(T_net.copy(), reason=f"{inl} corners fit the essential matrix (< {self.min_inliers})",
                              tracks=n, inliers=inl, why="few inliers")
        keep = mask.ravel() > 0
        p_in, q_in = p[keep].astype(np.float64), q[keep].astype(np.float64)
        # T_new_ref = [R | t]: x_new = R x_ref + t, |t| = 1
        info, r0 = _epipolar_information(p_in, q_in, K, R, t.ravel())  # r0: the Sampson residuals
        noise = epipolar_noise_var(robust_spread(r0), inl)
        kept = self.prefer_network and _network_agrees(p_in, q_in, K, R, t.ravel(), r0, noise, T_net,
                                                       self.network_chi2)
        if kept:  # the corners cannot tell the network's motion from the five points': keep it
            T_nr = invert_pose(T_net)
            R, t = T_nr[:3, :3], T_nr[:3, 3] / np.linalg.norm(T_nr[:3, 3])
            info, r0 = _epipolar_information(p_in, q_in, K, R, t)  # its residuals and information
        residual_px = robust_spread(r0)
        S = epipolar_covariance(info[0], residual_px, inl)
        t = np.asarray(t, dtype=np.float64).reshape(3, 1)
        T_new_ref = make_pose(R, t.ravel())
        T_epi = invert_pose(T_new_ref)
        d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ T_epi[:3, :3]))))
        parallax = _parallax_px(p_in, q_in, K, R)
        if parallax < self.min_parallax_px:
            T = T_net.copy()
            T[:3, :3] = T_epi[:3, :3]
            return Refinement(T, "rotation", f"parallax {parallax:.2f} px (< {self.min_parallax_px:g}): "
                              "translation from the network", n, inl, "network", d_rot, "low parallax",
                              residual_px=residual_px, parallax_px=parallax)
        step = None
        if prev is not None and self.scale_tracking:
            step = self._step_ratio(a, prev[0], p_in, q_in, K, T_new_ref, prev[1])
        road = None
        if ground is not None:
            guess = math.exp(self.log_length) if self.log_length is not None else None  # the last step's
            road = ground_step_length(a, b, K, R, t.ravel(), ground[0], ground[1], guess=guess)
        baseline, spread, scale_from, rel_sd = self._length(p_in, q_in, K, T_new_ref, T_net, depth, step, scale,
                                                            road)
        T = T_epi.copy()
        T[:3, 3] *= baseline
        return Refinement(T, "epipolar", "", n, inl, scale_from, d_rot, residual_px=residual_px,
                          parallax_px=parallax, length_spread=spread, motion_cov=(S, info[1], R), network_kept=kept,
                          length_rel_sd=rel_sd,
                          step_ratio=math.exp(step[0]) if step is not None else float("nan"),
                          unit_motion=T_new_ref,
                          ground_length=road.length if road is not None and road.length is not None else float("nan"),
                          ground_reason=road.reason if road is not None else "")

    def _photometric(self, a: np.ndarray, b: np.ndarray, K: np.ndarray, T_net: np.ndarray,
                     depth: np.ndarray | None, before: Refinement | None) -> Refinement:
        """Direct photometric polish of ``before`` (the epipolar outcome, chained mode) or of the
        network's motion; on failure ``before`` (or the network's motion) is kept, with the reason."""
        keep = before if before is not None else Refinement(T_net.copy())
        start = keep.used
        if depth is None:
            res = PhotoResult(None, "no depth", "no depth for the photometric alignment")
        else:
            res = photometric_align(a, b, K, depth, keep.T, self)
        if res.T is None:
            why = f"photometric: {res.why}"
            reason = f"photometric alignment failed ({res.reason}): {start}'s motion kept"
            if before is not None and before.reason:
                reason = f"{before.reason}; {reason}"
            keep.why = f"{keep.why}, {why}" if keep.why else why
            keep.reason = reason
            keep.start, keep.photo_pixels, keep.photo_valid = start, res.pixels, res.valid
            keep.photo_residual_start, keep.photo_iterations = res.residual_start, res.iterations
            return keep
        d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ res.T[:3, :3]))))
        return Refinement(res.T, "photometric", "", keep.tracks, keep.inliers, "depth", d_rot,
                          residual_px=keep.residual_px, parallax_px=keep.parallax_px, start=start,
                          photo_pixels=res.pixels, photo_valid=res.valid, photo_residual=res.residual,
                          photo_residual_start=res.residual_start, photo_iterations=res.iterations,
                          photo_info=res.info)

    def _length(self, p: np.ndarray, q: np.ndarray, K: np.ndarray, T_new_ref: np.ndarray,
                T_net: np.ndarray, depth: np.ndarray | None,
                step: tuple[float, float] | None = None, scale: float = 1.0,
                road: GroundLength | None = None) -> tuple[float, float, str, float]:
        """The translation's length (module doc: a Kalman filter on its log, in the units of
        ``scale`` per network unit, or in metres with ``road``; returned in network units), the
        depth ratios' spread (NaN unless measured on this frame), where the length's scale came
        from and its relative standard deviation (NaN for the network's own length). ``step``: the
        three-view (log ratio to the previous length, its variance), or None; ``road``: the
        ground homography's outcome (:func:`sfm_ros.runtime.ground_motion.ground_step_length`) when
        the filter runs in metres."""
        net = float(np.linalg.norm(T_net[:3, 3]))  # network units
        spread = float("nan")
        if road is not None:  # metres: the ground's homography measures them
            meas = (road.length, GROUND_LEN_REL ** 2) if road.length is not None else None
            kind = "ground"
        else:  # the depth comparison, in the caller's units
            found = self._depth_baseline(p, q, K, T_new_ref, depth) if depth is not None else None
            meas = None
            if found is not None:
                spread = found[1]
                meas = (found[0] * scale, max(MIN_LEN_REL, K_LEN * spread) ** 2)
            kind = "depth"
        implausible = step is not None and abs(step[0]) > math.log(self.max_step_ratio)
        if step is not None and not implausible and self.log_length is not None:
            x, P, src = self.log_length + step[0], self.log_length_var + step[1] + self.track_step_var, "tracked"
        elif implausible and meas is not None:
            # a step this many times the previous one (frames skipped, or a failed three-view
            # measurement): the lengths before tell nothing about this one; the measurement does
            x, P, src = None, float("nan"), "network"
        elif self.ratios and net > 1e-12:  # the network's length on the scale of recent measurements
            x, P, src = self._recent_log_length(math.log(net)), DEPTH_RATIO_LEN_REL ** 2, f"{kind} ratio"
        else:
            x, P, src = None, float("nan"), "network"
        if net > 1e-12 and meas is not None:
            self.ratios.append(math.log(meas[0] / net))
        if meas is not None:
            z, Rz = math.log(meas[0]), meas[1]
            if x is not None and src == "tracked":
                self.innovations.append(z - x)
            if x is None:
                x, P, src = z, Rz, kind
            elif src != "tracked" or (z - x) ** 2 < 9.0 * (P + Rz):
                # a measurement 3 sigma off a carried state is not taken ... (against a prediction
                # made afresh from the network's length, it is: that prediction knows too little)
                gain = P / (P + Rz)
                x, P, src = x + gain * (z - x), (1.0 - gain) * P, kind
                self._gated = 0
            else:
                self._gated += 1
                if self._gated >= self.restart_after:  # ... unless the filter is the one that is off
                    x, P, src, self._gated = z, Rz, kind, 0
        if x is None:  # no scale yet: the network's units
            self.log_length, self.log_length_var = None, float("nan")
            return net, spread, "network", float("nan")
        self.log_length, self.log_length_var = x, P
        # The filter takes its measurements as independent; their errors are correlated from frame
        # to frame (the depth's scale wanders, the road's pitch changes): floors measured on KITTI,
        # and the wander the innovations show on this stretch.
        floor = GROUND_LEN_REL if road is not None else MIN_FILTERED_LEN_REL
        return math.exp(x) / scale, spread, src, max(floor, math.sqrt(P), self.length_wander())

    def length_wander(self) -> float:
        """The recent measurements' wander against the three-view chain: a robust standard
        deviation (``sqrt(median ν² / 0.455)``, the median of a chi-square of one degree) of the
        last ``wander_window`` innovations ν of the length filter, 0 below ``wander_min`` of them.
        A length is never published as better known than this: when the depth's (or the ground's)
        scale swings from frame to frame, the scale it sets is no better than the swings. (For
        white measurement noise this is cautious: the innovations' spread includes the
        measurement's and the prediction's variance, which the filter's averaging reduces; the
        learned depth's errors are correlated over frames, where averaging does not help, and the
        measurement variance the filter assumes is the calibrated error against the truth, 4-5x
        the innovations' spread on KITTI 00 0-119, so it cannot be subtracted.)"""
        if len(self.innovations) < int(self.wander_min):
            return 0.0
        return math.sqrt(float(np.median(np.square(self.innovations))) / 0.455)

    def _recent_log_length(self, log_net: float) -> float:
        """The log of a network length (``log_net``, network units) on the scale of the recent
        measurements (the median of :attr:`ratios`), in the filter's units."""
        return log_net + float(np.median(self.ratios))

    def _step_ratio(self, a: np.ndarray, before: np.ndarray, p: np.ndarray, q: np.ndarray, K: np.ndarray,
                    T_new_ref: np.ndarray, T_ref_before: np.ndarray) -> tuple[float, float] | None:
        """The three-view ratio of this step's length to the previous one: the reference frame's
        inlier corners ``p`` (tracked to ``q`` in the new frame) tracked back into the frame
        ``before`` it, triangulated with the previous unit motion ``T_ref_before`` (x_ref = R
        x_before + t) and with this one; returns (median log ratio of their depths in the
        reference frame, its variance) or None when too few corners give both."""
        if len(p) > self.track_max_points:  # the most parallax: the best-conditioned depths
            keep = np.argsort(-_parallax_each(p, q, K, T_new_ref[:3, :3]))[: self.track_max_points]
            p, q = p[keep], q[keep]
        _, back, ok = track_points(a, before, p, self.max_fb_px, self.lk_iterations, self.lk_window)
        if int(ok.sum()) < self.track_min_points:
            return None
        z_now = _triangulate(p[ok], q[ok], K, T_new_ref)[0]
        z_before = _triangulate(back[ok].astype(np.float64), p[ok], K, T_ref_before)[1]
        good = np.isfinite(z_now) & np.isfinite(z_before) & (z_now > 1e-9) & (z_before > 1e-9)
        if int(good.sum()) < self.track_min_points:
            return None
        x = np.log(z_before[good] / z_now[good])
        med = float(np.median(x))
        sd = 1.4826 * float(np.median(np.abs(x - med)))  # robust sd of one corner's log ratio
        return med, 0.5 * math.pi * sd * sd / x.size     # the variance of a median of x.size

    def _depth_baseline(self, p: np.ndarray, q: np.ndarray, K: np.ndarray, T_new_ref: np.ndarray,
                        depth: np.ndarray) -> tuple[float, float] | None:
        """Baseline that makes the corners triangulated with a unit baseline agree with the
        predicted depth of the reference frame (median ratio) and the ratios' spread (inter-quartile
        range / median / sqrt(corners)), or None when they disagree."""
        depth = np.asarray(depth, dtype=np.float64)
        h, w = depth.shape
        z_tri, z_new = _triangulate(p, q, K, T_new_ref)
        u = np.clip(np.rint(p[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(p[:, 1]).astype(int), 0, h - 1)
        d = depth[v, u]
        # Corners sit on depth edges: keep those whose 3x3 neighbourhood has one depth.
        kernel = np.ones((3, 3), np.uint8)
        d32 = depth.astype(np.float32)
        lo, hi = cv2.erode(d32, kernel)[v, u], cv2.dilate(d32, kernel)[v, u]
        ok = np.isfinite(z_tri) & (z_tri > 1e-6) & (z_new > 1e-6) & np.isfinite(d) & (lo > 0) & \
            (hi <= self.max_depth_step * lo)
        if int(ok.sum()) < self.min_inliers // 2:
            return None
        ratio = d[ok] / z_tri[ok]
        q25, med, q75 = np.percentile(ratio, [25, 50, 75])
        if not np.isfinite(med) or med <= 0 or (q75 - q25) > self.max_scale_spread * med:
            return None
        return float(med), float((q75 - q25) / med / math.sqrt(ratio.size))


def _triangulate(p: np.ndarray, q: np.ndarray, K: np.ndarray,
                 T_new_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depths of the corners ``p`` (reference frame) ↔ ``q`` (new frame) triangulated with the
    motion ``T_new_ref``, in the reference and in the new camera: ``(z_ref, z_new)``."""
    X = cv2.triangulatePoints(K @ np.eye(3, 4), K @ T_new_ref[:3, :], np.asarray(p, np.float64).T,
                              np.asarray(q, np.float64).T)
    X = X[:3] / X[3]
    return X[2], (T_new_ref[:3, :3] @ X + T_new_ref[:3, 3:4])[2]


def _rotation_only(p: np.ndarray, q: np.ndarray, K: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The rotation ``R`` (x_new = R x_ref) that best explains ``p → q`` as a pure rotation, and the
    median residual of that rotation's homography (pixels); ``(None, inf)`` when nothing fits.

    The corners a robust homography keeps are aligned as unit bearing vectors (Kabsch: the
    least-squares rotation between the two bundles of rays)."""
    H, mask = cv2.findHomography(p, q, cv2.USAC_MAGSAC, 1.0)
    if H is None or mask is None or int(mask.sum()) < 3:
        return None, float("inf")
    keep = mask.ravel() > 0
    Kinv = np.linalg.inv(K)
    f0 = np.c_[p[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f1 = np.c_[q[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f0 /= np.linalg.norm(f0, axis=1, keepdims=True)
    f1 /= np.linalg.norm(f1, axis=1, keepdims=True)
    U, _, Vt = np.linalg.svd(f1.T @ f0)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return R, _parallax_px(p.astype(np.float64), q.astype(np.float64), K, R)


def _signed_sampson(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Signed Sampson distances (pixels) of ``p ↔ q`` to the motion ``x_new = R x_ref + t``."""
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ (tx @ R) @ Kinv
    x1 = np.c_[p, np.ones(len(p))]
    x2 = np.c_[q, np.ones(len(q))]
    Fx1 = x1 @ F.T
    Ftx2 = x2 @ F
    den = Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2
    return np.sum(x2 * Fx1, axis=1) / np.sqrt(np.maximum(den, 1e-18))


def _epipolar_information(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray,
                          t: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Gauss-Newton information ``JᵀJ`` (5x5, pixels² per unit²) of the Sampson residuals over the
    five motion parameters the two views fix: a rotation ``ω`` (``R exp(ω)``, rad) and the direction
    of ``t`` along the two unit vectors ``B`` (3x2) across it (rad); numerical derivatives. Returns
    ``((JᵀJ, B, R), residuals)``. Its inverse times the residual variance is the motion's
    covariance, correlations (bas-relief: a turn against a sideways step) included."""
    t = t / np.linalg.norm(t)
    a = np.array([1.0, 0.0, 0.0]) if abs(t[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b1 = np.cross(t, a)
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(t, b1)
    r0 = _signed_sampson(p, q, K, R, t)
    eps = 1e-6
    J = np.empty((len(p), 5))
    for k in range(3):
        w = np.zeros(3)
        w[k] = eps
        Rk = axis_angle_to_matrix(w)
        J[:, k] = (_signed_sampson(p, q, K, R @ Rk, t) - r0) / eps
    for k, b in enumerate((b1, b2)):
        tk = t + eps * b
        J[:, 3 + k] = (_signed_sampson(p, q, K, R, tk / np.linalg.norm(tk)) - r0) / eps
    return (J.T @ J, np.stack([b1, b2], axis=1), R), r0


def _network_agrees(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                    r_epi: np.ndarray, noise_var: float, T_net: np.ndarray, chi2: float = 11.07) -> bool:
    """Whether the essential matrix's inliers ``p ↔ q`` cannot tell the pose network's rotation and
    direction (``T_net``, ``T_ref_new``) from the five-point solution ``x_new = R x_ref + t``: the
    rise of the Sampson residuals' sum of squares from the solution's (``r_epi``) to the network's
    motion, over the residual variance of the epipolar covariance (``noise_var``:
    :func:`sfm_ros.runtime.motion_covariance.epipolar_noise_var`, inflated over the image noise), is
    below ``chi2`` (the 95 % chi-square value of five parameters under that inflated noise: a
    loose test on the residuals as measured), and the network moves the same way (the residuals
    do not see the sign of ``t``). Few or distant corners (a turn against a sideways step: the
    bas-relief ambiguity) then fit a wrong five-point solution as well as the network's motion,
    and the network's motion is the better guess (rendered streets); many near corners reject a
    network that is a degree off (KITTI)."""
    T_nr = invert_pose(T_net)
    tn = T_nr[:3, 3]
    if np.linalg.norm(tn) < 1e-12 or not noise_var > 0:
        return False
    dn = tn / np.linalg.norm(tn)
    if float(dn @ t) <= 0.0:
        return False
    r_net = _signed_sampson(p, q, K, T_nr[:3, :3], dn)
    rise = (float(r_net @ r_net) - float(r_epi @ r_epi)) / noise_var
    return bool(np.isfinite(rise) and rise < chi2)


def _parallax_each(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Image motion (pixels) of each ``p → q`` once the rotation ``R`` (x_new = R x_ref + t) is
    removed: the part of the motion that only a translation makes."""
    H = K @ R @ np.linalg.inv(K)
    ph = np.c_[p, np.ones(len(p))] @ H.T
    rot = ph[:, :2] / ph[:, 2:3]
    return np.linalg.norm(q - rot, axis=1)


def _parallax_px(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray) -> float:
    """Median of :func:`_parallax_each`."""
    return float(np.median(_parallax_each(p, q, K, R)))


@dataclass
class CornerBudget:
    """Tries to keep a :class:`Refiner`'s cost per frame within ``budget_ms`` on the machine it runs
    on, by its ``max_corners`` (the corner tracking is the largest part of the cost: ~6 µs a corner,
    forward and back, on one core at the 11-pixel window, ~14 µs at 21; what does not scale with
    the corners, e.g. the ground search, it cannot cut).

    CPUs of one kind differ (the code with a 21-pixel window measured 10 ms a frame on one Xeon,
    14-22 ms on an AMD EPYC), so the node measures instead of assuming: after every ``window``
    refinements, a median time over the budget takes ``step`` corners off (down to ``low``), one
    under ``relax`` times the budget gives them back (up to ``high``, the tuned default). Only
    refinements that tracked and solved are timed (a fallback on a featureless frame is cheap and
    says nothing of the cost). The node's diagnostics show the median and the corners it was measured with. Offline
    evaluation keeps the refiner's own setting."""

    budget_ms: float = 15.0
    window: int = 20
    low: int = 300
    high: int = 500
    step: int = 100
    relax: float = 0.6
    times: deque = field(default_factory=deque, repr=False)
    last_ms: float = float("nan")  # the median of the last full window
    last_corners: int = 0           # the corners that window was measured with

    def __post_init__(self) -> None:
        if not (self.budget_ms > 0 and self.window >= 1 and 1 <= self.low <= self.high and self.step >= 1
                and 0 < self.relax < 1):
            raise ValueError(f"CornerBudget: budget_ms > 0, window >= 1, 1 <= low <= high, step >= 1, "
                             f"0 < relax < 1 expected, got {self}")
        self.times = deque(maxlen=int(self.window))

    def update(self, refiner: Refiner, ms: float, used: str = "epipolar") -> None:
        """Record one refinement's time (ms; ``used``: its :attr:`Refinement.used`, a fallback to
        the network is not timed) and, after a full window, adjust ``refiner.max_corners``."""
        if used == "network":
            return
        self.times.append(float(ms))
        if len(self.times) < self.window:
            return
        self.last_ms, self.last_corners = float(np.median(self.times)), int(refiner.max_corners)
        self.times.clear()
        if self.last_ms > self.budget_ms and refiner.max_corners > self.low:
            refiner.max_corners = max(self.low, refiner.max_corners - self.step)
        elif self.last_ms < self.relax * self.budget_ms and refiner.max_corners < self.high:
            refiner.max_corners = min(self.high, refiner.max_corners + self.step)


def _still_length(p: np.ndarray, depth: np.ndarray | None, K: np.ndarray, still_px: float) -> float:
    """The largest translation (network units) that moves the tracked corners ``p`` less than
    ``still_px`` pixels: ``still_px / f`` times their median depth (NaN without a depth)."""
    if depth is None:
        return float("nan")
    h, w = depth.shape
    u = np.clip(np.round(p[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.round(p[:, 1]).astype(int), 0, h - 1)
    z = depth[v, u]
    z = z[np.isfinite(z) & (z > 0)]
    return float(still_px / (0.5 * (K[0, 0] + K[1, 1])) * np.median(z)) if len(z) else float("nan")


#: The ``why`` of a refinement with too few corners tracked (:attr:`Refinement.untracked`).
UNTRACKED = ("few tracks",)


def refine_sequence(refiner: Refiner, views: list[RefineView], depths: list[np.ndarray] | None,
                    increments: np.ndarray, scales=None,
                    ground: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, list[Refinement]]:
    """Refine every frame-to-frame increment of a sequence: ``increments[i]`` (``T_i_{i+1}``, from the
    network) between ``views[i]`` and ``views[i + 1]`` (:meth:`Refiner.view`), with ``depths[i]`` for
    the scale and ``scales[i]`` (default 1) the factor increment ``i`` will be multiplied by
    (:meth:`Refiner.refine`'s ``scale``) and ``ground`` :meth:`Refiner.refine`'s for every frame.
    An increment whose corners showed no consistent motion (:attr:`Refinement.untracked`) is no
    motion, as the node integrates it. Returns the refined (N-1, 4, 4) increments and each
    :class:`Refinement`."""
    inc = np.asarray(increments, dtype=np.float64)
    if inc.ndim != 3 or inc.shape[1:] != (4, 4) or len(inc) != len(views) - 1:
        raise ValueError(f"increments must be ({len(views) - 1}, 4, 4) for {len(views)} views, got {inc.shape}")
    if depths is not None and len(depths) < len(views) - 1:
        raise ValueError(f"{len(depths)} depth maps for {len(views)} views")
    if scales is not None and len(scales) != len(inc):
        raise ValueError(f"{len(scales)} scales for {len(inc)} increments")
    results = [refiner.refine(views[i], views[i + 1], inc[i], None if depths is None else depths[i],
                              1.0 if scales is None else float(scales[i]), ground)
               for i in range(len(inc))]
    return np.asarray([np.eye(4) if r.untracked else r.T for r in results]), results
