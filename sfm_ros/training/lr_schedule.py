"""The learning rate over a run's budget: constant (the paper's Adam at 2e-4), then, with
``train.lr_tail`` > 0, falling linearly to zero over the last ``lr_tail`` share of the budget, so
that the run ends on weights that have settled instead of on one draw of a noisy walk (Li et al.,
"Budgeted training", ICLR 2020: of the schedules they compared at a fixed budget, a linear decay to
zero at the budget's end did best). Measured here on the plain commands it did not pay (BENCHMARKS.md,
session 16): the default is 0, the paper's constant rate. A loss weight may fade the same way
(:func:`fade_factor`: the sparse depth prior's ``loss.sparse_depth_until``). ROS-free, torch-free.

Where a run stands against its budget (:func:`budget_progress`) is the larger of the share of its
step budget done (``train.epochs``/``train.max_steps``: the step counter, which ``--resume`` keeps)
and the share of its time budget spent (``train.max_minutes``: this process's wall clock since
training began, the clock that ends the run). A run with only ``--epochs`` decays over its epochs;
one with only ``--max-minutes`` over its minutes. Each step takes ``train.lr`` times the factor, so a
``--resume`` with another ``train.lr`` takes it (the optimiser's saved rate does not override it).
"""
from __future__ import annotations

__all__ = ["budget_progress", "fade_factor", "lr_factor"]


def budget_progress(step: int, total_steps: int, elapsed_s: float, max_minutes: float) -> float:
    """Share of the budget done, in ``[0, 1]``: the larger of ``step / total_steps`` (when
    ``total_steps`` > 0) and ``elapsed_s / (60 * max_minutes)`` (when ``max_minutes`` > 0); 0 when
    neither budget is set."""
    shares = [0.0]
    if total_steps > 0:
        shares.append(step / total_steps)
    if max_minutes > 0:
        shares.append(elapsed_s / (60.0 * max_minutes))
    return min(1.0, max(shares))


def lr_factor(progress: float, tail: float) -> float:
    """The learning rate's multiplier at ``progress`` (:func:`budget_progress`): 1 before the last
    ``tail`` share of the budget, then linear to 0 at its end; always 1 when ``tail`` is 0.

    Raises ``ValueError`` for a ``tail`` outside ``[0, 1]``."""
    if not 0.0 <= tail <= 1.0:
        raise ValueError(f"train.lr_tail must be in [0, 1] (0 = a constant learning rate), got {tail}")
    if tail == 0.0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - progress) / tail))


def fade_factor(progress: float, until: float) -> float:
    """A loss weight's multiplier at ``progress`` (:func:`budget_progress`): from 1 at the start
    linearly to 0 at ``until`` (a share of the budget, in ``(0, 1]``; 1: over the whole budget),
    0 after it (``loss.sparse_depth_until``).

    Raises ``ValueError`` for an ``until`` outside ``(0, 1]``."""
    if not 0.0 < until <= 1.0:
        raise ValueError(f"loss.sparse_depth_until must be in (0, 1], got {until}")
    return max(0.0, 1.0 - progress / until)
