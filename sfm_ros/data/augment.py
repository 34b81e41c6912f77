"""Training-time augmentation of a window of frames (the same for every frame of the window, but
for ``turn_step_deg``'s turns of the source frames).

:func:`augment_window`: a random scale in ``[1, 1.15]`` followed by a random crop back to the input
size (the intrinsics follow) and colour jitter (brightness, contrast, saturation); with ``turn_deg``
the crop's offset is replaced by a turn of the camera about its centre (:class:`Turn`): the
principal point stays where it was, the frames are warped by the infinite homography and the
window's motions are seen from the turned camera. A shifted crop moves the focus of expansion in
the image while the direction of travel stays the same, and the pose network (which never sees the
intrinsics) learns to ignore where the focus of expansion is; a turn moves the direction of travel
with it; with ``turn_step_deg`` each source frame is also turned by its own turn, so the rotations
between the frames change;
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

__all__ = ["PRIOR_POINTS", "Turn", "augment_window", "turn_window", "mirror_window", "mirror_motion",
           "mirror_rotation", "prior_points"]

PRIOR_POINTS = 64  # triangulated corners an item carries per pair (sfm_ros.training.priors keeps at most these)
#: the largest zoom a turn may need to keep every output pixel inside the frame (a turn of the
#: ``turn_deg`` drawn needs more zoom than the crop's 1.15 on a wide camera's edges)
MAX_TURN_ZOOM = 1.6


@dataclass(frozen=True)
class Turn:
    """A window's camera turned about its centre, frame by frame: ``X' = R[j] X`` for a point ``X``
    in frame ``j``'s original optical frame, seen with the intrinsics ``K1`` (the original ``K0``
    zoomed about its principal point; one for the window). Frame ``j``'s pixels map by the infinite
    homography ``H(j) = K1 R[j] K0⁻¹`` (Hartley & Zisserman, Multiple View Geometry, 2nd ed., Sec.
    8.4.2), valid at every depth; a motion ``T`` from frame ``a`` to frame ``b`` of the window
    (``X_b = T X_a``) becomes ``R̃[b] T R̃[a]ᵀ`` (``R̃`` the 4x4 rotations). ``R`` is (F, 3, 3)."""

    R: np.ndarray
    K0: np.ndarray
    K1: np.ndarray

    def H(self, frame: int) -> np.ndarray:
        return self.K1 @ self.R[frame] @ np.linalg.inv(self.K0)

    def motion(self, T: np.ndarray, src: np.ndarray | int, tgt: int) -> np.ndarray:
        """Rigid motions ``(N, 4, 4)`` from frame ``tgt`` to frames ``src`` (N of them) of the window
        (``X_src = T X_tgt``), as the turned cameras see them."""
        T = np.asarray(T, dtype=np.float64)
        src = np.atleast_1d(np.asarray(src))
        if T.ndim != 3 or T.shape[1:] != (4, 4) or len(T) != len(src):
            raise ValueError(f"motions (N, 4, 4) for {len(src)} source frame(s) expected, got {T.shape}")
        R4 = np.tile(np.eye(4), (len(self.R), 1, 1))
        R4[:, :3, :3] = self.R
        return R4[src] @ T @ R4[tgt].T

    def points(self, uv: np.ndarray, depth: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(N, 2)`` of frame ``frame`` and their depths ``(N,)`` (along the optical axis) in
        its turned camera."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        rays = self.R[frame] @ np.linalg.inv(self.K0) @ np.vstack([uv.T, np.ones(len(uv))])  # (3, N)
        q = self.K1 @ rays
        return (q[:2] / q[2]).T, np.asarray(depth, dtype=np.float64) * rays[2]


def _turn_inside(R: np.ndarray, K0: np.ndarray, zoom: float, hw: tuple[int, int]) -> bool:
    """Whether every pixel of the ``hw`` images of the cameras turned by ``R`` (F, 3, 3) and zoomed by
    ``zoom`` about the principal point samples inside the original ``hw`` frames (the preimage of
    the output rectangle is a quadrilateral: its four corners decide)."""
    h, w = hw
    K1 = _zoomed(K0, zoom)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64).T
    pre = K0 @ np.swapaxes(R, -1, -2) @ np.linalg.inv(K1) @ corners  # (F, 3, 4)
    if np.any(pre[:, 2] <= 0):
        return False
    u, v = pre[:, 0] / pre[:, 2], pre[:, 1] / pre[:, 2]
    return bool(np.all((u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)))


def _zoomed(K: np.ndarray, zoom: float) -> np.ndarray:
    """Intrinsics zoomed by ``zoom`` about the principal point (focal lengths and skew scaled)."""
    K1 = np.array(K, dtype=np.float64, copy=True)
    K1[0, :2] *= zoom
    K1[1, 1] *= zoom
    return K1


def turn_window(imgs: np.ndarray, K: np.ndarray, yaw, pitch, zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray, Turn]:
    """A window's frames ``(F, H, W, C)`` seen by its camera turned by ``yaw`` (about the optical
    frame's y axis, radians; positive turns the view to the right) and ``pitch`` (about x; positive
    turns it down) about its centre, each a number (every frame alike) or one per frame; zoomed about
    the principal point by at least ``zoom`` and as much more as keeps every output pixel inside
    the frame (at most :data:`MAX_TURN_ZOOM`; the turns are halved until they fit): the frames,
    their intrinsics and the :class:`Turn`."""
    imgs, K0 = np.asarray(imgs), np.asarray(K, dtype=np.float64)
    if imgs.ndim != 4 or K0.shape != (3, 3):
        raise ValueError(f"frames (F, H, W, C) and K (3, 3) expected, got {imgs.shape} and {K0.shape}")
    n, h, w = imgs.shape[:3]
    yaw, pitch = np.broadcast_to(yaw, n).astype(np.float64), np.broadcast_to(pitch, n).astype(np.float64)
    for _ in range(8):
        # X' = R X: points turn against the view
        R = np.stack([axis_angle_to_matrix(np.array([p, -y, 0.0])) for y, p in zip(yaw, pitch)])
        if _turn_inside(R, K0, MAX_TURN_ZOOM, (h, w)):
            break
        yaw, pitch = yaw / 2, pitch / 2
    else:
        R = np.tile(np.eye(3), (n, 1, 1))
    lo, hi = float(zoom), MAX_TURN_ZOOM
    if not _turn_inside(R, K0, lo, (h, w)):
        for _ in range(30):  # the least zoom that fits, to 1e-9 of the range
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _turn_inside(R, K0, mid, (h, w)) else (mid, hi)
        lo = hi
    turn = Turn(R, K0, _zoomed(K0, lo))
    out = np.empty_like(imgs)
    for j in range(n):
        out[j] = cv2.warpPerspective(imgs[j], turn.H(j), (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
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


def mirror_rotation(R: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` as the mirrored camera sees them (:func:`mirror_motion`'s rotation
    part): the turn of a mirrored window's camera (:class:`Turn`) is ``M R M``."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotations (..., 3, 3) expected, got {R.shape}")
    return _MIRROR[:3, :3] @ R @ _MIRROR[:3, :3]


def prior_points(priors: list, hw: tuple[int, int], crop: tuple[int, int, int, int] | Turn | None,
                 size: int = PRIOR_POINTS, mirrored: bool = False, target: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs' triangulated corners (``points``, ``depths`` of
    :class:`sfm_ros.training.priors.EpipolarPrior`) as fixed-size tensors: ``pts`` (N, size, 2) in the
    item's pixels (moved by the augmentation's ``crop`` = (sh, sw, y0, x0): the ``hw`` frame resized to
    sh x sw, then cut at (y0, x0), or by its :class:`Turn` of the window's frame ``target``, which
    also changes their depths; then
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
            q, z = crop.points(q, z, target)
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


def augment_window(imgs: np.ndarray, K: np.ndarray, rng: np.random.Generator, turn_deg: float = 0.0,
                   turn_step_deg: float = 0.0,
                   target: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | Turn]:
    """Random scale (1-1.15) and crop back to the size, colour jitter: the images, their intrinsics
    and the crop ``(sh, sw, y0, x0)`` (resized to sh x sw, then cut at (y0, x0)). With ``turn_deg`` > 0
    the crop's offset is replaced by a turn of the camera (:func:`turn_window`, the drawn scale as the
    least zoom): a yaw drawn in ``±turn_deg`` and a pitch in ``±turn_deg / 5`` degrees (a wide, short
    frame affords little pitch: 1° of it needs a zoom of ~1.08 at KITTI's 128x416, 5° of yaw ~1.2);
    with ``turn_step_deg`` > 0 each frame but ``target`` is turned by another yaw in
    ``±turn_step_deg`` and pitch in ``±turn_step_deg / 5`` of its own, so the rotations between the
    frames change too (the target keeps the window's turn: the sources' camera centres, seen from
    it, stay where they were). The third value is then the :class:`Turn`. The turns are drawn after
    every other draw, so scale and colour are drawn alike with them on or off."""
    _, h, w, _ = imgs.shape
    scale = rng.uniform(1.0, 1.15)
    sh, sw = int(round(h * scale)), int(round(w * scale))
    y0 = int(rng.integers(0, sh - h + 1))
    x0 = int(rng.integers(0, sw - w + 1))
    brightness = rng.uniform(0.8, 1.2)
    contrast = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.8, 1.2)
    geometry: tuple[int, int, int, int] | Turn
    if turn_deg > 0 or turn_step_deg > 0:
        yaw, pitch = np.radians(rng.uniform(-1.0, 1.0, size=2) * np.array([turn_deg, turn_deg / 5]))
        if turn_step_deg > 0:
            step = np.radians(rng.uniform(-1.0, 1.0, size=(len(imgs), 2)) * np.array([turn_step_deg, turn_step_deg / 5]))
            if target is not None:
                step[target] = 0.0
            yaw, pitch = yaw + step[:, 0], pitch + step[:, 1]
        out, K, geometry = turn_window(imgs, K, yaw, pitch, zoom=sw / w)
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
