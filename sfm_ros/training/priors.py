"""Two-view priors of training pairs: the geometry of each (target, source) pair, from its frames alone.

With ``loss.epipolar_weight`` the trainer solves every training pair once before training with the
node's two-view solver (:func:`sfm_ros.runtime.motion.two_view.solve_two_view`: tracked corners, the
essential matrix, cheirality; a rotation alone where the pair shows too little parallax) and the
pose network is pulled towards it (:func:`sfm_ros.core.losses.epipolar_prior_loss`); no labels are
used. Online adaptation (:mod:`sfm_ros.training.adapt`) solves each window's pairs the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfm_ros.core.se3 import invert_pose, make_pose
from sfm_ros.data.datasets import Sequence
from sfm_ros.runtime.motion.two_view import TwoViewOptions, TwoViewSolution, solve_two_view
from sfm_ros.runtime.motion.view import RefineView, make_view

#: the translation a prior carries where only its rotation is found (weighted 0): unit, forward
_UNIT = make_pose(t=[0.0, 0.0, 1.0])


@dataclass
class EpipolarPrior:
    """The two-view geometry of one (target, source) pair (:func:`sfm_ros.runtime.motion.two_view.solve_two_view`):
    ``T_src_tgt`` with a unit translation; ``w_rot``/``w_dir`` 1 where its rotation / direction of
    translation was found (a rotation alone when the pair shows too little parallax), else 0."""

    T_src_tgt: np.ndarray
    w_rot: float
    w_dir: float


def epipolar_priors(sequences: list[Sequence], items: list[tuple[int, list[int]]],
                    seq_len: int) -> dict[tuple[int, int, int], EpipolarPrior]:
    """:class:`EpipolarPrior` of every (sequence, target frame, source frame) pair of ``items``,
    computed once from the frames at the training size (about 5 ms a pair on one core)."""
    options = TwoViewOptions(still_px=0.0)  # no test for a camera at rest: training pairs move
    mid = seq_len // 2
    views: dict[tuple[int, int], RefineView] = {}
    out: dict[tuple[int, int, int], EpipolarPrior] = {}

    def view(si: int, i: int) -> RefineView:
        if (si, i) not in views:
            views[(si, i)] = make_view(sequences[si].frames[i], sequences[si].K)
        return views[(si, i)]

    for si, idx in items:
        t = idx[mid]
        for j in idx[:mid] + idx[mid + 1:]:
            if (si, t, j) in out:
                continue
            tgt, src = view(si, t), view(si, j)
            out[(si, t, j)] = _prior(solve_two_view(tgt.grey, src.grey, tgt.K, options))
    return out


def _prior(solution: TwoViewSolution) -> EpipolarPrior:
    """The prior of one pair from its two-view solution (reference: the target, new: the source)."""
    if solution.why == "":  # rotation and direction
        return EpipolarPrior(invert_pose(solution.T_ref_new), 1.0, 1.0)
    if solution.why == "low parallax":  # the rotation alone
        T_tgt_src = _UNIT.copy()
        T_tgt_src[:3, :3] = solution.R.T
        return EpipolarPrior(invert_pose(T_tgt_src), 1.0, 0.0)
    return EpipolarPrior(invert_pose(_UNIT), 0.0, 0.0)
