"""The run folder and the run's record for ``sfm_train``: the writable check, stale temporary
files, the training budget, the inputs stored in every checkpoint (so that ``--resume --out DIR``
needs no inputs) and the checkpoints a run can truthfully name. ROS-free, torch-free.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from sfm_ros.cli.common import UsageError

__all__ = ["check_writable", "nearest_existing", "OutLock", "clean_stale_temp_files", "check_budget", "apply_given_budget", "BUDGET_KEYS",
           "INPUT_FIELDS", "PATH_FIELDS",
           "has_inputs", "inputs_record", "restore_inputs", "describe_inputs", "budget_text", "use_line", "extend_hint"]

#: The command-line fields that say what the run trained on (stored under ``extra["inputs"]``).
INPUT_FIELDS = ("bag", "topic", "camera_info_topic", "images", "pattern", "fps", "kitti", "kitti_camera",
                "video", "synthetic", "synthetic_frames", "max_frames", "calib", "fx", "fy", "cx", "cy",
                "rectify_alpha")
#: Those of them that are paths (stored absolute, so that a resume works from any folder).
PATH_FIELDS = ("bag", "images", "kitti", "video", "calib")


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (where a folder to be created would go)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(out: Path, flag: str = "--out", name: str | None = None) -> None:
    """``--out`` (or ``flag``'s folder ``out``, given as ``name``) must take files before any input
    is decoded or any step taken: a temporary file is created and removed in it (in its nearest
    existing parent when it does not exist yet)."""
    probe = nearest_existing(out)
    given = f"{flag} {name if name is not None else out}"
    if not probe.is_dir():
        raise UsageError(f"{given}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sfm_train_write_check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"{given} is not writable ({exc.strerror or exc}); expected a folder where "
                         f"checkpoints can be written") from None


LOCK_NAME = ".sfm_train.lock"


class OutLock:
    """An exclusive lock on a run folder (``OUT/.sfm_train.lock``, ``flock``): one ``sfm_train``
    writes to a folder at a time. The kernel releases it when the process ends, however it ends
    (kill -9 included), so a stale lock file never blocks a later run."""

    def __init__(self, out: Path):
        import fcntl

        out.mkdir(parents=True, exist_ok=True)
        self.path = out / LOCK_NAME
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "?"
            self._fh.close()
            raise UsageError(f"--out {out}: another sfm_train (pid {holder}) is writing to this folder; wait for "
                             f"it to finish or give another --out") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would let a waiting run lock a file that
        no longer has a name while a third locks a new one)."""
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


def clean_stale_temp_files(out: Path) -> None:
    """Temporary files a killed save left behind (atomic writes never leave a partial target); any
    age: the run holds the folder's lock (:class:`OutLock`), so no save of another run is under way."""
    from sfm_ros.core.checkpoint import remove_stale_temp_files

    for name in ("last.pt", "model.pt", "best.pt", "snapshots/step_*.pt"):
        remove_stale_temp_files(out / name, min_age_s=0.0)


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
    ``train.log_every >= 1``. Raises :class:`UsageError` naming the option, its flag and what was
    expected."""
    t = opts.train
    if t.epochs < 0:
        raise UsageError(f"train.epochs (--epochs) must be >= 0 (0 = no limit), got {t.epochs}")
    if t.max_steps < 0:
        raise UsageError(f"train.max_steps (--max-steps) must be >= 0 (0 = no limit), got {t.max_steps}")
    if not (math.isfinite(t.max_minutes) and t.max_minutes >= 0):
        raise UsageError(f"train.max_minutes (--max-minutes) must be a finite number >= 0 (0 = no limit), "
                         f"got {t.max_minutes}")
    if not (t.epochs or t.max_steps or t.max_minutes):
        raise UsageError("no budget: train.epochs, train.max_steps and train.max_minutes are all 0 (no limit); "
                         "expected one of --epochs, --max-steps or --max-minutes > 0")
    if t.log_every < 1:
        raise UsageError(f"train.log_every must be >= 1, got {t.log_every}")
    if not 0 <= t.average_sigma_rel < 0.2886:
        raise UsageError(f"train.average_sigma_rel must be in [0, 0.2886) (0 = the last weights; 0.2886 is "
                         f"the uniform average of the whole run), got {t.average_sigma_rel}")
    if t.snapshot_every < 0:
        raise UsageError(f"train.snapshot_every must be >= 0 (0 = no snapshots), got {t.snapshot_every}")


def has_inputs(args: argparse.Namespace) -> bool:
    """Whether the command line names any input."""
    return bool(args.bag or args.images or args.kitti or args.video or args.synthetic)


def inputs_record(args: argparse.Namespace) -> dict:
    """The inputs of this run as stored in its checkpoints: :data:`INPUT_FIELDS`, paths absolute."""
    rec = {}
    for name in INPUT_FIELDS:
        value = getattr(args, name)
        if name in PATH_FIELDS and value:
            value = [str(Path(v).resolve()) for v in value] if isinstance(value, list) else str(Path(value).resolve())
        rec[name] = list(value) if isinstance(value, list) else value
    return rec


def restore_inputs(args: argparse.Namespace, record: dict | None, source: Path, defaults: dict) -> None:
    """Fill ``args`` with the inputs stored in checkpoint ``source`` (``--resume`` without inputs):
    every field of :data:`INPUT_FIELDS` still at its parser default (``defaults``) takes the stored value.

    Raises :class:`UsageError` when the checkpoint stores none (written before inputs were stored,
    or not by ``sfm_train``)."""
    if not isinstance(record, dict) or not any(record.get(k) for k in ("bag", "images", "kitti", "video",
                                                                       "synthetic")):
        raise UsageError(f"no input: give --bag, --images, --kitti, --video or --synthetic (checkpoint "
                         f"{source} stores no inputs to reuse)")
    for name in INPUT_FIELDS:
        if name in record and getattr(args, name) == defaults.get(name):
            setattr(args, name, record[name])


def describe_inputs(args: argparse.Namespace) -> str:
    """``--bag /data/a.bag --synthetic 2`` for a log line."""
    parts = []
    for name in ("bag", "images", "kitti", "video"):
        parts += [f"--{name} {v}" for v in getattr(args, name)]
    if args.synthetic:
        parts.append(f"--synthetic {args.synthetic}")
    return " ".join(parts)


def budget_text(ended_by: str) -> str:
    """``train.max_minutes=12`` as the user gave it: ``--max-minutes 12 (train.max_minutes)``."""
    key, _, value = ended_by.partition("=")
    flag = BUDGET_KEYS.get(key)
    return f"{flag} {value} ({key})" if flag else ended_by


def use_line(out: Path, sigma_rel: float) -> str:
    """The run's last line: which file to use and why."""
    if not (out / "model.pt").is_file():
        return f"no checkpoint in {out}"
    why = (f"the weights averaged over the last {100 * sigma_rel:.0f} % of the run (train.average_sigma_rel; "
           f"on unseen frames better depth than the last weights)" if sigma_rel > 0
           else "the last weights (train.average_sigma_rel=0)")
    return (f"use {out / 'model.pt'}: {why}; {out / 'last.pt'} holds the training state for --resume "
            f"(sfm_eval --checkpoint, the node's checkpoint:=, sfm_train --init all take model.pt)")


def extend_hint(train_opts, step: int, epoch: int) -> str:
    """The flags that extend a finished run's budget (``train_opts``: ``Options.train``), e.g.
    ``--max-steps 40 with --resume``."""
    t = train_opts
    hints = []
    if t.max_steps and step >= t.max_steps:
        hints.append(f"--max-steps {max(2 * t.max_steps, step + 1)}")
    if t.epochs and epoch >= t.epochs:
        hints.append(f"--epochs {epoch + max(1, t.epochs)}")
    return " ".join(hints or ["a larger --max-steps or --epochs"]) + " with --resume"
