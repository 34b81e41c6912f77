"""The ways a training run ends early, each with its own exit code in ``sfm_train``:
:class:`SetupError` (2: the run cannot be set up as asked), :class:`TrainingError` (1: training
cannot go on) and :class:`TrainingInterrupted` (130: Ctrl-C or SIGTERM, the last state written).
"""
from __future__ import annotations

__all__ = ["SetupError", "TrainingError", "TrainingInterrupted"]


class SetupError(ValueError):
    """A run cannot be set up as asked (inputs, options, budget, run folder): one line naming what
    and what was expected, with ``sfm_train``'s flags where the user gave one. Raised before any
    training step; nothing is written."""


class TrainingError(RuntimeError):
    """Training cannot go on (the loss or its gradient stayed non-finite, an update made the weights
    non-finite, a checkpoint could not be written); the message says which checkpoints this run
    wrote, and no checkpoint is ever written from non-finite weights or optimiser state."""


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the final checkpoint is written."""
