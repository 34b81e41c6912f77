"""Training-time augmentation of a window of frames, identical for every frame of the window.

:func:`augment_window`: a random scale in ``[1, 1.15]`` followed by a random crop back to the input
size (the intrinsics follow) and colour jitter (brightness, contrast, saturation);
:func:`mirror_window` / :func:`mirror_motion`: a horizontal mirror of the frames, with the mirrored
camera's intrinsics and the motions as that camera sees them; :func:`prior_points`: the two-view
priors' corners moved with the frames.

Convention: pixel centres at integer coordinates; a motion ``T`` (4x4) maps points from one camera's
optical frame (x right, y down, z forward) into another's.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from sfm_ros.data.camera import resize_intrinsics, resize_pixels

__all__ = ["PRIOR_POINTS", "augment_window", "mirror_window", "mirror_motion", "prior_points"]

PRIOR_POINTS = 64  # triangulated corners an item carries per pair (sfm_ros.training.priors keeps at most these)


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


def prior_points(priors: list, hw: tuple[int, int], crop: tuple[int, int, int, int] | None,
                  size: int = PRIOR_POINTS, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs' triangulated corners (``points``, ``depths`` of
    :class:`sfm_ros.training.priors.EpipolarPrior`) as fixed-size tensors: ``pts`` (N, size, 2) in the
    item's pixels (moved by the augmentation's ``crop`` = (sh, sw, y0, x0): the ``hw`` frame resized to
    sh x sw, then cut at (y0, x0); then ``mirrored``: ``x → w - 1 - x``), ``depth`` (N, size), 0 where
    there is no corner (padding, or a corner the crop cut off)."""
    h, w = hw
    pts = np.zeros((len(priors), size, 2), np.float32)
    depth = np.zeros((len(priors), size), np.float32)
    for n, p in enumerate(priors):
        if not len(p.points):
            continue
        q, z = p.points[:size].astype(np.float64), p.depths[:size]
        if crop is not None:
            sh, sw, y0, x0 = crop
            q = resize_pixels(q, (h, w), (sh, sw)) - np.array([x0, y0])
        if mirrored:
            q = q.copy()
            q[:, 0] = w - 1 - q[:, 0]
        inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
        pts[n, :len(q)] = q
        depth[n, :len(q)] = np.where(inside, z, 0.0)
    return torch.from_numpy(pts), torch.from_numpy(depth)


def augment_window(imgs: np.ndarray, K: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Random scale (1-1.15) and crop back to the size, colour jitter: the images, their intrinsics
    and the crop ``(sh, sw, y0, x0)`` (resized to sh x sw, then cut at (y0, x0))."""
    _, h, w, _ = imgs.shape
    scale = rng.uniform(1.0, 1.15)
    sh, sw = int(round(h * scale)), int(round(w * scale))
    y0 = int(rng.integers(0, sh - h + 1))
    x0 = int(rng.integers(0, sw - w + 1))
    out = np.empty_like(imgs)
    for j in range(len(imgs)):
        big = cv2.resize(imgs[j], (sw, sh), interpolation=cv2.INTER_LINEAR)
        out[j] = big[y0:y0 + h, x0:x0 + w]
    K = resize_intrinsics(K, (h, w), (sh, sw))
    K[0, 2] -= x0
    K[1, 2] -= y0
    # colour jitter, the same for every frame of the window (photometric consistency holds)
    brightness = rng.uniform(0.8, 1.2)
    contrast = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.8, 1.2)
    grey = out.mean(axis=3, keepdims=True)
    out = grey + saturation * (out - grey)
    mean = out.mean()  # one mean for the whole window: the same affine map for every frame
    out = mean + contrast * (out - mean)
    out = np.clip(out * brightness, 0.0, 1.0).astype(np.float32)
    return out, K, (sh, sw, y0, x0)
