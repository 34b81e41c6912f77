"""The node's per-frame pipeline, ROS-free: frames in, plain :class:`FrameResult` values out.

:mod:`sfm_ros.ros.node` wraps it in ROS (parameters: :mod:`sfm_ros.ros.node_params`; QoS, callbacks, publishers) and
:mod:`sfm_ros.ros.messages` turns its results into messages; tests drive it frame by frame
without DDS. This module imports no ``rclpy`` and no ROS message package: an input frame's
``stamp`` is carried through untouched (whatever the caller stamps with) beside its time ``t``
in seconds, and warnings go to any sink with ``info(msg)`` / ``warning(msg)`` (an rclpy logger,
a :class:`logging.Logger`).

Processing
----------
The image callback only decodes (raw images: a copy; compressed images are decoded by the worker,
:meth:`~sfm_ros.runtime.frame_input.FrameInputs.decode`) and validates, then puts the frame in a bounded :class:`FrameQueue`
of ``queue_size`` (newest wins). A worker thread runs :meth:`FramePipeline.process`: depth for
every frame, and the pose network once per frame on the window of the last ``seq_len`` processed
frames; the newest frame's pose follows from the prediction with it as a source (no output lag, see
:mod:`sfm_ros.runtime.odometry`). Frames the worker cannot keep up with are dropped, counted and reported
(rate-limited log, diagnostics); before that, while a newer frame already waits (:attr:`FramePipeline.behind`,
set by the node), the rotation window measures no baseline for the frame in hand (``window_hurry``). Bad input (unsupported encoding, zero size, truncated data, a step
smaller than the row, an image that is not (H, W[, 3|4]) or is under 16 pixels a side or over 8K, a resolution change, a depth prediction
without one finite pixel, a non-finite pose, duplicated stamps) is skipped with a warning rate-limited per kind of problem (never per
input string: memory and log rate stay bounded whatever arrives); processing goes on. A frame with
a zero header stamp (driver bug) is skipped, warned, so that one odd frame never looks like a time
jump; from the second zero stamp in a row (a driver that never stamps) the reception time is used
instead, with a warning (:meth:`~sfm_ros.runtime.frame_input.FrameInputs.zero_stamp`). Stamps going backwards restart the
odometry at the identity, a gap larger than ``max_gap`` restarts it from the last pose.

Units: ``FrameResult.depth`` is in metres (network units times the frame's scale) at the network
resolution, with REP 118's markers (:func:`rep118_depth`): ``-inf`` closer than ``min_depth``,
``+inf`` farther than ``max_depth``, NaN where the prediction is not finite (unknown); the point
cloud leaves all three out; ``FrameResult.camera`` is the camera model
scaled once a frame to that resolution (undistorted: the distortion of camera_info is ignored).
"""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from sfm_ros.data.camera import CameraModel
from sfm_ros.runtime.frame_input import FrameInputs
from sfm_ros.runtime.frames import FrameResult, InputFrame, WindowFrame, cloud_points, rep118_depth
from sfm_ros.runtime.metric_scale import CAMERA_HEIGHT_SOURCES, MetricScale, ScaleSource
from sfm_ros.runtime.motion.covariance import GROUND_SCALE_REL, rotation_from_window
from sfm_ros.runtime.motion.result import EPIPOLAR_MODES, ScaleFrom, Used
from sfm_ros.runtime.motion_evidence import HoldNoise, frame_evidence
from sfm_ros.runtime.diagnostics import FRAME_COUNTS, Counters, Log, StageTimes, Ticker
from sfm_ros.runtime.settings import SETTINGS, Settings
from sfm_ros.runtime.odometry import MonocularOdometry

class FramePipeline:
    """Decode → time checks → depth → window → poses (+ refinement) → odometry → :class:`FrameResult`.

    Args:
        estimator: an :class:`~sfm_ros.runtime.inference.Estimator` (e.g. :func:`sfm_ros.runtime.model_loading.load_estimator`).
        T_base_cam: (4, 4) pose of the camera optical frame in ``base_link``.
        settings: :class:`Settings`, read once a frame (assign its fields to change them).
        log: where warnings go (:class:`Log`); ``counts``: :class:`Counters` of
            :data:`FRAME_COUNTS` (this adds ``rejected`` and ``skipped``; ``refined``: the refiner's
            outcomes).
        adaptation: an :class:`sfm_ros.training.online.OnlineAdaptation` of ``estimator`` that the ``adapt``
            setting switches (None: ``adapt`` is ignored with a warning).
    """

    def __init__(self, estimator, T_base_cam: np.ndarray, settings: Settings | None = None,
                 log: Log | None = None, counts: Counters | None = None, adaptation=None):
        import logging

        self.estimator = estimator
        self.settings = settings or Settings()
        self.settings.check()
        self.log = log or Log(logging.getLogger("sfm_ros.runtime.pipeline"))
        self.counts = counts or Counters(*FRAME_COUNTS)
        self.refined = Counters()
        self.refined_lengths = Counters()  # where the refined step lengths' scale came from
        s = self.settings
        self.T_base_cam = np.asarray(T_base_cam, dtype=np.float64)
        self.odometry = MonocularOdometry(T_base_cam=self.T_base_cam, scale=s.scale or 1.0, max_gap=s.max_gap)
        self.window: deque[WindowFrame] = deque(maxlen=estimator.seq_len)
        self.inputs = FrameInputs(self.settings, self.log, self.counts)
        self.metric_scale = MetricScale(self.T_base_cam, self.log)
        self.has_explainability = any(k.startswith("mask_heads") for k in estimator.state.get("pose_net", {}))
        self._refiner = None
        self._corner_budget = None  # keeps the refiner's cost per frame within its budget
        self._refiner_model = None  # the weights the refiner's depth/network ratios were measured with
        self._last_refinement = None  # the refiner's result for the newest frame (None: not refined)
        self._refine_ms: float | None = None  # the newest frame's refinement time
        self._tilt_text = "n/a (not refined yet)"  # the camera's tilt to the ground, as the diagnostics show it
        self._last_shape: tuple | None = None
        self.adaptation = adaptation
        self.int8 = None  # precision int8: calibrated on the camera's first frames; auto: measured on them
        auto = getattr(estimator, "int8_candidate", False) and not self.settings.adapt
        if getattr(estimator, "needs_calibration", False) or auto:
            from sfm_ros.runtime.quantize import DeferredCalibration

            self.int8 = DeferredCalibration(estimator, self.log, measure=not estimator.needs_calibration)
        self.stages = StageTimes()      # the cost of each stage of a frame (frame_ms_p50)
        #: set by the node: whether a newer frame already waits (its queue); the rotation window then
        #: measures no baseline for this frame (setting ``window_hurry``), so that the node catches up
        self.behind: Callable[[], bool] | None = None
        self._hurried: deque[bool] = deque(maxlen=100)  # the window's recent frames: hurried or not
        self._refit: deque[bool] = deque(maxlen=100)  # ... and their direction solved again with its rotation
        self.held = Counters()          # frames whose images showed no motion, by reason
        self.held_run = 0               # of them in a row up to the newest frame
        self.held_reason = ""           # why the newest held frame was held
        self._held_now = False          # the frame being processed was held
        self._hold_noise = HoldNoise()  # the covariance of a motion the images cannot show

    # ------------------------------------------------------------------------------ inputs
    def reject(self, kind: str, msg: str) -> None:
        """Count a bad input frame and warn (:meth:`FrameInputs.reject`)."""
        self.inputs.reject(kind, msg)

    def zero_stamp(self, is_zero: bool) -> str:
        """The zero-stamp policy for a received frame (:meth:`FrameInputs.zero_stamp`)."""
        return self.inputs.zero_stamp(is_zero)

    def camera_info(self, msg: Any) -> None:
        """Use a CameraInfo's intrinsics from now on (:meth:`FrameInputs.camera_info`)."""
        self.inputs.camera_info(msg)

    @property
    def camera(self) -> CameraModel | None:
        """The latest camera_info's camera model (None before one)."""
        return self.inputs.camera

    @property
    def camera_source(self) -> str | None:
        return self.inputs.camera_source

    @property
    def scale_source(self) -> ScaleSource:
        return self.metric_scale.source

    @property
    def ground(self):
        """The ground-plane scale (:class:`~sfm_ros.runtime.ground_scale.GroundScale`) while
        ``camera_height`` is set, else None."""
        return self.metric_scale.ground

    # ------------------------------------------------------------------------------ per frame
    def process(self, frame: InputFrame) -> FrameResult | None:
        """Run one frame; None when it was rejected or skipped (counted and warned)."""
        import torch


        e, s = self.estimator, self.settings
        tick = Ticker(self.stages)
        img = self.inputs.decode(frame)
        if img is None:
            return None
        tick("decode")
        shape = img.shape[:2]
        if self._last_shape is not None and shape != self._last_shape:
            self.log.warn("resolution", f"input resolution changed from {self._last_shape[1]}x"
                                        f"{self._last_shape[0]} to {shape[1]}x{shape[0]}: pose window reset")
            self.window.clear()
            self.odometry.reset(hold_pose=True)
            if self.int8 is not None:
                self.int8.reset()
        self._last_shape = shape
        self.odometry.max_gap = float(s.max_gap)
        reason = self.odometry.check_time(frame.t)
        if reason == "duplicate":
            return self._skip("duplicate", f"skipping a frame with the same stamp as the previous one ({frame.t:.6f})")
        if reason is not None:
            self.log.warning(reason)  # once per event
            self.window.clear()

        t0 = time.perf_counter()
        tick.restart()
        x = e.preprocess(img)
        tick("resize")
        depth = e.depth(x)[0, 0]
        finite = torch.isfinite(depth)
        if not bool(finite.any()):
            return self._skip("nonfinite", "the depth network produced NaN/Inf only: frame skipped")
        if not bool(finite.all()):
            self.log.warn("nonfinite_pixels", f"{int((~finite).sum())} depth pixel(s) of the network are "
                                              "NaN/Inf: published as NaN (unknown, REP 118)")
        depth_np = depth.cpu().numpy()
        tick("depth")
        prev = self.window[-1] if self.window else None
        no_motion = frame_evidence(img, None if prev is None else prev.image, content=x[0].float().mean(0).cpu().numpy())
        if self.int8 is not None and no_motion is None:  # int8 learns its ranges from frames that show something
            self.int8.offer(x)
        tick("evidence")
        self.window.append(WindowFrame(frame.t, x, depth_np, img, stamp=frame.stamp))
        cam = self.inputs.intrinsics(shape, frame.t)  # once per frame: scale, refinement and publishing
        net_cam = None if cam is None else cam.scaled(e.width, e.height)
        # a frame that shows nothing new does not re-measure the ground's scale
        manual, height = float(s.scale), float(s.camera_height)
        # the ground's metres (the plane's scale, the refiner's homography) carry a persisting error
        self.odometry.noise.scale_rel = GROUND_SCALE_REL if manual <= 0 < height else 0.0
        self.odometry.scale = self.metric_scale.update(manual, height, depth_np, net_cam, self.odometry.scale,
                                                measure=no_motion is None)
        tick("scale")
        self._held_now = False
        T = None
        if len(self.window) == e.seq_len:
            T = e.poses([f.x for f in self.window], flip=s.pose_flip)[0]
            if not bool(torch.isfinite(T).all()):
                self.window.pop()
                return self._skip("nonfinite", "the pose network produced NaN/Inf: frame skipped")
            T = T.cpu().numpy().astype(np.float64)
            tick("pose")
        exp = exp_t = exp_stamp = None
        if T is not None and s.publish_explainability:
            if self.has_explainability:
                m = e.explainability([f.x for f in self.window])
                exp = None if m is None else m[0].mean(0).cpu().numpy()
                mid = self.window[len(self.window) // 2]
                exp_t, exp_stamp = mid.t, mid.stamp
            else:
                self.log.warn("exp", "publish_explainability is set but the checkpoint has no "
                                     "explainability head (trained with exp_weight=0): not published")
        infer_ms = 1000.0 * (time.perf_counter() - t0)
        tick.restart()
        try:
            est = self.odometry.update(frame.t, T, [f.t for f in self.window], e.offsets,
                                       refine=self._motion_callback(cam, no_motion))
        except ValueError as exc:
            self.window.pop()
            return self._skip("nonfinite", f"odometry update failed ({exc}): frame skipped")
        refine_ms = self._refine_ms
        if refine_ms is not None:
            self.stages.add("refine", refine_ms)
        tick("odometry", minus=refine_ms or 0.0)
        self._adapt(net_cam, learn=no_motion is None and not self._held_now)
        tick("adapt")

        depth_m = rep118_depth(depth_np.astype(np.float32) * float(self.odometry.scale),
                               float(s.min_depth), float(s.max_depth))
        h, w = depth_m.shape
        out_cam = None if net_cam is None else CameraModel(w, h, net_cam.K)  # undistorted, plumb_bob
        points = None
        if s.publish_points and out_cam is not None:
            points = cloud_points(depth_m, self._rgb8(self.window[-1]), out_cam.K, int(s.points_stride))
        tick("cloud")
        return FrameResult(frame.stamp, frame.t, frame.frame_id, frame.recv, depth_m, out_cam, points, est,
                           exp, exp_t, float(self.odometry.scale), infer_ms, exp_stamp)

    @staticmethod
    def _rgb8(f: WindowFrame) -> np.ndarray:
        """The frame's network input as uint8 RGB, converted once (a frame stays seq_len windows)."""
        if f.rgb8 is None:
            from sfm_ros.runtime.inference import to_rgb8

            f.rgb8 = to_rgb8(f.x)
        return f.rgb8

    def _adapt(self, net_cam: CameraModel | None, learn: bool = True) -> None:
        """Online adaptation (:class:`sfm_ros.training.online.OnlineAdaptation`): switch it with the ``adapt``
        setting and offer it the full pose window (network-size frames, intrinsics at that size);
        ``learn`` False: a frame that shows no motion is not offered (nothing to learn from it)."""
        a = self.adaptation
        if a is None:
            if self.settings.adapt:
                self.log.warn("adapt", "adapt is on but this pipeline has no adaptation: ignored")
            return
        frames = K = None
        if self.settings.adapt and learn and len(self.window) == self.estimator.seq_len and net_cam is not None:
            frames = [self._rgb8(f) for f in self.window]
            K = net_cam.K
        elif self.settings.adapt and net_cam is None:
            self.log.warn("adapt_k", "adapt is on but there are no intrinsics yet: nothing is learnt")
        a.update(bool(self.settings.adapt), frames, K)

    def close(self) -> None:
        """Stop what runs beside the pipeline (adaptation: its weights are saved)."""
        if self.adaptation is not None:
            self.adaptation.close(final=True)

    def _skip(self, kind: str, msg: str) -> None:
        self.counts.add("skipped")
        self.log.warn(kind, msg)
        return None

    def _motion_callback(self, cam: CameraModel | None, no_motion: str | None):
        """``motion(ref, inc)`` for :meth:`MonocularOdometry.update`: the refined motion
        (:meth:`_refine_callback`), or no motion with the covariance of the motion the images cannot
        show (:mod:`sfm_ros.runtime.motion_evidence`) when the frames show none (``no_motion``: why)
        or the refiner found nothing to track; the measured motions set that covariance's size."""
        refine = self._refine_callback(cam) if no_motion is None else None

        def motion(ref: int, inc: np.ndarray):
            why = no_motion
            out = inc
            if why is None and refine is not None:
                out = refine(ref, inc)
                if self._last_refinement is not None and self._last_refinement.untracked:
                    why = "untrackable"
            if why is not None:
                self._hold(why)
                return np.eye(4), self._hold_noise.covariance()
            self.held_run = 0
            T = out[0] if isinstance(out, tuple) else out
            if self._last_refinement is None or self._last_refinement.used != Used.STILL:
                self._hold_noise.observe(T)
            return out
        self._last_refinement = None
        self._refine_ms = None
        return motion

    _WHY_HELD = {"frozen": "the image repeats the previous frame",
                 "textureless": "the image has no contrast (black, saturated or covered)",
                 "noise": "the image is noise (neighbouring pixels unrelated)",
                 "untrackable": "too few corners could be tracked from the previous frame"}

    def _hold(self, why: str) -> None:
        self._held_now = True
        self.held.add(why)
        self.held_run += 1
        self.held_reason = why
        kept = "" if why == "untrackable" else ", scale not re-measured"
        self.log.warn("held", f"no motion in the images ({self._WHY_HELD[why]}): odometry held with a growing "
                              f"covariance{kept}")

    def _refine_callback(self, cam: CameraModel | None):
        """``refine(ref, inc)`` for :meth:`MonocularOdometry.update`: the current refiner between
        window frame ``ref`` and the newest frame, or None when off or without intrinsics (``cam``:
        the input image's). Each frame's view is made once and kept in the window."""
        import cv2

        from sfm_ros.runtime.motion import CornerBudget, Refiner

        if self._refiner is None or self._refiner.mode != self.settings.refine_pose:
            self._refiner = Refiner(self.settings.refine_pose, ground_tilt=bool(self.settings.ground_tilt),
                                    rotation_window=bool(self.settings.rotation_window))
            self._corner_budget = CornerBudget()
            self._hurried.clear()  # a new window: its own count
            self._refit.clear()
        else:  # switched in place: the scale filter stays
            if self._refiner.ground_tilt != bool(self.settings.ground_tilt):
                self._refiner.set_ground_tilt(bool(self.settings.ground_tilt))
            if self._refiner.rotation_window != bool(self.settings.rotation_window):
                self._refiner.set_rotation_window(bool(self.settings.rotation_window))
                self._hurried.clear()
                self._refit.clear()
        refiner = self._refiner
        if self._refiner_model is not self.estimator.model:  # new weights (adaptation): new units
            refiner.reset_scale()
            self._refiner_model = self.estimator.model
        if refiner.mode == "none":
            return None
        if cam is None:
            self.log.warn("refine_intrinsics", f"refine_pose {refiner.mode} needs intrinsics: the pose "
                                               "network's motion is used until camera_info arrives")
            return None

        def view(f: WindowFrame):
            if f.view is None or not np.array_equal(f.view[0], cam.K):
                f.view = (cam.K.copy(), refiner.view(f.image, cam.K))
            return f.view[1]

        def refine(ref: int, inc: np.ndarray):
            f_ref = self.window[ref]
            try:
                ground = self.metric_scale.ground_down()  # camera_height: the step's metres from its homography
                t0 = time.perf_counter()
                hurry = bool(self.settings.window_hurry) and self.behind is not None and bool(self.behind())
                r = refiner.refine(view(f_ref), view(self.window[-1]), inc, f_ref.depth, self.odometry.scale,
                                   ground, hurry=hurry)
                if r.window is not None:
                    self._hurried.append(not r.window.solved)
                    self._refit.append(bool(r.direction_refit))
                self._refine_ms = 1000.0 * (time.perf_counter() - t0)
                # the budget holds the frame pair's own refinement; the rotation window's cost is its own
                window_ms = r.window.ms if r.window is not None and np.isfinite(r.window.ms) else 0.0
                self._corner_budget.update(refiner, self._refine_ms - window_ms, r.used)
            except (ValueError, np.linalg.LinAlgError, cv2.error) as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                self.log.warn("refine_error", f"pose refinement failed ({type(exc).__name__}: {first}): "
                                              "the network's motion is used")
                return inc
            self._last_refinement = r
            self._tilt_text = self._tilt_state(refiner, ground is not None)
            if r.untracked:  # no consistent motion in the corners: the caller holds the odometry
                return inc
            self.refined.add(r.used)
            self.refined_lengths.add(r.scale_from or ScaleFrom.NETWORK)
            return r.T, r.covariance
        return refine

    def diagnostic_warnings(self, camera_info_topic: str = "camera_info") -> list[str]:
        """What keeps the outputs from being what a user expects (each makes the node's status WARN):
        missing intrinsics (naming what is not published), an uncalibrated metric scale, and an
        adaptation that is switched on but stopped or refused."""
        s, out = self.settings, []
        fx, fy = (list(s.intrinsics) + [0.0] * 4)[:2]
        if self.camera is None and not (fx > 0 and fy > 0):
            what = "no points, no depth/camera_info" if s.publish_points else "no depth/camera_info"
            out.append(f"no intrinsics ({what}): no camera_info received on {camera_info_topic} and the "
                       "'intrinsics' parameter is unset")
        if self.camera_source == "unusable":
            out.append("intrinsics unusable (see the log): no points, no depth/camera_info, no refinement")
        if s.scale <= 0:
            if s.camera_height <= 0:
                out.append("scale not calibrated: depth and odometry are in network units (set 'scale' > 0, "
                           "e.g. from sfm_eval, or 'camera_height')")
            elif self.scale_source != ScaleSource.CAMERA_HEIGHT:
                why = self.scale_source if self.scale_source in CAMERA_HEIGHT_SOURCES else \
                    "camera_height is set, no frame processed yet"
                out.append(f"scale not calibrated yet: {why}")
        if self.held_run:
            out.append(f"no motion in the images for {self.held_run} frame(s) ({self._WHY_HELD[self.held_reason]}): "
                       "odometry held, its covariance growing")
        if s.adapt and self.adaptation is not None:
            out += self.adaptation.warnings()
        return out

    @staticmethod
    def _tilt_state(refiner, ground: bool) -> str:
        """The ``ground_tilt`` diagnostic after a refinement (``ground``: the ground's metres were
        measured, i.e. ``camera_height`` set and no ``scale`` overriding it)."""
        if not ground:
            return "n/a (no ground: camera_height unset or scale set)"
        if not refiner.ground_tilt:
            return "off (the mount's down)"
        t = refiner.tilt
        n = len(t.measurements)
        if n < t.min_measurements:
            return f"not in use yet (the mount's down): {n} of the {t.min_measurements} measurements it needs"
        return f"{t.tilt_deg:.2f} deg, the median of {n} measurements (of {t.window} kept)"

    def _window_state(self) -> str:
        """The ``rotation_window`` diagnostic: off, or the newest frame's fusion (frames in the window,
        corners carried, rotations that agreed of those predicted, its time; whether the step's own
        rotation was outvoted; on how many recent frames the frame pair's direction of travel was solved
        again with its rotation (``window_direction``) and on how many it measured no baseline because
        a newer frame waited; the published rotation's sd, rms over the axes, and whether it is the window's
        agreement or the frame pair's)."""
        if self.settings.refine_pose not in EPIPOLAR_MODES:
            return f"n/a (refine_pose {self.settings.refine_pose})"
        if not self.settings.rotation_window:
            return "off (each step's own rotation)"
        r = self._last_refinement
        if r is None:
            return "n/a (not refined yet)"
        w = r.window
        if w is None:
            return "none on the last frame (it restarts at the next)"
        out = (f"{w.frames} frames, {w.tracks} corners, {w.agreeing} of {w.predictions} rotations agree, "
               f"{w.ms:.1f} ms")
        out = out if w.step_kept else out + " (the step's own outvoted)"
        if r.covariance is not None:  # the published rotation's sd (rms over the axes) and its source
            sd = math.degrees(math.sqrt(max(float(np.trace(r.covariance[3:, 3:])), 0.0) / 3.0))
            source = "the window's agreement" if rotation_from_window(r) else "the frame pair's"
            out += f"; rotation sd {sd:.3f} deg ({source})"
        refit = list(self._refit)  # copies: the worker appends while the diagnostics read
        if any(refit):
            out += (f"; direction of travel solved again with the window's rotation on {sum(refit)} of the "
                    f"last {len(refit)} frames")
        recent = list(self._hurried)
        if any(recent):
            out += f"; no baselines on {sum(recent)} of the last {len(recent)} frames (a newer frame waited)"
        return out

    def _refine_cost(self) -> dict[str, str]:
        """``refine_ms_p50`` (the median time of the last window of refinements) and
        ``refine_corners`` (the corners it was measured with; then the corners in use)."""
        b, r = self._corner_budget, self._refiner
        if b is None or r is None or r.mode not in EPIPOLAR_MODES:
            return {"refine_ms_p50": "n/a", "refine_corners": "n/a"}
        if not np.isfinite(b.last_ms):
            return {"refine_ms_p50": "n/a", "refine_corners": str(r.max_corners)}
        return {"refine_ms_p50": f"{b.last_ms:.1f}", "refine_corners": str(b.last_corners)}

    def diagnostic_values(self) -> dict[str, str]:
        """The pipeline's diagnostics (key → value text)."""
        g = self.ground  # read once: the worker may replace it
        refined = self.refined.snapshot()
        return {
            "intrinsics": self.camera_source or "none",
            "odometry_resets": str(self.odometry.resets),
            "scale": f"{self.odometry.scale:.6g}",
            "scale_source": self.scale_source,
            "ground_scale_spread": "n/a" if g is None or g.spread is None else f"{g.spread:.3f}",
            "ground_planes": "n/a" if g is None else
            f"accepted {g.accepted}, rejected {g.rejected}, none found {g.failed}",
            "refine_pose": self.settings.refine_pose,
            "refined_motions": ", ".join(f"{k} {v}" for k, v in sorted(refined.items())) or "none yet",
            "refined_lengths": ", ".join(f"{k} {v}" for k, v in sorted(self.refined_lengths.snapshot().items()))
            or "none yet",
            "held_frames": ", ".join(f"{k} {v}" for k, v in sorted(self.held.snapshot().items())) or "none",
            "frame_ms_p50": self.stages.text(),
            **self._refine_cost(),
            "ground_tilt": self._tilt_text if self.settings.refine_pose in EPIPOLAR_MODES
            else f"n/a (refine_pose {self.settings.refine_pose})",
            "rotation_window": self._window_state(),
            **({"int8": self.int8.state} if self.int8 is not None else {}),
            **(self.adaptation.diagnostic_values() if self.adaptation is not None else {}),
        }
