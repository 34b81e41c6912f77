"""A training run's folder (``sfm_train --out``): checked writable before any input is decoded,
held by one run at a time (:class:`OutLock`), never taken over from an earlier run unless asked,
cleared of the temporary files a killed save left, and the line that says which file to use.
ROS-free, torch-free.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from sfm_ros.training.errors import SetupError

__all__ = ["nearest_existing", "check_writable", "LOCK_NAME", "OutLock", "refuse_previous_run",
           "clean_stale_temp_files", "claim", "use_line"]


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (where a folder to be created would go)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(out: Path, flag: str = "--out", name: str | None = None) -> None:
    """``--out`` (or ``flag``'s folder ``out``, given as ``name``) must take files before any input
    is decoded or any step taken: a temporary file is created and removed in it (in its nearest
    existing parent when it does not exist yet). Raises :class:`SetupError`."""
    probe = nearest_existing(out)
    given = f"{flag} {name if name is not None else out}"
    if not probe.is_dir():
        raise SetupError(f"{given}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sfm_train_write_check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise SetupError(f"{given} is not writable ({exc.strerror or exc}); expected a folder where "
                         f"checkpoints can be written") from None


LOCK_NAME = ".sfm_train.lock"


class OutLock:
    """An exclusive lock on a run folder (``OUT/.sfm_train.lock``, ``flock``): one ``sfm_train``
    writes to a folder at a time. The kernel releases it when the process ends, however it ends
    (kill -9 included), so a stale lock file never blocks a later run. Raises :class:`SetupError`
    when another process holds it."""

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
            raise SetupError(f"--out {out}: another sfm_train (pid {holder}) is writing to this folder; wait for "
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


def refuse_previous_run(out: Path) -> None:
    """A new run never replaces another run's ``last.pt``: :class:`SetupError` when ``out`` holds
    one (the caller skips this for ``--resume`` and ``--overwrite``)."""
    if (out / "last.pt").exists():
        raise SetupError(f"{out / 'last.pt'} exists: pass --resume to continue that run, --overwrite "
                         f"to start afresh, or another --out")


def clean_stale_temp_files(out: Path) -> None:
    """Temporary files a killed save left behind (atomic writes never leave a partial target); any
    age: the run holds the folder's lock (:class:`OutLock`), so no save of another run is under way."""
    from sfm_ros.core.checkpoint import remove_stale_temp_files

    for name in ("last.pt", "model.pt", "best.pt", "snapshots/step_*.pt"):
        remove_stale_temp_files(out / name, min_age_s=0.0)


def claim(out: Path, new_run: bool) -> OutLock:
    """Take ``out`` for this run just before training: lock it (:class:`OutLock`), check again
    under the lock that no other run wrote a ``last.pt`` meanwhile when ``new_run`` (neither
    ``--resume`` nor ``--overwrite``), and remove stale temporary files. Returns the lock, to be
    released when the run ends; raises :class:`SetupError` (the lock released)."""
    lock = OutLock(out)
    if new_run:
        try:
            refuse_previous_run(out)
        except SetupError:
            lock.release()
            raise
    clean_stale_temp_files(out)
    return lock


def use_line(out: Path, sigma_rel: float, choice: dict | None = None) -> str:
    """The run's last line: which file to use and why; ``choice``: how ``model.pt`` was chosen at the
    run's end (the trainer's ``model_choice``, or :func:`sfm_ros.training.weights_choice.stored_choice`
    for a finished run resumed), None where nothing was compared."""
    if not (out / "model.pt").is_file():
        return f"no checkpoint in {out}"
    avg = f"the weights averaged over the last {100 * sigma_rel:.0f} % of the run (train.average_sigma_rel)"
    if sigma_rel <= 0:
        why = "the last weights (train.average_sigma_rel=0)"
    elif not choice:
        why = f"{avg}; not compared with the last weights (no held-out windows, or the run was interrupted)"
    else:
        err, n = choice.get("held_out_error", {}), choice.get("windows", 0)
        a, b = float(err.get("average", math.nan)), float(err.get("last", math.nan))
        if choice.get("weights") == "last":
            why = (f"the depth network's last weights, which explain the {n} held-out windows better than {avg} "
                   f"(grey error {b:.4f} against {a:.4f}), with the pose network averaged (steadier: no "
                   f"label-free score ranks pose networks)")
        elif math.isfinite(a) and math.isfinite(b):
            why = (f"{avg}: its depth explains the {n} held-out windows at least as well as the last weights' "
                   f"(grey error {a:.4f} against {b:.4f})")
        else:
            why = f"{avg}; the {n} held-out windows could not judge it against the last weights"
    return (f"use {out / 'model.pt'}: {why}; {out / 'last.pt'} holds the training state for --resume "
            f"(sfm_eval --checkpoint, the node's checkpoint:=, sfm_train --init all take model.pt)")
