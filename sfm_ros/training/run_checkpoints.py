"""The files a training run writes into its folder, for :class:`sfm_ros.training.trainer.Trainer`:
``last.pt`` (the training state, for ``--resume``), ``model.pt`` (the weights to use: the weight
average, or at the run's end the depth network's last weights where they explain the held-out windows
better, with the averaged pose network) and ``snapshots/step_N.pt``. Every write is atomic
(:mod:`sfm_ros.core.checkpoint`), only from finite weights and optimiser state, and only on rank 0;
a refused or failed write raises :class:`~sfm_ros.training.errors.TrainingError` naming the
checkpoints this run wrote, the last good ones.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from sfm_ros.core.checkpoint import save_checkpoint, save_weights, split_model_state
from sfm_ros.training.errors import TrainingError
from sfm_ros.training.run_state import files_report, max_abs, rng_state, state_finite

__all__ = ["RunCheckpoints"]


class RunCheckpoints:
    """Checkpoint writing, mixed into the trainer. It reads the trainer's ``is_main``, ``out_dir``,
    ``model`` (unwrapped), ``log``, ``optimizer``, ``scaler``, ``average``, ``held_out``
    (the items :func:`~sfm_ros.training.weights_choice.choose_weights` scores), ``device``, ``opts``,
    ``epoch``, ``step``,
    ``step_in_epoch``, ``history``, ``world`` and ``checkpoint_extra`` (stored under ``extra``),
    and records what it wrote in ``written`` (name -> step), the final choice of ``model.pt`` in
    ``model_choice``, the time of the last :meth:`save_run` in ``_saved_at`` and the files written
    and their time in ``save_writes`` and ``save_seconds``."""

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

    def save_run(self, final: bool = False, **extra) -> None:
        """Write ``model.pt`` (the weights to use) and ``last.pt`` (the training state), atomically,
        only from finite weights (:class:`TrainingError` otherwise, or when a write fails).
        ``final`` (the run's end by its budget or ``train.epochs``; not Ctrl-C, which should be
        quick): ``model.pt``'s depth network is the average's or the last weights', whichever explains
        the held-out windows better (:mod:`sfm_ros.training.weights_choice`; the choice in
        ``model_choice``), its pose network always the average's; otherwise, and without held-out
        windows, the average."""
        if not self.is_main:
            return
        self._saved_at = time.monotonic()
        self.save("last.pt", **extra)
        use_last = False
        if self.average is not None and final and self.held_out:
            use_last = self._choose_weights() == "last"
        if self.average is not None:
            depth, pose = split_model_state(self.average.averaged_state())
            what = (f"power-function moving average of the training weights, sigma_rel "
                    f"{self.average.sigma_rel:g} (the last {100 * self.average.sigma_rel:.0f} % of the run)")
            if use_last:  # the depth network's last weights; the pose network stays averaged
                depth = self.model.depth_net.state_dict()
                what = (f"the depth network's last training weights (they explain the held-out windows better "
                        f"than the weight average) with the pose network's {what}")
        else:
            depth, pose = self.model.depth_net.state_dict(), self.model.pose_net.state_dict()
            what = "the last training weights (train.average_sigma_rel=0)"
        if not max_abs([v for v in (*depth.values(), *pose.values()) if v.is_floating_point()]) < math.inf:
            raise TrainingError(f"not writing model.pt at step {self.step}: the weights are not finite; "
                                f"{self.files_report()}")
        choice = {"model_choice": self.model_choice} if final and self.model_choice else {}
        self._write("model.pt", lambda p: save_weights(
            p, self.opts, depth, pose, epoch=self.epoch, step=self.step,
            extra={**self.checkpoint_extra, "weights": what, **choice}))

    def _choose_weights(self) -> str:
        """``average`` or ``last`` by the held-out geometric depth error
        (:func:`sfm_ros.training.weights_choice.choose_weights`); recorded in ``model_choice``."""
        import copy

        from sfm_ros.training.weights_choice import choose_weights

        model = self.model
        averaged = copy.deepcopy(model)
        averaged.load_state_dict(self.average.averaged_state())
        was_training = model.training
        try:
            name, scores = choose_weights({"average": averaged, "last": model}, self.held_out, self.device)
        except (RuntimeError, ValueError) as exc:  # out of memory, a warp that failed: the average stays
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.log(f"model.pt: the held-out windows could not be scored ({first[:200]}): the weight average")
            name, scores = "average", {"average": math.nan, "last": math.nan}
        finally:
            model.train(was_training)
        self.model_choice = {"weights": name, "held_out_error": scores, "windows": len(self.held_out),
                             "step": self.step}
        return name

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
        start = time.perf_counter()
        try:
            write(path)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise TrainingError(f"could not write {path} at step {self.step} ({reason}); the previous "
                                f"{name} is intact; {self.files_report()}") from None
        self.save_writes += 1
        self.save_seconds += time.perf_counter() - start
        if record:
            self.written[name] = self.step

    def files_report(self) -> str:
        """Which checkpoints this run wrote (the last good ones) and which it did not."""
        return files_report(self.out_dir, self.written)
