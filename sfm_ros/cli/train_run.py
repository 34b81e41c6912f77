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

__all__ = ["check_writable", "clean_stale_temp_files", "check_budget", "INPUT_FIELDS", "PATH_FIELDS",
           "has_inputs", "inputs_record", "restore_inputs", "describe_inputs", "existing_checkpoints", "extend_hint"]

#: The command-line fields that say what the run trained on (stored under ``extra["inputs"]``).
INPUT_FIELDS = ("bag", "topic", "camera_info_topic", "images", "pattern", "fps", "kitti", "kitti_camera",
                "video", "synthetic", "synthetic_frames", "max_frames", "calib", "fx", "fy", "cx", "cy",
                "rectify_alpha")
#: Those of them that are paths (stored absolute, so that a resume works from any folder).
PATH_FIELDS = ("bag", "images", "kitti", "video", "calib")


def check_writable(out: Path) -> None:
    """``--out`` must take files before any input is decoded or any step taken: a temporary file is
    created and removed in it (in its nearest existing parent when it does not exist yet)."""
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sfm_train_write_check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror or exc}); expected a folder where "
                         f"checkpoints can be written") from None


def clean_stale_temp_files(out: Path) -> None:
    """Temporary files a killed save left behind (atomic writes never leave a partial target)."""
    for pat in (".last.pt.*.tmp", ".best.pt.*.tmp"):
        for f in out.glob(pat):
            try:
                f.unlink()
            except OSError:
                pass


def check_budget(opts) -> None:
    """The training budget must be usable: ``train.epochs >= 1``, ``train.max_steps >= 0`` and
    ``train.max_minutes`` a finite number >= 0 (0 = no limit for both), ``train.log_every >= 1``.
    Raises :class:`UsageError` naming the option, its flag and what was expected."""
    t = opts.train
    if t.epochs < 1:
        raise UsageError(f"train.epochs (--epochs) must be >= 1, got {t.epochs}")
    if t.max_steps < 0:
        raise UsageError(f"train.max_steps (--max-steps) must be >= 0 (0 = no limit), got {t.max_steps}")
    if not (math.isfinite(t.max_minutes) and t.max_minutes >= 0):
        raise UsageError(f"train.max_minutes (--max-minutes) must be a finite number >= 0 (0 = no limit), "
                         f"got {t.max_minutes}")
    if t.log_every < 1:
        raise UsageError(f"train.log_every must be >= 1, got {t.log_every}")


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


def existing_checkpoints(out: Path) -> list[str]:
    """The checkpoints that exist in ``out`` now (``last.pt``, ``best.pt``): never claim others."""
    return [n for n in ("last.pt", "best.pt") if (out / n).is_file()]


def extend_hint(train_opts, step: int, epoch: int) -> str:
    """The flags that extend a finished run's budget (``train_opts``: ``Options.train``), e.g.
    ``--max-steps 40 with --resume``."""
    t = train_opts
    hints = []
    if t.max_steps and step >= t.max_steps:
        hints.append(f"--max-steps {max(2 * t.max_steps, step + 1)}")
    if epoch >= t.epochs:
        hints.append(f"--epochs {epoch + max(1, t.epochs)}")
    return " ".join(hints or ["a larger --max-steps or --epochs"]) + " with --resume"
