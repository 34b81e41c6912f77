"""One frame as the refiner sees it: grey, at a fixed pixel budget, with the intrinsics of that size.

Convention: ``image`` (H, W[, 3]) uint8 or float in [0, 1] (or uint16) at the camera's size, ``K``
(3, 3) its intrinsics; the view is resized (area interpolation) to the paper's pixel budget at the
image's aspect ratio (:func:`sfm_ros.data.autoconfig.auto_size`: 128x416 for KITTI, 192x256 for
640x480) and ``K`` scaled by the pixel-centre rule (:meth:`sfm_ros.data.camera.CameraModel.scaled`),
whatever the network's input size: the cost per frame is bounded and a small network input does
not cost accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sfm_ros.data.autoconfig import auto_size
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.features import to_grey

__all__ = ["RefineView", "make_view"]


@dataclass
class RefineView:
    """``grey`` (h, w) uint8 at the refinement size and ``K`` (3, 3), the intrinsics of that size.
    Build it with :func:`make_view` (or :meth:`sfm_ros.runtime.motion.refiner.Refiner.view`)."""

    grey: np.ndarray
    K: np.ndarray


def make_view(image: np.ndarray, K: np.ndarray) -> RefineView:
    """The refiner's view of a camera ``image`` with intrinsics ``K`` (module doc)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got {K.shape}")
    h, w = image.shape[:2]
    rh, rw = auto_size(w, h)
    grey = to_grey(image)
    if (rh, rw) != (h, w):
        grey = cv2.resize(grey, (rw, rh), interpolation=cv2.INTER_AREA)
        K = CameraModel(w, h, K).scaled(rw, rh).K
    return RefineView(grey=grey, K=K)
