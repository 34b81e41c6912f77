"""The files a training run writes into its folder, for :class:`sfm_ros.training.trainer.Trainer`:
``last.pt`` (the training state, for ``--resume``), ``model.pt`` (the weights to use: the weight
average, or the last weights) and ``snapshots/step_N.pt``. Every write is atomic
(:mod:`sfm_ros.core.checkpoint`), only from finite weights and optimiser state, and only on rank 0;
a refused or failed write raises :class:`~sfm_ros.training.errors.TrainingError` naming the
checkpoints this run wrote, the last good ones.
"""
from __future__ import annotations

import math
from pathlib import Path

from sfm_ros.core.checkpoint import save_checkpoint, save_weights, split_model_state
from sfm_ros.training.errors import TrainingError
from sfm_ros.training.run_state import files_report, max_abs, rng_state, state_finite

__all__ = ["RunCheckpoints"]


class RunCheckpoints:
    """Checkpoint writing, mixed into the trainer. It reads the trainer's ``is_main``, ``out_dir``,
    ``model``, ``optimizer``, ``scaler``, ``average``, ``opts``, ``epoch``, ``step``,
    ``step_in_epoch``, ``history``, ``world`` and ``checkpoint_extra`` (stored under ``extra``),
    and records what it wrote in ``written`` (name -> step)."""

    def save(self, name: str, **extra) -> Path | None:
        """Write checkpoint ``name`` atomically, only from finite weights and optimiser state.

        Raises :class:`TrainingError` (naming what this run wrote) when the state is not finite
        or the write fails (a full disk, an I/O error: the previous file stays intact, the
        partial temporary file is removed)."""
        if not self.is_main:
            return None
        path = self.out_dir / name
        if not state_finite(self.model, self.optimizer):
            raise TrainingError(f"not writing {name} at step {self.step}: the weights or the optimiser "
                                f"state are not finite; {self.files_report()}")
        self._write(name, lambda p: save_checkpoint(
            p, self.model, self.opts, epoch=self.epoch, step=self.step, step_in_epoch=self.step_in_epoch,
            optimizer=self.optimizer.state_dict(), rng=rng_state(), history=self.history, world_size=self.world,
            extra={**self.checkpoint_extra, **extra},
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
            **({"average": self.average.state_dict()} if self.average is not None else {})))
        return path

    def save_run(self, **extra) -> None:
        """Write ``model.pt`` (the weights to use) and ``last.pt`` (the training state), atomically,
        only from finite weights (:class:`TrainingError` otherwise, or when a write fails)."""
        if not self.is_main:
            return
        self.save("last.pt", **extra)
        if self.average is not None:
            depth, pose = split_model_state(self.average.averaged_state())
            what = (f"power-function moving average of the training weights, sigma_rel "
                    f"{self.average.sigma_rel:g} (the last {100 * self.average.sigma_rel:.0f} % of the run)")
        else:
            depth, pose = self.model.depth_net.state_dict(), self.model.pose_net.state_dict()
            what = "the last training weights (train.average_sigma_rel=0)"
        if not max_abs([v for v in (*depth.values(), *pose.values()) if v.is_floating_point()]) < math.inf:
            raise TrainingError(f"not writing model.pt at step {self.step}: the weights are not finite; "
                                f"{self.files_report()}")
        self._write("model.pt", lambda p: save_weights(
            p, self.opts, depth, pose, epoch=self.epoch, step=self.step,
            extra={**self.checkpoint_extra, "weights": what}))

    def save_snapshot(self) -> None:
        """The raw weights of this step to ``snapshots/step_N.pt`` (a checkpoint every tool loads)."""
        if self.is_main:
            name = f"snapshots/step_{self.step:06d}.pt"
            self._write(name, lambda p: save_checkpoint(p, self.model, self.opts, step=self.step, epoch=self.epoch),
                        record=False)

    def _write(self, name: str, write, record: bool = True) -> None:
        """``write(path)`` of ``out_dir / name``; a failed write (a full disk, an I/O error:
        :func:`sfm_ros.core.checkpoint.atomic_torch_save` removed its temporary file) raises
        :class:`TrainingError` naming what this run wrote."""
        path = self.out_dir / name
        try:
            write(path)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise TrainingError(f"could not write {path} at step {self.step} ({reason}); the previous "
                                f"{name} is intact; {self.files_report()}") from None
        if record:
            self.written[name] = self.step

    def files_report(self) -> str:
        """Which checkpoints this run wrote (the last good ones) and which it did not."""
        return files_report(self.out_dir, self.written)
