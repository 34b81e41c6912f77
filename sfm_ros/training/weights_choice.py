"""Which weights a run hands over in ``model.pt``: for the depth network the weight average or the
last weights, whichever explains the run's held-out windows better, judged without labels and
without the pose network; for the pose network the average.

While a run goes on, ``model.pt`` holds the power-function average of the weights
(:mod:`sfm_ros.training.weight_average`). When it ends by its budget or ``train.epochs`` (not Ctrl-C, which should be quick), both
candidates are scored on the validation windows (``data.val_fraction``: the last frames of every
recording, never trained on) by :func:`sfm_ros.training.window_scores.geometric_depth_error`: each
held-out target synthesised from its neighbours with the candidate's depth and the motion of the
window's tracked corners (the two-view geometry; the length fitted), the mean grey error at the
best length. The lower one is written. The average is the steadier file on a run that has levelled
off; the last weights are the better one while the learning still climbs when the budget ends (a
slow CPU: on a 2-core EPYC without AVX-512 the 12-minute 7-Scenes command ended at step 699 with the
average at abs rel 0.347 and the last weights at 0.299 on frames it never saw; the held-out error
ranked the six candidates scored there in the abs rel's order but for one near-tie, BENCHMARKS.md). The
validation loss, which needs the pose network, ranked checkpoints backwards and is not used.

The pose network is the average's whichever depth is chosen: no label-free score found here ranks
pose networks (their snippet ATE scatters ±15 % from one snapshot to the next, BENCHMARKS.md,
session 14), and the average smooths that walk. Snippet ATE of the averaged pose network against
the last weights' on frames the runs never saw, every run where both were scored: KITTI 20 minutes
(120-159) 0.0317 / 0.0361 m, 0.0319 / 0.0343 and 0.03286 / 0.03292 (2026-12-05, session 21),
0.0290 / 0.0302 (session 13, the average rebuilt from snapshots), 0.0343 / 0.0349 and 0.0342 /
0.0304 (2026-12-04), 0.0326 / 0.0321 (2026-12-06, session 22): 5 of 7 and 1.6 % lower on average; 7-Scenes 12 minutes (400-499) 0.0681 / 0.0706. The average's scale
lags the last depth's by at most the few per cent the depth moves over the last tenth of a run,
which the node's step-length filter and an evaluation's per-snippet scale absorb.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from sfm_ros.data.datasets import Sequence
from sfm_ros.training.window_scores import geometric_depth_error, window_priors

__all__ = ["MAX_WINDOWS", "held_out_items", "choose_weights", "stored_choice"]

#: held-out windows scored at most (evenly spread): bounds the cost at the run's end to seconds
MAX_WINDOWS = 32


def held_out_items(sequences: list[Sequence], items: list[tuple[int, list[int]]],
                   max_windows: int = MAX_WINDOWS) -> list[tuple]:
    """``(window, K, prior_T, prior_w)`` items of :func:`geometric_depth_error` for up to
    ``max_windows`` of ``items`` ((sequence index, frame indices), as
    :class:`sfm_ros.data.datasets.WindowDataset` lists them), evenly spread; their two-view
    geometry is solved here (:func:`window_priors`, about 5 ms a pair)."""
    if not items:
        return []
    pick = np.unique(np.linspace(0, len(items) - 1, min(max_windows, len(items))).round().astype(int))
    out = []
    for k in pick:
        si, idx = items[k]
        window, K = sequences[si].frames[list(idx)], np.asarray(sequences[si].K, dtype=np.float64)
        prior_T, prior_w = window_priors(window, K)
        out.append((window, K, prior_T, prior_w))
    return out


def choose_weights(candidates: dict[str, torch.nn.Module], items: list[tuple],
                   device: torch.device) -> tuple[str, dict[str, float]]:
    """``(name, scores)``: the candidate (an :class:`~sfm_ros.core.model.SfMModel` by name, the first
    being the default) with the lowest held-out geometric depth error on ``items``, and every
    candidate's error. The first candidate wins a tie, and stays when no score is finite (no held-out
    window, or none whose direction of travel the corners found)."""
    if not candidates:
        raise ValueError("no candidate weights to choose from")
    scores = {name: geometric_depth_error(model, items, device) if items else math.nan
              for name, model in candidates.items()}
    names = list(candidates)
    best = names[0]
    for name in names[1:]:
        if math.isfinite(scores[name]) and (not math.isfinite(scores[best]) or scores[name] < scores[best]):
            best = name
    return best, scores


def stored_choice(path) -> dict | None:
    """How the ``model.pt`` at ``path`` was chosen (the ``model_choice`` its run stored; its
    ``weights`` names the depth network's source, ``"last"`` or ``"average"``: the pose network is
    the average either way), None when it holds none or cannot be read (whatever loads it next says
    why)."""
    from sfm_ros.core.checkpoint import CheckpointError, read_checkpoint

    try:
        return (read_checkpoint(path).get("extra") or {}).get("model_choice")
    except (OSError, CheckpointError):
        return None
