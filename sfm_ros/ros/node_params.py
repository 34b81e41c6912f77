"""The parameters of ``sfm_node`` (:mod:`sfm_ros.ros.node`): the table below; :data:`PARAMETERS`, from
which ``--help`` is generated and which ``config/sfm_ros.yaml`` follows; their declaration (ranges,
read-only unless dynamic, integers accepted for doubles, unknown overrides named); what they configure
at start (:func:`build_pipeline`: settings, input QoS, camera mount and adapt_checkpoint checked, then the
model, then the adaptation; a bad one is a :class:`StartupError`); and the checks of values set at run time (:func:`apply_changes`).

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
``precision``                   string    ``auto``                     auto | fp32 | fp16 (CUDA) | bf16 |
                                                                       int8. auto on a CPU: fp32 or bf16,
                                                                       whichever a measurement at start
                                                                       finds faster at equal output (the
                                                                       log line names both times;
                                                                       :func:`sfm_ros.runtime.model_loading.choose_cpu_path`);
                                                                       fp32 on a GPU. int8 (CPU):
                                                                       calibrated on the camera's first
                                                                       32 frames, fp32 until then
                                                                       (:mod:`sfm_ros.runtime.quantize`)
``backend``                     string    ``auto``                     auto | torch | onnxruntime. auto:
                                                                       onnxruntime on the CPU in fp32
                                                                       (networks exported to ONNX at
                                                                       start, <1 s; measured 1.2-1.6x
                                                                       faster), torch otherwise
``num_threads``                 int       0                            CPU threads of the networks
                                                                       (torch, ONNX Runtime) and OpenCV
                                                                       (0 = their defaults)
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
                                                                       needs intrinsics), and with
                                                                       ``refine_pose`` epipolar each step's
                                                                       metres from the ground's homography
                                                                       (:mod:`sfm_ros.runtime.motion.ground_length`,
                                                                       +4 ms a frame); 0 = unset
``ground_tilt`` *               bool      true                         with ``camera_height``: measure
                                                                       the camera's tilt to the ground
                                                                       from its direction of travel over
                                                                       chords of 8 frame steps (p50 +3.5
                                                                       ms a frame) and turn the
                                                                       mount's "down" by it (a car or a
                                                                       wheeled robot moves along its
                                                                       ground; a degree of tilt is 9 % of
                                                                       length); false: the mount's
                                                                       ``camera_rpy`` "down" (a drone)
``min_depth`` *                 double    0.1                          closer: -Inf in ``depth/image`` (m)
``max_depth`` *                 double    100.0                        farther: +Inf in ``depth/image`` (m)
``max_gap`` *                   double    1.0                          a larger gap (s) between processed
                                                                       frames restarts the odometry
``refine_pose`` *               string    ``epipolar``                 none | epipolar | photometric |
                                                                       epipolar+photometric: refine each
                                                                       frame-to-frame motion of the pose
                                                                       network against the images
                                                                       (:mod:`sfm_ros.runtime.motion`; needs
                                                                       intrinsics, else the network's;
                                                                       photometric also the depth);
                                                                       epipolar 11-20 ms a frame at
                                                                       128x416 (one core; BENCHMARKS.md)
``rotation_window`` *           bool      true                         with an epipolar ``refine_pose``:
                                                                       measure each frame's rotation also
                                                                       against the frames 2, 4 and 8 steps
                                                                       back and average those that agree
                                                                       (:mod:`sfm_ros.runtime.motion.rotation_window`;
                                                                       rotation drift on KITTI 00 3.95 →
                                                                       3.34 °/100 m, on rendered streets
                                                                       12-27 → 1.8-3.6; p50 ~+21 ms a
                                                                       frame on one core); false: each
                                                                       step's own rotation
``window_hurry`` *              bool      true                         while a newer frame already waits,
                                                                       the rotation window measures no
                                                                       baseline for the frame in hand
                                                                       (it keeps the step's own rotation;
                                                                       the next frame's baselines reach
                                                                       over it): far fewer frames dropped
                                                                       where the CPU cannot keep up;
                                                                       false: every frame's baselines
``pose_flip`` *                 bool      true                         average the pose network's motion
                                                                       with the mirrored window's (one
                                                                       more pose forward a frame, batched;
                                                                       mirrors about the image centre)
``publish_tf`` *                bool      true                         odom → base_frame on /tf
``publish_static_tf`` *         bool      on iff camera_xyz/rpy given  base_frame → optical frame on
                                                                       /tf_static (a URDF: leave it off)
``publish_points`` *            bool      true                         ``points``
``points_stride`` *             int       4                            pixel step of ``points``
``publish_colormap`` *          bool      false                        ``depth/colormap``
``publish_compressed_depth`` *  bool      false                        ``depth/image/compressedDepth``
                                                                       (compressed_depth_image_transport's
                                                                       PNG format, ~5x smaller, ~3 ms a
                                                                       frame at 128x416; depths beyond
                                                                       ``max_depth`` arrive as NaN)
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
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from rclpy.parameter import Parameter
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from sfm_ros.runtime.odometry import OPTICAL_RPY
from sfm_ros.runtime.pipeline import SETTINGS, FramePipeline, Settings

__all__ = ["param_type_name", "coerce_param", "unknown_parameters", "ParamSpec", "PARAMETERS", "PARAMETER_NAMES", "MOUNT_PARAMETERS", "StartupError", "declare_parameters",
           "coerce_parameters", "build_pipeline", "apply_changes", "first_line"]


def param_type_name(default: Any) -> str:
    """The ROS 2 parameter type of a default value: bool, int, double, string, double[]."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "double"
    if isinstance(default, str):
        return "string"
    if isinstance(default, (list, tuple)) and all(isinstance(v, float) for v in default):
        return "double[]"
    raise TypeError(f"unsupported parameter default {default!r}")


def coerce_param(name: str, default: Any, value: Any) -> Any:
    """``value`` for a parameter declared with ``default``: an integer (or a list of integers) for
    a double (double[]) parameter becomes a float (list of floats), as ``-p scale:=2`` or
    ``camera_xyz: [0, 0, 1]`` in a params file mean; anything else is returned unchanged (rclpy
    then rejects a wrong type, e.g. a string, with a one-line error)."""
    kind = param_type_name(default)
    if kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "double[]" and isinstance(value, (list, tuple)) and value and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return value


#: Parameters rclpy itself may be given (not declared by the node's table, never "unknown").
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides.")


def unknown_parameters(given: Any, declared: Any) -> list[str]:
    """The names in ``given`` (overrides from ``-p`` / params files) that the node does not declare
    (``declared``) and rclpy does not own (:data:`RCLPY_PARAMETERS`), sorted."""
    known = set(declared)
    return sorted(n for n in given if n not in known and not any(
        n == r or (r.endswith(".") and n.startswith(r)) for r in RCLPY_PARAMETERS))


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
    ParamSpec("precision", "auto", "auto (CPU: fp32 or bf16, whichever a start-up measurement finds faster at "
                                   "equal output; then int8, calibrated on the camera's first 32 frames, if it "
                                   "measures faster at equal output; not while adapting) | fp32 | fp16 (CUDA) | "
                                   "bf16 | int8 (CPU; calibrated on the camera's first 32 frames, fp32 until then)"),
    ParamSpec("backend", "auto", "auto | torch | onnxruntime (auto: onnxruntime on the CPU in fp32)"),
    ParamSpec("num_threads", 0, "CPU threads of the networks and OpenCV (0 = their defaults)", low=0, high=256),
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
    ParamSpec("ground_tilt", True, "with camera_height: measure the camera's tilt to the ground from its direction "
              "of travel (a car, a wheeled robot); false: the mount's down as camera_rpy gives it (a drone)", True),
    ParamSpec("min_depth", 0.1, "published depth lower clamp (m)", True, 0.0, 1e9),
    ParamSpec("max_depth", 100.0, "published depth upper clamp (m)", True, 0.0, 1e9),
    ParamSpec("max_gap", 1.0, "gap (s) between processed frames that restarts the odometry", True, 1e-3, 1e9),
    ParamSpec("refine_pose", "epipolar", "refine each frame-to-frame motion against the images: none | epipolar | "
              "photometric | epipolar+photometric", True),
    ParamSpec("rotation_window", True, "with an epipolar refine_pose: each frame's rotation measured also against "
              "the frames 2, 4 and 8 steps back, those that agree averaged (less rotation drift, ~21 ms a frame "
              "on one core); false: each step's own", True),
    ParamSpec("window_hurry", True, "while a newer frame already waits, the rotation window measures no baseline "
              "for the frame in hand (fewer frames dropped where the CPU cannot keep up); false: every frame's",
              True),
    ParamSpec("pose_flip", True, "average the pose network's motion with that of the mirrored window "
              "(test-time augmentation: one more pose forward a frame)", True),
    ParamSpec("publish_tf", True, "publish odom_frame -> base_frame on /tf", True),
    ParamSpec("publish_static_tf", False, "publish base_frame -> camera optical frame on /tf_static", True,
              shown="on when camera_xyz or camera_rpy is given, else off (a URDF's robot_state_publisher)"),
    ParamSpec("publish_points", True, "publish the coloured point cloud on points", True),
    ParamSpec("points_stride", 4, "pixel step of the point cloud", True, 1, 64),
    ParamSpec("publish_colormap", False, "publish depth/colormap (rgb8)", True),
    ParamSpec("publish_compressed_depth", False, "publish depth/image/compressedDepth (compressed_depth_image_transport "
              "PNG: ~5x smaller, ~3 ms a frame)", True),
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


def declare_parameters(node) -> None:
    """Declare :data:`PARAMETERS` on ``node`` (an rclpy ``Node``): integer overrides of double
    parameters are coerced first (also for ``set_parameters``: a pre-set callback); undeclared
    overrides are warned about once."""
    overrides = node._parameter_overrides  # rclpy's -p / --params-file values for this node
    for spec in PARAMETERS:
        if spec.name in overrides:
            value = coerce_param(spec.name, spec.default, overrides[spec.name].value)
            if value is not overrides[spec.name].value:
                overrides[spec.name] = Parameter(spec.name, value=value)
    if hasattr(node, "add_pre_set_parameters_callback"):  # rclpy >= Iron
        node.add_pre_set_parameters_callback(coerce_parameters)
    unknown = unknown_parameters(overrides, PARAMETER_NAMES)
    if unknown:
        node.get_logger().warning(f"ignoring parameter(s) this node does not declare: {', '.join(unknown)} "
                                  "(a typo? sfm_node --help lists its parameters)")
    for spec in PARAMETERS:
        d = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic)
        if spec.low is not None and isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                         to_value=float(spec.high), step=0.0)]
        elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
            d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
        node.declare_parameter(spec.name, spec.default, d)
    if "publish_static_tf" not in overrides and any(n in overrides for n in MOUNT_PARAMETERS):
        node.set_parameters([Parameter("publish_static_tf", value=True)])


def coerce_parameters(params: list[Parameter]) -> list[Parameter]:
    """Integers given for double parameters become floats (the pre-set callback of ``set_parameters``)."""
    defaults = {s.name: s.default for s in PARAMETERS}
    return [Parameter(q.name, value=coerce_param(q.name, defaults[q.name], q.value)) if q.name in defaults
            else q for q in params]


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, bad parameter): one line, no traceback."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name (one-line errors)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_pipeline(get, log, counts, info, checks=()) -> tuple:
    """What the declared parameters (``get(name)`` → value) configure at start: ``(estimator,
    checkpoint path, T_base_cam, FramePipeline)``. The pipeline's settings, the caller's ``checks``
    (callables that raise ValueError: the node's QoS parameters) and the camera mount are checked
    first, then the model is loaded (and warmed up); any failure is a
    :class:`StartupError` naming it. ``log``: the pipeline's :class:`~sfm_ros.runtime.diagnostics.Log`;
    ``counts``: its frame counters; ``info``: where the adaptation thread reports."""
    from sfm_ros.runtime.model_loading import load_estimator
    from sfm_ros.runtime.odometry import camera_extrinsic

    settings = Settings(**{name: get(name) for name in SETTINGS})
    try:
        settings.check()
        for check in checks:
            check()
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    try:  # before the model, whose loading and timing take seconds
        T_base_cam = camera_extrinsic(get("camera_xyz"), get("camera_rpy"))
    except ValueError as exc:
        raise StartupError(f"bad camera_xyz/camera_rpy: {exc}") from None
    save = get("adapt_checkpoint")
    if save and Path(save).is_dir():  # found now, not at the first save minutes later
        raise StartupError(f"adapt_checkpoint {save} is a folder; expected a file name for the adapted weights")
    try:
        estimator, checkpoint = load_estimator(get("checkpoint"), get("device"), get("precision"), get("backend"),
                                               get("num_threads"), get("height"), get("width"), log)
    except Exception as exc:  # FileNotFoundError, CheckpointError, ValueError (device/precision) ...
        raise StartupError(first_line(exc)) from None
    from sfm_ros.training.online import OnlineAdaptation

    adaptation = OnlineAdaptation(estimator, checkpoint, get("adapt_checkpoint") or None, duty=get("adapt_duty"),
                                  threads=get("adapt_threads"), save_every=get("adapt_save_every"), log=info)
    return estimator, checkpoint, T_base_cam, FramePipeline(estimator, T_base_cam, settings, log, counts, adaptation)


def apply_changes(settings: Settings, params: list[Parameter]) -> SetParametersResult:
    """``ros2 param set`` of the pipeline's dynamic parameters: checked together, then assigned to
    ``settings`` one at a time (the worker sees the old or the new value); refused whole, with the
    reason, when one is bad."""
    new = {p.name: p.value for p in params}
    changes = {k: v for k, v in new.items() if k in SETTINGS}
    try:
        settings.check(**changes)
    except ValueError as exc:
        return SetParametersResult(successful=False, reason=str(exc))
    for k, v in changes.items():  # one assignment each: the worker sees the old or the new value
        setattr(settings, k, v)
    return SetParametersResult(successful=True)
