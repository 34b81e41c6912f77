"""The angle of a rotation, and the angle between two rotations.

Convention: rotation matrices (3, 3); the angle between ``R_a`` and ``R_b`` is the angle of
``R_aᵀ R_b`` (the rotation that takes ``R_a`` to ``R_b``), ``‖log(R_aᵀ R_b)‖`` in ``[0°, 180°]``:
the geodesic (angular) distance on SO(3) (Hartley, Trumpf, Dai & Li, "Rotation averaging", IJCV
2013, Sec. 3.1).
"""
from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.se3 import check_rotation
from sfm_ros.runtime.motion._checks import matrix

__all__ = ["rotation_angle_deg", "angle_between_deg"]


def rotation_angle_deg(R: np.ndarray) -> float:
    """The angle (degrees) of the rotation ``R`` (3, 3; ValueError unless finite and orthonormal:
    :func:`sfm_ros.core.se3.check_rotation`)."""
    R = check_rotation(matrix(R, (3, 3), "R"))
    # atan2 of the sine (half the skew part's norm) and the cosine (from the trace): exact at every
    # angle, and ~5x cheaper than the axis-angle conversion with the same check (the rotation window
    # compares several rotations a frame)
    s = 0.5 * math.hypot(R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1])
    c = 0.5 * (R[0, 0] + R[1, 1] + R[2, 2] - 1.0)
    return math.degrees(math.atan2(s, c))


def angle_between_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """The angle (degrees) between the rotations ``R_a`` and ``R_b`` (3, 3): of ``R_aᵀ R_b``."""
    R_a, R_b = matrix(R_a, (3, 3), "R_a"), matrix(R_b, (3, 3), "R_b")
    return rotation_angle_deg(R_a.T @ R_b)
