"""Self-supervised training: one process or many (PyTorch DDP under ``torchrun``).

The :class:`Trainer` takes :class:`sfm_ros.data.datasets.Sequence` objects (from bags, folders,
videos or the renderer) and an :class:`sfm_ros.core.options.Options`, as
:func:`sfm_ros.training.run_setup.set_up_run` prepares them (the options, the automatic size, stride
and augmentation, what ``--resume`` / ``--init`` keep, the decoded inputs), trains until the budget
(:mod:`sfm_ros.training.budget`) ends the run, and writes to ``out_dir``
(:mod:`sfm_ros.training.run_checkpoints`):

* ``model.pt``: the weights to use (evaluation, the node, ``--init``): during the run the
  power-function moving average of the training weights over the last ``train.average_sigma_rel``
  share of the run (:mod:`sfm_ros.training.weight_average`; the last weights when it is 0); at its
  end (its budget or ``train.epochs``; not Ctrl-C) the depth network's average or last weights,
  whichever explains the held-out windows better, and the pose network's average
  (:mod:`sfm_ros.training.weights_choice`: the depth judged against the tracked corners' motion,
  no labels, no pose network; the average when there are no validation windows). The lowest
  validation loss ranked the models backwards and is not used (BENCHMARKS.md, "The file a run hands over");
* ``last.pt``: the last weights with the optimiser, the average and the RNG states (``--resume``),
  written with ``model.pt`` every ``ckpt_every`` steps, at the end of an epoch once ``save_minutes``
  have passed since the last write (and at the first epoch's end), at the run's end and on Ctrl-C;
  both atomically (:mod:`sfm_ros.core.checkpoint`). Not every epoch: the two files of the paper's
  networks are ~660 MB a write (1.4 s in a KITTI run on a 2-core EPYC), and a short recording's
  epochs are short (KITTI's 90 training frames made 73 epochs in 20 minutes: ~9 % of the budget
  spent writing; BENCHMARKS.md, session 22). ``save_writes`` / ``save_seconds`` count the files
  written and their time. The validation loss (logged, stored with the files) is computed at the
  epoch ends that write them (the first, then every ``save_minutes``) and at the run's end, not at
  every epoch's end nor at the ``ckpt_every`` and Ctrl-C writes;
* ``snapshots/step_N.pt`` every ``train.snapshot_every`` steps when set: the raw weights, each a
  checkpoint every tool loads (for learning curves);
* TensorBoard logs under ``out_dir/tb`` (:mod:`sfm_ros.training.tb_logs`).

Distributed runs: started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the
environment) the trainer joins the process group (:mod:`sfm_ros.training.distributed`), wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel`, shards the data with a
:class:`~torch.utils.data.DistributedSampler`; only rank 0 logs and writes files.

``resume`` continues exactly (:mod:`sfm_ros.training.run_state`). The torch RNG state
is restored after the DataLoader iterator of a mid-epoch resume is created (the iterator draws its
worker base seed from it, as the interrupted run's iterator did before the saved state) and before
it at an epoch boundary (where the uninterrupted run's next iterator draws from the saved state).

Ctrl-C (SIGINT) or SIGTERM (:mod:`sfm_ros.training.stop`): the first one lets the current step finish, then ``last.pt``
is written and :class:`TrainingInterrupted` raised (in a distributed run every rank stops after the
same step); a second Ctrl-C interrupts at once (``last.pt`` then holds the last completed step's
counters with whatever the optimiser had done, still a complete file).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from sfm_ros.core.device import forked_rng, resolve_device
from sfm_ros.core.losses import add_epipolar_prior, add_sparse_depth_prior, compute_losses
from sfm_ros.core.model import SfMModel
from sfm_ros.core.optim import adam, prefer_fused
from sfm_ros.core.options import Options
from sfm_ros.data.datasets import Sequence, WindowDataset, collate
from sfm_ros.training.budget import budget_reached, extend_flags, total_steps
from sfm_ros.training.lr_schedule import budget_progress, fade_factor, lr_factor
from sfm_ros.training.distributed import choose_amp, distributed_env, rank_device
from sfm_ros.training.errors import TrainingError, TrainingInterrupted
from sfm_ros.training.monitor import CollapseMonitor, batch_stats
from sfm_ros.training.priors import epipolar_priors
from sfm_ros.training.progress import RunProgress
from sfm_ros.training.run_checkpoints import RunCheckpoints
from sfm_ros.training.run_state import SkipSampler, load_init, load_resume, max_abs, restore_rng
from sfm_ros.training.stop import StopRequest
from sfm_ros.training.tb_logs import log_images, log_scalars
from sfm_ros.training.weight_average import PowerEMA
from sfm_ros.training.weights_choice import held_out_items


#: Consecutive skipped steps (non-finite loss or gradient) after which training stops.
MAX_BAD_STEPS = 10
#: A gradient entry above this is treated as non-finite: Adam squares it (float32 overflows near
#: 1.8e19), and an infinite second moment would poison the optimiser state for good.
GRAD_LIMIT = 1e18


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Trainer(RunCheckpoints):
    """One training run (see the module docstring): :meth:`fit` trains, :meth:`close` lets go of the
    TensorBoard writer and the process group."""

    def __init__(
        self,
        opts: Options,
        train_sequences: list[Sequence],
        val_sequences: list[Sequence] | None,
        out_dir: str | Path,
        resume: str | Path | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        ckpt_every: int = 1000,
        save_minutes: float = 2.0,
        log=None,
        init: str | Path | None = None,
        checkpoint_extra: dict | None = None,
    ):
        """``resume``: continue a training checkpoint exactly. ``init``: start from a checkpoint's
        weights only (any sfm_ros checkpoint of the same architecture, e.g. the shipped model or
        one written by :mod:`sfm_ros.training.adapt`), with a fresh optimiser and counters.
        ``checkpoint_extra``: stored under ``extra`` in every checkpoint written (e.g. the inputs).
        ``save_minutes``: at an epoch's end the files are written only when this many minutes have
        passed since the last write (0: every epoch; ``ckpt_every`` steps, the first epoch, the
        run's end and Ctrl-C always write); the validation loss is computed at the epoch ends that
        write (and at the run's end), not at every epoch's: 0.6 s an epoch of 64 steps on 7-Scenes,
        2 % of the budget."""
        if resume and init:
            raise ValueError("resume and init exclude each other: resume continues a run, init starts a new one")
        if not (math.isfinite(save_minutes) and save_minutes >= 0):
            raise ValueError(f"save_minutes must be a finite number >= 0, got {save_minutes!r}")
        self.opts = opts
        self.log = log or (lambda msg: print(msg, flush=True))
        self.out_dir = Path(out_dir)
        self.rank, self.world, self.local_rank = distributed_env()
        self.distributed = self.world > 1
        self.is_main = self.rank == 0
        self.ckpt_every = ckpt_every
        self.save_minutes = float(save_minutes)
        self.save_writes, self.save_seconds = 0, 0.0  # checkpoint files written and the time it took
        self._saved_at: float | None = None  # time.monotonic() of the last save_run of this process
        t = opts.train
        device = resolve_device(t.device)
        device, backend = rank_device(device, self.world, self.local_rank)
        self.device = device
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend=backend)
        self.amp = choose_amp(opts, device, is_main=self.is_main, distributed=self.distributed, log=self.log)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None

        torch.manual_seed(t.seed)  # identical initial weights on every rank (DDP also broadcasts)
        self.model = SfMModel(opts.model, output_exp=opts.loss.exp_weight > 0).to(device)
        self.source_depth = opts.loss.needs_source_depth
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device.index] if device.type == "cuda" else None)
            if self.distributed else self.model)
        self.optimizer = adam(self.model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
        t0 = time.perf_counter()
        self.train_set = WindowDataset(train_sequences, opts.model.seq_len, opts.data.stride,
                                       augment=opts.data.augment, seed=t.seed, flip=opts.data.flip,
                                       turn_deg=opts.data.turn_deg, turn_step_deg=opts.data.turn_step_deg,
                                       turn_pose_only=opts.data.turn_pose_only)
        if opts.loss.needs_pair_priors:
            self.train_set.priors = epipolar_priors(train_sequences, self.train_set.items, opts.model.seq_len)
        if self.train_set.priors is not None and self.is_main:
            pr = list(self.train_set.priors.values())
            self.log(f"epipolar prior: {len(pr)} frame pairs in {time.perf_counter() - t0:.1f} s; rotation "
                     f"found for {sum(p.w_rot for p in pr):.0f}, direction of travel for "
                     f"{sum(p.w_dir for p in pr):.0f}, corners triangulated for "
                     f"{sum(len(p.depths) > 0 for p in pr)}")
        self.val_set = (WindowDataset(val_sequences, opts.model.seq_len, opts.data.stride)
                        if val_sequences else None)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank,
                                          shuffle=True, seed=t.seed, drop_last=True)
        per_rank = len(self.sampler)
        if per_rank < t.batch_size:
            raise ValueError(f"only {len(self.train_set)} training windows ({per_rank} per process); "
                             f"expected at least train.batch_size={t.batch_size} per process")
        self.steps_per_epoch = per_rank // t.batch_size
        self.epoch, self.step, self.step_in_epoch = 0, 0, 0
        self.last_val: float | None = None  # the validation loss of the last weights, last computed
        self.written: dict[str, int] = {}  # checkpoint name -> step, written by this run
        self.skipped_steps = 0  # optimiser steps skipped (non-finite loss or gradient)
        self.history: list[dict] = []
        self._rng_to_restore = None
        self._deadline: float | None = None  # time.monotonic() at which train.max_minutes ends fit()
        self._fit_start: float | None = None  # time.monotonic() at which fit() began (the time budget's clock)
        self._time_up = False
        self.stop = StopRequest(self._stop_notice)
        self.checkpoint_extra = dict(checkpoint_extra or {})
        if resume:
            r = load_resume(resume, self.model, self.optimizer, self.scaler, opts, self.world, self.steps_per_epoch)
            prefer_fused(self.optimizer)  # a checkpoint written by the plain Adam restores its setting
            self.epoch, self.step, self.step_in_epoch = r.epoch, r.step, r.step_in_epoch
            self.history, self._rng_to_restore = r.history, r.rng
        elif init:  # weights only (architecture checked); optimiser, counters and RNG start afresh
            load_init(init, self.model, opts)
            self.checkpoint_extra.setdefault("init_from", str(init))
        # The average lives on rank 0 only (every rank holds the same weights; rank 0 writes).
        self.average = PowerEMA(self.model, t.average_sigma_rel) \
            if self.is_main and t.average_sigma_rel > 0 else None
        if self.average is not None and resume:
            if r.average is not None and abs(float(r.average.get("sigma_rel", -1)) - t.average_sigma_rel) < 1e-12:
                self.average.load_state_dict(r.average)
            else:  # a checkpoint without it (or with another width): it starts from the resumed weights
                self.average.steps = self.step
                self.log(f"the weight average starts afresh at step {self.step} ({resume} holds none of "
                         f"train.average_sigma_rel={t.average_sigma_rel:g})")
        # the held-out windows that choose model.pt at the run's end (weights_choice), on rank 0
        self.held_out = (held_out_items(val_sequences, self.val_set.items)
                         if self.average is not None and self.val_set is not None else [])
        self.model_choice: dict | None = None  # what chose model.pt at the run's end
        self.writer = None
        if self.is_main and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"))
        self.progress = progress and self.is_main  # a bar on a terminal, else plain lines
        self.run_progress: RunProgress | None = None  # during fit(), on rank 0
        self.monitor = CollapseMonitor(stride=opts.data.stride)

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        return nullcontext() if self.amp is None else torch.autocast(device_type=self.device.type, dtype=self.amp)

    def _forward(self, batch: dict, model, keep_images: bool = False) -> tuple[dict, dict, dict]:
        """``(outputs, losses, images)`` of one batch: the model's outputs, the scalar losses
        (:func:`sfm_ros.core.losses.compute_losses`, plus ``"epipolar"`` and, until it fades out,
        ``"sparse_depth"``) and, with ``keep_images``, the diagnostic images."""
        target = batch["target"].to(self.device, non_blocking=True)
        sources = batch["sources"].to(self.device, non_blocking=True)
        K = batch["K"].to(self.device)
        offsets = self.model.offsets
        src_list = [sources[:, i] for i in range(len(offsets))]
        pose = {}
        if "pose_turn" in batch:  # data.turn_pose_only: the pose network sees the window's turned frames
            ps = batch["pose_sources"].to(self.device, non_blocking=True)
            pose = {"pose_images": (batch["pose_target"].to(self.device, non_blocking=True),
                                    [ps[:, i] for i in range(len(offsets))]),
                    "pose_turn": batch["pose_turn"].to(self.device)}
        with self._autocast():
            outputs = model(target, src_list, source_depth=self.source_depth, **pose)
        losses, images = compute_losses(target, dict(zip(offsets, src_list)), K, outputs, self.opts.loss,
                                        keep_images=keep_images)
        if self.opts.loss.epipolar_weight > 0 and "prior_T" in batch:
            add_epipolar_prior(losses, outputs, batch["prior_T"].to(self.device), batch["prior_w"].to(self.device),
                               offsets, self.opts.loss.epipolar_weight)
        weight = self.sparse_depth_weight() if "prior_pts" in batch else 0.0
        if weight > 0:  # none once faded out
            add_sparse_depth_prior(losses, outputs, batch["prior_pts"].to(self.device),
                                   batch["prior_depth"].to(self.device), weight)
        return outputs, losses, images

    def train_step(self, batch: dict) -> dict:
        self.ddp.train()
        with_images = self.writer is not None and self.opts.train.image_every > 0 and \
            self.step % self.opts.train.image_every == 0
        outputs, losses, images = self._forward(batch, self.ddp, keep_images=with_images)
        loss = losses["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        # [loss finite, no stop requested, time left]: every rank must skip a step together (or
        # DDP's all-reduce would hang), stop after the same step on Ctrl-C and when the time is up.
        # The learning rate's share (lr_schedule) too: the smallest of the ranks', so all step alike.
        time_left = not (self._deadline is not None and time.monotonic() >= self._deadline)
        flags = torch.stack([torch.isfinite(loss.detach()).float(),
                             torch.tensor(0.0 if self.stop.requested else 1.0, device=loss.device),
                             torch.tensor(1.0 if time_left else 0.0, device=loss.device),
                             torch.tensor(self.lr_multiplier(), device=loss.device)])
        if self.distributed:  # on the loss's device: NCCL reduces CUDA tensors only
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        flags = flags.cpu()
        for group in self.optimizer.param_groups:
            group["lr"] = self.opts.train.lr * float(flags[3])
        if flags[1].item() < 1:
            self.stop.agreed = True
        if flags[2].item() < 1:
            self._time_up = True
        if flags[0].item() < 1:
            self.check_weights()  # weights an update made non-finite usually make the next loss so
            return {"loss": float("nan"), "skipped": True, "why": "loss"}
        if self.scaler is not None:  # fp16: the loss scaled, the gradients unscaled before the check
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        # A finite loss can still have a non-finite (or overflowing: Adam squares it) gradient: skip
        # the step (every DDP rank holds the same averaged gradient, so all skip together). With
        # the fp16 loss scaler, a non-finite gradient is its own business (a loss scale too high:
        # it skips the step and lowers the scale, several times at a run's start); a finite one
        # above GRAD_LIMIT is skipped here.
        if not max_abs([q.grad for q in self.model.parameters() if q.grad is not None]) < GRAD_LIMIT \
                and not (self.scaler is not None and self._scaler_found_inf()):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            return {"loss": float(loss.detach()), "skipped": True, "why": "gradient"}
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips a non-finite gradient
            self.scaler.update()
        else:
            self.optimizer.step()
        if (self.step + 1) % max(1, self.opts.train.log_every) == 0:
            self.check_weights(self.step + 1)
        if with_images:
            log_images(self.writer, self.step, batch, outputs, images, self.model.offsets)
        logs = {k: float(v.detach()) for k, v in losses.items()}
        if self.is_main and (self.step + 1) % max(1, self.opts.train.log_every) == 0:
            m = self.opts.model
            logs["health"] = batch_stats(outputs, losses, self.model.offsets, m.min_depth, m.max_depth)
        return logs

    def _scaler_found_inf(self) -> bool:
        """Whether the fp16 loss scaler's unscaling found a non-finite gradient (it then skips the
        step itself). ``max_abs`` bounds by 2-norms, which overflow for finite entries above ~1e19."""
        return any(float(v) > 0 for v in self.scaler._found_inf_per_device(self.optimizer).values())

    def check_weights(self, step: int | None = None) -> None:
        """Raise :class:`TrainingError` when a weight is non-finite (by the update of ``step``,
        default the last one taken). Not after every update (~6 ms a step on a 2-core CPU; Adam's
        update of finite gradients below ``GRAD_LIMIT`` is finite): when a loss turns non-finite,
        every ``train.log_every`` updates and before every write (on every rank, so that DDP ranks
        stop together); nothing of such weights is written."""
        if not max_abs(list(self.model.parameters())) < math.inf:
            raise TrainingError(f"the weights are non-finite by the update of step "
                                f"{self.step if step is None else step} (train.lr={self.opts.train.lr:g}); "
                                f"stopping without writing them; {self.files_report()}")

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean validation loss (the training objective, no augmentation) on this rank's model."""
        if self.val_set is None:
            return None
        loader = DataLoader(self.val_set, batch_size=self.opts.train.batch_size, shuffle=False,
                            num_workers=0, collate_fn=collate)
        self.model.train()  # all 4 scales (no dropout/batch-norm: identical to eval otherwise)
        total, n = 0.0, 0
        with forked_rng(self.device):  # the training's random streams go on untouched
            torch.manual_seed(12345)  # the auto-mask tie-break noise: the same for every validation
            for batch in loader:
                _, losses, _ = self._forward(batch, self.model)
                b = batch["target"].shape[0]
                total += float(losses["loss"]) * b
                n += b
        return total / max(n, 1)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train until ``train.epochs``, ``train.max_steps`` or ``train.max_minutes``.

        Returns a summary dict. Raises :class:`TrainingInterrupted` after Ctrl-C (a final
        ``last.pt`` is written first) and :class:`TrainingError` if the loss stays non-finite.
        """
        t = self.opts.train
        start = time.monotonic()
        self._deadline = start + 60 * t.max_minutes if t.max_minutes else None
        self._fit_start = start
        self._time_up = False
        bad_steps = 0
        ended_by = self.budget_reached()  # a resume of a finished run
        stop = ended_by is not None
        self.run_progress = None
        if self.is_main and not stop:
            self.run_progress = RunProgress(
                self.total_steps(), t.max_minutes, self.step, bar=self.progress and _is_tty(sys.stderr),
                log=self.log, every_steps=t.log_every)
        old_handler = self.stop.install()
        try:
            while not stop and not (t.epochs and self.epoch >= t.epochs):
                self.sampler.set_epoch(self.epoch)
                self.train_set.set_epoch(self.epoch)
                sampler = SkipSampler(self.sampler, self.step_in_epoch * t.batch_size)
                workers = t.num_workers if t.num_workers >= 0 else (2 if self.train_set.augment else 0)
                loader = DataLoader(self.train_set, batch_size=t.batch_size, sampler=sampler,
                                    num_workers=workers, collate_fn=collate, drop_last=True,
                                    pin_memory=self.device.type == "cuda")
                # The iterator draws its worker base seed from the torch RNG. At an epoch boundary
                # the saved state is the one the uninterrupted run created this iterator from:
                # restore it first. In mid-epoch the saved state was taken after the interrupted
                # run's iterator had drawn: restore it after creating ours.
                if self.step_in_epoch == 0:
                    self._restore_rng()
                it = iter(loader)
                self._restore_rng()
                for batch in it:
                    logs = self.train_step(batch)
                    if logs.get("skipped"):
                        # The batch is consumed (step_in_epoch is the position in the epoch's
                        # batch order, which a resume skips), but no optimiser step was taken.
                        self.step_in_epoch += 1
                        self.skipped_steps += 1
                        if self._should_stop():
                            raise KeyboardInterrupt
                        bad_steps += 1
                        if bad_steps == 1:
                            self.log(f"step {self.step + 1}: non-finite {logs['why']}: optimiser step "
                                     f"skipped (training stops after {MAX_BAD_STEPS} in a row)")
                        if bad_steps >= MAX_BAD_STEPS:
                            raise TrainingError(f"the loss or its gradient was non-finite for {bad_steps} "
                                                f"steps in a row (after step {self.step}); stopping; "
                                                f"{self.files_report()}")
                        continue
                    bad_steps = 0
                    self.step += 1
                    self.step_in_epoch += 1
                    if self.writer is not None and (self.step % t.log_every == 0 or self.step == 1):
                        log_scalars(self.writer, self.step, logs, self.optimizer.param_groups[0]["lr"])
                    if self.step % max(1, t.log_every) == 0 or self.step == 1:
                        self.history.append({"step": self.step, "loss": logs["loss"]})
                    if self.average is not None:
                        self.average.update(self.model, self.step)
                    if self.is_main:
                        self._watch(logs, start)
                    if t.snapshot_every and self.step % t.snapshot_every == 0:
                        self.check_weights()
                        self.save_snapshot()
                    if self.ckpt_every and self.step % self.ckpt_every == 0:
                        self.check_weights()
                        self.save_run()
                    if self._should_stop():  # Ctrl-C during this step: stop after it
                        raise KeyboardInterrupt
                    if t.max_steps and self.step >= t.max_steps:
                        ended_by = f"train.max_steps={t.max_steps}"
                    elif self._time_up:  # agreed by every rank in the step's all-reduce
                        ended_by = f"train.max_minutes={t.max_minutes:g}"
                    if ended_by:
                        stop = True
                        break
                epoch_done = self.step_in_epoch >= self.steps_per_epoch
                if epoch_done:
                    self.epoch += 1
                    self.step_in_epoch = 0
                    if t.epochs and self.epoch >= t.epochs and not ended_by:
                        ended_by = f"train.epochs={t.epochs}"
                self.check_weights()  # every rank, at every epoch's end (a write may follow)
                if self.is_main and (ended_by or self._save_due()):  # validated when written
                    val = self._end_of_epoch() if epoch_done or stop else None
                    self.save_run(val_loss=val, final=bool(ended_by))
                self._barrier()
        except KeyboardInterrupt:
            self.stop.ignore(old_handler)  # a further Ctrl-C must not break the final save
            if self.is_main:
                self.save_run(interrupted=True)
            raise TrainingInterrupted(f"interrupted at step {self.step}; wrote {self.out_dir / 'last.pt'} "
                                      f"and {self.out_dir / 'model.pt'}") from None
        finally:
            if self.run_progress is not None:
                self.run_progress.close()
            self.stop.restore(old_handler)
            if self.writer is not None:
                self.writer.flush()
        return {"steps": self.step, "epochs": self.epoch, "last_val": self.last_val,
                "minutes": (time.monotonic() - start) / 60, "history": self.history,
                "skipped_steps": self.skipped_steps, "ended_by": ended_by,
                "save_writes": self.save_writes, "save_seconds": self.save_seconds,
                "model": "model.pt" if self.is_main else None, "model_choice": self.model_choice,
                "depth_note": self.monitor.end_note(self._more_hint(ended_by)) if self.is_main else None}

    def _more_hint(self, ended_by: str | None) -> str:
        """How to train this run longer, by what ended it (``ended_by``, :meth:`fit`'s): the same
        command with ``--resume OUT/last.pt`` (not ``--init``, which excludes it; a run started from
        another checkpoint's ``--resume`` must name this one), which continues for another
        ``--max-minutes`` (a time budget starts again at each start) or to a larger step or epoch
        budget (:func:`extend_flags`, at least 1000 steps more: the 7-Scenes depth took 600-1000 to
        take shape)."""
        t = self.opts.train
        run = f"run the same command (without --init) with --resume {self.out_dir / 'last.pt'}"
        if ended_by and ended_by.startswith("train.max_minutes"):
            return f"{run}: it trains another --max-minutes {t.max_minutes:g}"
        flags = extend_flags(t, self.step, self.epoch, more_steps=1000)
        return f"{run} {' '.join(flags)}" if flags else f"{run} and a larger budget"

    def total_steps(self) -> int:
        """The step at which the step budget ends the run (:func:`sfm_ros.training.budget.total_steps`)."""
        return total_steps(self.opts.train, self.steps_per_epoch)

    def lr_multiplier(self) -> float:
        """The learning rate's multiplier for the next step (:mod:`sfm_ros.training.lr_schedule`): 1 until
        the last ``train.lr_tail`` share of the budget, then linear to 0."""
        return lr_factor(self._budget_progress(), self.opts.train.lr_tail)

    def sparse_depth_weight(self) -> float:
        """The sparse depth prior's weight for the next step: ``loss.sparse_depth_weight`` falling
        linearly to 0 at the ``loss.sparse_depth_until`` share of the budget (:func:`fade_factor`)."""
        lo = self.opts.loss
        return lo.sparse_depth_weight * fade_factor(self._budget_progress(), lo.sparse_depth_until)

    def _budget_progress(self) -> float:
        """Where the run stands against its budget (:func:`budget_progress`: steps, or this process's
        minutes since training began)."""
        elapsed = time.monotonic() - self._fit_start if self._fit_start is not None else 0.0
        return budget_progress(self.step, self.total_steps(), elapsed, self.opts.train.max_minutes)

    def budget_reached(self) -> str | None:
        """Why a (resumed) run has nothing left to do, or None: the saved step or epoch budget."""
        return budget_reached(self.opts.train, self.step, self.epoch)

    def _watch(self, logs: dict, start: float) -> None:
        """Progress (one bar or plain lines, :class:`sfm_ros.training.progress.RunProgress`) and collapse
        warnings, every ``log_every`` steps."""
        every = max(1, self.opts.train.log_every)
        health = logs.get("health")
        self.monitor.update(self.step, logs["loss"], health)
        if self.run_progress is not None:
            self.run_progress.update(self.step, logs["loss"])
        if self.step % every:
            return
        if health and (self.run_progress is None or not self.run_progress.has_bar):
            h = health
            extra = (f"depth median {h['median_depth']:.3g} spread {h['depth_spread']:.3f}, "
                     f"translation/depth {h['translation']:.2e}")
            if "automask_keep" in h:
                extra += f", auto-mask keeps {100 * h['automask_keep']:.0f} %"
            self.log(f"step {self.step} health: {extra}")
        for line in self.monitor.check(self.step):
            self.log(line)

    def _should_stop(self) -> bool:
        # Distributed: only what every rank agreed on in the step's all-reduce (a rank stopping
        # alone would leave the others waiting in the next all-reduce).
        return self.stop.agreed or (not self.distributed and self.stop.requested)

    def _restore_rng(self) -> None:
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None

    def _stop_notice(self, signum: int) -> str | None:
        """The stderr line of the first Ctrl-C / SIGTERM (rank 0 only)."""
        if not self.is_main:
            return None
        return (f"\n{StopRequest.signal_name(signum)}: stopping after step {self.step + 1} and writing "
                f"{self.out_dir / 'last.pt'} (again to stop at once)")

    def _end_of_epoch(self) -> float | None:
        val = self.validate() if self.is_main else None
        if val is not None and self.run_progress is not None:
            self.run_progress.set_validation(val, self.step)
        if val is not None:
            self.last_val = val
            self.history.append({"step": self.step, "val_loss": val})
            if self.writer is not None:
                self.writer.add_scalar("val/loss", val, self.step)
        return val

    def _save_due(self) -> bool:
        """Whether an epoch's end writes the files: every epoch with ``save_minutes`` 0, else the
        first time in this process and then once ``save_minutes`` have passed since the last write."""
        return (self.save_minutes == 0 or self._saved_at is None
                or time.monotonic() - self._saved_at >= 60.0 * self.save_minutes)

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

