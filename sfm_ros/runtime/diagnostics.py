"""ROS-free bookkeeping behind the node's log and ``/diagnostics``: warnings rate-limited per kind
(:class:`RateLimiter`, :class:`Log`), thread-safe frame counters (:class:`Counters`) and per-frame
latencies (:class:`Latencies`).

Imports no ``rclpy``: a :class:`Log` writes to any sink with ``info(msg)`` / ``warning(msg)`` (an
rclpy logger, a :class:`logging.Logger`).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any

import numpy as np

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


#: the stages of a frame's cost, in the order they run (``messages``: the ROS side's publishing)
FRAME_STAGES = ("decode", "resize", "depth", "evidence", "scale", "pose", "refine", "odometry", "adapt",
                "cloud", "messages")


class StageTimes:
    """Per-frame time of each stage of :data:`FRAME_STAGES` (ms, the last ``n`` frames, thread-safe):
    :meth:`add` from the worker, :meth:`text` for the ``frame_ms_p50`` diagnostic."""

    def __init__(self, n: int = 300):
        self._t: dict[str, deque] = {k: deque(maxlen=n) for k in FRAME_STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._t[stage].append(float(ms))

    def p50(self) -> dict[str, float]:
        with self._lock:
            return {k: percentile(list(v), 50) for k, v in self._t.items() if v}

    def text(self) -> str:
        """``"decode 0.4, resize 0.9, depth 15.2, ... (sum 31.0)"`` (medians, ms), or ``n/a``."""
        p = self.p50()
        if not p:
            return "n/a"
        return ", ".join(f"{k} {v:.1f}" for k, v in p.items()) + f" (sum {sum(p.values()):.1f})"


class Ticker:
    """Adds the time since the last tick (or :meth:`restart`) to a stage of :class:`StageTimes`."""

    def __init__(self, stages: StageTimes):
        self.stages = stages
        self.t = time.perf_counter()

    def restart(self) -> None:
        self.t = time.perf_counter()

    def __call__(self, stage: str, minus: float = 0.0) -> None:
        now = time.perf_counter()
        self.stages.add(stage, 1000.0 * (now - self.t) - minus)
        self.t = now
