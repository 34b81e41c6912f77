"""``sfm_node``: SfMLearner monocular depth and visual odometry as a ROS 2 node.

Run: ``ros2 run sfm_ros sfm_node --ros-args -r image:=/cam/image_raw -r camera_info:=/cam/camera_info``
or ``ros2 launch sfm_ros camera.launch.py image:=/cam/image_raw camera_info:=/cam/camera_info``
(also ``python -m sfm_ros.ros.node``); ``sfm_node --help`` prints the topics and parameters below.

Subscribed topics
-----------------
====================  ==============================  ===============================================
topic                 type                            notes
====================  ==============================  ===============================================
``image``             sensor_msgs/Image               camera frames (``compressed:=false``, default);
                                                      rgb8, bgr8, rgba8, bgra8, mono8, mono16
``image/compressed``  sensor_msgs/CompressedImage     instead of ``image`` when ``compressed:=true``
                                                      (image_transport naming: remap it on its own,
                                                      e.g. ``-r image/compressed:=/cam/image_raw/compressed``)
``camera_info``       sensor_msgs/CameraInfo          intrinsics; until one arrives the
                                                      ``intrinsics`` parameter is used (if set)
====================  ==============================  ===============================================

Both use the sensor-data QoS by default (best effort, keep last ``qos_depth``, volatile);
``qos_reliability:=reliable`` for recorders / reliable-only publishers. All names are relative:
``__ns`` and remapping work as usual.

Published topics (stamped with the header stamp of the input frame they come from)
------------------------------------------------------------------------------------
=======================  =================================  =========================================
topic                    type                               content
=======================  =================================  =========================================
``depth/image``          sensor_msgs/Image ``32FC1``        depth in metres (REP 118) at the network
                                                            resolution, ``network units * scale``;
                                                            -Inf < min_depth, +Inf > max_depth, NaN
                                                            unknown; frame = camera optical frame
``depth/camera_info``    sensor_msgs/CameraInfo             intrinsics scaled to the depth image, its
                                                            sibling (image_transport, depth_image_proc,
                                                            RViz; needs camera_info or ``intrinsics``)
``depth/colormap``       sensor_msgs/Image ``rgb8``         inverse depth, magma (``publish_colormap``)
``explainability``       sensor_msgs/Image ``mono8``        mean explainability mask of the window's
                                                            target (middle) frame, stamped with that
                                                            frame (``publish_explainability``)
``points``               sensor_msgs/PointCloud2            every ``points_stride``-th finite depth
                                                            pixel: x y z float32 + rgb (packed float32);
                                                            frame = camera optical frame
``odom``                 nav_msgs/Odometry                  pose of ``base_frame`` in ``odom_frame``,
                                                            twist in ``base_frame``, covariances
                                                            (see :mod:`sfm_ros.runtime.odometry`)
``/tf``                  tf2_msgs/TFMessage                 ``odom_frame`` → ``base_frame``
                                                            (``publish_tf``); reliable, keep last 100
``/tf_static``           tf2_msgs/TFMessage                 ``base_frame`` → camera optical frame
                                                            (``publish_static_tf``); reliable, transient
                                                            local, keep last 1 (tf2_ros' static QoS)
``/diagnostics``         diagnostic_msgs/DiagnosticArray    1 Hz: frames received / processed /
                                                            dropped / rejected / skipped, latency
                                                            p50/p95, inference time, model, device;
                                                            WARN naming what is missing (README)
=======================  =================================  =========================================

Outputs use a reliable, keep-last-``qos_depth`` QoS (compatible with best-effort subscribers too).
Renamed in issue 14: ``depth`` → ``depth/image`` (``depth/camera_info``, ``depth/colormap`` kept).
``/tf``, ``/tf_static`` and ``/diagnostics`` are absolute as in tf2_ros and diagnostic_updater.

Parameters (``config/sfm_ros.yaml``; ``*`` = can be changed at run time with ``ros2 param set``)
------------------------------------------------------------------------------------------------
==============================  ========  ===========================  ================================
name                            type      default                      meaning
==============================  ========  ===========================  ================================
``checkpoint``                  string    ``""``                       sfm_ros checkpoint; ``""`` = the
                                                                       shipped ``models/sfm_default.pt``
                                                                       (share/sfm_ros/models via
                                                                       ament_index, else the source tree)
``device``                      string    ``auto``                     auto | cpu | cuda | cuda:N
``precision``                   string    ``fp32``                     fp32 | fp16 (CUDA) | bf16 | auto
``backend``                     string    ``auto``                     auto | torch | onnxruntime. auto:
                                                                       onnxruntime on the CPU in fp32
                                                                       (networks exported to ONNX at
                                                                       start, <1 s; measured 1.2-1.6x
                                                                       faster), torch otherwise
``num_threads``                 int       0                            torch CPU threads (0 = default)
``height``, ``width``           int       0                            network input size; 0 = the
                                                                       checkpoint's (recommended). Other
                                                                       sizes work (fully convolutional)
                                                                       but leave the training
                                                                       distribution: a warning is logged
``compressed``                  bool      false                        subscribe ``image/compressed``
``qos_reliability``             string    ``best_effort``              best_effort | reliable (inputs)
``qos_depth``                   int       5                            history depth of inputs/outputs
``queue_size``                  int       1                            frames waiting for inference;
                                                                       when full the oldest is dropped
                                                                       (newest wins)
``odom_frame``                  string    ``odom``                     odometry frame
``base_frame``                  string    ``base_link``                robot frame (REP-103)
``camera_frame``                string    ``""``                       optical frame of outputs and of
                                                                       the static TF; ``""`` = the
                                                                       input header's frame_id (or
                                                                       ``camera_optical_frame`` if empty)
``camera_xyz``                  double[]  [0, 0, 0]                    base_frame → optical frame
                                                                       translation (m)
``camera_rpy``                  double[]  [-pi/2, 0, -pi/2]            base_frame → optical frame
                                                                       rotation (URDF rpy, rad); the
                                                                       default is a forward camera
``scale`` *                     double    0.0                          metres per network unit: monocular
                                                                       depth and motion are only known up
                                                                       to scale. > 0: this factor (it
                                                                       wins); 0: from ``camera_height``
                                                                       when set, else 1
``camera_height`` *             double    0.0                          the camera's height above the
                                                                       ground (m; with ``base_frame`` on
                                                                       the ground: ``camera_xyz[2]``);
                                                                       > 0: the scale is measured every
                                                                       frame from the ground plane in the
                                                                       predicted depth
                                                                       (:mod:`sfm_ros.runtime.ground_scale`;
                                                                       needs intrinsics); 0 = unset
``min_depth`` *                 double    0.1                          closer: -Inf in ``depth/image`` (m)
``max_depth`` *                 double    100.0                        farther: +Inf in ``depth/image`` (m)
``max_gap`` *                   double    1.0                          a larger gap (s) between processed
                                                                       frames restarts the odometry
``refine_pose`` *               string    ``epipolar``                 none | epipolar | photometric |
                                                                       epipolar+photometric: refine each
                                                                       frame-to-frame motion of the pose
                                                                       network against the images
                                                                       (:mod:`sfm_ros.runtime.refine`; needs
                                                                       intrinsics, else the network's;
                                                                       photometric also the depth);
                                                                       epipolar ~11 ms a frame at 128x416
                                                                       (one core); BENCHMARKS.md
``publish_tf`` *                bool      true                         odom → base_frame on /tf
``publish_static_tf`` *         bool      on iff camera_xyz/rpy given  base_frame → optical frame on
                                                                       /tf_static (a URDF: leave it off)
``publish_points`` *            bool      true                         ``points``
``points_stride`` *             int       4                            pixel step of ``points``
``publish_colormap`` *          bool      false                        ``depth/colormap``
``publish_explainability`` *    bool      false                        ``explainability``
``intrinsics``                  double[]  [0, 0, 0, 0]                 fallback fx, fy, cx, cy (pixels of
                                                                       the *input* image) used until a
                                                                       camera_info arrives; all 0 = unset
``adapt`` *                     bool      false                        keep learning from the camera
                                                                       (:mod:`sfm_ros.training.adapt`: replay of
                                                                       moving windows, every update
                                                                       checked on held-out windows and
                                                                       rolled back when worse); needs
                                                                       intrinsics; off: weights saved
``adapt_duty``                  double    0.5                          largest share of wall time the
                                                                       adaptation thread computes
``adapt_threads``               int       1                            its torch CPU threads
``adapt_checkpoint``            string    ``""``                       where adapted weights go (an
                                                                       ordinary checkpoint); ``""`` =
                                                                       ``$ROS_HOME/sfm_ros/adapted.pt``
``adapt_save_every``            int       10                           accepted updates between saves
``use_sim_time``                bool      false                        standard (declared by rclpy)
==============================  ========  ===========================  ================================

Integer values are accepted for double parameters (``-p scale:=2``, ``camera_xyz: [0, 0, 1]``, ``ros2
param set ... scale 3``); other wrong types stop the node with one line. Overrides the node does not
declare (a typo in a params file) are named in one warning at start.

The input size and ``seq_len`` (frames per pose window) come from the checkpoint.

Frames
------
=====================  =======================================================================
frame                  role
=====================  =======================================================================
``odom_frame``         fixed odometry frame: the base_link pose at start (identity); after a
                       backwards time jump the odometry restarts at the identity, after a gap
                       it continues from the last pose (REP-105 continuity)
``base_frame``         child of ``odom`` (odometry, /tf); REP-103 x forward, y left, z up
camera optical frame   child of ``base_frame`` (``publish_static_tf``: camera_xyz/rpy); x right,
                       y down, z forward; frame of ``depth/image``, ``points``, ``depth/camera_info``
=====================  =======================================================================

Processing
----------
The callbacks only decode and validate, then queue the frame (``queue_size``, newest wins); a worker
thread runs the ROS-free :class:`sfm_ros.runtime.pipeline.FramePipeline` (its module doc: window, time
checks, bad input) and publishes its results through :mod:`sfm_ros.ros.messages`. A missing
or corrupt checkpoint stops the node at start with a one-line message and exit status 2.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, NamedTuple

import numpy as np

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from sfm_ros.ros import messages as rm
from sfm_ros.runtime.node_support import (EXAMPLE, FRAME_COUNTS, PUBLISHED, SUBSCRIBED, Counters, Latencies, Log, coerce_param,
                           unknown_parameters, usage)
from sfm_ros.runtime.odometry import OPTICAL_RPY
from sfm_ros.runtime.frames import FrameQueue, FrameResult, InputFrame
from sfm_ros.runtime.pipeline import SETTINGS, FramePipeline, Settings

NODE_NAME = "sfm_node"


class ParamSpec(NamedTuple):
    name: str
    default: Any
    description: str
    dynamic: bool = False
    low: float | None = None
    high: float | None = None
    shown: str | None = None   # the default as ``--help`` shows it, when not ``default`` itself


#: Every parameter the node declares (``use_sim_time`` is declared by rclpy itself).
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "sfm_ros checkpoint path; empty = the shipped models/sfm_default.pt"),
    ParamSpec("device", "auto", "auto | cpu | cuda | cuda:N"),
    ParamSpec("precision", "fp32", "fp32 | fp16 (CUDA) | bf16 | auto"),
    ParamSpec("backend", "auto", "auto | torch | onnxruntime (auto: onnxruntime on the CPU in fp32)"),
    ParamSpec("num_threads", 0, "torch CPU threads (0 = torch default)", low=0, high=256),
    ParamSpec("height", 0, "network input height; 0 = the checkpoint's", low=0, high=4096),
    ParamSpec("width", 0, "network input width; 0 = the checkpoint's", low=0, high=4096),
    ParamSpec("compressed", False, "subscribe sensor_msgs/CompressedImage on image/compressed"),
    ParamSpec("qos_reliability", "best_effort", "input QoS reliability: best_effort | reliable"),
    ParamSpec("qos_depth", 5, "QoS history depth of inputs and outputs", low=1, high=1000),
    ParamSpec("queue_size", 1, "frames waiting for inference (oldest dropped when full)", low=1, high=100),
    ParamSpec("odom_frame", "odom", "odometry frame"),
    ParamSpec("base_frame", "base_link", "robot base frame (REP-103)"),
    ParamSpec("camera_frame", "", "camera optical frame; empty = the input header frame_id"),
    ParamSpec("camera_xyz", [0.0, 0.0, 0.0], "base_frame -> optical frame translation [x, y, z] (m)"),
    ParamSpec("camera_rpy", list(OPTICAL_RPY), "base_frame -> optical frame rotation [roll, pitch, yaw] (rad)"),
    ParamSpec("scale", 0.0, "metres per network unit; 0 = from camera_height when set, else 1", True, 0.0, 1e9),
    ParamSpec("camera_height", 0.0, "camera height above the ground (m); > 0: metric scale from the ground "
                                    "plane; 0 = unset", True, 0.0, 1e3),
    ParamSpec("min_depth", 0.1, "published depth lower clamp (m)", True, 0.0, 1e9),
    ParamSpec("max_depth", 100.0, "published depth upper clamp (m)", True, 0.0, 1e9),
    ParamSpec("max_gap", 1.0, "gap (s) between processed frames that restarts the odometry", True, 1e-3, 1e9),
    ParamSpec("refine_pose", "epipolar", "refine each frame-to-frame motion against the images: none | epipolar | "
              "photometric | epipolar+photometric",
              True),
    ParamSpec("publish_tf", True, "publish odom_frame -> base_frame on /tf", True),
    ParamSpec("publish_static_tf", False, "publish base_frame -> camera optical frame on /tf_static", True,
              shown="on when camera_xyz or camera_rpy is given, else off (a URDF's robot_state_publisher)"),
    ParamSpec("publish_points", True, "publish the coloured point cloud on points", True),
    ParamSpec("points_stride", 4, "pixel step of the point cloud", True, 1, 64),
    ParamSpec("publish_colormap", False, "publish depth/colormap (rgb8)", True),
    ParamSpec("publish_explainability", False, "publish the explainability mask (mono8)", True),
    ParamSpec("intrinsics", [0.0, 0.0, 0.0, 0.0],
              "fallback [fx, fy, cx, cy] of the input image until camera_info arrives; zeros = unset"),
    ParamSpec("adapt", False, "keep learning from the camera (online self-supervised adaptation, guarded by a "
                              "held-out check; needs intrinsics)", True),
    ParamSpec("adapt_duty", 0.5, "largest fraction of wall time the adaptation thread computes", False, 0.01, 1.0),
    ParamSpec("adapt_threads", 1, "torch CPU threads of the adaptation thread", False, 1, 256),
    ParamSpec("adapt_checkpoint", "", "where adapted weights are written (at adapt off, shutdown and every "
                                      "adapt_save_every accepted updates); empty = $ROS_HOME/sfm_ros/adapted.pt"),
    ParamSpec("adapt_save_every", 10, "accepted updates between saves", False, 1, 1000000),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)
MOUNT_PARAMETERS = ("camera_xyz", "camera_rpy")  # given: publish_static_tf defaults to on

def help_text() -> str:
    """``sfm_node --help``: generated from :data:`PARAMETERS`, :data:`SUBSCRIBED`, :data:`PUBLISHED`."""
    return usage(NODE_NAME, __doc__.splitlines()[0].split(": ", 1)[1], SUBSCRIBED, PUBLISHED, PARAMETERS,
                 EXAMPLE)


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, bad parameter): one line, no traceback."""


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class SfmNode(Node):
    """Depth + visual odometry node (see the module documentation for the interface)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.log = Log(self.get_logger())
        self.counts = Counters(*FRAME_COUNTS)
        self.latencies = Latencies()
        self._dropped_reported = 0
        try:
            self._declare_parameters()
        except Exception as exc:  # out of range / wrong type given with -p or a params file
            raise StartupError(f"bad parameter: {str(exc).splitlines()[0]}") from None
        p = self._param
        settings = Settings(**{name: p(name) for name in SETTINGS})
        try:
            settings.check()
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        from sfm_ros.runtime.node_support import load_estimator
        from sfm_ros.runtime.odometry import camera_extrinsic

        try:
            self.estimator, self.checkpoint = load_estimator(
                p("checkpoint"), p("device"), p("precision"), p("backend"), p("num_threads"), p("height"),
                p("width"), self.log)
        except Exception as exc:  # FileNotFoundError, CheckpointError, ValueError (device/precision) ...
            raise StartupError(_first_line(exc)) from None
        try:
            self.T_base_cam = camera_extrinsic(p("camera_xyz"), p("camera_rpy"))
        except ValueError as exc:
            raise StartupError(f"bad camera_xyz/camera_rpy: {exc}") from None
        from sfm_ros.training.online import OnlineAdaptation

        adaptation = OnlineAdaptation(self.estimator, self.checkpoint, p("adapt_checkpoint") or None,
                                      duty=p("adapt_duty"), threads=p("adapt_threads"),
                                      save_every=p("adapt_save_every"), log=self.get_logger().info)
        self.pipeline = FramePipeline(self.estimator, self.T_base_cam, settings, self.log, self.counts,
                                      adaptation)
        self._static_frame: str | None = None

        # ---------------------------------------------------------------- QoS
        depth = p("qos_depth")
        rel = p("qos_reliability")
        if rel not in ("best_effort", "reliable"):
            raise StartupError(f"qos_reliability must be best_effort or reliable, got {rel!r}")
        in_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=depth,
            reliability=ReliabilityPolicy.BEST_EFFORT if rel == "best_effort" else ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        tf_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                            reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        tf_static_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                   reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)

        # ---------------------------------------------------------------- publishers
        self.pub_depth = self.create_publisher(Image, PUBLISHED[0][0], out_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, PUBLISHED[1][0], out_qos)
        self.pub_colormap = self.create_publisher(Image, PUBLISHED[2][0], out_qos)
        self.pub_exp = self.create_publisher(Image, "explainability", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "points", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "odom", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if rm.TFMessage is not None:
            self.pub_tf = self.create_publisher(rm.TFMessage, "/tf", tf_qos)
            self.pub_tf_static = self.create_publisher(rm.TFMessage, "/tf_static", tf_static_qos)
        else:
            self.pub_tf = self.pub_tf_static = None
            self.get_logger().warning("tf2_msgs is not installed: /tf and /tf_static are disabled")

        # ---------------------------------------------------------------- worker + subscriptions
        self._queue = FrameQueue(p("queue_size"))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="sfm_inference", daemon=True)
        if p("compressed"):
            self.sub_image = self.create_subscription(CompressedImage, "image/compressed",
                                                      self._on_compressed, in_qos)
        else:
            self.sub_image = self.create_subscription(Image, "image", self._on_image, in_qos)
        self.sub_info = self.create_subscription(CameraInfo, "camera_info", self.pipeline.camera_info, in_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Diagnostics on the steady clock: they keep coming while sim time is paused.
        self.diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        if p("camera_frame"):
            self._publish_static_tf(p("camera_frame"))
        self._worker.start()
        e = self.estimator
        self.get_logger().info(
            f"ready: model {self.checkpoint} ({e.height}x{e.width}, seq_len {e.seq_len}) on "
            f"{e.device} {e.precision} ({e.backend}); input {self.sub_image.topic_name} "
            f"({'CompressedImage' if p('compressed') else 'Image'}), camera_info "
            f"{self.sub_info.topic_name}; " + (f"scale {p('scale'):g} m/unit" if p("scale") > 0 else
                                                f"scale from camera_height {p('camera_height'):g} m"
                                                if p("camera_height") > 0 else
                                                "scale 1 m/unit (set scale or camera_height for metres)")
            + ("" if p("publish_static_tf") else "; no /tf_static (publish_static_tf off: the mount is left to "
               "robot_state_publisher; set camera_xyz/camera_rpy to publish it)"))

    # ------------------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        """Declare :data:`PARAMETERS`: integer overrides of double parameters are coerced first (also
        for ``set_parameters``: a pre-set callback); undeclared overrides are warned about once."""
        overrides = self._parameter_overrides  # rclpy's -p / --params-file values for this node
        for spec in PARAMETERS:
            if spec.name in overrides:
                value = coerce_param(spec.name, spec.default, overrides[spec.name].value)
                if value is not overrides[spec.name].value:
                    overrides[spec.name] = Parameter(spec.name, value=value)
        if hasattr(self, "add_pre_set_parameters_callback"):  # rclpy >= Iron
            self.add_pre_set_parameters_callback(self._coerce_parameters)
        unknown = unknown_parameters(overrides, PARAMETER_NAMES)
        if unknown:
            self.get_logger().warning(f"ignoring parameter(s) this node does not declare: {', '.join(unknown)} "
                                      "(a typo? sfm_node --help lists its parameters)")
        for spec in PARAMETERS:
            d = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic)
            if spec.low is not None and isinstance(spec.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                             to_value=float(spec.high), step=0.0)]
            elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
                d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
            self.declare_parameter(spec.name, spec.default, d)
        if "publish_static_tf" not in overrides and any(n in overrides for n in MOUNT_PARAMETERS):
            self.set_parameters([Parameter("publish_static_tf", value=True)])

    @staticmethod
    def _coerce_parameters(params: list[Parameter]) -> list[Parameter]:
        defaults = {s.name: s.default for s in PARAMETERS}
        return [Parameter(q.name, value=coerce_param(q.name, defaults[q.name], q.value)) if q.name in defaults
                else q for q in params]

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in params}
        changes = {k: v for k, v in new.items() if k in SETTINGS}
        try:
            self.pipeline.settings.check(**changes)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for k, v in changes.items():  # one assignment each: the worker sees the old or the new value
            setattr(self.pipeline.settings, k, v)
        if new.get("publish_static_tf") and self._static_frame:
            self._static_frame = None  # re-publish the static TF with the next frame
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------ callbacks
    def _enqueue(self, msg, **data) -> None:
        stamp = msg.header.stamp
        action = self.pipeline.zero_stamp(not (stamp.sec or stamp.nanosec))
        if action == "skip":
            return
        if action == "reception":
            stamp = self.get_clock().now().to_msg()
        frame = InputFrame(stamp, rm.stamp_to_sec(stamp), msg.header.frame_id, data.pop("recv"), **data)
        dropped = self._queue.put(frame)
        if dropped:
            self.counts.add("dropped", dropped)

    def _on_image(self, msg: Image) -> None:
        from sfm_ros.data.image_codec import ImageDecodeError, decode_image

        self.counts.add("received")
        recv = time.monotonic()
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        except (ImageDecodeError, ValueError) as exc:
            self.pipeline.reject(f"image:{getattr(exc, 'kind', 'decode')}", f"dropping a bad image: {exc}")
            return
        if img.dtype == np.float32:
            self.pipeline.reject("image:depth", f"dropping an image with encoding {msg.encoding!r}: a depth "
                                 "image is not a camera image (expected rgb8/bgr8/mono8/mono16/...)")
            return
        self._enqueue(msg, recv=recv, image=img)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.counts.add("received")
        recv = time.monotonic()
        if len(msg.data) == 0:
            self.pipeline.reject("compressed:empty", "dropping a CompressedImage with no data")
            return
        self._enqueue(msg, recv=recv, compressed=(msg.format, bytes(msg.data)))

    # ------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._queue.get(timeout=0.1)
            if frame is None:
                continue
            try:
                result = self.pipeline.process(frame)
                if result is not None:
                    self._publish(result)
            except Exception as exc:  # never let one frame kill the worker
                if self._stop.is_set() or not self.context.ok():
                    break  # shutting down (Ctrl-C): publishers are gone, nothing to report
                self.counts.add("errors")
                self.log.warn("process", f"frame skipped: {type(exc).__name__}: {exc}")

    def _publish(self, r: FrameResult) -> None:
        p = self._param
        cam_frame = p("camera_frame") or r.frame_id or "camera_optical_frame"
        self.pub_depth.publish(rm.depth_image(r, cam_frame))
        if r.camera is not None:
            self.pub_depth_info.publish(rm.camera_info(r.camera, r.stamp, cam_frame))
        if r.points is not None:
            self.pub_points.publish(rm.point_cloud(r.points, r.stamp, cam_frame))
        if p("publish_colormap"):
            self.pub_colormap.publish(rm.colormap_image(r, cam_frame))
        if r.explainability is not None:
            self.pub_exp.publish(rm.explainability_image(r, cam_frame))
        if r.odometry is not None:
            odom, base = p("odom_frame"), p("base_frame")
            self.pub_odom.publish(rm.odometry_msg(r.odometry, r.stamp, odom, base))
            if p("publish_tf") and self.pub_tf is not None:
                self.pub_tf.publish(rm.tf_message(rm.transform_stamped(r.odometry.T_odom_base, r.stamp, odom, base)))
        if p("publish_static_tf") and self._static_frame != cam_frame:
            self._publish_static_tf(cam_frame)
        now = self.get_clock().now().nanoseconds
        self.counts.add("processed")
        self.latencies.add(r.infer_ms, time.monotonic() - r.recv, now * 1e-9 - r.t if now > 0 else None)

    def _publish_static_tf(self, cam_frame: str) -> None:
        if self.pub_tf_static is None or not self._param("publish_static_tf"):
            return
        tf = rm.transform_stamped(self.T_base_cam, self.get_clock().now().to_msg(), self._param("base_frame"),
                                  cam_frame)
        self.pub_tf_static.publish(rm.tf_message(tf))
        self._static_frame = cam_frame

    def _publish_diagnostics(self) -> None:
        s = self.counts.snapshot()
        new_drops = s["dropped"] - self._dropped_reported
        if new_drops > 0 and self.log.limiter.ok("drops")[0]:
            self.get_logger().warning(
                f"dropped {new_drops} frame(s) since the last report ({s['dropped']} in total): "
                f"inference takes {self.latencies.inference_p50_ms():.0f} ms per frame, slower than the camera; "
                "the newest frame is always processed")
            self._dropped_reported = s["dropped"]
        e = self.estimator
        values: dict[str, Any] = {
            "frames_received": s["received"], "frames_processed": s["processed"],
            "frames_dropped": s["dropped"], "frames_rejected": s["rejected"],
            "frames_skipped": s["skipped"], "errors": s["errors"],
            **self.latencies.values(),
            "model": self.checkpoint, "device": str(e.device), "precision": e.precision, "backend": e.backend,
            "input_size": f"{e.width}x{e.height}", "seq_len": e.seq_len,
            **self.pipeline.diagnostic_values(),
        }
        self.pub_diag.publish(rm.diagnostics(f"{self.get_name()}: inference", str(e.device), s, values,
                                             self.get_clock().now().to_msg(),
                                             self.pipeline.diagnostic_warnings(self.sub_info.topic_name)))

    # ------------------------------------------------------------------------------ shutdown
    def destroy_node(self):
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.pipeline.close()  # adaptation: the accepted weights are written
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of ``sfm_node``: exit status 0 on Ctrl-C / shutdown, 2 on a startup error;
    ``-h`` / ``--help`` (before ``--ros-args``) prints :func:`help_text` and exits 0 without DDS."""
    from rclpy.executors import ExternalShutdownException

    argv = list(sys.argv if args is None else args)
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(help_text(), flush=True)
        return 0

    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SfmNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        print(f"[{NODE_NAME}] error: {exc}", file=sys.stderr, flush=True)
        status = 2
    except Exception:
        if rclpy.ok():
            raise  # a bug: keep the traceback
        # Ctrl-C / SIGTERM while starting (e.g. during the model load): the context is shut down.
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
