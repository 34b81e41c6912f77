"""The ratio of a step's length to the previous step's, from corners seen in three frames (the
relative scale of monocular visual odometry: Scaramuzza & Fraundorfer, "Visual odometry, part I",
IEEE Robotics & Automation Magazine 2011; here from the depths of the same corners rather than
the distances between pairs of them).

The reference frame's corners (tracked into the new frame) are tracked back into the frame before
it; triangulated with the previous step's unit motion and with this step's, the same corners have
two depths in the reference frame, and the median of their log ratio is the log of this step's
length over the previous one (1.3 % median error on KITTI 00 0-30, BENCHMARKS.md).

Convention: grey images (H, W) of one size; ``p`` (N, 2) corners in the reference image, ``q``
(N, 2) in the new image, ``K`` (3, 3) the intrinsics; ``T_new_ref`` (4, 4) this step's unit
motion (``x_new = R x_ref + t``), ``T_ref_before`` (4, 4) the previous one's (``x_ref = R x_before
+ t``).
"""
from __future__ import annotations

import math

import numpy as np

from sfm_ros.data.features import track_points
from sfm_ros.runtime.motion._checks import matrix, pairs
from sfm_ros.runtime.motion.parallax import parallax_each
from sfm_ros.runtime.motion.spread import robust_spread
from sfm_ros.runtime.motion.triangulation import triangulate_depths

__all__ = ["three_view_step_ratio"]


def three_view_step_ratio(a: np.ndarray, before: np.ndarray, p: np.ndarray, q: np.ndarray, K: np.ndarray,
                          T_new_ref: np.ndarray, T_ref_before: np.ndarray, *, max_points: int, min_points: int,
                          max_fb_px: float, lk_iterations: int, lk_window: int) -> tuple[float, float] | None:
    """``(log ratio, variance)``: the median log ratio of this step's length (reference image
    ``a`` → new) to the previous one (``before`` → ``a``) and the variance of that median
    (``π/2 · sd² / n``, ``sd`` the ratios' robust spread), or None when fewer than ``min_points``
    corners give both depths. The ``max_points`` corners of most parallax (the best-conditioned
    depths) are tracked back (``max_fb_px``, ``lk_iterations``, ``lk_window``: the tracking's)."""
    p, q = pairs(p, q)
    T_new_ref = matrix(T_new_ref, (4, 4), "T_new_ref")
    T_ref_before = matrix(T_ref_before, (4, 4), "T_ref_before")
    if len(p) > max_points:
        keep = np.argsort(-parallax_each(p, q, K, T_new_ref[:3, :3]))[:max_points]
        p, q = p[keep], q[keep]
    _, back, ok = track_points(a, before, p, max_fb_px, lk_iterations, lk_window)
    if int(ok.sum()) < min_points:
        return None
    z_now = triangulate_depths(p[ok], q[ok], K, T_new_ref)[0]
    z_before = triangulate_depths(back[ok].astype(np.float64), p[ok], K, T_ref_before)[1]
    good = np.isfinite(z_now) & np.isfinite(z_before) & (z_now > 1e-9) & (z_before > 1e-9)
    if int(good.sum()) < min_points:
        return None
    x = np.log(z_before[good] / z_now[good])
    med = float(np.median(x))
    sd = robust_spread(x, med)                   # robust sd of one corner's log ratio
    return med, 0.5 * math.pi * sd * sd / x.size  # the variance of a median of x.size
