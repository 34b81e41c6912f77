"""Trajectory files: TUM and KITTI odometry pose files, read and written exactly as evo reads them.

TUM: one line ``t tx ty tz qx qy qz qw`` per pose (camera-to-world, seconds); KITTI: the first 3 rows
of each 4x4 camera-to-world pose, row-major, 12 numbers a line. Numbers are written with the
shortest exact representation (Python's float repr), so reading gives back the same float64 values.
"""
from __future__ import annotations

import os

import numpy as np

from sfm_ros.core.se3 import matrix_to_quat, quat_to_matrix

__all__ = ["as_poses", "read_tum", "write_tum", "read_kitti", "write_kitti"]


def as_poses(poses, name: str = "poses", min_len: int = 1) -> np.ndarray:
    """``poses`` as a float64 (N, 4, 4) array (a single (4, 4) pose is *not* accepted)."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"{name} must have shape (N, 4, 4), got {arr.shape}")
    if arr.shape[0] < min_len:
        raise ValueError(f"{name} needs at least {min_len} poses, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _fmt(v) -> str:
    # Shortest representation that round-trips exactly (Python's float repr).
    return repr(float(v))


def _read_rows(path, ncols: int, what: str) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.replace(",", " ").split()
            if len(parts) != ncols:
                raise ValueError(f"{path}:{lineno}: {what} lines need {ncols} values, got {len(parts)}")
            try:
                rows.append([float(x) for x in parts])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: no {what} poses")
    return np.asarray(rows, dtype=np.float64)


def write_tum(path, stamps, poses) -> None:
    """TUM trajectory: one line ``t tx ty tz qx qy qz qw`` per pose, single spaces, no header.

    ``stamps`` in seconds (N,), ``poses`` (N, 4, 4) camera-to-world. Numbers are written with the
    shortest exact representation, so :func:`read_tum` (and evo) read back the same float64 values
    (the rotation goes through a unit quaternion, exact to ~1e-16)."""
    P = as_poses(poses)
    t = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if t.shape[0] != P.shape[0]:
        raise ValueError(f"stamps ({t.shape[0]}) and poses ({P.shape[0]}) differ in length")
    q = matrix_to_quat(P[:, :3, :3])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for i in range(P.shape[0]):
            vals = [t[i], *P[i, :3, 3], *q[i]]
            f.write(" ".join(_fmt(v) for v in vals) + "\n")


def read_tum(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM file (``#`` comments and blank lines skipped; spaces or commas) ->
    ``(stamps (N,), poses (N, 4, 4))``; quaternions are normalised."""
    m = _read_rows(path, 8, "TUM")
    P = np.tile(np.eye(4), (m.shape[0], 1, 1))
    P[:, :3, 3] = m[:, 1:4]
    P[:, :3, :3] = quat_to_matrix(m[:, 4:8])
    return m[:, 0].copy(), P


def write_kitti(path, poses) -> None:
    """KITTI odometry poses: the first 3 rows of each 4x4 pose, row-major, 12 numbers per line."""
    P = as_poses(poses)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for T in P:
            f.write(" ".join(_fmt(v) for v in T[:3, :4].reshape(-1)) + "\n")


def read_kitti(path) -> np.ndarray:
    """Read a KITTI pose file -> (N, 4, 4)."""
    m = _read_rows(path, 12, "KITTI")
    P = np.tile(np.eye(4), (m.shape[0], 1, 1))
    P[:, :3, :4] = m.reshape(-1, 3, 4)
    return P
