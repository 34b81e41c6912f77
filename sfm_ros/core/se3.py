"""Rotations and rigid transforms in numpy (float64): the one home of every SO(3)/SE(3) conversion.

The torch twins the networks and losses need (differentiable, on the device) are in
:mod:`sfm_ros.core.geometry`; everything else (odometry, trajectories, bags, the renderer, the
refiner, the node) calls this module.

Conventions (stated once)
-------------------------
* **Rotation matrices** ``R`` (..., 3, 3) act on column vectors, ``p' = R p``.
* **Poses** are 4x4 homogeneous matrices ``T_a_b = [R | t]`` mapping points of frame ``b`` to frame
  ``a`` (``p_a = R p_b + t``); :func:`compose_poses` chains ``T_a_c = T_a_b T_b_c``.
* **Axis-angle** (rotation vector) ``r`` (..., 3): direction = axis, norm = angle in radians
  (Rodrigues); :func:`matrix_to_axis_angle` returns angles in ``[0, pi]``.
* **Pose vectors** ``[tx, ty, tz, rx, ry, rz]`` (..., 6): translation then axis-angle,
  ``p' = R(r) p + t`` (README "Conventions", the pose network's output).
* **Quaternions** in ROS order ``(x, y, z, w)`` (Hamilton, ``geometry_msgs/Quaternion``, TUM files);
  :func:`matrix_to_quat` returns unit quaternions with ``w >= 0``.
* **Roll, pitch, yaw** as URDF / tf2 ``setRPY``: fixed axes X, Y, Z, ``R = Rz(yaw) Ry(pitch) Rx(roll)``.
* Every function is vectorised over leading batch dimensions (``...``) and returns float64.

Degenerate input (one policy)
-----------------------------
* A quaternion with a zero norm (< 1e-12) or a non-finite entry raises ``ValueError``; any other
  quaternion is normalised (so ``(0, 0, 0, 2)`` is the identity).
* A matrix taken as a rotation (:func:`matrix_to_quat`, :func:`matrix_to_axis_angle`,
  :func:`matrix_to_rpy`, :func:`matrix_to_pose_vec`, :func:`se3_log`) must be finite, have
  ``det > 0`` and be orthonormal to ``ORTHONORMAL_TOL`` (``max |R^T R - I| <= 1e-3``); otherwise
  ``ValueError``. The tolerance admits what this package produces: rotations computed in float32
  by the pose network and chained over tens of thousands of frames drift by ~1e-5, KITTI's
  7-digit ground truth by ~1e-7. A scaled (Sim(3)), sheared, mirrored or uninitialised matrix fails.
* Non-finite rotation vectors, angles or translations raise ``ValueError``.

Library
-------
Quaternion and axis-angle conversions and Euler composition are
``scipy.spatial.transform.Rotation`` (scipy, a runtime dependency: ``python3-scipy``):
well kept, vectorised over any batch shape in C, numerically careful (Markley's quaternion from
a matrix, Taylor series near the identity, exact near pi), and what ``evo`` uses, so our
trajectory metrics agree with it. ``transforms3d`` (the layer under tf-transformations) works
on one rotation per call in Python and is not installed; tf-transformations itself is not
installable here. What scipy does not do is written here once: the checks above (scipy silently
orthonormalises any matrix), the ``w >= 0`` sign, RPY from a matrix with ROS's singularity rule,
poses and their inverse, and the SE(3) logarithm.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.spatial.transform import Rotation

__all__ = [
    "ORTHONORMAL_TOL",
    "check_rotation",
    "skew",
    "rot_x",
    "rot_y",
    "rot_z",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quat_to_matrix",
    "matrix_to_quat",
    "rpy_to_matrix",
    "matrix_to_rpy",
    "rpy_to_quat",
    "make_pose",
    "invert_pose",
    "compose_poses",
    "pose_vec_to_matrix",
    "matrix_to_pose_vec",
    "se3_log",
]

def _scipy_rotation() -> type[Rotation]:
    """scipy's ``Rotation``, imported on first use (``scipy.spatial`` takes ~0.3 s to import, which
    command lines that never convert a rotation should not pay)."""
    from scipy.spatial.transform import Rotation

    return Rotation


#: Largest ``|R^T R - I|`` entry a matrix may have to be taken as a rotation (see the module doc).
ORTHONORMAL_TOL = 1e-3


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _vectors(v, n: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] != n:
        raise ValueError(f"{name} must have shape (..., {n}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {_first_bad(a, ~np.isfinite(a).all(-1))}")
    return a


def _index(bad: np.ndarray) -> tuple:
    """Batch index of the first True of ``bad`` (``()`` for a single item)."""
    bad = np.asarray(bad)
    return () if bad.ndim == 0 else tuple(int(i) for i in np.argwhere(bad)[0])


def _first_bad(a: np.ndarray, bad: np.ndarray) -> str:
    idx = _index(bad)
    return f"{np.round(a[idx], 9).tolist()!r}" + (f" at index {idx}" if idx else "")


def check_rotation(R, name: str = "R") -> np.ndarray:
    """``R`` as float64 (..., 3, 3) after checking it is a rotation (finite, orthonormal to
    :data:`ORTHONORMAL_TOL`, ``det > 0``); ``ValueError`` naming ``name`` otherwise."""
    a = np.asarray(R, dtype=np.float64)
    if a.ndim < 2 or a.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must be rotation matrices (..., 3, 3), got shape {a.shape}")
    finite = np.isfinite(a).all(axis=(-2, -1))
    if not np.all(finite):
        raise ValueError(f"{name} must be finite, got {_first_bad(a, ~finite)}")
    dev = np.abs(np.swapaxes(a, -1, -2) @ a - np.eye(3)).max(axis=(-2, -1))
    det = np.linalg.det(a)
    bad = (dev > ORTHONORMAL_TOL) | (det <= 0.0)
    if np.any(bad):
        i = _index(bad)
        where = f" at index {i}" if i else ""
        raise ValueError(f"{name} must be a rotation matrix (orthonormal within {ORTHONORMAL_TOL:g}, det +1), "
                         f"got max|R^T R - I| = {float(np.asarray(dev)[i]):.3g} and det "
                         f"{float(np.asarray(det)[i]):.6g}{where}")
    return a


def _check_poses(T, name: str) -> np.ndarray:
    a = np.asarray(T, dtype=np.float64)
    if a.ndim < 2 or a.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must be poses (..., 4, 4), got shape {a.shape}")
    return a


# --------------------------------------------------------------------------------------------
# SO(3)
# --------------------------------------------------------------------------------------------
def skew(v) -> np.ndarray:
    """Skew-symmetric matrices ``[v]_x`` (..., 3, 3) of vectors (..., 3): ``[v]_x p = v x p``."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 0 or v.shape[-1] != 3:
        raise ValueError(f"skew expects vectors (..., 3), got shape {v.shape}")
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _axis_rotation(a, i: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: angles must be finite, got {_first_bad(a[..., None], ~np.isfinite(a))}")
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    j, k = (i + 1) % 3, (i + 2) % 3
    R[..., i, i] = 1.0
    R[..., j, j] = c
    R[..., k, k] = c
    R[..., j, k] = -s
    R[..., k, j] = s
    return R


def rot_x(a) -> np.ndarray:
    """Rotation by ``a`` radians about x (right-handed): (..., 3, 3) for angles (...)."""
    return _axis_rotation(a, 0, "rot_x")


def rot_y(a) -> np.ndarray:
    """Rotation by ``a`` radians about y (right-handed): (..., 3, 3) for angles (...)."""
    return _axis_rotation(a, 1, "rot_y")


def rot_z(a) -> np.ndarray:
    """Rotation by ``a`` radians about z (right-handed): (..., 3, 3) for angles (...)."""
    return _axis_rotation(a, 2, "rot_z")


def _rotation(R: np.ndarray) -> tuple[Rotation, tuple]:
    return _scipy_rotation().from_matrix(R.reshape(-1, 3, 3)), R.shape[:-2]


def axis_angle_to_matrix(r) -> np.ndarray:
    """Rodrigues: rotation vectors (..., 3) -> rotation matrices (..., 3, 3)."""
    r = _vectors(r, 3, "rotation vectors")
    return _scipy_rotation().from_rotvec(r.reshape(-1, 3)).as_matrix().reshape(r.shape[:-1] + (3, 3))


def matrix_to_axis_angle(R) -> np.ndarray:
    """Logarithm of rotation matrices (..., 3, 3) -> rotation vectors (..., 3), angle in ``[0, pi]``."""
    rot, batch = _rotation(check_rotation(R))
    return rot.as_rotvec().reshape(batch + (3,))


def quat_to_matrix(q_xyzw) -> np.ndarray:
    """Quaternions ``(x, y, z, w)`` (..., 4), normalised here, -> rotation matrices (..., 3, 3)."""
    q = _vectors(q_xyzw, 4, "quaternions (x, y, z, w)")
    norm = np.linalg.norm(q, axis=-1)
    if np.any(norm < 1e-12):
        raise ValueError(f"quaternions (x, y, z, w) must have a non-zero norm, got {_first_bad(q, norm < 1e-12)}")
    return _scipy_rotation().from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions ``(x, y, z, w)`` (..., 4) with ``w >= 0``."""
    rot, batch = _rotation(check_rotation(R))
    q = rot.as_quat()
    q[q[:, 3] < 0] *= -1.0
    return q.reshape(batch + (4,))


def rpy_to_matrix(roll, pitch, yaw) -> np.ndarray:
    """URDF / tf2 ``setRPY``: ``R = Rz(yaw) Ry(pitch) Rx(roll)`` (fixed axes X, Y, Z); the three
    angles (radians) broadcast against each other: (..., 3, 3)."""
    rpy = np.stack(np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (roll, pitch, yaw))), -1)
    rpy = _vectors(rpy, 3, "roll, pitch, yaw")
    return _scipy_rotation().from_euler("xyz", rpy.reshape(-1, 3)).as_matrix().reshape(rpy.shape[:-1] + (3, 3))


def matrix_to_rpy(R) -> np.ndarray:
    """Inverse of :func:`rpy_to_matrix`: ``[roll, pitch, yaw]`` (..., 3), pitch in ``[-pi/2, pi/2]``;
    at the singularity (``|pitch| = pi/2``) roll is 0 and yaw carries the whole turn (tf2's rule)."""
    R = check_rotation(R)
    sp = np.clip(-R[..., 2, 0], -1.0, 1.0)
    lock = np.abs(sp) >= 1.0 - 1e-12
    pitch = np.where(lock, np.copysign(np.pi / 2.0, sp), np.arcsin(sp))
    roll = np.where(lock, 0.0, np.arctan2(R[..., 2, 1], R[..., 2, 2]))
    yaw = np.where(lock, np.arctan2(-R[..., 0, 1], R[..., 1, 1]), np.arctan2(R[..., 1, 0], R[..., 0, 0]))
    return np.stack([roll, pitch, yaw], -1)


def rpy_to_quat(roll, pitch, yaw) -> np.ndarray:
    """``(x, y, z, w)`` (..., 4), ``w >= 0``, of :func:`rpy_to_matrix`."""
    return matrix_to_quat(rpy_to_matrix(roll, pitch, yaw))


# --------------------------------------------------------------------------------------------
# SE(3)
# --------------------------------------------------------------------------------------------
def make_pose(R=None, t=None) -> np.ndarray:
    """Poses ``[R | t]`` (..., 4, 4) from rotations (..., 3, 3) (default identity) and translations
    (..., 3) (default 0); their batch dimensions broadcast. ``R`` is taken as given (not checked)."""
    Ra = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    ta = np.zeros(3) if t is None else np.asarray(t, dtype=np.float64)
    if Ra.ndim < 2 or Ra.shape[-2:] != (3, 3):
        raise ValueError(f"R must be (..., 3, 3), got shape {Ra.shape}")
    if ta.ndim == 0 or ta.shape[-1] != 3:
        if ta.size == 3 and Ra.ndim == 2:
            ta = ta.reshape(3)
        else:
            raise ValueError(f"t must be (..., 3), got shape {ta.shape}")
    batch = np.broadcast_shapes(Ra.shape[:-2], ta.shape[:-1])
    T = np.zeros(batch + (4, 4))
    T[..., :3, :3] = Ra
    T[..., :3, 3] = ta
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T) -> np.ndarray:
    """Inverse of rigid poses (..., 4, 4): ``[R^T | -R^T t]`` (exact for SE(3), no general inverse)."""
    T = _check_poses(T, "T")
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros(T.shape)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def compose_poses(T_a_b, T_b_c) -> np.ndarray:
    """``T_a_c = T_a_b @ T_b_c`` (frames c -> b -> a), batch dimensions broadcast."""
    return _check_poses(T_a_b, "T_a_b") @ _check_poses(T_b_c, "T_b_c")


def pose_vec_to_matrix(vec) -> np.ndarray:
    """Pose vectors ``[tx, ty, tz, rx, ry, rz]`` (..., 6) -> poses (..., 4, 4), ``p' = R(r) p + t``."""
    vec = _vectors(vec, 6, "pose vectors [tx, ty, tz, rx, ry, rz]")
    return make_pose(axis_angle_to_matrix(vec[..., 3:]), vec[..., :3])


def matrix_to_pose_vec(T) -> np.ndarray:
    """Poses (..., 4, 4) or (..., 3, 4) -> pose vectors ``[tx, ty, tz, rx, ry, rz]`` (..., 6)."""
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"poses must be (..., 4, 4) or (..., 3, 4), got shape {T.shape}")
    return np.concatenate([T[..., :3, 3], matrix_to_axis_angle(T[..., :3, :3])], axis=-1)


def se3_log(T) -> np.ndarray:
    """Logarithm of rigid transforms (..., 4, 4) -> twists ``[v, w]`` (..., 6) with ``T = exp(twist)``
    (the constant body velocities that move by ``T`` in unit time)."""
    T = _check_poses(T, "T")
    w = matrix_to_axis_angle(T[..., :3, :3])
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    K = skew(w)
    small = theta < 1e-6
    half = 0.5 * np.where(small, 1.0, theta)
    coef = np.where(small, 1.0 / 12.0, (1.0 - half * np.cos(half) / np.sin(half)) / np.where(small, 1.0, theta) ** 2)
    V_inv = np.eye(3) - 0.5 * K + coef * (K @ K)
    v = np.einsum("...ij,...j->...i", V_inv, T[..., :3, 3])
    return np.concatenate([v, w], axis=-1)
