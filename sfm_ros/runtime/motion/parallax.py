"""Parallax: the image motion of corresponding pixels that a rotation alone does not explain.

Convention: ``p`` (N, 2) pixels in the reference image, ``q`` (N, 2) the same points in the new
image, ``K`` (3, 3) the intrinsics of both, ``R`` (3, 3) the rotation of ``x_new = R x_ref + t``;
pixel centres at integer coordinates. A rotation about the camera centre moves every pixel by the
infinite homography ``H = K R K⁻¹`` (Hartley & Zisserman, Multiple View Geometry, 2nd ed., Sec.
8.4.2 and 13.4); what is left of ``q - H p`` is made by the translation, and only it fixes the
translation's direction.
"""
from __future__ import annotations

import numpy as np

from sfm_ros.runtime.motion._checks import matrix, pairs

__all__ = ["parallax_each", "parallax_px"]


def parallax_each(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray) -> np.ndarray:
    """(N,) image motion (pixels) of each ``p → q`` once the rotation ``R`` is removed."""
    p, q = pairs(p, q)
    K, R = matrix(K, (3, 3), "K"), matrix(R, (3, 3), "R")
    H = K @ R @ np.linalg.inv(K)
    ph = np.c_[p, np.ones(len(p))] @ H.T
    rot = ph[:, :2] / ph[:, 2:3]
    return np.linalg.norm(q - rot, axis=1)


def parallax_px(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray) -> float:
    """The median of :func:`parallax_each` (pixels)."""
    return float(np.median(parallax_each(p, q, K, R)))
