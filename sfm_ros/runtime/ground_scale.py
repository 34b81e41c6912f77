"""Metric scale from the camera's height above the ground.

A monocular network knows depth and motion up to one factor. A camera at a known height above a
ground plane fixes it: the ground in the lower part of the image is back-projected with the
predicted depth, a plane is fitted robustly (RANSAC, then least squares on its inliers, its normal
within ``max_tilt_deg`` of the mount's "down"), and ``scale = camera_height / distance`` of the
camera from that plane, in metres per network unit (Wagstaff & Kelly 2021 use the same relation
to recover the scale of self-supervised VO). One estimate per frame is filtered over time
(:class:`GroundScale`: the median of the recent accepted estimates; an estimate further than
``max_jump`` from it is rejected as an outlier — a car in front, a kerb, a ramp).

Convention
----------
As :mod:`sfm_ros.core.geometry`: depth is the z coordinate in the optical frame (x right, y down, z
forward), pixel centres at integer coordinates. ``T_base_cam`` is the pose of the optical frame
in ``base_link`` (REP-103: z up), so the ground's normal points along ``-z`` of ``base_link``
and the camera's "down" is ``R_base_camᵀ · (0, 0, -1)``. ``camera_height`` is the camera's height
above the ground in metres: when ``base_link`` is on the ground it is the mount's z
(``camera_xyz[2]``); KITTI's camera is 1.65 m above the road.

ROS-free and torch-free (numpy; back-projection from :mod:`sfm_ros.data.camera`).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sfm_ros.data.camera import backproject_grid

__all__ = ["GroundPlane", "fit_ground_plane", "GroundScale"]


@dataclass
class GroundPlane:
    """``normal · X = distance`` for points ``X`` of the plane (optical frame, network units);
    ``normal`` points from the camera towards the ground; ``inlier_fraction`` of the region's points."""

    normal: np.ndarray
    distance: float
    inliers: int
    inlier_fraction: float


def _backproject(depth: np.ndarray, K: np.ndarray, region: float, max_points: int) -> np.ndarray:
    h, w = depth.shape
    top = int(round(h * (1.0 - region)))
    step = max(1, int(math.ceil(math.sqrt((h - top) * w / max_points))))
    x, y, z, _, _ = backproject_grid(depth, K, step, top)
    ok = np.isfinite(z) & (z > 0)
    return np.stack([x[ok], y[ok], z[ok]], axis=1)


def fit_ground_plane(depth: np.ndarray, K: np.ndarray, down: np.ndarray, region: float = 0.4,
                     max_tilt_deg: float = 20.0, tolerance: float = 0.03, iterations: int = 100,
                     min_inlier_fraction: float = 0.3, max_points: int = 3000,
                     seed: int = 0) -> GroundPlane | None:
    """Fit the ground plane to the lower ``region`` of the image (fraction of the rows).

    Args:
        depth: (H, W) predicted depth (network units).
        K: (3, 3) intrinsics of the depth map's size.
        down: the camera's "down" (3,) in the optical frame (see the module's Convention).
        max_tilt_deg: the plane's normal must be within this angle of ``down``.
        tolerance: a point is an inlier when its distance to the plane is below ``tolerance``
            times the camera's distance from the plane.
        min_inlier_fraction: fewer inliers than this fraction of the region's points: no plane.
    Returns the plane, or None when no plane within the tilt holds enough of the region.
    """
    depth = np.asarray(depth)
    K = np.asarray(K, dtype=np.float64)
    if depth.ndim != 2 or K.shape != (3, 3):
        raise ValueError(f"depth must be (H, W) and K 3x3, got {depth.shape} and {K.shape}")
    if not 0 < region <= 1:
        raise ValueError(f"region must be in (0, 1], got {region}")
    down = np.asarray(down, dtype=np.float64)
    down = down / np.linalg.norm(down)
    X = _backproject(depth, K, region, max_points)
    n = len(X)
    if n < 10:
        return None
    cos_tilt = math.cos(math.radians(max_tilt_deg))
    rng = np.random.default_rng(seed)
    # All hypotheses at once (the same random triplets, in the same order, as one at a time): the
    # first hypothesis with the most inliers wins, as a loop keeping the first strict maximum.
    P = X[np.stack([rng.choice(n, 3, replace=False) for _ in range(iterations)])]  # (I, 3, 3)
    normals = np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms >= 1e-12
    normals[ok] /= norms[ok, None]
    normals[normals @ down < 0] *= -1.0
    dists = np.einsum("ij,ij->i", normals, P[:, 0])
    ok &= (normals @ down >= cos_tilt) & (dists > 0)
    best, best_count = None, 0
    if ok.any():
        idx = np.flatnonzero(ok)
        counts = (np.abs(X @ normals[idx].T - dists[idx]) < tolerance * dists[idx]).sum(axis=0)
        k = int(np.argmax(counts))
        if counts[k] > 0:
            best, best_count = (normals[idx[k]], float(dists[idx[k]])), int(counts[k])
    if best is None or best_count < min_inlier_fraction * n:
        return None
    normal, dist = best
    inl = X[np.abs(X @ normal - dist) < tolerance * dist]
    c = inl.mean(axis=0)
    _, _, Vt = np.linalg.svd(inl - c, full_matrices=False)
    refined = Vt[2] if Vt[2] @ down > 0 else -Vt[2]
    if refined @ down >= cos_tilt and refined @ c > 0:
        normal, dist = refined, float(refined @ c)
    inliers = int((np.abs(X @ normal - dist) < tolerance * dist).sum())
    return GroundPlane(normal, dist, inliers, inliers / n)


@dataclass
class GroundScale:
    """Metres per network unit from ``camera_height`` (m), filtered over time (module doc).

    Args:
        camera_height: the camera's height above the ground (m), > 0.
        T_base_cam: (4, 4) pose of the optical frame in ``base_link`` (z up).
        window: accepted estimates the median runs over.
        max_jump: an estimate off the current scale by more than this fraction is rejected (once
            ``window // 3`` estimates are in). When ``window`` estimates in a row are rejected and
            agree with each other (within ``max_jump / 2`` of their median), the history restarts
            from them: a start behind a car or on a ramp does not fix a wrong scale for good.
    """

    camera_height: float
    T_base_cam: np.ndarray
    window: int = 15
    max_jump: float = 0.3
    history: deque = field(default_factory=deque)
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    reseeded: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.camera_height) and self.camera_height > 0):
            raise ValueError(f"camera_height must be a positive number of metres, got {self.camera_height}")
        T = np.asarray(self.T_base_cam, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"T_base_cam must be 4x4, got {T.shape}")
        self.down = T[:3, :3].T @ np.array([0.0, 0.0, -1.0])
        self.history = deque(maxlen=self.window)
        self._rejects: deque = deque(maxlen=self.window)

    @property
    def scale(self) -> float | None:
        """The current scale (metres per network unit), None before the first accepted estimate."""
        return float(np.median(self.history)) if self.history else None

    @property
    def spread(self) -> float | None:
        """Relative spread of the recent estimates (median absolute deviation / median)."""
        if not self.history:
            return None
        h = np.asarray(self.history)
        med = float(np.median(h))
        return float(np.median(np.abs(h - med)) / med)

    def update(self, depth: np.ndarray, K: np.ndarray) -> float | None:
        """Add one frame's estimate (depth in network units, K of its size); returns the current
        scale (None while none was accepted)."""
        plane = fit_ground_plane(depth, K, self.down)
        if plane is None:
            self.failed += 1
            return self.scale
        s = self.camera_height / plane.distance
        cur = self.scale
        if cur is not None and len(self.history) >= max(1, self.window // 3) and abs(s / cur - 1.0) > self.max_jump:
            self.rejected += 1
            self._rejects.append(s)
            r = np.asarray(self._rejects)
            if len(r) == self.window and np.all(np.abs(r / np.median(r) - 1.0) <= self.max_jump / 2):
                self.history = deque(r.tolist(), maxlen=self.window)
                self._rejects.clear()
                self.reseeded += 1
            return self.scale
        self._rejects.clear()
        self.history.append(s)
        self.accepted += 1
        return self.scale
