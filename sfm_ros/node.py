"""``sfm_node``: SfMLearner monocular depth and visual odometry as a ROS 2 node.

Run: ``ros2 run sfm_ros sfm_node --ros-args -r image:=/cam/image_raw -r camera_info:=/cam/camera_info``
or ``ros2 launch sfm_ros camera.launch.py image:=/cam/image_raw camera_info:=/cam/camera_info``
(also ``python -m sfm_ros.node``).

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
``depth``                sensor_msgs/Image ``32FC1``        depth in metres (REP 118) at the network
                                                            resolution, ``network units * scale``
                                                            clamped to [min_depth, max_depth];
                                                            frame = camera optical frame
``depth/camera_info``    sensor_msgs/CameraInfo             intrinsics scaled to the depth image
                                                            (needs camera_info or ``intrinsics``)
``depth/colormap``       sensor_msgs/Image ``rgb8``         inverse depth, magma (``publish_colormap``)
``explainability``       sensor_msgs/Image ``mono8``        mean explainability mask of the window's
                                                            target (middle) frame, stamped with that
                                                            frame (``publish_explainability``)
``points``               sensor_msgs/PointCloud2            every ``points_stride``-th depth pixel:
                                                            x y z float32 + rgb (packed float32);
                                                            frame = camera optical frame
``odom``                 nav_msgs/Odometry                  pose of ``base_frame`` in ``odom_frame``,
                                                            twist in ``base_frame``, covariances
                                                            (see :mod:`sfm_ros.odometry`)
``/tf``                  tf2_msgs/TFMessage                 ``odom_frame`` → ``base_frame``
                                                            (``publish_tf``); reliable, keep last 100
``/tf_static``           tf2_msgs/TFMessage                 ``base_frame`` → camera optical frame
                                                            (``publish_tf``); reliable, transient
                                                            local, keep last 1 (tf2_ros' static QoS)
``/diagnostics``         diagnostic_msgs/DiagnosticArray    1 Hz: frames received / processed /
                                                            dropped / rejected / skipped, latency
                                                            p50/p95, inference time, model, device
=======================  =================================  =========================================

Outputs use a reliable, keep-last-``qos_depth`` QoS (compatible with best-effort subscribers too).
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
                                                                       (:mod:`sfm_ros.ground_scale`;
                                                                       needs intrinsics); 0 = unset
``min_depth`` *                 double    0.1                          published depth clamp (m)
``max_depth`` *                 double    100.0                        published depth clamp (m)
``max_gap`` *                   double    1.0                          a larger gap (s) between processed
                                                                       frames restarts the odometry
``refine_pose`` *               string    ``epipolar``                 none | epipolar: refine each
                                                                       frame-to-frame motion of the pose
                                                                       network against the images
                                                                       (:mod:`sfm_ros.refine`; needs
                                                                       intrinsics, else the network's);
                                                                       ~11 ms a frame at 128x416 (one core)
``publish_tf`` *                bool      true                         /tf and /tf_static
``publish_points`` *            bool      true                         ``points``
``points_stride`` *             int       4                            pixel step of ``points``
``publish_colormap`` *          bool      false                        ``depth/colormap``
``publish_explainability`` *    bool      false                        ``explainability``
``intrinsics``                  double[]  [0, 0, 0, 0]                 fallback fx, fy, cx, cy (pixels of
                                                                       the *input* image) used until a
                                                                       camera_info arrives; all 0 = unset
``use_sim_time``                bool      false                        standard (declared by rclpy)
==============================  ========  ===========================  ================================

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
camera optical frame   child of ``base_frame`` (/tf_static from camera_xyz/camera_rpy); x right,
                       y down, z forward; frame of ``depth``, ``points``, ``depth/camera_info``
=====================  =======================================================================

Processing
----------
The image callback only decodes (raw images: a copy; compressed images are decoded by the worker)
and validates, then puts the frame in a bounded queue of ``queue_size`` (newest wins). A worker
thread runs the networks: depth for every frame, and the pose network once per frame on the window
of the last ``seq_len`` processed frames; the newest frame's pose follows from the prediction with
it as a source (no output lag, see :mod:`sfm_ros.odometry`). Frames the worker cannot keep up with
are dropped, counted and reported (rate-limited log, diagnostics). Bad input (unsupported encoding,
zero size, truncated data, a step smaller than the row, a resolution change, non-finite network
output, duplicated stamps) is skipped with a warning rate-limited per kind of problem (never per
input string: memory and log rate stay bounded whatever arrives); the node keeps running. A frame
with a zero header stamp (driver bug) is skipped, warned, so that one odd frame never looks like a
time jump; from the second zero stamp in a row (a driver that never stamps) the reception time is
used instead, with a warning. A missing
or corrupt checkpoint stops the node at start with a one-line message and exit status 2.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

try:  # built into the venv by tools/build_tf2_msgs.sh; part of every ROS 2 install
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the environment
    TFMessage = None

NODE_NAME = "sfm_node"
DEFAULT_MODEL = "sfm_default.pt"
OPTICAL_RPY = [-math.pi / 2.0, 0.0, -math.pi / 2.0]
WARN_PERIOD = 5.0  # seconds between two warnings of the same kind
WARN_MAX_CHARS = 300  # a warning quotes the input (an encoding string ...) at most this long
ZERO_STAMP_RUN = 2  # zero header stamps in a row from which the driver is taken not to stamp


class ParamSpec(NamedTuple):
    name: str
    default: Any
    description: str
    dynamic: bool = False
    low: float | None = None
    high: float | None = None


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
    ParamSpec("refine_pose", "epipolar", "refine each frame-to-frame motion against the images: none | epipolar",
              True),
    ParamSpec("publish_tf", True, "publish odom->base on /tf and base->camera on /tf_static", True),
    ParamSpec("publish_points", True, "publish the coloured point cloud on points", True),
    ParamSpec("points_stride", 4, "pixel step of the point cloud", True, 1, 64),
    ParamSpec("publish_colormap", False, "publish depth/colormap (rgb8)", True),
    ParamSpec("publish_explainability", False, "publish the explainability mask (mono8)", True),
    ParamSpec("intrinsics", [0.0, 0.0, 0.0, 0.0],
              "fallback [fx, fy, cx, cy] of the input image until camera_info arrives; zeros = unset"),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, bad parameter): one line, no traceback."""


def default_checkpoint() -> Path:
    """``share/sfm_ros/models/sfm_default.pt`` if the package is installed, else the source tree's."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("sfm_ros")) / "models" / DEFAULT_MODEL)
    except Exception:  # PackageNotFoundError, or ament_index not importable
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[-1]


# ------------------------------------------------------------------------------------------------
# Small helpers (ROS-free)
# ------------------------------------------------------------------------------------------------
@dataclass
class Frame:
    stamp: Any               # builtin_interfaces/Time of the input header
    t: float                 # the same in seconds
    frame_id: str
    recv: float              # time.monotonic() at reception
    image: np.ndarray | None = None
    compressed: tuple[str, Any] | None = None   # (format, data) decoded by the worker


@dataclass
class WindowFrame:
    """A processed frame in the pose window: its stamp, network input, predicted depth (network
    units, numpy), decoded image, and ``(K, view)``: the refiner's view of it and the intrinsics it
    was made with, once one was made (a frame is the new one, then the reference: one view each)."""

    t: float
    x: Any
    depth: np.ndarray
    image: np.ndarray
    view: Any = None


class FrameQueue:
    """A bounded, thread-safe FIFO: ``put`` drops the oldest frame when full (newest wins)."""

    def __init__(self, size: int = 1):
        self._q: deque = deque()
        self._size = max(1, int(size))
        self._cond = threading.Condition()

    def put(self, item) -> int:
        """Add ``item``; returns how many old items were dropped to make room."""
        with self._cond:
            dropped = 0
            while len(self._q) >= self._size:
                self._q.popleft()
                dropped += 1
            self._q.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float = 0.1):
        with self._cond:
            if not self._q:
                self._cond.wait(timeout)
            return self._q.popleft() if self._q else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._q)


class RateLimiter:
    """``ok(key)`` is True at most once per ``period`` seconds per key (own limiter, any thread).

    Keys are kinds of warning chosen by the code, never text from a message; at most ``max_keys``
    are kept (the longest unused is forgotten first), so memory stays bounded whatever arrives."""

    def __init__(self, period: float = WARN_PERIOD, max_keys: int = 64):
        self.period = period
        self.max_keys = max(1, int(max_keys))
        self._last: OrderedDict[str, float] = OrderedDict()
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def ok(self, key: str) -> tuple[bool, int]:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is None or now - last >= self.period:
                self._last[key] = now
                self._last.move_to_end(key)
                while len(self._last) > self.max_keys:
                    old, _ = self._last.popitem(last=False)
                    self._suppressed.pop(old, None)
                return True, self._suppressed.pop(key, 0)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._last)


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def stamp_to_sec(stamp) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def depth_colormap(depth: np.ndarray) -> np.ndarray:
    """Inverse depth → RGB uint8 (magma), normalised by the 95th percentile of the frame."""
    import cv2

    disp = 1.0 / np.maximum(depth, 1e-6)
    vmax = max(float(np.percentile(disp, 95)), 1e-6)
    u8 = np.clip(disp / vmax * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)


def make_cloud_fields() -> list[PointField]:
    return [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
        PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
    ]


def cloud_points(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, stride: int) -> np.ndarray:
    """Structured array (x, y, z, rgb) of every ``stride``-th pixel of ``depth`` (metres)."""
    from .camera import backproject_grid

    x, y, z, v, u = backproject_grid(depth, K, stride)
    c = rgb[v, u].astype(np.uint32)
    packed = ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).astype(np.uint32)
    out = np.empty(z.size, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    out["x"], out["y"], out["z"], out["rgb"] = x.ravel(), y.ravel(), z.ravel(), packed.ravel()
    return out[np.isfinite(out["z"]) & (out["z"] > 0)]


# ------------------------------------------------------------------------------------------------
# The node
# ------------------------------------------------------------------------------------------------
class SfmNode(Node):
    """Depth + visual odometry node (see the module documentation for the interface)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._limiter = RateLimiter()
        self._zero_stamps = 0  # zero header stamps in a row (see _input_stamp)
        self._lock = threading.Lock()
        self.stats = dict(received=0, processed=0, dropped=0, rejected=0, skipped=0, errors=0)
        self._lat_stamp: deque = deque(maxlen=300)
        self._lat_wall: deque = deque(maxlen=300)
        self._infer_ms: deque = deque(maxlen=300)
        self._dropped_reported = 0
        self._refine_counts: dict[str, int] = {}
        try:
            self._declare_parameters()
        except Exception as exc:  # out of range / wrong type given with -p or a params file
            raise StartupError(f"bad parameter: {str(exc).splitlines()[0]}") from None
        p = self._param
        if p("min_depth") >= p("max_depth"):
            raise StartupError(f"min_depth {p('min_depth')} must be < max_depth {p('max_depth')}")
        from .refine import REFINE_MODES, Refiner

        if p("refine_pose") not in REFINE_MODES:
            raise StartupError(f"refine_pose must be one of {', '.join(REFINE_MODES)}, got {p('refine_pose')!r}")
        self._refiner = Refiner(p("refine_pose"))
        try:
            self._load_model()
        except StartupError:
            raise
        except Exception as exc:  # CheckpointError, ValueError (device/precision), OSError ...
            raise StartupError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None

        from .odometry import MonocularOdometry, camera_extrinsic

        try:
            self.T_base_cam = camera_extrinsic(p("camera_xyz"), p("camera_rpy"))
        except ValueError as exc:
            raise StartupError(f"bad camera_xyz/camera_rpy: {exc}") from None
        self.odometry = MonocularOdometry(T_base_cam=self.T_base_cam, scale=p("scale") or 1.0,
                                          max_gap=p("max_gap"))
        self._ground = None           # GroundScale while camera_height is set
        self._scale_source = "default"
        self._window: deque = deque(maxlen=self.estimator.seq_len)
        self._last_shape: tuple | None = None
        self._camera = None           # CameraModel from camera_info
        self._camera_source = None    # "camera_info" | "intrinsics" | None (logged on change)
        self._static_frame: str | None = None
        self._exp_available = self._has_explainability()

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
        self.pub_depth = self.create_publisher(Image, "depth", out_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.pub_colormap = self.create_publisher(Image, "depth/colormap", out_qos)
        self.pub_exp = self.create_publisher(Image, "explainability", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "points", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "odom", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if TFMessage is not None:
            self.pub_tf = self.create_publisher(TFMessage, "/tf", tf_qos)
            self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", tf_static_qos)
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
        self.sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
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
                                                "scale 1 m/unit (set scale or camera_height for metres)"))

    # ------------------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        for spec in PARAMETERS:
            d = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic)
            if spec.low is not None and isinstance(spec.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                             to_value=float(spec.high), step=0.0)]
            elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
                d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
            self.declare_parameter(spec.name, spec.default, d)

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in params}
        lo = new.get("min_depth", self._param("min_depth"))
        hi = new.get("max_depth", self._param("max_depth"))
        if lo >= hi:
            return SetParametersResult(successful=False, reason=f"min_depth {lo} must be < max_depth {hi}")
        if "refine_pose" in new:
            from .refine import REFINE_MODES, Refiner

            if new["refine_pose"] not in REFINE_MODES:
                return SetParametersResult(successful=False, reason=f"refine_pose must be one of "
                                                                    f"{', '.join(REFINE_MODES)}, got {new['refine_pose']!r}")
            self._refiner = Refiner(new["refine_pose"])  # one assignment: the worker sees old or new
        if "max_gap" in new:
            self.odometry.max_gap = float(new["max_gap"])
        if new.get("publish_tf") and self._static_frame:
            self._static_frame = None  # re-publish the static TF with the next frame
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------ model
    def _load_model(self) -> None:
        import torch

        from .inference import Estimator, auto_backend

        ckpt = self._param("checkpoint") or str(default_checkpoint())
        if not Path(ckpt).is_file():
            what = "the default model" if not self._param("checkpoint") else "checkpoint"
            raise StartupError(f"{what} {ckpt} does not exist (set the 'checkpoint' parameter)")
        if self._param("num_threads") > 0:
            torch.set_num_threads(self._param("num_threads"))
        self.checkpoint = ckpt
        backend = self._param("backend")
        h, w = self._param("height"), self._param("width")
        if backend == "auto":
            backend = auto_backend(self._param("device"), self._param("precision"), size_override=bool(h or w))
        self.estimator = Estimator(ckpt, device=self._param("device"), precision=self._param("precision"),
                                   backend=backend, threads=max(0, self._param("num_threads")))
        e = self.estimator
        if (h or w) and (h, w) != (e.height, e.width):
            if h < 16 or w < 16:
                raise StartupError(f"height/width override must both be >= 16, got {h}x{w}")
            if backend != "torch":
                raise StartupError(f"a height/width override needs backend 'torch' (the {backend} graphs "
                                   f"are exported at the checkpoint's {e.height}x{e.width})")
            self.get_logger().warning(
                f"network input {h}x{w} overrides the checkpoint's {e.height}x{e.width}: the networks "
                "are fully convolutional, but depth and motion were trained at the checkpoint's size")
            e.height, e.width = h, w
        # Warm-up (first calls allocate): keeps the first frame's latency representative.
        x = torch.zeros(1, 3, e.height, e.width, device=e.device)
        e.depth(x)
        e.poses([x] * e.seq_len)

    def _has_explainability(self) -> bool:
        keys = self.estimator.state.get("pose_net", {})
        return any(k.startswith("mask_heads") for k in keys)

    # ------------------------------------------------------------------------------ logging
    def _warn(self, key: str, msg: str) -> None:
        ok, suppressed = self._limiter.ok(key)
        if ok:
            if len(msg) > WARN_MAX_CHARS:
                msg = msg[:WARN_MAX_CHARS] + " [...]"
            extra = f" ({suppressed} similar suppressed)" if suppressed else ""
            self.get_logger().warning(msg + extra)

    def _reject(self, kind: str, msg: str) -> None:
        """Count a bad input frame and warn, rate-limited per ``kind`` (a fixed word, or the
        codec's :attr:`~sfm_ros.image_codec.ImageCodecError.kind`: never the input's text)."""
        self._count("rejected")
        self._warn("reject:" + kind, msg)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # ------------------------------------------------------------------------------ callbacks
    def _enqueue(self, frame: Frame) -> None:
        dropped = self._queue.put(frame)
        if dropped:
            self._count("dropped", dropped)

    def _on_image(self, msg: Image) -> None:
        from .image_codec import ImageDecodeError, decode_image

        self._count("received")
        recv = time.monotonic()
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        except (ImageDecodeError, ValueError) as exc:
            self._reject(f"image:{getattr(exc, 'kind', 'decode')}", f"dropping a bad image: {exc}")
            return
        if img.dtype == np.float32:
            self._reject("image:depth", f"dropping an image with encoding {msg.encoding!r}: a depth image "
                         "is not a camera image (expected rgb8/bgr8/mono8/mono16/...)")
            return
        stamp = self._input_stamp(msg.header.stamp)
        if stamp is None:
            return
        self._enqueue(Frame(stamp, stamp_to_sec(stamp), msg.header.frame_id, recv, image=img))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._count("received")
        recv = time.monotonic()
        if len(msg.data) == 0:
            self._reject("compressed:empty", "dropping a CompressedImage with no data")
            return
        stamp = self._input_stamp(msg.header.stamp)
        if stamp is None:
            return
        self._enqueue(Frame(stamp, stamp_to_sec(stamp), msg.header.frame_id, recv,
                            compressed=(msg.format, bytes(msg.data))))

    def _input_stamp(self, stamp):
        """The header stamp; for a zero stamp (a driver bug, or the first frame of an old bag
        starting at 0.0) ``None`` (skip the frame, warned): the reception time is on another clock
        and would look like a time jump that resets the odometry. From the second zero stamp in a
        row (a driver that never stamps) the reception time is used, with a warning."""
        if stamp.sec or stamp.nanosec:
            self._zero_stamps = 0
            return stamp
        self._zero_stamps += 1
        if self._zero_stamps < ZERO_STAMP_RUN:
            self._count("skipped")
            self._warn("zero_stamp_skip", "input header stamp is zero: frame skipped (if zero stamps "
                                          "go on, the reception time is used)")
            return None
        self._warn("zero_stamp", "input header stamp is zero: using the reception time instead "
                                 "(outputs are stamped with it)")
        return self.get_clock().now().to_msg()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        from .camera import CameraModel

        try:
            cam = CameraModel.from_camera_info(msg)
            if cam.fx <= 0 or cam.fy <= 0:
                raise ValueError(f"fx={cam.fx}, fy={cam.fy} must be > 0")
        except ValueError as exc:
            self._warn("camera_info", f"ignoring a bad camera_info: {exc}")
            return
        first = self._camera is None
        self._camera = cam
        if first:
            self.get_logger().info(
                f"using camera_info intrinsics fx={cam.fx:.1f} fy={cam.fy:.1f} cx={cam.cx:.1f} "
                f"cy={cam.cy:.1f} ({cam.width}x{cam.height})"
                + (" [distortion is ignored: feed rectified images (image_rect)]" if cam.is_distorted else ""))

    # ------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._queue.get(timeout=0.1)
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as exc:  # never let one frame kill the worker
                if self._stop.is_set() or not self.context.ok():
                    break  # shutting down (Ctrl-C): publishers are gone, nothing to report
                self._count("errors")
                self._warn("process", f"frame skipped: {type(exc).__name__}: {exc}")

    def _decode_worker(self, frame: Frame) -> np.ndarray | None:
        if frame.image is not None:
            return frame.image
        from .image_codec import ImageDecodeError, decode_compressed

        fmt, data = frame.compressed
        try:
            img = decode_compressed(fmt, data)
        except (ImageDecodeError, ValueError) as exc:
            self._reject(f"compressed:{getattr(exc, 'kind', 'decode')}",
                         f"dropping a bad compressed image: {exc}")
            return None
        if img.ndim == 2 and img.dtype not in (np.uint8, np.uint16):
            self._reject("compressed:dtype", f"dropping a compressed image of type {img.dtype}")
            return None
        return img

    def _camera_frame(self, frame: Frame) -> str:
        return self._param("camera_frame") or frame.frame_id or "camera_optical_frame"

    def _intrinsics(self, image_hw: tuple[int, int]):
        """CameraModel at the *input* image size, or None (logs which source is used)."""
        from .camera import CameraModel

        h, w = image_hw
        cam, source = None, None
        if self._camera is not None:
            cam, source = self._camera, "camera_info"
            if (cam.width, cam.height) != (w, h):
                if cam.width > 0 and cam.height > 0:
                    self._warn("info_size", f"camera_info is for {cam.width}x{cam.height} but images are "
                                            f"{w}x{h}: intrinsics scaled to the image size")
                    cam = cam.scaled(w, h)
                else:
                    cam = CameraModel(w, h, cam.K)
        else:
            fx, fy, cx, cy = (list(self._param("intrinsics")) + [0.0] * 4)[:4]
            if fx > 0 and fy > 0:
                cam, source = CameraModel.from_intrinsics(fx, fy, cx, cy, w, h), "intrinsics"
        if source != self._camera_source:
            if source == "intrinsics":
                self.get_logger().info(
                    "no camera_info yet: using the 'intrinsics' parameter "
                    f"fx={cam.fx:g} fy={cam.fy:g} cx={cam.cx:g} cy={cam.cy:g} until one arrives")
            elif source == "camera_info" and self._camera_source == "intrinsics":
                self.get_logger().info("camera_info arrived: now using its intrinsics")
            self._camera_source = source
        if cam is None:
            self._warn("no_intrinsics", "no camera_info received and the 'intrinsics' parameter is unset: "
                                        "publishing depth and odometry only (no points, no "
                                        "depth/camera_info) until camera_info arrives")
        return cam

    def _process(self, frame: Frame) -> None:
        import torch

        e = self.estimator
        img = self._decode_worker(frame)
        if img is None:
            return
        shape = img.shape[:2]
        if self._last_shape is not None and shape != self._last_shape:
            self._warn("resolution", f"input resolution changed from {self._last_shape[1]}x"
                                     f"{self._last_shape[0]} to {shape[1]}x{shape[0]}: pose window reset")
            self._window.clear()
            self.odometry.reset(hold_pose=True)
        self._last_shape = shape

        reason = self.odometry.check_time(frame.t)
        if reason == "duplicate":
            self._count("skipped")
            self._warn("duplicate", f"skipping a frame with the same stamp as the previous one ({frame.t:.6f})")
            return
        if reason is not None:
            self.get_logger().warning(reason)  # once per event
            self._window.clear()

        t0 = time.perf_counter()
        x = e.preprocess(img)
        depth = e.depth(x)[0, 0]
        if not bool(torch.isfinite(depth).all()):
            self._count("skipped")
            self._warn("nonfinite", "the depth network produced NaN/Inf: frame skipped")
            return
        depth_np = depth.cpu().numpy()
        self._window.append(WindowFrame(frame.t, x, depth_np, img))
        cam = self._intrinsics(shape)  # once per frame: scale, refinement and publishing
        self.odometry.scale = self._metric_scale(depth_np, cam)
        T = None
        if len(self._window) == e.seq_len:
            T = e.poses([f.x for f in self._window])[0]
            if not bool(torch.isfinite(T).all()):
                self._window.pop()
                self._count("skipped")
                self._warn("nonfinite", "the pose network produced NaN/Inf: frame skipped")
                return
            T = T.cpu().numpy().astype(np.float64)
        exp = None
        if T is not None and self._param("publish_explainability"):
            if self._exp_available:
                m = e.explainability([f.x for f in self._window])
                exp = None if m is None else m[0].mean(0).cpu().numpy()
            else:
                self._warn("exp", "publish_explainability is set but the checkpoint has no "
                                  "explainability head (trained with exp_weight=0): not published")
        infer_ms = 1000.0 * (time.perf_counter() - t0)

        try:
            est = self.odometry.update(frame.t, T, [f.t for f in self._window], e.offsets,
                                       refine=self._refine_callback(cam))
        except ValueError as exc:
            self._window.pop()
            self._count("skipped")
            self._warn("nonfinite", f"odometry update failed ({exc}): frame skipped")
            return
        self._publish(frame, x, depth_np, est, exp, cam)
        now = self.get_clock().now()
        wall = time.monotonic() - frame.recv
        with self._lock:
            self.stats["processed"] += 1
            self._infer_ms.append(infer_ms)
            self._lat_wall.append(wall)
            if now.nanoseconds > 0:
                self._lat_stamp.append(now.nanoseconds * 1e-9 - frame.t)

    def _metric_scale(self, depth: np.ndarray, cam) -> float:
        """Metres per network unit for this frame (``depth`` in network units, ``cam`` the input
        image's CameraModel or None): ``scale`` when > 0, else the ground-plane scale when
        ``camera_height`` is set (1 until a ground plane is found), else 1."""
        manual, height = float(self._param("scale")), float(self._param("camera_height"))
        if manual > 0:
            self._scale_source = "scale parameter"
            return manual
        if height <= 0:
            self._scale_source = "default (1)"
            return 1.0
        from .ground_scale import GroundScale

        if self._ground is None or self._ground.camera_height != height:
            self._ground = GroundScale(height, self.T_base_cam)
        if cam is None:
            self._warn("scale_intrinsics", "camera_height needs intrinsics to find the ground: the last "
                                           "scale is kept until camera_info arrives")
            self._scale_source = "camera_height (no intrinsics yet)"
            return self.odometry.scale
        e = self.estimator
        s = self._ground.update(depth, cam.scaled(e.width, e.height).K)
        if s is None:
            self._warn("scale_ground", "no ground plane found in the lower image yet: scale 1 until one is")
            self._scale_source = "camera_height (no ground plane yet)"
            return 1.0
        self._scale_source = "camera_height"
        return s

    def _refine_callback(self, cam):
        """``refine(ref, inc)`` for :meth:`MonocularOdometry.update`: the current refiner between
        window frame ``ref`` and the newest frame, or None when off or without intrinsics (``cam``:
        the input image's CameraModel). Each frame's view is made once and kept in the window."""
        import cv2

        refiner = self._refiner
        if refiner.mode == "none":
            return None
        if cam is None:
            self._warn("refine_intrinsics", f"refine_pose {refiner.mode} needs intrinsics: the pose "
                                            "network's motion is used until camera_info arrives")
            return None

        def view(f: WindowFrame):
            if f.view is None or not np.array_equal(f.view[0], cam.K):
                f.view = (cam.K.copy(), refiner.view(f.image, cam.K))
            return f.view[1]

        def refine(ref: int, inc: np.ndarray) -> np.ndarray:
            f_ref = self._window[ref]
            try:
                r = refiner.refine(view(f_ref), view(self._window[-1]), inc, f_ref.depth)
            except (ValueError, np.linalg.LinAlgError, cv2.error) as exc:
                self._warn("refine_error", f"pose refinement failed ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''}): the network's "
                                           "motion is used")
                return inc
            with self._lock:
                self._refine_counts[r.used] = self._refine_counts.get(r.used, 0) + 1
            return r.T, r.covariance
        return refine

    # ------------------------------------------------------------------------------ publishing
    def _publish(self, frame: Frame, x, depth_units: np.ndarray, est, exp, cam) -> None:
        from .image_codec import encode_image
        from .inference import to_rgb_array

        p = self._param
        cam_frame = self._camera_frame(frame)
        lo, hi = float(p("min_depth")), float(p("max_depth"))
        depth_m = np.clip(depth_units.astype(np.float32) * float(self.odometry.scale), lo, hi)
        h, w = depth_m.shape

        def image_msg(arr, encoding, stamp=frame.stamp):
            enc, hh, ww, step, data = encode_image(arr, encoding)
            m = Image(encoding=enc, height=hh, width=ww, step=step, is_bigendian=0)
            m.header.stamp, m.header.frame_id = stamp, cam_frame
            m.data = data
            return m

        self.pub_depth.publish(image_msg(depth_m, "32FC1"))
        K = None
        if cam is not None:
            K = cam.scaled(w, h).K
            info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
            info.header.stamp, info.header.frame_id = frame.stamp, cam_frame
            info.k = K.reshape(-1).tolist()
            info.d = [0.0] * 5
            info.r = np.eye(3).reshape(-1).tolist()
            info.p = [K[0, 0], 0.0, K[0, 2], 0.0, 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0]
            self.pub_depth_info.publish(info)
        rgb = None
        if (p("publish_points") and K is not None) or p("publish_colormap"):
            rgb = (to_rgb_array(x) * 255.0 + 0.5).astype(np.uint8)
        if p("publish_points") and K is not None:
            pts = cloud_points(depth_m, rgb, K, int(p("points_stride")))
            cloud = PointCloud2(height=1, width=int(pts.size), fields=make_cloud_fields(),
                                is_bigendian=False, point_step=16, row_step=16 * int(pts.size),
                                is_dense=True)
            cloud.header.stamp, cloud.header.frame_id = frame.stamp, cam_frame
            cloud.data = pts.tobytes()
            self.pub_points.publish(cloud)
        if p("publish_colormap"):
            self.pub_colormap.publish(image_msg(depth_colormap(depth_m), "rgb8"))
        if exp is not None:
            mid = self._window[len(self._window) // 2].t
            stamp = frame.stamp
            if mid != frame.t:
                from builtin_interfaces.msg import Time

                ns = int(round(mid * 1e9))
                stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            self.pub_exp.publish(image_msg((np.clip(exp, 0, 1) * 255 + 0.5).astype(np.uint8), "mono8", stamp))
        if est is not None:
            self._publish_odometry(frame, est)
        if p("publish_tf") and self._static_frame != cam_frame:
            self._publish_static_tf(cam_frame)

    def _publish_odometry(self, frame: Frame, est) -> None:
        p = self._param
        q = est.quaternion
        pos = est.position
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id = frame.stamp, p("odom_frame")
        odom.child_frame_id = p("base_frame")
        pp = odom.pose.pose
        pp.position.x, pp.position.y, pp.position.z = map(float, pos)
        pp.orientation.x, pp.orientation.y, pp.orientation.z, pp.orientation.w = map(float, q)
        odom.pose.covariance = est.pose_covariance.reshape(-1).tolist()
        tw = odom.twist.twist
        tw.linear.x, tw.linear.y, tw.linear.z = map(float, est.linear)
        tw.angular.x, tw.angular.y, tw.angular.z = map(float, est.angular)
        odom.twist.covariance = est.twist_covariance.reshape(-1).tolist()
        self.pub_odom.publish(odom)
        if p("publish_tf") and self.pub_tf is not None:
            tf = TransformStamped()
            tf.header.stamp, tf.header.frame_id = frame.stamp, p("odom_frame")
            tf.child_frame_id = p("base_frame")
            tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = map(float, pos)
            r = tf.transform.rotation
            r.x, r.y, r.z, r.w = map(float, q)
            self.pub_tf.publish(TFMessage(transforms=[tf]))

    def _publish_static_tf(self, cam_frame: str) -> None:
        from .se3 import matrix_to_quat

        if self.pub_tf_static is None or not self._param("publish_tf"):
            return
        tf = TransformStamped()
        tf.header.stamp = self.get_clock().now().to_msg()
        tf.header.frame_id = self._param("base_frame")
        tf.child_frame_id = cam_frame
        t = self.T_base_cam[:3, 3]
        q = matrix_to_quat(self.T_base_cam[:3, :3])
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = map(float, t)
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = map(float, q)
        self.pub_tf_static.publish(TFMessage(transforms=[tf]))
        self._static_frame = cam_frame

    def _publish_diagnostics(self) -> None:
        with self._lock:
            s = dict(self.stats)
            lat_s, lat_w, inf = list(self._lat_stamp), list(self._lat_wall), list(self._infer_ms)
            refine = dict(self._refine_counts)
        ground = self._ground  # read once: the worker may replace it
        new_drops = s["dropped"] - self._dropped_reported
        if new_drops > 0:
            ok, _ = self._limiter.ok("drops")
            if ok:
                self.get_logger().warning(
                    f"dropped {new_drops} frame(s) since the last report ({s['dropped']} in total): "
                    f"inference takes {percentile(inf, 50):.0f} ms per frame, slower than the camera; "
                    "the newest frame is always processed")
                self._dropped_reported = s["dropped"]
        e = self.estimator
        st = DiagnosticStatus(name=f"{self.get_name()}: inference", hardware_id=str(e.device))
        level, msg = DiagnosticStatus.OK, "running"
        if s["processed"] == 0:
            level, msg = DiagnosticStatus.WARN, "no frame processed yet"
        elif s["rejected"] or s["errors"]:
            level, msg = DiagnosticStatus.WARN, "bad input frames were rejected"
        st.level, st.message = level, msg
        vals = {
            "frames_received": s["received"], "frames_processed": s["processed"],
            "frames_dropped": s["dropped"], "frames_rejected": s["rejected"],
            "frames_skipped": s["skipped"], "errors": s["errors"],
            "latency_stamp_p50_s": f"{percentile(lat_s, 50):.4f}",
            "latency_stamp_p95_s": f"{percentile(lat_s, 95):.4f}",
            "latency_wall_p50_s": f"{percentile(lat_w, 50):.4f}",
            "latency_wall_p95_s": f"{percentile(lat_w, 95):.4f}",
            "inference_p50_ms": f"{percentile(inf, 50):.1f}",
            "model": self.checkpoint, "device": str(e.device), "precision": e.precision, "backend": e.backend,
            "input_size": f"{e.width}x{e.height}", "seq_len": e.seq_len,
            "intrinsics": self._camera_source or "none",
            "odometry_resets": self.odometry.resets,
            "scale": f"{self.odometry.scale:.6g}",
            "scale_source": self._scale_source,
            "ground_scale_spread": "n/a" if ground is None or ground.spread is None else f"{ground.spread:.3f}",
            "ground_planes": "n/a" if ground is None else
            f"accepted {ground.accepted}, rejected {ground.rejected}, none found {ground.failed}",
            "refine_pose": self._refiner.mode,
            "refined_motions": ", ".join(f"{k} {v}" for k, v in sorted(refine.items())) or "none yet",
        }
        st.values = [KeyValue(key=k, value=str(v)) for k, v in vals.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------------------ shutdown
    def destroy_node(self):
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of ``sfm_node``: exit status 0 on Ctrl-C / shutdown, 2 on a startup error."""
    from rclpy.executors import ExternalShutdownException

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
