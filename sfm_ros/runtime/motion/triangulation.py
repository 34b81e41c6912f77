"""Depths of corresponding pixels triangulated with a known motion.

Convention: ``p`` (N, 2) pixels in the reference image, ``q`` (N, 2) in the new image, ``K`` (3, 3)
the intrinsics of both, ``T_new_ref`` (4, 4) the motion ``x_new = R x_ref + t`` (its translation
sets the depths' scale: a unit one gives depths per unit baseline). Linear (DLT) triangulation
with the projection matrices ``K [I | 0]`` and ``K [R | t]`` (Hartley & Zisserman, Multiple View
Geometry, 2nd ed., Sec. 12.2; OpenCV's ``triangulatePoints``). A point at infinity or behind a
camera gives an infinite or negative depth: the caller filters.
"""
from __future__ import annotations

import cv2
import numpy as np

from sfm_ros.runtime.motion._checks import matrix, pairs

__all__ = ["triangulate_depths"]


def triangulate_depths(p: np.ndarray, q: np.ndarray, K: np.ndarray,
                       T_new_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z_ref, z_new)``: the (N,) depths of the points ``p ↔ q`` in the reference and in the new
    camera."""
    p, q = pairs(p, q)
    K, T_new_ref = matrix(K, (3, 3), "K"), matrix(T_new_ref, (4, 4), "T_new_ref")
    X = cv2.triangulatePoints(K @ np.eye(3, 4), K @ T_new_ref[:3, :], np.asarray(p, np.float64).T,
                              np.asarray(q, np.float64).T)
    X = X[:3] / X[3]
    return X[2], (T_new_ref[:3, :3] @ X + T_new_ref[:3, 3:4])[2]
