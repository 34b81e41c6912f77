"""The refiner: options, dispatch to the solvers of this package and the fallbacks to the pose
network's motion (the modes: :mod:`sfm_ros.runtime.motion`).

Convention: as :mod:`sfm_ros.core.geometry`: optical camera frame, pixel centres at integer
coordinates, ``T_a_b`` maps points of frame ``b`` into frame ``a``. The motion refined is
``T_ref_new`` (what :func:`sfm_ros.runtime.odometry.window_increment` returns), in the network's
depth units, between views at their own aspect ratio and a fixed pixel budget
(:mod:`~sfm_ros.runtime.motion.view`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np

from sfm_ros.core.se3 import invert_pose, make_pose
from sfm_ros.runtime.motion._checks import integer_at_least
from sfm_ros.runtime.motion.covariance import GROUND_LEN_REL, LEN_GAIN, MIN_FILTERED_LEN_REL, MIN_LEN_REL, \
    epipolar_covariance, motion_covariance
from sfm_ros.runtime.motion.depth_length import depth_baseline, still_length
from sfm_ros.runtime.motion.ground_length import GroundLength, checked_ground, ground_pixels, search_step_length
from sfm_ros.runtime.motion.ground_tilt import GroundTilt
from sfm_ros.runtime.motion.length_filter import LengthFilter
from sfm_ros.runtime.motion.photometric import PhotometricOptions, PhotoResult, photometric_align
from sfm_ros.runtime.motion.result import EPIPOLAR_MODES, NO_SOLUTION, EpipolarCovariance, Refinement, ScaleFrom, Used
from sfm_ros.runtime.motion.rotation_angle import angle_between_deg, rotation_angle_deg
from sfm_ros.runtime.motion.rotation_window import RotationWindow
from sfm_ros.runtime.motion.sampson import epipolar_information
from sfm_ros.runtime.motion.spread import robust_spread
from sfm_ros.runtime.motion.three_view import three_view_step_ratio
from sfm_ros.runtime.motion.travel_chord import TravelChord
from sfm_ros.runtime.motion.two_view import TwoViewOptions, TwoViewSolution, direction_given_rotation, solve_two_view
from sfm_ros.runtime.motion.view import RefineView, make_view

__all__ = ["REFINE_MODES", "EPIPOLAR_MODES", "Refiner"]

REFINE_MODES = ("none", "epipolar", "photometric", "epipolar+photometric")
_PHOTOMETRIC_MODES = ("photometric", "epipolar+photometric")
#: when the frame pair's direction of travel is solved again with the rotation window's rotation
WINDOW_DIRECTION = ("off", "set_aside", "always")
#: PhotometricOptions field → the Refiner's option
_PHOTO = {f.name: "photo_" + f.name for f in fields(PhotometricOptions)} | {"damping": "photo_lambda"}
_LENGTH = [f.name for f in fields(LengthFilter) if f.init]
_TV, _PO, _LF = TwoViewOptions, PhotometricOptions, LengthFilter


@dataclass
class _Chain:
    """The last epipolar motion, for the next three-view ratio: its views and its unit ``T_new_ref``."""

    ref: RefineView
    new: RefineView
    unit_motion: np.ndarray


@dataclass
class Refiner:
    """Refines ``T_ref_new`` between two frames (the modes: :mod:`sfm_ros.runtime.motion`).

    Options: ``mode`` (one of :data:`REFINE_MODES`); ``max_corners`` … ``still_px`` and
    ``network_chi2``: :class:`~sfm_ros.runtime.motion.two_view.TwoViewOptions`; ``scale_window``,
    ``track_step_var``, ``max_step_ratio``, ``restart_after``, ``wander_*``:
    :class:`~sfm_ros.runtime.motion.length_filter.LengthFilter` (read at construction);
    ``photo_*``: :class:`~sfm_ros.runtime.motion.photometric.PhotometricOptions` (``photo_lambda``
    its ``damping``); ``max_scale_spread``, ``max_depth_step``: the depth comparison's
    (:func:`~sfm_ros.runtime.motion.depth_length.depth_baseline`); ``track_min_points``,
    ``track_max_points``: the three-view ratio's (:mod:`~sfm_ros.runtime.motion.three_view`; the
    tracking back costs ~6 µs per corner on one core at the 11-pixel window); ``scale_tracking``:
    predict each length by the three-view ratio; ``prefer_network``: keep the network's rotation
    and direction where the corners cannot tell them from the five-point solution;
    ``ground_tilt``: measure the ground normal's tilt from the images
    (:class:`~sfm_ros.runtime.motion.ground_tilt.GroundTilt`, the median of the last
    ``tilt_window`` measurements) and use it for the ground's metres instead of the given "down"
    (on by default: the camera of a car or a wheeled robot is rarely level with its road to the
    degree the ground's metres need, 9 % of length a degree; off for a camera that does not move
    along its ground, a drone); ``tilt_source``: what it is measured from, ``"travel"`` (the ground
    contains the direction of travel; free but for the chord's tracking) or ``"photometric"`` (a
    search every ``tilt_every``-th pair: on KITTI 00 the frame's p50 rose from 86 to 115 ms at
    every 2nd pair); ``tilt_chord``: with ``"travel"``, the frame steps over which the direction is
    read (:class:`~sfm_ros.runtime.motion.travel_chord.TravelChord`, one measurement a chord; 1:
    each pair's own direction, every ``tilt_every``-th; :meth:`set_ground_tilt` switches it at run
    time). Measured (BENCHMARKS.md, issue 24): on KITTI 00 0-159 the chords of 8 steps bring t_err
    from 5.96 % (the nominal "down") to 2.59 % and the step-length ratio from 1.060 to 1.010; on
    rendered streets whose camera is level they cost 0.06 points (700-702, mean 7.01 % against
    6.95 %) and 0.34 points (710-712, never tuned on: 5.18 % against 4.84 %), where each pair's
    own direction cost 1.2 points.
    ``rotation_window``: fuse each step's rotation with those measured against the frames
    ``2, 4, 8, …`` steps back, the powers of two up to ``window_span``
    (:class:`~sfm_ros.runtime.motion.rotation_window.RotationWindow`, ``window_agree_deg`` its
    agreement, ``window_points`` the corners a baseline's solution uses at most; the epipolar modes,
    before ``epipolar+photometric``'s polish; a still camera's motion stays none; the window then
    holds the rotation the refinement returns, none where the corners showed no motion; a
    refinement that raises restarts it; :meth:`set_rotation_window` switches it at run time).
    The window's baselines are solved by its own estimator (``RotationWindow.estimator``,
    ``magsac_polish``), not by ``estimator`` (the frame pair's). ``window_direction``
    (:data:`WINDOW_DIRECTION`): where the window's baselines agree on a rotation and set the frame
    pair's own five-point rotation aside (``"set_aside"``, the default; ``"always"``: wherever two or
    more agree; ``"off"``), the pair's direction of travel is solved again from its inliers with the
    window's rotation held, before the length is measured: a five-point rotation a few degrees off
    comes with a direction off by up to 50° (rendered streets; the network's motion kept is left
    alone). Measured (BENCHMARKS.md, session 25): streets 700 / 702 t_err 5.04 / 4.85 → 4.23 /
    4.57 %, snippet ATE 0.0275 / 0.0295 → 0.0198 / 0.0254 m, streets 710-712 (never tuned on) mean
    3.77 → 3.53 %; KITTI 00 0-159 unchanged (no frame set aside); ``"always"`` cost KITTI 2.56 → 2.68 %.
    Measured (BENCHMARKS.md, issue 24): rotation drift on KITTI 00 0-159 3.95 → 3.34 °/100 m, on
    rendered streets 700-702 12.6 / 12.4 / 27.3 → 1.8 / 3.6 / 3.2 °/100 m; a pose network biased
    0.2° a step in yaw, which one step's corners cannot reject (``prefer_network``), no longer
    chains its bias (test_rotation_window).

    State: ``counts`` (refinements per :class:`~sfm_ros.runtime.motion.result.Used`), ``length``
    (the length filter), the last epipolar motion (the three-view chain), the last call's scale
    and ground.
    """

    mode: str = "epipolar"
    max_corners: int = _TV.max_corners
    min_distance_px: int = _TV.min_distance_px
    max_fb_px: float = _TV.max_fb_px
    lk_iterations: int = _TV.lk_iterations
    lk_window: int = _TV.lk_window
    min_inliers: int = _TV.min_inliers
    ransac_px: float = _TV.ransac_px
    estimator: str = _TV.estimator
    min_parallax_px: float = _TV.min_parallax_px
    still_px: float = _TV.still_px
    max_scale_spread: float = 0.5
    max_depth_step: float = 1.1
    scale_window: int = _LF.scale_window
    scale_tracking: bool = True
    prefer_network: bool = True
    network_chi2: float = _TV.network_chi2
    track_step_var: float = _LF.track_step_var
    track_min_points: int = 20
    track_max_points: int = 100
    max_step_ratio: float = _LF.max_step_ratio
    restart_after: int = _LF.restart_after
    wander_window: int = _LF.wander_window
    wander_min: int = _LF.wander_min
    photo_levels: int = _PO.levels
    photo_points: int = _PO.points
    photo_grad_min: float = _PO.grad_min
    photo_huber: float = _PO.huber
    photo_blur: float = _PO.blur
    photo_esm: bool = _PO.esm
    photo_block_shrink: float = _PO.block_shrink
    photo_outlier: float = _PO.outlier
    photo_iterations: int = _PO.iterations
    photo_lambda: float = _PO.damping
    photo_min_pixels: int = _PO.min_pixels
    photo_min_valid: float = _PO.min_valid
    photo_max_rotation_deg: float = _PO.max_rotation_deg
    photo_max_depth_step: float = _PO.max_depth_step
    ground_tilt: bool = True
    counts: dict = field(default_factory=dict)
    length: LengthFilter = field(init=False, repr=False, compare=False)
    tilt_every: int = 2
    tilt_window: int = 61
    tilt_source: str = "travel"
    tilt_chord: int = 8
    rotation_window: bool = True
    window_span: int = 8
    window_agree_deg: float = 0.5
    window_points: int = 200
    window_direction: str = "set_aside"
    tilt: GroundTilt = field(init=False, repr=False, compare=False)
    chord: TravelChord | None = field(default=None, init=False, repr=False, compare=False)
    window: RotationWindow | None = field(default=None, init=False, repr=False, compare=False)
    _chain: _Chain | None = field(default=None, init=False, repr=False, compare=False)
    _fused: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (fusion,) pushed early
    _scale: float | None = field(default=None, init=False, repr=False, compare=False)  # the last call's
    _metric: bool = field(default=False, init=False, repr=False, compare=False)  # the last call's ground given

    def __post_init__(self) -> None:
        if self.mode not in REFINE_MODES:
            raise ValueError(f"refine mode must be one of {', '.join(REFINE_MODES)}, got {self.mode!r}")
        self.length = LengthFilter(**{name: getattr(self, name) for name in _LENGTH})
        self.tilt = GroundTilt(every=self.tilt_every, window=self.tilt_window, source=self.tilt_source)
        if not integer_at_least(self.tilt_chord, 1):
            raise ValueError(f"tilt_chord must be an integer >= 1, got {self.tilt_chord!r}")
        self.set_ground_tilt(self.ground_tilt)
        if not integer_at_least(self.window_span, 2):
            raise ValueError(f"window_span must be an integer >= 2, got {self.window_span!r}")
        window = self._new_window()  # its options checked now, whether it is on or not
        if self.window_direction not in WINDOW_DIRECTION:
            raise ValueError(f"window_direction must be one of {', '.join(WINDOW_DIRECTION)}, "
                             f"got {self.window_direction!r}")
        self.rotation_window = bool(self.rotation_window)
        self.window = window if self.rotation_window else None
        self.two_view_options()
        self.photometric_options()

    def set_ground_tilt(self, on: bool) -> None:
        """Switch the ground tilt on or off (``ground_tilt``), keeping the measurements and every
        other state (the length filter, the three-view chain); a chord in progress is dropped."""
        self.ground_tilt = bool(on)
        travel_chord = self.ground_tilt and self.tilt_source == "travel" and self.tilt_chord > 1
        self.chord = TravelChord(steps=int(self.tilt_chord)) if travel_chord else None

    def set_rotation_window(self, on: bool) -> None:
        """Switch the rotation window on or off (``rotation_window``); switched on, it starts at the
        next frame pair. Every other state stays."""
        self.rotation_window = bool(on)
        self.window = self._new_window() if self.rotation_window else None

    def _new_window(self) -> RotationWindow:
        """A rotation window of this refiner's options (baselines: the powers of two up to ``window_span``)."""
        baselines = tuple(2 ** i for i in range(1, int(math.log2(self.window_span)) + 1))
        return RotationWindow(baselines=baselines, agree_deg=self.window_agree_deg, max_points=self.window_points)

    def two_view_options(self) -> TwoViewOptions:
        """The two-view solver's options, as set now (the corner budget changes ``max_corners``)."""
        return TwoViewOptions(**{f.name: getattr(self, f.name) for f in fields(TwoViewOptions)})

    def photometric_options(self) -> PhotometricOptions:
        """The photometric solver's options, as set now; a bad one is named as the refiner spells it."""
        try:
            return PhotometricOptions(**{name: getattr(self, option) for name, option in _PHOTO.items()})
        except ValueError as exc:
            name, _, rest = str(exc).partition(" ")
            raise ValueError(f"{_PHOTO.get(name, name)} {rest}") from None

    @property
    def ratios(self):
        """The length filter's recent log(measured / network length) (:attr:`LengthFilter.ratios`)."""
        return self.length.ratios

    def reset_scale(self) -> None:
        """Forget the length filter and the three-view chain (new weights: the network's or the
        depth's units may have changed); until the next measurement holds, lengths are the network's."""
        self.length.reset()
        self._chain, self._scale = None, None

    def view(self, image: np.ndarray, K: np.ndarray) -> RefineView:
        """A camera image ((H, W[, 3]), uint8 or float in [0, 1]) with its intrinsics ``K`` (3, 3) →
        the refiner's view of it (:func:`sfm_ros.runtime.motion.view.make_view`)."""
        return make_view(image, K)

    def refine(self, ref: RefineView, new: RefineView, T_net: np.ndarray,
               depth_ref: np.ndarray | None = None, scale: float = 1.0,
               ground: tuple[np.ndarray, float] | None = None, hurry: bool = False) -> Refinement:
        """Refine the network's ``T_net`` (4x4 ``T_ref_new``) between the views ``ref`` and ``new``
        (:meth:`view`, one size) with, optionally, the predicted depth of ``ref`` ((H, W) at any
        size, network units) for the translation's length.

        ``scale``: the factor the caller multiplies the translation by (metres per network unit of
        this frame): the length filter runs in those units and the length is returned divided by
        it. Without ``ground`` a change of more than 2x from one call to the next (a caller's new
        calibration) restarts the filter. ``ground``: ``(down, height)``, the ground's normal in the
        reference camera's optical frame (towards the ground) and the camera's height in metres (the
        node's ``camera_height``): the filter then runs in metres, measured by the ground's
        homography; switching it on or off restarts the filter. ``hurry``: the caller is behind (a
        newer frame waits): the rotation window carries its corners but measures no baseline for
        this frame (:meth:`RotationWindow.push`'s ``solve=False``); the rest is as always."""
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        ground = checked_ground(ground)
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
        try:
            out = self._refine(ref, new, T_net, depth_ref, scale, ground, bool(hurry))
            out.covariance = motion_covariance(out, 0.5 * (ref.K[0, 0] + ref.K[1, 1]))
        except Exception:  # the window took this frame in: it restarts, as the caller keeps other motion
            if self.window is not None:
                self.window.reset()
            raise
        if out.window is not None:  # the rotation published (none for corners that showed no motion)
            self.window.published(np.eye(3) if out.untracked else out.T[:3, :3])
        self.counts[out.used] = self.counts.get(out.used, 0) + 1
        return out

    def _refine(self, ref: RefineView, new: RefineView, T_net: np.ndarray, depth_ref: np.ndarray | None,
                scale: float, ground: tuple[np.ndarray, float] | None, hurry: bool = False) -> Refinement:
        """:meth:`refine` after its checks: the mode's solvers and fallbacks."""
        if self.mode == "none":
            out = Refinement(T=T_net.copy(), reason="refinement off", why="off")
        else:
            if depth_ref is not None and depth_ref.shape != ref.grey.shape:
                depth_ref = cv2.resize(np.asarray(depth_ref, np.float32), ref.grey.shape[::-1],
                                       interpolation=cv2.INTER_NEAREST)
            out = epi = None
            if self.mode in EPIPOLAR_MODES:
                chain = self._chain
                prev = chain if chain is not None and chain.new is ref and chain.ref.grey.shape == ref.grey.shape \
                    else None
                self._fused = None
                out = epi = self._epipolar(ref, new, T_net, depth_ref, prev, scale, ground, hurry)
                if self.chord is not None and ground is not None:
                    self._chord_tilt(ref, new, ground[0])
                if self.window is not None:
                    self._window_step(ref, new, out, solve=not hurry)
                if out.scale_from in (ScaleFrom.NONE, ScaleFrom.NETWORK) and self.length.ratios \
                        and out.used != Used.STILL:
                    # the network's translation kept (a fallback, a rotation alone): on the scale of
                    # the recent measurements, in the caller's units as the refined lengths are
                    out.T = out.T.copy()
                    out.T[:3, 3] *= math.exp(self.length.recent_log_length(0.0)) / scale  # log of a unit length
                    out.scale_from = ScaleFrom.GROUND_RATIO if ground is not None else ScaleFrom.DEPTH_RATIO
            # a still camera or too few corners tracked: nothing for a photometric polish to start from
            if self.mode in _PHOTOMETRIC_MODES and not (out is not None and (out.used == Used.STILL or out.untracked)):
                out = self._photometric(ref, new, T_net, depth_ref, out)
            self._chain = _Chain(ref, new, epi.unit_motion) if epi is not None and epi.unit_motion is not None \
                else None
        return out

    def _chord_tilt(self, ref: RefineView, new: RefineView, nominal: np.ndarray) -> None:
        """Push ``ref → new`` into the chord; at its end, the tilt from its direction of travel (for
        the next frames). A chord that fails (OpenCV, a degenerate solution) restarts: this frame's
        refinement stands."""
        try:
            sol = self.chord.push(ref, new, self.two_view_options())
            if sol is not None and not sol.why:
                self.tilt.add_travel(nominal, sol.R, sol.T_new_ref[:3, 3])
        except (ValueError, cv2.error, np.linalg.LinAlgError):
            self.chord.reset()

    def _window_step(self, ref: RefineView, new: RefineView, out: Refinement, solve: bool = True) -> None:
        """Push ``ref → new`` with ``out``'s rotation into the rotation window and use the fused
        rotation (a still camera's motion stays none; ``solve=False``: corners carried only). A
        window that fails (OpenCV, a degenerate solution) restarts: this frame's refinement stands."""
        early, self._fused = self._fused, None  # pushed already by the epipolar refinement: (fusion or None,)
        fused = early[0] if early is not None else self._push_window(ref, new, out.T[:3, :3], solve)
        if fused is None:
            return
        out.window = fused
        if out.used != Used.STILL:
            out.T = out.T.copy()
            out.T[:3, :3] = fused.R

    def _push_window(self, ref: RefineView, new: RefineView, R_step: np.ndarray, solve: bool):
        """Push ``ref → new`` with the step's rotation ``R_step`` (``R_ref_new``) into the rotation
        window: its :class:`~sfm_ros.runtime.motion.result.WindowFusion` (timed), or None when it
        failed (OpenCV, a degenerate solution) and restarted."""
        t0 = time.perf_counter()
        try:
            fused = self.window.push(ref, new, R_step, self.two_view_options(), solve=solve)
        except (ValueError, cv2.error, np.linalg.LinAlgError):
            self.window.reset()
            return None
        fused.ms = 1000.0 * (time.perf_counter() - t0)
        return fused

    def _direction_with_window(self, ref: RefineView, new: RefineView, sol: TwoViewSolution, K: np.ndarray,
                               hurry: bool) -> TwoViewSolution:
        """``window_direction``: the rotation window fused before the length is measured, and the
        frame pair's direction of travel solved again from its inliers with the window's rotation
        held (:func:`~sfm_ros.runtime.motion.two_view.direction_given_rotation`) where the
        window's baselines agreed on a rotation (two or more predictions) and, with
        ``"set_aside"``, set the pair's own rotation aside: a five-point solution whose rotation
        is a few degrees off trades it for a direction off by as much as 50° (rendered streets:
        few, distant corners), and the ground's metres measured with that motion are off too.
        ``sol`` is returned with the window's rotation and the new direction (its information at
        them), or as it was. Not for the network's motion kept (its direction is not the corners')."""
        fused = self._push_window(ref, new, sol.T_ref_new[:3, :3], solve=not hurry)
        self._fused = (fused,)
        if (fused is None or sol.prior_kept or fused.agreeing < 2
                or (self.window_direction == "set_aside" and fused.step_kept)):
            return sol
        R_nr = fused.R.T
        t = direction_given_rotation(sol.p_in, sol.q_in, K, R_nr, sol.T_new_ref[:3, 3])
        if t is None:
            return sol
        info, across, r0 = epipolar_information(sol.p_in, sol.q_in, K, R_nr, t)
        T_new_ref = make_pose(R_nr, t)
        return replace(sol, R=R_nr, T_new_ref=T_new_ref, T_ref_new=invert_pose(T_new_ref), info=info,
                       across=across, residual_px=robust_spread(r0), direction_refit=True)

    def _epipolar(self, ref: RefineView, new: RefineView, T_net: np.ndarray, depth: np.ndarray | None,
                  prev: _Chain | None, scale: float, ground: tuple[np.ndarray, float] | None,
                  hurry: bool = False) -> Refinement:
        """The epipolar refinement of ``ref → new``; ``prev``: the chain whose new view is ``ref``
        (for the three-view ratio), or None; ``scale``, ``ground``, ``hurry``: :meth:`refine`'s."""
        K = ref.K
        sol = solve_two_view(ref.grey, new.grey, K, self.two_view_options(), T_net if self.prefer_network else None)
        common = dict(reason=sol.reason, tracks=sol.tracks, inliers=sol.inliers, why=sol.why)
        if sol.why in NO_SOLUTION:
            return Refinement(T=T_net.copy(), **common)
        if sol.why == "still":  # the corners did not move: neither did the camera
            return Refinement(T=np.eye(4), used=Used.STILL, scale_from=ScaleFrom.STILL,
                              rotation_change_deg=rotation_angle_deg(T_net[:3, :3]), residual_px=sol.residual_px,
                              parallax_px=sol.parallax_px, still_length=still_length(sol.p, depth, K, self.still_px),
                              **common)
        if sol.why == "low parallax":  # the rotation alone: the translation stays the network's
            T = T_net.copy()
            T[:3, :3] = sol.R.T
            return Refinement(T=T, used=Used.ROTATION, scale_from=ScaleFrom.NETWORK,
                              rotation_change_deg=angle_between_deg(T_net[:3, :3], T[:3, :3]),
                              residual_px=sol.residual_px, parallax_px=sol.parallax_px, **common)
        if self.window is not None and self.window_direction != "off":
            sol = self._direction_with_window(ref, new, sol, K, hurry)
        step = None
        if prev is not None and self.scale_tracking:
            step = three_view_step_ratio(ref.grey, prev.ref.grey, sol.p_in, sol.q_in, K, sol.T_new_ref,
                                         prev.unit_motion, max_points=self.track_max_points,
                                         min_points=self.track_min_points, max_fb_px=self.max_fb_px,
                                         lk_iterations=self.lk_iterations, lk_window=self.lk_window)
        road = None
        if ground is not None:
            log_length = self.length.log_length
            guess = math.exp(log_length) if log_length is not None else None  # the last step's
            pix = ground_pixels(ref.grey, new.grey)
            down = self.tilt.down(ground[0]) if self.ground_tilt else ground[0]
            road = search_step_length(pix, K, sol.R, sol.T_new_ref[:3, 3], down, ground[1], guess=guess)
            if self.ground_tilt and self.chord is None:
                self.tilt.observe(pix, K, sol.R, sol.T_new_ref[:3, 3], ground[0], ground[1],
                                  road.length if road.length is not None else guess)
        baseline, spread, scale_from, rel_sd = self._length(sol, K, T_net, depth, step, scale, road)
        T = sol.T_ref_new.copy()
        T[:3, 3] *= baseline
        S = epipolar_covariance(sol.info, sol.residual_px, sol.inliers)
        return Refinement(T=T, used=Used.EPIPOLAR, tracks=sol.tracks, inliers=sol.inliers, scale_from=scale_from,
                          rotation_change_deg=angle_between_deg(T_net[:3, :3], sol.T_ref_new[:3, :3]),
                          residual_px=sol.residual_px, parallax_px=sol.parallax_px, length_spread=spread,
                          motion_cov=EpipolarCovariance(cov=S, across=sol.across, R=sol.R),
                          network_kept=sol.prior_kept, length_rel_sd=rel_sd, direction_refit=sol.direction_refit,
                          step_ratio=math.exp(step[0]) if step is not None else float("nan"),
                          unit_motion=sol.T_new_ref,
                          ground_length=road.length if road is not None and road.length is not None else float("nan"),
                          ground_reason=road.reason if road is not None else "")

    def _length(self, sol: TwoViewSolution, K: np.ndarray, T_net: np.ndarray, depth: np.ndarray | None,
                step: tuple[float, float] | None, scale: float,
                road: GroundLength | None) -> tuple[float, float, ScaleFrom, float]:
        """The translation's length in network units (the length filter's, in the units of
        ``scale`` per network unit or in metres with ``road``), the depth ratios' spread (NaN
        unless measured on this frame), where the length's scale came from and its relative
        standard deviation (NaN for the network's own length). ``step``: the three-view (log ratio,
        variance) or None; ``road``: the ground homography's outcome, or None."""
        net = float(np.linalg.norm(T_net[:3, 3]))  # network units
        spread = float("nan")
        if road is not None:  # metres: the ground's homography measures them
            measured = (road.length, GROUND_LEN_REL ** 2) if road.length is not None else None
            kind = ScaleFrom.GROUND
        else:  # the depth comparison, in the caller's units
            found = None if depth is None else depth_baseline(
                sol.p_in, sol.q_in, K, sol.T_new_ref, depth, max_depth_step=self.max_depth_step,
                max_spread=self.max_scale_spread, min_points=self.min_inliers // 2)
            measured = None
            if found is not None:
                spread = found[1]
                measured = (found[0] * scale, max(MIN_LEN_REL, LEN_GAIN * spread) ** 2)
            kind = ScaleFrom.DEPTH
        x, src = self.length.update(net, measured, kind, step)
        if x is None:  # no scale yet: the network's units
            return net, spread, ScaleFrom.NETWORK, float("nan")
        floor = GROUND_LEN_REL if road is not None else MIN_FILTERED_LEN_REL
        return math.exp(x) / scale, spread, src, self.length.rel_sd(floor)

    def _photometric(self, ref: RefineView, new: RefineView, T_net: np.ndarray, depth: np.ndarray | None,
                     before: Refinement | None) -> Refinement:
        """Direct photometric polish of ``before`` (the epipolar outcome, chained mode) or of the
        network's motion; on failure ``before`` (or the network's motion) is kept, with the reason."""
        keep = before if before is not None else Refinement(T=T_net.copy())
        start = keep.used
        if depth is None:
            res = PhotoResult(None, "no depth", "no depth for the photometric alignment")
        else:
            res = photometric_align(ref.grey, new.grey, ref.K, depth, keep.T, self.photometric_options())
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
        return Refinement(T=res.T, used=Used.PHOTOMETRIC, tracks=keep.tracks, inliers=keep.inliers,
                          scale_from=ScaleFrom.DEPTH, rotation_change_deg=angle_between_deg(T_net[:3, :3], res.T[:3, :3]),
                          residual_px=keep.residual_px, parallax_px=keep.parallax_px, start=start,
                          photo_pixels=res.pixels, photo_valid=res.valid, photo_residual=res.residual,
                          photo_residual_start=res.residual_start, photo_iterations=res.iterations,
                          photo_info=res.info, window=keep.window, direction_refit=keep.direction_refit)

