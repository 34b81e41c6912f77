"""Signed Sampson residuals of corresponding pixels to a two-view motion, and the Gauss-Newton
information they carry about that motion.

Convention: ``p`` (N, 2) pixels in the reference image, ``q`` (N, 2) in the new image, ``K`` (3, 3)
the intrinsics of both, the motion ``x_new = R x_ref + t`` with ``R`` (3, 3) and ``t`` (3,) (its
length does not matter). The fundamental matrix is ``F = K⁻ᵀ [t]× R K⁻¹`` (the essential matrix
``[t]× R`` between pixels: Hartley & Zisserman, Multiple View Geometry, 2nd ed., Sec. 9.6) and a
pair's Sampson residual ``qᵀ F p / sqrt((Fp)₁² + (Fp)₂² + (Fᵀq)₁² + (Fᵀq)₂²)`` (pixels), the
first-order geometric distance of the pair to the motion (ibid., Sec. 11.4.3, eq. 11.9), kept
with its sign so that its derivatives are smooth.

The motion has five parameters two views can fix: a rotation ``ω`` (``R exp(ω)``, rad) and the
direction of ``t`` along two unit vectors ``B`` (3, 2) across it (rad). :func:`epipolar_information`
gives ``JᵀJ`` over them (pixels² per unit², numerical derivatives): its inverse times the
residual variance is the motion's covariance, correlations included (the bas-relief ambiguity: a
turn against a sideways step).
"""
from __future__ import annotations

import numpy as np

from sfm_ros.core.se3 import axis_angle_to_matrix, skew
from sfm_ros.runtime.motion._checks import matrix, pairs

__all__ = ["signed_sampson", "sampson_residuals", "epipolar_information"]


def sampson_residuals(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed Sampson residuals (pixels) of the homogeneous pixels ``x1 ↔ x2`` (N, 3) under the
    fundamental matrices ``F`` (..., 3, 3), and their squared denominators: each (..., N)."""
    Fx1 = x1 @ np.swapaxes(F, -1, -2)
    Ftx2 = x2 @ F
    den = Fx1[..., 0] ** 2 + Fx1[..., 1] ** 2 + Ftx2[..., 0] ** 2 + Ftx2[..., 1] ** 2
    return np.sum(x2 * Fx1, axis=-1) / np.sqrt(np.maximum(den, 1e-18)), den


def signed_sampson(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N,) signed Sampson residuals (pixels) of ``p ↔ q`` to the motion ``x_new = R x_ref + t``."""
    p, q = pairs(p, q)
    K, R = matrix(K, (3, 3), "K"), matrix(R, (3, 3), "R")
    t = matrix(t, (3,), "t")
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ (skew(t) @ R) @ Kinv
    return sampson_residuals(F, np.c_[p, np.ones(len(p))], np.c_[q, np.ones(len(q))])[0]


def epipolar_information(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray,
                         t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(JᵀJ, B, residuals)``: the (5, 5) Gauss-Newton information of the Sampson residuals of
    ``p ↔ q`` over ``(ω, β)`` at the motion ``R``, ``t`` (module doc), the (3, 2) directions ``B``
    across the unit ``t`` that ``β`` moves it along, and the (N,) residuals at the motion."""
    t = matrix(t, (3,), "t")
    t = t / np.linalg.norm(t)
    a = np.array([1.0, 0.0, 0.0]) if abs(t[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b1 = np.cross(t, a)
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(t, b1)
    r0 = signed_sampson(p, q, K, R, t)
    eps = 1e-6
    J = np.empty((len(r0), 5))
    for k in range(3):
        w = np.zeros(3)
        w[k] = eps
        Rk = axis_angle_to_matrix(w)
        J[:, k] = (signed_sampson(p, q, K, R @ Rk, t) - r0) / eps
    for k, b in enumerate((b1, b2)):
        tk = t + eps * b
        J[:, 3 + k] = (signed_sampson(p, q, K, R, tk / np.linalg.norm(tk)) - r0) / eps
    return J.T @ J, np.stack([b1, b2], axis=1), r0
