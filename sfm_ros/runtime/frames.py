"""The values that pass through the node's pipeline (:mod:`sfm_ros.runtime.pipeline`): a received
frame, a frame of the pose window, a processed frame's result, the newest-wins frame queue, and the
REP 118 depth and the point cloud built from a result. ROS-free (stamps are carried through as given).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfm_ros.data.camera import CameraModel, backproject_grid
from sfm_ros.runtime.odometry import OdomEstimate


@dataclass
class InputFrame:
    """A received camera frame waiting for the worker (not :class:`sfm_ros.data.sources.Frame`)."""

    stamp: Any               # the input header stamp, carried through to the outputs
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
    stamp: Any = None        # the input header stamp, as received
    rgb8: np.ndarray | None = None   # the network input as uint8 RGB, made once when first needed


@dataclass
class FrameResult:
    """What one processed frame produced (see the module doc for units)."""

    stamp: Any                          # the input frame's stamp
    t: float                            # seconds
    frame_id: str                       # the input frame's frame_id
    recv: float                         # time.monotonic() at reception
    depth: np.ndarray                   # (h, w) float32 metres
    camera: CameraModel | None          # intrinsics at (w, h), or None without intrinsics
    points: np.ndarray | None           # cloud_points() of the depth (publish_points), or None
    odometry: OdomEstimate | None       # None while the first window fills
    explainability: np.ndarray | None   # (h, w) float in [0, 1] of the window's middle frame
    explainability_t: float | None      # that frame's time (s)
    scale: float                        # metres per network unit used for this frame
    infer_ms: float                     # network time of the frame
    explainability_stamp: Any = None    # that frame's input stamp, as received


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


def rep118_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """float32 metres with REP 118's markers: ``-inf`` below ``min_depth`` (too close), ``+inf``
    above ``max_depth`` (too far), NaN where ``depth`` is not finite (unknown); the rest as is."""
    d = np.asarray(depth, dtype=np.float32)
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    out = d.copy()
    finite = np.isfinite(d)
    out[~finite] = np.nan
    out[finite & (d < min_depth)] = -np.inf
    out[finite & (d > max_depth)] = np.inf
    return out


def cloud_points(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, stride: int) -> np.ndarray:
    """Structured array (x, y, z float32, rgb packed uint32) of every ``stride``-th pixel of
    ``depth`` (metres, (h, w)) coloured by ``rgb`` ((h, w, 3) uint8); non-finite (REP 118's
    ±inf / NaN) and non-positive depths are left out."""
    x, y, z, v, u = backproject_grid(depth, K, stride)
    c = rgb[v, u].astype(np.uint32)
    packed = ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).astype(np.uint32)
    out = np.empty(z.size, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    out["x"], out["y"], out["z"], out["rgb"] = x.ravel(), y.ravel(), z.ravel(), packed.ravel()
    ok = np.isfinite(out["x"]) & np.isfinite(out["y"]) & np.isfinite(out["z"]) & (out["z"] > 0)
    return out[ok]
