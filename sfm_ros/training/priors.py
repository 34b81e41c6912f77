"""Two-view priors of training pairs: the geometry of each (target, source) pair, from its frames alone.

With ``loss.epipolar_weight`` the trainer solves every training pair once before training with the
node's refiner (:class:`sfm_ros.runtime.refine.Refiner`: tracked corners, the essential matrix, cheirality;
a rotation alone where the pair shows too little parallax) and the pose network is pulled towards
it (:func:`sfm_ros.core.losses.epipolar_prior_loss`); no labels are used. Online adaptation
(:mod:`sfm_ros.training.adapt`) solves each window's pairs the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfm_ros.data.datasets import Sequence
from sfm_ros.runtime.refine import Refiner
from sfm_ros.core.se3 import invert_pose, make_pose


@dataclass
class EpipolarPrior:
    """The two-view geometry of one (target, source) pair (:class:`sfm_ros.runtime.refine.Refiner`):
    ``T_src_tgt`` with a unit translation; ``w_rot``/``w_dir`` 1 where its rotation / direction of
    translation was found (a rotation alone when the pair shows too little parallax), else 0."""

    T_src_tgt: np.ndarray
    w_rot: float
    w_dir: float


def epipolar_priors(sequences: list[Sequence], items: list[tuple[int, list[int]]],
                    seq_len: int) -> dict[tuple[int, int, int], EpipolarPrior]:
    """:class:`EpipolarPrior` of every (sequence, target frame, source frame) pair of ``items``,
    computed once from the frames at the training size (about 5 ms a pair on one core)."""
    # The motion given to the refiner is a stand-in (no network yet): never preferred to the five
    # points', and no length filter (the priors' translations are unit).
    refiner = Refiner("epipolar", prefer_network=False, scale_tracking=False, still_px=0.0)
    unit = make_pose(t=[0.0, 0.0, 1.0])
    mid = seq_len // 2
    views: dict[tuple[int, int], object] = {}
    out: dict[tuple[int, int, int], EpipolarPrior] = {}

    def view(si: int, i: int):
        if (si, i) not in views:
            views[(si, i)] = refiner.view(sequences[si].frames[i], sequences[si].K)
        return views[(si, i)]

    for si, idx in items:
        t = idx[mid]
        for j in idx[:mid] + idx[mid + 1:]:
            if (si, t, j) in out:
                continue
            r = refiner.refine(view(si, t), view(si, j), unit)  # T_tgt_src, unit baseline
            T = invert_pose(r.T)
            out[(si, t, j)] = EpipolarPrior(T, float(r.used in ("epipolar", "rotation")),
                                            float(r.used == "epipolar"))
    return out
