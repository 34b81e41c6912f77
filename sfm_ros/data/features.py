"""Sparse image correspondences: corners tracked by pyramidal Lucas-Kanade, forward-backward checked.

The one home of corner tracking, used by the trainer's stride choice (:mod:`sfm_ros.data.autoconfig`)
and by the run-time pose refinement (:mod:`sfm_ros.runtime.motion`).

Convention: pixel coordinates ``(u, v)`` address pixel centres (OpenCV), as in
:mod:`sfm_ros.core.geometry`. ROS-free and torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_grey", "detect_corners", "track_corners", "track_points"]

_LK_LEVELS = 4     # pyramid levels above the image
_LK_EPS = 0.01     # pixels: an iteration moving less ends the search


def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W[, 3 or 4]) RGB(A) image, uint8, uint16 or float in [0, 1] (or [0, 255]) → (H, W) uint8 grey."""
    if frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    if frame.ndim == 3:
        if frame.shape[2] not in (3, 4):
            raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {frame.shape}")
        frame = frame[:, :, :3]
        if frame.dtype not in (np.uint8, np.float32):
            frame = frame.astype(np.float32)
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    elif frame.ndim != 2:
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {frame.shape}")
    if frame.dtype != np.uint8:
        f = frame.astype(np.float32)
        f = f * (255.0 if f.size and float(f.max()) <= 1.0 else 1.0)
        frame = np.clip(f, 0, 255).astype(np.uint8)
    return frame


def detect_corners(a: np.ndarray, max_corners: int = 300, min_distance: int = 5) -> np.ndarray:
    """Shi-Tomasi corners of grey image ``a``: (M, 2) float32, (0, 2) when it has none."""
    pts = cv2.goodFeaturesToTrack(a, maxCorners=int(max_corners), qualityLevel=0.01, minDistance=int(min_distance))
    return np.zeros((0, 2), np.float32) if pts is None else pts[:, 0].astype(np.float32)


def track_corners(a: np.ndarray, b: np.ndarray, max_corners: int = 300, min_distance: int = 5,
                  max_fb_error: float = 1.0, iterations: int = 30,
                  window: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Shi-Tomasi corners of grey image ``a`` tracked into ``b``: ``(p, q)``, each (M, 2) float32,
    ``p`` in ``a`` and ``q`` in ``b``. A track is kept when both directions converge and tracking
    ``q`` back into ``a`` lands within ``max_fb_error`` pixels of ``p``. Empty (0, 2) arrays when
    ``a`` has no corners. ``iterations``: the Lucas-Kanade iterations per pyramid level at most;
    ``window``: its (square) window in pixels (the run-time refiner uses 11, cheaper and measured
    better there; the default 21 is what the trainer's stride choice was measured with)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"grey images of one size expected, got {a.shape} and {b.shape}")
    pts = detect_corners(a, max_corners, min_distance)
    if not len(pts):
        return pts, pts.copy()
    p, q, ok = track_points(a, b, pts, max_fb_error, iterations, window)
    return p[ok], q[ok]


def track_points(a: np.ndarray, b: np.ndarray, pts: np.ndarray, max_fb_error: float = 1.0,
                 iterations: int = 30, window: int = 21) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Given points ``pts`` (M, 2) of grey image ``a`` tracked into ``b``: ``(p, q, ok)``, ``p`` the
    points as float32, ``q`` (M, 2) float32 their positions in ``b`` and ``ok`` (M,) bool, true where
    both directions converge and tracking ``q`` back into ``a`` lands within ``max_fb_error``
    pixels of ``p`` (``q`` is meaningless elsewhere); ``iterations`` and ``window`` as
    :func:`track_corners`'."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"grey images of one size expected, got {a.shape} and {b.shape}")
    p = np.ascontiguousarray(np.asarray(pts, dtype=np.float32).reshape(-1, 2))
    if len(p) == 0:
        return p, p.copy(), np.zeros(0, bool)
    lk = dict(winSize=(int(window), int(window)), maxLevel=_LK_LEVELS,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iterations), _LK_EPS))
    fwd, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p[:, None], None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, fwd, None, **lk)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(back[:, 0] - p, axis=1) < max_fb_error)
    return p, fwd[:, 0].astype(np.float32), ok
