"""Step lengths from the reference frame's predicted depth: the baseline that makes the two-view
solution's triangulated corners agree with it, and the largest step a still camera can have made.

Convention: ``p`` (N, 2) corners in the reference image, ``q`` (N, 2) in the new image, ``K``
(3, 3) the intrinsics of both, ``T_new_ref`` (4, 4) the two-view motion with a unit translation,
``depth`` (H, W) the reference frame's predicted depth at the images' size (the network's units);
a corner's depth is that of its nearest pixel. Lengths are in the depth's units. Corners on depth
edges (a 3x3 neighbourhood spanning a depth ratio above ``max_depth_step``) are left out: their
depth is either side's.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from sfm_ros.runtime.motion._checks import matrix, pairs, points
from sfm_ros.runtime.motion.triangulation import triangulate_depths

__all__ = ["depth_baseline", "still_length"]


def _depth(depth) -> np.ndarray:
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    return depth


def depth_baseline(p: np.ndarray, q: np.ndarray, K: np.ndarray, T_new_ref: np.ndarray, depth: np.ndarray, *,
                   max_depth_step: float, max_spread: float, min_points: int) -> tuple[float, float] | None:
    """``(baseline, spread)``: the median of the per-corner ratios predicted depth / depth
    triangulated with the unit baseline, and their spread (inter-quartile range / median /
    sqrt(corners)); None when fewer than ``min_points`` corners give a ratio or the ratios
    disagree (inter-quartile range above ``max_spread`` times the median)."""
    p, q = pairs(p, q)
    depth = _depth(depth)
    h, w = depth.shape
    z_tri, z_new = triangulate_depths(p, q, K, T_new_ref)
    u = np.clip(np.rint(p[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.rint(p[:, 1]).astype(int), 0, h - 1)
    d = depth[v, u]
    kernel = np.ones((3, 3), np.uint8)
    d32 = depth.astype(np.float32)
    lo, hi = cv2.erode(d32, kernel)[v, u], cv2.dilate(d32, kernel)[v, u]
    ok = np.isfinite(z_tri) & (z_tri > 1e-6) & (z_new > 1e-6) & np.isfinite(d) & (lo > 0) & \
        (hi <= max_depth_step * lo)
    if int(ok.sum()) < min_points:
        return None
    ratio = d[ok] / z_tri[ok]
    q25, med, q75 = np.percentile(ratio, [25, 50, 75])
    if not np.isfinite(med) or med <= 0 or (q75 - q25) > max_spread * med:
        return None
    return float(med), float((q75 - q25) / med / math.sqrt(ratio.size))


def still_length(p: np.ndarray, depth: np.ndarray | None, K: np.ndarray, still_px: float) -> float:
    """The largest translation that moves the corners ``p`` less than ``still_px`` pixels: a step
    across the view moves a corner at depth ``z`` by ``f t / z``, a step along it by ``r t / z``
    (``r`` its distance from the principal point), so ``still_px`` times the corners' median depth
    over the smaller of ``f`` (the mean focal length) and their median ``r`` (NaN without a depth or
    without a corner of positive depth)."""
    if depth is None:
        return float("nan")
    p, K = points(p, "p"), matrix(K, (3, 3), "K")
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    h, w = depth.shape
    u = np.clip(np.round(p[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.round(p[:, 1]).astype(int), 0, h - 1)
    z = depth[v, u]
    z = z[np.isfinite(z) & (z > 0)]
    r = float(np.median(np.hypot(p[:, 0] - K[0, 2], p[:, 1] - K[1, 2])))
    lever = max(min(0.5 * (K[0, 0] + K[1, 1]), r), 1.0)
    return float(still_px / lever * np.median(z)) if len(z) else float("nan")
