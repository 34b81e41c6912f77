"""A training run's budget: ``train.epochs``, ``train.max_steps`` and ``train.max_minutes`` (0 = no
limit each), whichever ends the run first. A budget the user gives is the budget
(:func:`apply_given_budget`); :func:`check_budget` refuses unusable ones before any input is
decoded; the rest says where a run stands against its budget and how to word it with
``sfm_train``'s flags. ROS-free, torch-free.
"""
from __future__ import annotations

import math

from sfm_ros.training.errors import SetupError

__all__ = ["BUDGET_KEYS", "apply_given_budget", "check_budget", "total_steps", "budget_reached", "budget_text",
           "extend_flags", "extend_hint"]

#: The options that end a run, with their flags.
BUDGET_KEYS = {"train.epochs": "--epochs", "train.max_steps": "--max-steps", "train.max_minutes": "--max-minutes"}


def apply_given_budget(opts, given: set[str]) -> str | None:
    """A budget given means what it says: when ``given`` (the keys set on the command line or in a
    ``--config`` file) names any of :data:`BUDGET_KEYS`, the budgets it does not name are lifted
    (0 = no limit), so that no default or saved value ends the run earlier. Returns the log line
    saying so, or None when no budget was given (the preset's or the checkpoint's then apply)."""
    named = [k for k in BUDGET_KEYS if k in given]
    if not named:
        return None
    lifted = []
    for key in BUDGET_KEYS:
        if key not in named:
            name = key.split(".")[1]
            if getattr(opts.train, name):
                lifted.append(f"{key}={getattr(opts.train, name):g}")
            setattr(opts.train, name, type(getattr(opts.train, name))(0))
    gave = " and ".join(f"{BUDGET_KEYS[k]} {getattr(opts.train, k.split('.')[1]):g}" for k in named)
    return (f"budget: {gave}" + (f" (not limited by the default {', '.join(lifted)}: only the budget you "
                                 f"give ends the run)" if lifted else ""))


def check_budget(opts) -> None:
    """The training budget must be usable: ``train.epochs``, ``train.max_steps`` >= 0 and
    ``train.max_minutes`` a finite number >= 0 (0 = no limit for each), one of them set, and
    ``train.log_every >= 1``. Raises :class:`SetupError` naming the option, its flag and what was
    expected."""
    t = opts.train
    if t.epochs < 0:
        raise SetupError(f"train.epochs (--epochs) must be >= 0 (0 = no limit), got {t.epochs}")
    if t.max_steps < 0:
        raise SetupError(f"train.max_steps (--max-steps) must be >= 0 (0 = no limit), got {t.max_steps}")
    if not (math.isfinite(t.max_minutes) and t.max_minutes >= 0):
        raise SetupError(f"train.max_minutes (--max-minutes) must be a finite number >= 0 (0 = no limit), "
                         f"got {t.max_minutes}")
    if not (t.epochs or t.max_steps or t.max_minutes):
        raise SetupError("no budget: train.epochs, train.max_steps and train.max_minutes are all 0 (no limit); "
                         "expected one of --epochs, --max-steps or --max-minutes > 0")
    if t.log_every < 1:
        raise SetupError(f"train.log_every must be >= 1, got {t.log_every}")
    if not 0 <= t.average_sigma_rel < 0.2886:
        raise SetupError(f"train.average_sigma_rel must be in [0, 0.2886) (0 = the last weights; 0.2886 is "
                         f"the uniform average of the whole run), got {t.average_sigma_rel}")
    if not 0 <= t.lr_tail <= 1:
        raise SetupError(f"train.lr_tail must be in [0, 1] (the last share of the budget over which the learning "
                         f"rate falls to 0; 0 = constant), got {t.lr_tail}")
    if t.snapshot_every < 0:
        raise SetupError(f"train.snapshot_every must be >= 0 (0 = no snapshots), got {t.snapshot_every}")


def total_steps(train_opts, steps_per_epoch: int) -> int:
    """The step at which the step budget ends the run (``train_opts``: ``Options.train``):
    ``train.epochs`` x ``steps_per_epoch``, capped by ``train.max_steps``; 0 when neither limits it
    (``train.max_minutes`` alone)."""
    t = train_opts
    total = t.epochs * steps_per_epoch
    if t.max_steps:
        return min(total, t.max_steps) if total else t.max_steps
    return total


def budget_reached(train_opts, step: int, epoch: int) -> str | None:
    """Why a run at ``step`` with ``epoch`` epochs complete has nothing left to do (a resumed
    finished run), or None: the step or epoch budget of ``train_opts`` (``Options.train``)."""
    t = train_opts
    if t.max_steps and step >= t.max_steps:
        return f"train.max_steps={t.max_steps} reached at step {step}"
    if t.epochs and epoch >= t.epochs:
        return f"train.epochs={t.epochs} complete at step {step}"
    return None


def budget_text(ended_by: str) -> str:
    """``train.max_minutes=12`` as the user gave it: ``--max-minutes 12 (train.max_minutes)``."""
    key, _, value = ended_by.partition("=")
    flag = BUDGET_KEYS.get(key)
    return f"{flag} {value} ({key})" if flag else ended_by


def extend_flags(train_opts, step: int, epoch: int, more_steps: int = 1) -> list[str]:
    """The flags that extend the budgets a run at ``step`` with ``epoch`` epochs complete has reached
    (``train_opts``: ``Options.train``): ``--max-steps`` doubled and at least ``more_steps`` past
    ``step``, ``--epochs`` by as many again; empty when neither is reached (a time budget)."""
    t = train_opts
    flags = []
    if t.max_steps and step >= t.max_steps:
        flags.append(f"--max-steps {max(2 * t.max_steps, step + more_steps)}")
    if t.epochs and epoch >= t.epochs:
        flags.append(f"--epochs {epoch + max(1, t.epochs)}")
    return flags


def extend_hint(train_opts, step: int, epoch: int) -> str:
    """The flags that extend a finished run's budget (``train_opts``: ``Options.train``), e.g.
    ``--max-steps 40 with --resume``."""
    return " ".join(extend_flags(train_opts, step, epoch) or ["a larger --max-steps or --epochs"]) + " with --resume"
