"""ROS-free support of the node and its pipeline (:mod:`sfm_ros.runtime.pipeline`): warnings rate-limited
per kind, thread-safe counters, the node's model (loaded and warmed up), latencies, its topic
tables, the ``--help`` text and parameter value checks (integers for doubles, unknown names).

Imports no ``rclpy``: a :class:`Log` writes to any sink with ``info(msg)`` / ``warning(msg)`` (an
rclpy logger, a :class:`logging.Logger`).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "sfm_default.pt"
WARN_PERIOD = 5.0  # seconds between two warnings of the same kind
WARN_MAX_CHARS = 300  # a warning quotes the input (an encoding string ...) at most this long
#: The frame counts of the node's diagnostics.
FRAME_COUNTS = ("received", "processed", "dropped", "rejected", "skipped", "errors")


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


class Log:
    """Warnings rate-limited per kind (:class:`RateLimiter`) to ``sink`` (``info``/``warning``)."""

    def __init__(self, sink: Any, limiter: RateLimiter | None = None):
        self.sink = sink
        self.limiter = limiter or RateLimiter()

    def warn(self, key: str, msg: str) -> None:
        """Warn ``msg`` unless a warning of kind ``key`` was given less than a period ago."""
        ok, suppressed = self.limiter.ok(key)
        if ok:
            if len(msg) > WARN_MAX_CHARS:
                msg = msg[:WARN_MAX_CHARS] + " [...]"
            self.sink.warning(msg + (f" ({suppressed} similar suppressed)" if suppressed else ""))

    def warning(self, msg: str) -> None:
        """An event's warning, not rate-limited (once per event)."""
        self.sink.warning(msg)

    def info(self, msg: str) -> None:
        self.sink.info(msg)


class Counters:
    """Thread-safe counts (the worker adds, the diagnostics timer reads a snapshot)."""

    def __init__(self, *keys: str):
        self._c: dict[str, int] = dict.fromkeys(keys, 0)
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] = self._c.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")




def default_checkpoint() -> Path:
    """``share/sfm_ros/models/sfm_default.pt`` if the package is installed, else the source tree's."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("sfm_ros")) / "models" / DEFAULT_MODEL)
    except Exception:  # PackageNotFoundError, or ament_index not importable
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[-1]


def load_estimator(checkpoint: str = "", device: str = "auto", precision: str = "fp32", backend: str = "auto",
                   num_threads: int = 0, height: int = 0, width: int = 0, log: Log | None = None):
    """``(estimator, checkpoint path)``: the node's :class:`~sfm_ros.runtime.inference.Estimator`, warmed up
    (the first calls allocate: this keeps the first frame's latency representative); ``checkpoint``
    ``""`` = :func:`default_checkpoint`;
    ``height``/``width`` > 0 override the checkpoint's input size (torch backend only, warned).
    Raises FileNotFoundError / ValueError (one line) / CheckpointError."""
    import torch

    from sfm_ros.runtime.inference import Estimator, auto_backend

    ckpt = checkpoint or str(default_checkpoint())
    if not Path(ckpt).is_file():
        what = "the default model" if not checkpoint else "checkpoint"
        raise FileNotFoundError(f"{what} {ckpt} does not exist (set the 'checkpoint' parameter)")
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    h, w = height, width
    if backend == "auto":
        backend = auto_backend(device, precision, size_override=bool(h or w))
    e = Estimator(ckpt, device=device, precision=precision, backend=backend, threads=max(0, num_threads))
    if (h or w) and (h, w) != (e.height, e.width):
        if h < 16 or w < 16:
            raise ValueError(f"height/width override must both be >= 16, got {h}x{w}")
        if backend != "torch":
            raise ValueError(f"a height/width override needs backend 'torch' (the {backend} graphs "
                             f"are exported at the checkpoint's {e.height}x{e.width})")
        if log is not None:
            log.warning(f"network input {h}x{w} overrides the checkpoint's {e.height}x{e.width}: the networks "
                        "are fully convolutional, but depth and motion were trained at the checkpoint's size")
        e.height, e.width = h, w
    x = torch.zeros(1, 3, e.height, e.width, device=e.device)
    e.depth(x)
    e.poses([x] * e.seq_len)
    e.poses([x] * e.seq_len, flip=True)  # the batch of two of pose_flip
    return e, ckpt




#: Stamp latency (clock time at publishing minus the input stamp) is reported only within this many
#: seconds: farther stamps are not in the node's time base (a bag played without ``--clock``, a
#: camera stamping with its own boot time) and their "latency" means nothing.
STAMP_CLOCK_WINDOW_S = 3600.0


class Latencies:
    """The last ``n`` per-frame timings (thread-safe): network time (ms), wall latency from
    reception (s) and stamp latency (clock time at publishing minus the input stamp, s; ``None``
    when the node's clock is zero, i.e. sim time before the first /clock). Stamp latencies farther
    than :data:`STAMP_CLOCK_WINDOW_S` from 0 are kept out of the statistics: :meth:`values` then
    says why in ``latency_stamp_absent``."""

    def __init__(self, n: int = 300):
        self._infer_ms: deque = deque(maxlen=n)
        self._wall: deque = deque(maxlen=n)
        self._stamp: deque = deque(maxlen=n)   # seconds, or NaN for a stamp not in the node's clock
        self._why: str = "no frame processed yet"
        self._lock = threading.Lock()

    def add(self, infer_ms: float, wall_s: float, stamp_s: float | None) -> None:
        with self._lock:
            self._infer_ms.append(infer_ms)
            self._wall.append(wall_s)
            if stamp_s is None:
                self._stamp.append(float("nan"))
                self._why = "the node's clock is zero (use_sim_time without a /clock publisher?)"
            elif not abs(stamp_s) <= STAMP_CLOCK_WINDOW_S:
                self._stamp.append(float("nan"))
                self._why = (f"input stamps are {stamp_s:.4g} s from the node's clock, not in its time base "
                             "(a bag played without --clock / use_sim_time, or a camera stamping with its "
                             "own clock)")
            else:
                self._stamp.append(float(stamp_s))

    def inference_p50_ms(self) -> float:
        with self._lock:
            return percentile(list(self._infer_ms), 50)

    def values(self) -> dict[str, str]:
        """Diagnostics: stamp latency p50/p95 (only over stamps in the node's clock; else
        ``latency_stamp_absent``: why), wall latency p50/p95, inference p50 (NaN before the first
        frame)."""
        with self._lock:
            lat_s = [v for v in self._stamp if v == v]
            lat_w, inf, why = list(self._wall), list(self._infer_ms), self._why
        stamp = ({"latency_stamp_p50_s": f"{percentile(lat_s, 50):.4f}",
                  "latency_stamp_p95_s": f"{percentile(lat_s, 95):.4f}"} if lat_s else
                 {"latency_stamp_absent": why})
        return {
            **stamp,
            "latency_wall_p50_s": f"{percentile(lat_w, 50):.4f}",
            "latency_wall_p95_s": f"{percentile(lat_w, 95):.4f}",
            "inference_p50_ms": f"{percentile(inf, 50):.1f}",
        }


# ------------------------------------------------------------------------------------------------ parameters
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


#: (topic, type, content) of the ``--help`` text; the node's publishers use these names.
SUBSCRIBED = (("image", "sensor_msgs/Image", "camera frames (compressed:=false)"),
              ("image/compressed", "sensor_msgs/CompressedImage", "instead of image when compressed:=true"),
              ("camera_info", "sensor_msgs/CameraInfo", "intrinsics (else the 'intrinsics' parameter)"))
PUBLISHED = (("depth/image", "sensor_msgs/Image 32FC1", "depth (m; REP 118: -Inf/+Inf/NaN)"),
             ("depth/camera_info", "sensor_msgs/CameraInfo", "intrinsics of depth/image"),
             ("depth/colormap", "sensor_msgs/Image rgb8", "inverse depth picture (publish_colormap)"),
             ("explainability", "sensor_msgs/Image mono8", "explainability mask (publish_explainability)"),
             ("points", "sensor_msgs/PointCloud2", "x y z rgb (publish_points)"),
             ("odom", "nav_msgs/Odometry", "pose + twist of base_frame in odom_frame"),
             ("/tf", "tf2_msgs/TFMessage", "odom_frame -> base_frame (publish_tf)"),
             ("/tf_static", "tf2_msgs/TFMessage", "base_frame -> optical frame (publish_static_tf)"),
             ("/diagnostics", "diagnostic_msgs/DiagnosticArray", "1 Hz status"))
EXAMPLE = ("ros2 run sfm_ros sfm_node --ros-args -r image:=/cam/image_raw -r camera_info:=/cam/camera_info "
           "-p scale:=2.5 [--params-file config/sfm_ros.yaml]")


def usage(name: str, summary: str, subscribed: Any, published: Any, params: Any, example: str) -> str:
    """The ``--help`` text: topics (``(topic, type, meaning)`` rows), parameters (``ParamSpec``-like
    rows with ``name, default, description, dynamic`` and an optional ``shown`` default text) and an
    example; generated from the tables the node declares, so that they cannot disagree."""
    lines = [f"usage: {name} [-h] [--ros-args [-r FROM:=TO] [-p NAME:=VALUE] [--params-file FILE] ...]", "",
             summary, "", "subscribed topics (relative: -r __ns:=/robot1 and remapping apply):"]
    lines += [f"  {t:<20} {ty:<32} {m}" for t, ty, m in subscribed]
    lines += ["", "published topics:"]
    lines += [f"  {t:<20} {ty:<32} {m}" for t, ty, m in published]
    lines += ["", "parameters (* = can be changed at run time with ros2 param set):"]
    for p in params:
        shown = getattr(p, "shown", None) or (f'"{p.default}"' if isinstance(p.default, str) else
                                              str(p.default).lower() if isinstance(p.default, bool) else
                                              str(p.default))
        lines.append(f"  {p.name + (' *' if p.dynamic else ''):<26} {param_type_name(p.default):<9} "
                     f"default {shown}")
        lines.append(f"      {p.description}")
    lines += ["  use_sim_time               bool      default false (declared by rclpy)", "",
              "example:", f"  {example}", ""]
    return "\n".join(lines)
