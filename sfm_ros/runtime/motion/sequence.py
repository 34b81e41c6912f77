"""Refining every frame-to-frame increment of a recorded sequence, as the node refines them live.

Convention: ``increments[i]`` is ``T_i_{i+1}`` (4, 4; the pose network's), between ``views[i]`` and
``views[i + 1]`` (:meth:`sfm_ros.runtime.motion.refiner.Refiner.view`).
"""
from __future__ import annotations

import numpy as np

from sfm_ros.runtime.motion.refiner import Refiner
from sfm_ros.runtime.motion.result import Refinement
from sfm_ros.runtime.motion.view import RefineView

__all__ = ["refine_sequence"]


def refine_sequence(refiner: Refiner, views: list[RefineView], depths: list[np.ndarray] | None,
                    increments: np.ndarray, scales=None,
                    ground: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, list[Refinement]]:
    """Refine every increment (N-1, 4, 4) of N ``views``, with ``depths[i]`` (the predicted depth
    of frame ``i``) for the scale, ``scales[i]`` (default 1) the factor increment ``i`` will be
    multiplied by (:meth:`Refiner.refine`'s ``scale``) and ``ground`` :meth:`Refiner.refine`'s for
    every frame. An increment whose corners showed no consistent motion
    (:attr:`Refinement.untracked`) is no motion, as the node integrates it. Returns the refined
    (N-1, 4, 4) increments and each :class:`Refinement`."""
    inc = np.asarray(increments, dtype=np.float64)
    if inc.ndim != 3 or inc.shape[1:] != (4, 4) or len(inc) != len(views) - 1:
        raise ValueError(f"increments must be ({len(views) - 1}, 4, 4) for {len(views)} views, got {inc.shape}")
    if depths is not None and len(depths) < len(views) - 1:
        raise ValueError(f"{len(depths)} depth maps for {len(views)} views")
    if scales is not None and len(scales) != len(inc):
        raise ValueError(f"{len(scales)} scales for {len(inc)} increments")
    results = [refiner.refine(views[i], views[i + 1], inc[i], None if depths is None else depths[i],
                              1.0 if scales is None else float(scales[i]), ground)
               for i in range(len(inc))]
    return np.asarray([np.eye(4) if r.untracked else r.T for r in results]), results
