"""Training-time augmentation of a window of frames, identical for every frame of the window.

:func:`augment_window`: a random scale in ``[1, 1.15]`` followed by a random crop back to the input
size (the intrinsics follow) and colour jitter (brightness, contrast, saturation); with ``turn_deg``
the crop's offset is replaced by a turn of the camera about its centre (:class:`Turn`): the
principal point stays where it was, the frames are warped by the infinite homography and the
window's motions are seen from the turned camera. A shifted crop moves the focus of expansion in
the image while the direction of travel stays the same, and the pose network (which never sees the
intrinsics) learns to ignore where the focus of expansion is; a turn moves the direction of travel
with it;
:func:`mirror_window` / :func:`mirror_motion`: a horizontal mirror of the frames, with the mirrored
camera's intrinsics and the motions as that camera sees them; :func:`prior_points`: the two-view
priors' corners moved with the frames.

Convention: pixel centres at integer coordinates; a motion ``T`` (4x4) maps points from one camera's
optical frame (x right, y down, z forward) into another's.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from sfm_ros.core.se3 import axis_angle_to_matrix
from sfm_ros.data.camera import resize_intrinsics, resize_pixels

__all__ = ["PRIOR_POINTS", "Turn", "augment_window", "mirror_window", "mirror_motion", "prior_points"]

PRIOR_POINTS = 64  # triangulated corners an item carries per pair (sfm_ros.training.priors keeps at most these)
#: the largest zoom a turn may need to keep every output pixel inside the frame (a turn of the
#: ``turn_deg`` drawn needs more zoom than the crop's 1.15 on a wide camera's edges)
MAX_TURN_ZOOM = 1.6


@dataclass(frozen=True)
class Turn:
    """A window's camera turned about its centre: ``X' = R X`` for a point ``X`` in the original
    optical frame, seen with the intrinsics ``K1`` (the original ``K0`` zoomed about its principal
    point). Pixels map by the infinite homography ``H = K1 R K0⁻¹`` (Hartley & Zisserman, Multiple
    View Geometry, 2nd ed., Sec. 8.4.2), valid at every depth; a motion ``T`` between two frames of
    the window becomes ``R̃ T R̃ᵀ`` (``R̃`` the 4x4 rotation)."""

    R: np.ndarray
    K0: np.ndarray
    K1: np.ndarray

    @property
    def H(self) -> np.ndarray:
        return self.K1 @ self.R @ np.linalg.inv(self.K0)

    def motion(self, T: np.ndarray) -> np.ndarray:
        """Rigid motions ``(..., 4, 4)`` between frames of the window, as the turned camera sees them."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape[-2:] != (4, 4):
            raise ValueError(f"motions (..., 4, 4) expected, got {T.shape}")
        R4 = np.eye(4)
        R4[:3, :3] = self.R
        return R4 @ T @ R4.T

    def points(self, uv: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(N, 2)`` and their depths ``(N,)`` (along the optical axis) in the turned camera."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        rays = self.R @ np.linalg.inv(self.K0) @ np.vstack([uv.T, np.ones(len(uv))])  # (3, N), z = depth factor
        q = self.K1 @ rays
        return (q[:2] / q[2]).T, np.asarray(depth, dtype=np.float64) * rays[2]


def _turn_inside(R: np.ndarray, K0: np.ndarray, zoom: float, hw: tuple[int, int]) -> bool:
    """Whether every pixel of the ``hw`` image of the camera turned by ``R`` and zoomed by ``zoom``
    about its principal point samples inside the original ``hw`` frame (the preimage of the output
    rectangle is a quadrilateral: its four corners decide)."""
    h, w = hw
    K1 = _zoomed(K0, zoom)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64).T
    pre = K0 @ R.T @ np.linalg.inv(K1) @ corners
    if np.any(pre[2] <= 0):
        return False
    u, v = pre[0] / pre[2], pre[1] / pre[2]
    return bool(np.all((u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)))


def _zoomed(K: np.ndarray, zoom: float) -> np.ndarray:
    """Intrinsics zoomed by ``zoom`` about the principal point (focal lengths and skew scaled)."""
    K1 = np.array(K, dtype=np.float64, copy=True)
    K1[0, :2] *= zoom
    K1[1, 1] *= zoom
    return K1


def turn_window(imgs: np.ndarray, K: np.ndarray, yaw: float, pitch: float,
                zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray, Turn]:
    """A window's frames ``(T, H, W, C)`` seen by its camera turned by ``yaw`` (about the optical
    frame's y axis, radians; positive turns the view to the right) and ``pitch`` (about x; positive
    turns it down) about its centre, zoomed about the principal point by at least ``zoom`` and as much
    more as keeps every output pixel inside the frame (at most :data:`MAX_TURN_ZOOM`; the turn is
    halved until it fits): the frames, their intrinsics and the :class:`Turn`."""
    imgs, K0 = np.asarray(imgs), np.asarray(K, dtype=np.float64)
    if imgs.ndim != 4 or K0.shape != (3, 3):
        raise ValueError(f"frames (T, H, W, C) and K (3, 3) expected, got {imgs.shape} and {K0.shape}")
    h, w = imgs.shape[1:3]
    for _ in range(8):
        R = axis_angle_to_matrix(np.array([pitch, -yaw, 0.0]))  # X' = R X: points turn against the view
        if _turn_inside(R, K0, MAX_TURN_ZOOM, (h, w)):
            break
        yaw, pitch = yaw / 2, pitch / 2
    else:
        R = np.eye(3)
    lo, hi = float(zoom), MAX_TURN_ZOOM
    if not _turn_inside(R, K0, lo, (h, w)):
        for _ in range(30):  # the least zoom that fits, to 1e-9 of the range
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _turn_inside(R, K0, mid, (h, w)) else (mid, hi)
        lo = hi
    turn = Turn(R, K0, _zoomed(K0, lo))
    H = turn.H
    out = np.empty_like(imgs)
    for j in range(len(imgs)):
        out[j] = cv2.warpPerspective(imgs[j], H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, turn.K1, turn


#: a reflection of the optical frame's x axis: a camera's world seen in a horizontal mirror
_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def mirror_window(imgs: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A window's frames ``(T, H, W, C)`` mirrored left to right, with the intrinsics of the mirrored
    camera: ``cx → W - 1 - cx`` (pixel centres at integer coordinates; ``fx`` stays positive, so
    the scene seen is the mirror image ``X → -X`` of the camera's). Shapes are checked."""
    imgs, K = np.asarray(imgs), np.asarray(K, dtype=np.float64)
    if imgs.ndim != 4 or K.shape != (3, 3):
        raise ValueError(f"frames (T, H, W, C) and K (3, 3) expected, got {imgs.shape} and {K.shape}")
    K = K.copy()
    K[0, 2] = imgs.shape[2] - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    return np.ascontiguousarray(imgs[:, :, ::-1]), K


def mirror_motion(T: np.ndarray) -> np.ndarray:
    """Rigid motions ``(..., 4, 4)`` as the mirrored camera (:func:`mirror_window`) sees them:
    ``M T M`` with ``M = diag(-1, 1, 1, 1)`` (the x translation and the rotations about y and z
    change sign)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"motions (..., 4, 4) expected, got {T.shape}")
    return _MIRROR @ T @ _MIRROR


def prior_points(priors: list, hw: tuple[int, int], crop: tuple[int, int, int, int] | Turn | None,
                 size: int = PRIOR_POINTS, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs' triangulated corners (``points``, ``depths`` of
    :class:`sfm_ros.training.priors.EpipolarPrior`) as fixed-size tensors: ``pts`` (N, size, 2) in the
    item's pixels (moved by the augmentation's ``crop`` = (sh, sw, y0, x0): the ``hw`` frame resized to
    sh x sw, then cut at (y0, x0), or by its :class:`Turn`, which also changes their depths; then
    ``mirrored``: ``x → w - 1 - x``), ``depth`` (N, size), 0 where there is no corner (padding, or a
    corner the crop cut off)."""
    h, w = hw
    pts = np.zeros((len(priors), size, 2), np.float32)
    depth = np.zeros((len(priors), size), np.float32)
    for n, p in enumerate(priors):
        if not len(p.points):
            continue
        q, z = p.points[:size].astype(np.float64), p.depths[:size]
        if isinstance(crop, Turn):
            q, z = crop.points(q, z)
        elif crop is not None:
            sh, sw, y0, x0 = crop
            q = resize_pixels(q, (h, w), (sh, sw)) - np.array([x0, y0])
        if mirrored:
            q = q.copy()
            q[:, 0] = w - 1 - q[:, 0]
        inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
        pts[n, :len(q)] = q
        depth[n, :len(q)] = np.where(inside, z, 0.0)
    return torch.from_numpy(pts), torch.from_numpy(depth)


def augment_window(imgs: np.ndarray, K: np.ndarray, rng: np.random.Generator,
                   turn_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | Turn]:
    """Random scale (1-1.15) and crop back to the size, colour jitter: the images, their intrinsics
    and the crop ``(sh, sw, y0, x0)`` (resized to sh x sw, then cut at (y0, x0)). With ``turn_deg`` > 0
    the crop's offset is replaced by a turn of the camera (:func:`turn_window`): a yaw drawn in
    ``±turn_deg`` and a pitch in ``±turn_deg / 5`` degrees (a wide, short frame affords little pitch:
    1° of it needs a zoom of ~1.08 at KITTI's 128x416, 5° of yaw ~1.2), the scale as the least zoom; the third
    value is then the :class:`Turn`. The turn is drawn after every other draw, so scale and colour
    are drawn alike with it on or off."""
    _, h, w, _ = imgs.shape
    scale = rng.uniform(1.0, 1.15)
    sh, sw = int(round(h * scale)), int(round(w * scale))
    y0 = int(rng.integers(0, sh - h + 1))
    x0 = int(rng.integers(0, sw - w + 1))
    brightness = rng.uniform(0.8, 1.2)
    contrast = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.8, 1.2)
    geometry: tuple[int, int, int, int] | Turn
    if turn_deg > 0:
        yaw, pitch = np.radians(rng.uniform(-1.0, 1.0, size=2) * np.array([turn_deg, turn_deg / 5]))
        out, K, geometry = turn_window(imgs, K, float(yaw), float(pitch), zoom=sw / w)
    else:
        out = np.empty_like(imgs)
        for j in range(len(imgs)):
            big = cv2.resize(imgs[j], (sw, sh), interpolation=cv2.INTER_LINEAR)
            out[j] = big[y0:y0 + h, x0:x0 + w]
        K = resize_intrinsics(K, (h, w), (sh, sw))
        K[0, 2] -= x0
        K[1, 2] -= y0
        geometry = (sh, sw, y0, x0)
    # colour jitter, the same for every frame of the window (photometric consistency holds)
    grey = out.mean(axis=3, keepdims=True)
    out = grey + saturation * (out - grey)
    mean = out.mean()  # one mean for the whole window: the same affine map for every frame
    out = mean + contrast * (out - mean)
    out = np.clip(out * brightness, 0.0, 1.0).astype(np.float32)
    return out, K, geometry
