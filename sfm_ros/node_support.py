"""ROS-free support of the node and its pipeline (:mod:`sfm_ros.pipeline`): warnings rate-limited
per kind, thread-safe counters, and the node's model, loaded and warmed up.

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
    candidates.append(Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[-1]


def load_estimator(checkpoint: str = "", device: str = "auto", precision: str = "fp32", backend: str = "auto",
                   num_threads: int = 0, height: int = 0, width: int = 0, log: Log | None = None):
    """``(estimator, checkpoint path)``: the node's :class:`~sfm_ros.inference.Estimator`, warmed up
    (the first calls allocate: this keeps the first frame's latency representative); ``checkpoint``
    ``""`` = :func:`default_checkpoint`;
    ``height``/``width`` > 0 override the checkpoint's input size (torch backend only, warned).
    Raises FileNotFoundError / ValueError (one line) / CheckpointError."""
    import torch

    from .inference import Estimator, auto_backend

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
    return e, ckpt




class Latencies:
    """The last ``n`` per-frame timings (thread-safe): network time (ms), wall latency from
    reception (s) and stamp latency (clock time at publishing minus the input stamp, s)."""

    def __init__(self, n: int = 300):
        self._infer_ms: deque = deque(maxlen=n)
        self._wall: deque = deque(maxlen=n)
        self._stamp: deque = deque(maxlen=n)
        self._lock = threading.Lock()

    def add(self, infer_ms: float, wall_s: float, stamp_s: float | None) -> None:
        with self._lock:
            self._infer_ms.append(infer_ms)
            self._wall.append(wall_s)
            if stamp_s is not None:
                self._stamp.append(stamp_s)

    def inference_p50_ms(self) -> float:
        with self._lock:
            return percentile(list(self._infer_ms), 50)

    def values(self) -> dict[str, str]:
        """Diagnostics: stamp and wall latency p50/p95, inference p50 (NaN before the first frame)."""
        with self._lock:
            lat_s, lat_w, inf = list(self._stamp), list(self._wall), list(self._infer_ms)
        return {
            "latency_stamp_p50_s": f"{percentile(lat_s, 50):.4f}",
            "latency_stamp_p95_s": f"{percentile(lat_s, 95):.4f}",
            "latency_wall_p50_s": f"{percentile(lat_w, 50):.4f}",
            "latency_wall_p95_s": f"{percentile(lat_w, 95):.4f}",
            "inference_p50_ms": f"{percentile(inf, 50):.1f}",
        }
