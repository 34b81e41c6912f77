"""Visual odometry from the pose network's window predictions (numpy only, no ROS, no torch).

Frames and conventions
----------------------
* Camera poses are in the camera **optical** frame (x right, y down, z forward), ``T_a_b`` maps
  points from ``b`` to ``a`` and is the pose of ``b`` in ``a`` (see :mod:`sfm_ros.core.geometry`).
* The pose network predicts, for every source frame ``s`` of a window, the **target→source**
  transform ``T_s_t``. The pose of the source camera in the target camera frame is ``inv(T_s_t)``.
* The robot body is ``base_link`` (REP-103: x forward, y left, z up). The camera is mounted with the
  fixed extrinsic ``T_base_cam`` (pose of the optical frame in ``base_link``). A forward-looking
  camera has ``rpy = (-pi/2, 0, -pi/2)`` (REP-103 optical frame; URDF/tf fixed-axis roll, pitch,
  yaw: ``R = Rz(yaw) Ry(pitch) Rx(roll)``), so a camera moving along its optical +z moves the robot
  along base_link +x.
* The published odometry is the pose of ``base_link`` in ``odom``, which coincides with the first
  base_link pose after a (re)start::

      T_odom_base(k) = T_base_cam · T_cam0_camk · inv(T_base_cam)

  where ``T_cam0_camk`` chains the per-frame camera increments, their translations multiplied by
  ``scale`` (metres per network unit: monocular depth and motion are only known up to scale).

Chaining scheme (one inference per processed frame)
---------------------------------------------------
The node keeps a sliding window of the last ``seq_len`` processed frames (oldest first). When the
window is full it runs the pose network once; the target is the middle frame ``m`` and every other
frame ``j`` is a source, so the pose of frame ``j`` in the target camera is ``P_j = inv(T_j_m)``
(``P_m = I``). The increment from the last frame that already has a pose (normally the
second-newest, ``r``) to the newest frame ``n`` is ``inv(P_r) · P_n = T_r_m · inv(T_n_m)``. For
``seq_len = 3`` this is simply ``inv(T_n_m)`` with ``r = m``: the prediction that has the newest
frame as a source. The newest frame's pose is therefore known as soon as the frame is processed
(no output lag; the depth target of the pose network lags by ``seq_len // 2`` frames, which does
not matter because depth is predicted per frame). After a (re)start the first frame gets the
identity; the next ``seq_len - 2`` frames have no pose yet (their window is not full); the first
full window gives the newest frame relative to the oldest one, ``inv(P_0) · P_n``, and from then on
one increment per frame. The reference frame is found by its time stamp in the window, so a frame
the node drops from the window (e.g. a non-finite prediction) is simply bridged by the next window.

Resets (:meth:`MonocularOdometry.check_time`)
---------------------------------------------
* **time jumps backwards** (a bag looped, a simulator restarted): everything restarts, the pose is
  set back to the identity;
* **gap** longer than ``max_gap`` seconds between processed frames: the motion during the gap is
  unknown, so the chaining restarts (a new window) but the pose is *held* (``odom`` stays
  continuous, REP-105) and the position/yaw covariance is inflated by the ``gap_*`` terms below.

:meth:`check_time` returns a one-line reason (or ``None``) so the caller can log each event once.
A frame with the *same* stamp as the previous one is reported as ``"duplicate"`` and must be
skipped by the caller (no time elapsed: no twist can be computed).

Covariance
----------
Every increment brings an independent covariance in the **base frame** (of the frame it starts
from). A refined increment
(:mod:`sfm_ros.runtime.motion`, the node's ``refine_pose``) brings its own covariance, computed from what
the refinement measured (epipolar residual, inliers, parallax, the spread of the depth ratios that
set its length; :func:`sfm_ros.runtime.motion.covariance.motion_covariance`, calibrated against KITTI ground truth) and
rotated into the base frame. The pose network's own increments (no refinement, or its fallback)
get :class:`OdomNoise`, ``sigma = abs + rel * step`` with ``step`` the translation length (metres)
for the translational axes and the rotation angle (radians) for the rotational ones, set from the
network's measured errors on KITTI (rotation rms 0.003 rad about the horizontal axes and
0.019-0.022 rad about the vertical one per frame, direction of travel 14-15° off, length ~50 %):

===============  ===========================  ==========================================
axis (base)      per-frame sigma              why
===============  ===========================  ==========================================
x, y             0.005 m + 0.50 * step        length and direction of the network's step
z                0.02 m + 0.50 * step         ground robots: height is poorly observed
roll, pitch      0.01 rad + 0.50 * angle      a small inter-frame rotation is noisy
yaw              0.025 rad + 0.10 * angle     the network's measured heading error per frame
===============  ===========================  ==========================================

The pose covariance (``nav_msgs/Odometry``'s: in ``odom``, position and small rotations about
odom's fixed x, y, z) is propagated to first order through every increment: the increment's
covariance is turned into odom by the heading it starts from, and the rotation's error so far
moves the new position (``-[R t]×``: a heading error becomes lateral error as the robot drives;
``test_odometry.py`` checks it against sampled trajectories through a turn). It starts from a
floor of ``1e-4`` (m², rad²) so it is never all zero; the twist covariance (in ``base_link``) is
the latest increment's covariance divided by ``dt²``. Every increment's covariance gets
``step_floor`` (1e-8 m², rad²) on its diagonal, so that none is singular: far below what a
refined increment knows (a refined rotation is good to ~5e-4 rad a frame on KITTI; with a floor
of 1e-4 rad² the published yaw rate measured 10x too uncertain, and a filter fusing it with wheel
odometry nearly ignored it: ``bench/bench_fusion.py``). The increments' errors are
taken as independent; an error of the scale that persists over the run (metres from the ground
with the mount's pitch a little off: the step lengths all a few per cent long) is not, and
``scale_rel`` (relative sd; the pipeline sets it with ``camera_height``) adds
``scale_rel² · D Dᵀ`` to the position block, ``D`` the position change since the last full
reset (a gap does not restart it: the scale error persists). A gap adds ``gap_position`` (1 m)²
to x, y, z and ``gap_yaw`` (0.5 rad)² to yaw.
``scale`` multiplies the translational sigmas (they are in network units before scaling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from sfm_ros.core.se3 import (invert_pose, make_pose, matrix_to_axis_angle, matrix_to_quat, rpy_to_matrix, se3_log,
                              skew)

__all__ = [
    "OPTICAL_RPY",
    "camera_extrinsic",
    "poses_in_target",
    "window_increment",
    "camera_to_base",
    "OdomNoise",
    "OdomEstimate",
    "MonocularOdometry",
]

#: rpy (base_link → optical frame) of a forward-looking camera (REP-103).
OPTICAL_RPY = (-math.pi / 2.0, 0.0, -math.pi / 2.0)


def camera_extrinsic(xyz: Sequence[float] = (0.0, 0.0, 0.0),
                     rpy: Sequence[float] = OPTICAL_RPY) -> np.ndarray:
    """``T_base_cam``: the camera optical frame's pose in base_link from ``xyz`` and URDF ``rpy``."""
    xyz, rpy = list(xyz), list(rpy)
    if len(xyz) != 3 or len(rpy) != 3:
        raise ValueError(f"camera xyz and rpy need 3 numbers each, got {xyz!r} and {rpy!r}")
    if not all(math.isfinite(float(v)) for v in xyz + rpy):
        raise ValueError(f"camera xyz/rpy must be finite, got {xyz!r} / {rpy!r}")
    return make_pose(rpy_to_matrix(*map(float, rpy)), [float(v) for v in xyz])


def camera_to_base(T_cam0_camk: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Camera trajectory pose (optical frame) → base_link pose in odom:
    ``T_odom_base = T_base_cam · T_cam0_camk · inv(T_base_cam)``."""
    return T_base_cam @ np.asarray(T_cam0_camk, dtype=np.float64) @ invert_pose(T_base_cam)


def poses_in_target(T_src_tgt: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """Poses of all window frames in the target camera frame, oldest first: (seq_len, 4, 4).

    ``T_src_tgt`` (N, 4, 4) holds the network's target→source transforms for the sources at
    ``offsets`` (relative to the middle target, :func:`sfm_ros.core.model.source_offsets` order).
    """
    T = np.asarray(T_src_tgt, dtype=np.float64)
    offsets = list(offsets)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or T.shape[0] != len(offsets):
        raise ValueError(f"T_src_tgt must be ({len(offsets)}, 4, 4) for offsets {offsets}, got {T.shape}")
    half = max(abs(o) for o in offsets)
    seq_len = 2 * half + 1
    P = np.tile(np.eye(4), (seq_len, 1, 1))
    for o, T_s_t in zip(offsets, T):
        P[half + o] = invert_pose(T_s_t)  # pose of source in target = inv(T_src_tgt)
    return P


def window_increment(T_src_tgt: np.ndarray, offsets: Sequence[int], ref: int = -2,
                     new: int = -1) -> np.ndarray:
    """Camera motion from window frame ``ref`` to frame ``new`` (indices, oldest = 0):
    the pose of ``new`` in ``ref``, ``inv(P_ref) · P_new`` (optical frame, network units)."""
    P = poses_in_target(T_src_tgt, offsets)
    return invert_pose(P[ref]) @ P[new]


# --------------------------------------------------------------------------------------------
# The odometry integrator
# --------------------------------------------------------------------------------------------
@dataclass
class OdomNoise:
    """Per-increment standard deviations (see the module doc's table)."""

    xy_abs: float = 0.005
    xy_rel: float = 0.50
    z_abs: float = 0.02
    z_rel: float = 0.50
    rp_abs: float = 0.01
    rp_rel: float = 0.50
    yaw_abs: float = 0.025
    yaw_rel: float = 0.10
    floor: float = 1e-4        # the first pose's variance (m², rad²): covariances are never all zero
    step_floor: float = 1e-8   # added to every increment's (and twist's) variances: never singular
    scale_rel: float = 0.0     # sd (relative) of a scale error that persists over the run (module doc)
    gap_position: float = 1.0  # sigma (m) added to x, y, z on a gap
    gap_yaw: float = 0.5       # sigma (rad) added to yaw on a gap

    def step_variance(self, step_len: float, step_angle: float, scale: float = 1.0) -> np.ndarray:
        """Diagonal variance (6,) ``[x, y, z, roll, pitch, yaw]`` of one increment (base frame).
        ``step_len`` is in metres (already scaled); ``scale`` scales the absolute terms."""
        s = abs(scale)
        sig = np.array([
            self.xy_abs * s + self.xy_rel * step_len,
            self.xy_abs * s + self.xy_rel * step_len,
            self.z_abs * s + self.z_rel * step_len,
            self.rp_abs + self.rp_rel * step_angle,
            self.rp_abs + self.rp_rel * step_angle,
            self.yaw_abs + self.yaw_rel * step_angle,
        ])
        return sig ** 2


@dataclass
class OdomEstimate:
    """One odometry output, everything as numpy float64."""

    stamp: float
    T_odom_base: np.ndarray          # (4, 4) pose of base_link in odom
    T_odom_cam: np.ndarray           # (4, 4) pose of the optical frame in odom
    linear: np.ndarray               # (3,) m/s in base_link
    angular: np.ndarray              # (3,) rad/s in base_link
    pose_covariance: np.ndarray      # (6, 6) x y z roll pitch yaw
    twist_covariance: np.ndarray     # (6, 6)
    first: bool = False              # True for the first pose after a (re)start

    @property
    def position(self) -> np.ndarray:
        return self.T_odom_base[:3, 3].copy()

    @property
    def quaternion(self) -> np.ndarray:
        return matrix_to_quat(self.T_odom_base[:3, :3])


@dataclass
class MonocularOdometry:
    """Chains the network's window predictions into ``T_odom_base`` (see the module doc).

    Typical use per processed frame (stamps in seconds)::

        reason = odo.check_time(stamp)        # may reset; log `reason` once if not None
        ... append the frame to the window (clear the window first if reason is not None) ...
        est = odo.update(stamp, T_src_tgt, window_stamps, offsets)   # T_src_tgt None while filling
    """

    T_base_cam: np.ndarray = field(default_factory=camera_extrinsic)
    scale: float = 1.0
    max_gap: float = 1.0
    noise: OdomNoise = field(default_factory=OdomNoise)

    def __post_init__(self) -> None:
        self.T_base_cam = np.asarray(self.T_base_cam, dtype=np.float64)
        if self.T_base_cam.shape != (4, 4):
            raise ValueError(f"T_base_cam must be (4, 4), got {self.T_base_cam.shape}")
        self._T_cam_base = invert_pose(self.T_base_cam)
        self.T_odom_cam = np.eye(4)
        self.pose_cov = self.noise.floor * np.eye(6)  # of T_odom_base, in odom (module doc)
        self._origin = np.zeros(3)  # odom position at the last full reset, where the scale term starts
        self.last_stamp: float | None = None     # stamp of the last frame seen by check_time
        self.pose_stamp: float | None = None     # stamp of the last frame that got a pose
        self.resets = 0
        self._started = False

    # ------------------------------------------------------------------ state changes
    def reset(self, hold_pose: bool = False, reason: str = "") -> None:
        """Restart the chaining; ``hold_pose`` keeps the current pose (and inflates covariance)."""
        if hold_pose:
            n = self.noise
            # the scale term keeps its origin: the scale error persists through a gap
            self.pose_cov = self.pose_cov + np.diag([n.gap_position ** 2] * 3 + [0.0, 0.0, n.gap_yaw ** 2])
        else:
            self.T_odom_cam = np.eye(4)
            self.pose_cov = self.noise.floor * np.eye(6)
            self._origin = np.zeros(3)
        self.last_stamp = None
        self.pose_stamp = None
        self._started = False
        self.resets += 1

    def check_time(self, stamp: float) -> str | None:
        """Call once per processed frame *before* adding it to the window.

        Returns ``None`` (continue), ``"duplicate"`` (same stamp as the previous frame: skip the
        frame, nothing is changed) or a one-line reason after resetting (clear the window then).
        """
        stamp = float(stamp)
        prev = self.last_stamp
        if prev is not None:
            if stamp == prev:
                return "duplicate"
            if stamp < prev:
                self.reset(hold_pose=False)
                self.last_stamp = stamp
                return (f"time jumped backwards by {prev - stamp:.3f} s; odometry reset to the "
                        "identity")
            if stamp - prev > self.max_gap:
                self.reset(hold_pose=True)
                self.last_stamp = stamp
                return (f"gap of {stamp - prev:.3f} s between frames (> max_gap {self.max_gap:g} s); "
                        "odometry restarted from the last pose")
        self.last_stamp = stamp
        return None

    def update(self, stamp: float, T_src_tgt: np.ndarray | None = None,
               window_stamps: Sequence[float] | None = None,
               offsets: Sequence[int] | None = None,
               refine: Callable[[int, np.ndarray], np.ndarray] | None = None) -> OdomEstimate | None:
        """Add a processed frame; returns its odometry or ``None`` while the first window fills.

        Args:
            stamp: the frame's time (seconds); the newest frame of the window.
            T_src_tgt: (N, 4, 4) network prediction for the full window, or None if not full.
            window_stamps: stamps of the window's frames, oldest first (``[-1] == stamp``).
            offsets: source offsets of ``T_src_tgt`` (:func:`sfm_ros.core.model.source_offsets`).
            refine: optional ``refine(ref, inc) -> inc`` or ``-> (inc, cov)``: given the window index of
                the last posed frame and the network's motion from it to the newest frame
                (``T_ref_new``), returns the motion to integrate (e.g. :meth:`sfm_ros.runtime.motion.Refiner.refine`'s
                ``T``) and optionally its (6, 6) covariance in the camera frame (``[t, r]``, network
                units), which then replaces :class:`OdomNoise` for this increment.
        """
        stamp = float(stamp)
        if not self._started:
            # First frame after a (re)start: it defines the chaining origin (pose held or identity).
            self._started = True
            self.pose_stamp = stamp
            return self._estimate(stamp, np.eye(4), None, first=True)
        if T_src_tgt is None:
            return None
        if window_stamps is None or offsets is None:
            raise ValueError("window_stamps and offsets are needed with T_src_tgt")
        ws = [float(s) for s in window_stamps]
        if not ws or ws[-1] != stamp:
            raise ValueError(f"the newest window stamp {ws[-1] if ws else None} must equal stamp {stamp}")
        if self.pose_stamp is None or self.pose_stamp not in ws[:-1]:
            # The window does not contain the last posed frame (the caller reset the window without
            # calling check_time/reset): restart from this frame.
            self.reset(hold_pose=True)
            self._started = True
            self.last_stamp = stamp
            self.pose_stamp = stamp
            return self._estimate(stamp, np.eye(4), None, first=True)
        ref = ws.index(self.pose_stamp)
        inc = window_increment(T_src_tgt, offsets, ref=ref, new=len(ws) - 1)
        step_cov = None
        if refine is not None:
            out = refine(ref, inc)
            if isinstance(out, tuple):
                out, cam_cov = out
                if cam_cov is not None:
                    step_cov = self._base_covariance(cam_cov)  # raises before any state changes
            inc = np.asarray(out, dtype=np.float64)
        if not np.all(np.isfinite(inc)):
            raise ValueError("non-finite pose prediction")
        dt = stamp - self.pose_stamp
        self.pose_stamp = stamp
        return self._estimate(stamp, inc, dt, step_cov=step_cov)

    # ------------------------------------------------------------------ internals
    def _base_covariance(self, cov_cam: np.ndarray) -> np.ndarray:
        """(6, 6) covariance ``[x, y, z, roll, pitch, yaw]`` in the base frame of an increment's
        camera-frame covariance (translation in network units, scaled to metres here; the camera's
        lever arm on the base is neglected). The rotation's error stays a right-multiplied one
        (:mod:`sfm_ros.runtime.motion.covariance`'s), now about the base's axes."""
        C = np.asarray(cov_cam, dtype=np.float64)
        if C.shape != (6, 6) or not np.all(np.isfinite(C)):
            raise ValueError(f"the increment covariance must be a finite 6x6 matrix, got {C.shape}")
        A = np.zeros((6, 6))
        A[:3, :3] = self.T_base_cam[:3, :3] * abs(self.scale)
        A[3:, 3:] = self.T_base_cam[:3, :3]
        B = A @ C @ A.T
        return 0.5 * (B + B.T)

    def _with_scale_error(self, position: np.ndarray) -> np.ndarray:
        """``pose_cov`` plus the position error a persisting scale error ``noise.scale_rel`` has
        built since the last full reset (a held reset keeps it growing): ``scale_rel² · D Dᵀ``,
        ``D`` the change to ``position`` (base_link's, in odom)."""
        P = self.pose_cov.copy()
        if self.noise.scale_rel > 0:
            D = position - self._origin
            P[:3, :3] += self.noise.scale_rel ** 2 * np.outer(D, D)
        return P

    def _propagate(self, T_prev_base: np.ndarray, inc_base: np.ndarray, Q: np.ndarray) -> None:
        """``pose_cov`` of ``T_prev_base · inc_base`` (first order, errors in odom: a position
        error and a small rotation about odom's fixed axes), the increment's base-frame covariance
        ``Q`` (translation errors added to its translation, rotation errors right-multiplied): the
        rotation's error so far moves the new position by ``-[R t]×`` (heading error becomes lateral
        error); the increment's translation error is turned into odom by ``R``, its rotation error
        by ``R · R_inc`` (a right-multiplied error is a left one turned by the increment)."""
        R = T_prev_base[:3, :3]
        F = np.eye(6)
        F[:3, 3:] = -skew(R @ inc_base[:3, 3])
        G = np.zeros((6, 6))
        G[:3, :3] = R
        G[3:, 3:] = R @ inc_base[:3, :3]
        P = F @ self.pose_cov @ F.T + G @ Q @ G.T
        self.pose_cov = 0.5 * (P + P.T)

    def _estimate(self, stamp: float, inc_cam: np.ndarray, dt: float | None,
                  first: bool = False, step_cov: np.ndarray | None = None) -> OdomEstimate:
        """``step_cov``: the increment's base-frame covariance (:meth:`_base_covariance`), else
        :class:`OdomNoise`'s."""
        inc = np.array(inc_cam, dtype=np.float64)
        inc[:3, 3] *= self.scale
        T_prev_base = camera_to_base(self.T_odom_cam, self.T_base_cam)
        self.T_odom_cam = self.T_odom_cam @ inc
        T_odom_base = camera_to_base(self.T_odom_cam, self.T_base_cam)
        # Increment of the base frame (in the previous base frame) and its twist.
        inc_base = invert_pose(T_prev_base) @ T_odom_base
        step_len = float(np.linalg.norm(inc_base[:3, 3]))
        step_angle = float(np.linalg.norm(matrix_to_axis_angle(inc_base[:3, :3])))
        if first or dt is None or dt <= 0.0:
            linear, angular = np.zeros(3), np.zeros(3)
            # unknown velocity on the first frame: 1 (m/s)², (rad/s)²
            twist_cov = np.diag(self.noise.step_variance(0.0, 0.0, self.scale) + 1.0)
        else:
            xi = se3_log(inc_base) / dt  # constant body twist that produces the increment
            linear, angular = xi[:3], xi[3:]
            if step_cov is None:
                step_cov = np.diag(self.noise.step_variance(step_len, step_angle, self.scale))
            step_cov = step_cov + self.noise.step_floor * np.eye(6)
            self._propagate(T_prev_base, inc_base, step_cov)
            twist_cov = step_cov / (dt * dt)
        return OdomEstimate(
            stamp=stamp,
            T_odom_base=T_odom_base,
            T_odom_cam=self.T_odom_cam.copy(),
            linear=linear,
            angular=angular,
            pose_covariance=self._with_scale_error(T_odom_base[:3, 3]),
            twist_covariance=twist_cov,
            first=first,
        )
