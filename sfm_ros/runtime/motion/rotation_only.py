"""The rotation that explains two views' corresponding pixels as a camera turning on the spot.

Convention: ``p`` (N, 2) pixels in the reference image, ``q`` (N, 2) in the new image, ``K`` (3, 3)
the intrinsics of both; the rotation ``R`` is that of ``x_new = R x_ref``. A camera that only
rotates maps its image by the infinite homography ``K R K⁻¹`` (Hartley & Zisserman, Multiple View
Geometry, 2nd ed., Sec. 8.4.2): the corners a robust homography (OpenCV's USAC MAGSAC++, 1 px)
keeps are aligned as unit bearing vectors by the least-squares rotation between the two bundles of
rays (Kabsch, "A solution for the best rotation to relate two sets of vectors", Acta Cryst. A32,
1976), and the residual is the median parallax that rotation leaves
(:func:`sfm_ros.runtime.motion.parallax.parallax_px`).
"""
from __future__ import annotations

import cv2
import numpy as np

from sfm_ros.runtime.motion._checks import matrix, pairs
from sfm_ros.runtime.motion.parallax import parallax_px

__all__ = ["rotation_only"]


def rotation_only(p: np.ndarray, q: np.ndarray, K: np.ndarray) -> tuple[np.ndarray | None, float]:
    """``(R, residual_px)``: the rotation (3, 3) that best explains ``p → q`` as a pure rotation and
    the median residual (pixels) over every pair; ``(None, inf)`` when no homography fits three
    pairs or more."""
    p, q = pairs(p, q)
    K = matrix(K, (3, 3), "K")
    H, mask = cv2.findHomography(p, q, cv2.USAC_MAGSAC, 1.0)
    if H is None or mask is None or int(mask.sum()) < 3:
        return None, float("inf")
    keep = mask.ravel() > 0
    Kinv = np.linalg.inv(K)
    f0 = np.c_[p[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f1 = np.c_[q[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f0 /= np.linalg.norm(f0, axis=1, keepdims=True)
    f1 /= np.linalg.norm(f1, axis=1, keepdims=True)
    U, _, Vt = np.linalg.svd(f1.T @ f0)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return R, parallax_px(p.astype(np.float64), q.astype(np.float64), K, R)
