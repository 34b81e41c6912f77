"""The view-synthesis check shared by the augmentation's tests (``test_window_flip``,
``test_window_turn``): how well a source frame, warped with a depth and a motion, reproduces its
target."""
from __future__ import annotations

import numpy as np
import torch

from sfm_ros.core.geometry import inverse_warp


def warp_error(src: np.ndarray, tgt: np.ndarray, depth: np.ndarray, T_src_tgt: np.ndarray, K: np.ndarray) -> float:
    """Mean |target - source warped into it| (grey levels 0-1) over the pixels the warp reaches;
    frames (H, W, 3), depth (H, W) (infinite depths read as 1000)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
    warped, valid = inverse_warp(t(src).permute(2, 0, 1)[None], t(np.nan_to_num(depth, posinf=1e3))[None, None],
                                 t(T_src_tgt)[None], t(K)[None])
    diff = (warped[0] - t(tgt).permute(2, 0, 1)).abs().mean(0) * valid[0, 0]
    return float(diff.sum() / valid.sum())
