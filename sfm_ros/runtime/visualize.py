"""Pictures for humans: depth colormaps and side-by-side panels (numpy + OpenCV, ROS-free)."""
from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, min_depth: float | None = None, max_depth: float | None = None) -> np.ndarray:
    """(H, W) depth → (H, W, 3) uint8 RGB (magma on inverse depth: near is bright).

    REP 118's markers: ``-inf`` (too close) is drawn as the nearest colour, ``+inf`` (too far) as
    the farthest; NaN (unknown) and non-positive depths are drawn black. Limits default to the
    5th/95th percentiles of the finite positive depths.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    near, far = depth == -np.inf, depth == np.inf
    inv = np.zeros_like(depth)
    inv[valid] = 1.0 / depth[valid]
    if valid.any():
        lo = 1.0 / max_depth if max_depth else float(np.percentile(inv[valid], 5))
        hi = 1.0 / min_depth if min_depth else float(np.percentile(inv[valid], 95))
    else:
        lo, hi = 0.0, 1.0
    norm = np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1)
    norm[near], norm[far] = 1.0, 0.0
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    bgr[~(valid | near | far)] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """[0, 1] float or uint8, grey or RGB → (H, W, 3) uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def stack_panels(panels: list[np.ndarray], vertical: bool = True) -> np.ndarray:
    """Stack images (resized to the first one's width/height) into one RGB picture."""
    imgs = [to_uint8_rgb(p) for p in panels]
    h, w = imgs[0].shape[:2]
    if vertical:
        imgs = [i if i.shape[1] == w else cv2.resize(i, (w, int(i.shape[0] * w / i.shape[1]))) for i in imgs]
        return np.concatenate(imgs, axis=0)
    imgs = [i if i.shape[0] == h else cv2.resize(i, (int(i.shape[1] * h / i.shape[0]), h)) for i in imgs]
    return np.concatenate(imgs, axis=1)
