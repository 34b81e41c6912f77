"""Online self-supervised adaptation: a deployed model goes on learning from its own camera.

The training loss needs no labels, so the node can keep learning from the windows it sees. An
:class:`Adapter` holds a copy of the model that learns (the *learner*) and the weights the node
uses (the *accepted* weights), and guards the node against drift:

* **Replay buffer**: recent windows (``seq_len`` frames at the network size) in a bounded FIFO;
  windows without motion are refused by the trainer's static-frame rule
  (:func:`sfm_ros.data.datasets.static_mask`: every source must differ from the target by more than
  ``min_motion`` in mean absolute grey level), so a robot standing still, a black image or a
  featureless wall adds nothing. Every ``holdout_every``-th accepted window goes to a held-out slice
  instead, which is never trained on as a window (its neighbours, offered at stride 1, share
  ``seq_len - 1`` of its frames: the check is of unseen windows, not of unseen frames).
* **Steps**: the ``default`` preset's loss (:func:`sfm_ros.core.losses.compute_losses`; another
  preset's with ``loss_preset``, the checkpoint's own with ``loss_preset=""``: on 7-Scenes the
  shipped model adapted 2.4x further with the default loss than with its own) and the two-view prior of each window's
  pairs (``epipolar_weight``; solved once when the window is added, as the trainer does for its
  pairs; the trainer's sparse depth prior, which fades over a budget, is not used here) on a random
  batch of the buffer, Adam, plus an anchor ``anchor_weight * |w - w0|^2 / |w0|^2`` to the starting weights
  ``w0``. A step whose loss or gradient is not finite is skipped.
* **Updates**: every ``steps_per_update`` steps the learner is a *candidate*; it is scored against
  the accepted weights on the held-out slice (the same loss, a fixed noise seed). It is accepted
  only when its held-out loss is finite and not above the accepted weights' loss, and its relative
  distance from ``w0`` is at most ``max_drift``; otherwise it is rejected and the learner rolls back
  to the accepted weights (optimiser moments cleared).
* **Hand-over**: the node keeps the starting weights until the accepted ones' *depth* is better on
  the held-out windows (re-judged at every update: when it is not, the node goes back to the
  starting weights). The training loss cannot judge that: it falls as soon as the pose network
  adapts, while the depth can get worse for a hundred frames (measured on 7-Scenes: held-out loss
  -40 %, depth abs rel +40 %). The depth is judged alone
  (:func:`sfm_ros.training.window_scores.geometric_depth_error`): each
  held-out target is synthesised from its sources with the depth under test and the motions of
  the window's two-view geometry (tracked corners, not the pose network), the step's length
  fitted; the accepted weights are served when that error is at least ``handover_margin`` below
  the starting weights'.
  :meth:`Adapter.inference_model` returns a fresh eval-mode copy of the weights to serve; the
  caller swaps its reference in one assignment, so inference never sees half-loaded weights and
  never waits for a step.
* **Saved**: :meth:`Adapter.save` writes an ordinary checkpoint (``sfm_node``, ``sfm_eval``,
  ``sfm_export`` and ``sfm_train --init`` read it) with ``adapted_from``, ``frames_seen``,
  ``accepted_updates`` and ``adapt_steps`` recorded.

Convention: windows are ``(seq_len, H, W, 3)`` uint8 RGB at the model's input size, the target in the
middle (as :class:`sfm_ros.data.datasets.WindowDataset`); ``K`` is the (3, 3) intrinsics at that size.
"""
from __future__ import annotations

import copy
import math
import random
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from sfm_ros.core.checkpoint import save_checkpoint
from sfm_ros.core.device import forked_rng
from sfm_ros.core.model import SfMModel
from sfm_ros.core.optim import adam
from sfm_ros.core.options import PRESETS, Options, coerce_option, preset
from sfm_ros.data.datasets import static_mask
from sfm_ros.training.window_scores import geometric_depth_error, window_loss, window_priors

#: The auto-mask tie-break noise seed used when scoring (the trainer's validation uses the same idea).
SCORE_SEED = 12345


@dataclass
class AdaptOptions:
    buffer_windows: int = 64       # replay buffer (training windows, FIFO)
    holdout_windows: int = 12      # held-out slice (FIFO) that scores every candidate
    holdout_every: int = 5         # every k-th accepted window goes to the held-out slice
    min_holdout: int = 2           # no update is judged before the slice holds this many windows
    min_buffer: int = 4            # no step before the buffer holds this many windows
    batch_size: int = 2
    steps_per_update: int = 10     # optimiser steps between candidate evaluations
    lr: float = 1e-4               # measured on 7-Scenes / KITTI 00 (BENCHMARKS.md "Online adaptation")
    anchor_weight: float = 1.0     # weight of |w - w0|^2 / |w0|^2 in the loss
    max_drift: float = 0.2         # largest accepted |w - w0| / |w0|
    min_motion: float = 0.01       # the static-frame rule's threshold (mean abs grey difference, 0-1)
    tolerance: float = 0.0         # accept when candidate <= accepted * (1 + tolerance)
    epipolar_weight: float = 1.0   # the two-view prior (loss.epipolar_weight), solved per window
    loss_preset: str = "default"   # a preset's loss options ("default": measured best); "" = the checkpoint's own
    handover_margin: float = 0.0   # serve the accepted weights once their geometric depth error on the
                                   # held-out windows is this share below the starting weights' (BENCHMARKS.md,
                                   # "Adaptation never worse than frozen")

    def validate(self) -> None:
        for name in ("buffer_windows", "holdout_windows", "holdout_every", "min_holdout", "min_buffer",
                     "batch_size", "steps_per_update"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"adapt {name} must be >= 1, got {getattr(self, name)}")
        if self.min_holdout > self.holdout_windows:
            raise ValueError(f"adapt min_holdout ({self.min_holdout}) exceeds holdout_windows ({self.holdout_windows})")
        for name in ("lr", "max_drift"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"adapt {name} must be a positive number, got {getattr(self, name)}")
        if self.loss_preset and self.loss_preset not in PRESETS:
            raise ValueError(f"adapt loss_preset must be empty (the checkpoint's own loss) or one of "
                             f"{', '.join(sorted(PRESETS))}, got {self.loss_preset!r}")
        if not 0 <= self.handover_margin < 1:
            raise ValueError(f"adapt handover_margin must be in [0, 1), got {self.handover_margin}")
        for name in ("anchor_weight", "min_motion", "tolerance", "epipolar_weight"):
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"adapt {name} must be >= 0, got {getattr(self, name)}")

    def changed(self) -> dict:
        """The options that differ from the defaults."""
        base = asdict(AdaptOptions())
        return {k: v for k, v in asdict(self).items() if base[k] != v}

    def override(self, text: str) -> None:
        """Apply ``name=value`` (a field of this class, value converted to its type); raises
        ``ValueError`` naming the field for an unknown name or a value of the wrong kind."""
        if "=" not in text:
            raise ValueError(f"adapt override {text!r} must look like name=value")
        name, raw = (t.strip() for t in text.split("=", 1))
        names = [f.name for f in fields(self)]
        if name not in names:
            raise ValueError(f"unknown adapt option {name!r}; known: {', '.join(sorted(names))}")
        before = getattr(self, name)
        setattr(self, name, coerce_option(raw, before, f"adapt option {name}"))
        try:
            self.validate()
        except ValueError:
            setattr(self, name, before)  # a refused value leaves the options as they were
            raise


@dataclass
class Decision:
    """The verdict on one candidate."""
    accepted: bool
    reason: str                    # "better", "worse", "non-finite", "drift"
    holdout_before: float          # the accepted weights' held-out loss
    holdout_after: float           # the candidate's held-out loss
    drift: float                   # the candidate's |w - w0| / |w0|
    step: int
    serving: bool = False          # whether the accepted weights are served (else the starting ones)
    depth_accepted: float = math.nan  # the accepted weights' geometric depth error (held out)
    depth_start: float = math.nan     # the starting weights' one


def _params(model: SfMModel) -> list[torch.Tensor]:
    return [p for p in model.parameters()]


class Adapter:
    """Online adaptation of one model (see the module docstring). Not thread-safe: one thread calls
    :meth:`add_window` / :meth:`step` / :meth:`save`; :meth:`inference_model` hands weights to others."""

    def __init__(self, model: SfMModel, options: Options, opts: AdaptOptions | None = None,
                 started_from: str = "", seed: int = 0):
        self.opts = opts or AdaptOptions()
        self.opts.validate()
        self.base_options = options  # what the saved checkpoint records
        self.options = copy.deepcopy(options)
        if self.opts.loss_preset:
            self.options.loss = copy.deepcopy(preset(self.opts.loss_preset).loss)
        self.options.loss.epipolar_weight = self.opts.epipolar_weight
        self.device = next(model.parameters()).device
        self.learner = copy.deepcopy(model).train()
        for p in self.learner.parameters():  # the model may be an inference copy (no gradients)
            p.requires_grad_(True)
        self.accepted = copy.deepcopy(model).train()
        for p in self.accepted.parameters():
            p.requires_grad_(False)
        self.start = copy.deepcopy(self.accepted)  # the starting weights, served until beaten by the margin
        self.serving = False
        self.anchor = [p.detach().clone() for p in _params(self.learner)]
        self.anchor_norm2 = float(sum((a.double() ** 2).sum() for a in self.anchor))
        self.optimizer = adam(self.learner.parameters(), lr=self.opts.lr)
        self.replay: deque = deque(maxlen=self.opts.buffer_windows)
        self.holdout: deque = deque(maxlen=self.opts.holdout_windows)
        self.rng = random.Random(seed)
        self.started_from = str(started_from)
        self.seq_len = options.model.seq_len
        self.size_hw = (options.model.height, options.model.width)
        self.frames_seen = 0  # windows offered: one per new frame in the node and sfm_eval --adapt
        self.windows_added = 0
        self.windows_static = 0
        self.windows_invalid = 0
        self.steps = 0
        self.skipped_steps = 0
        self.accepted_updates = 0
        self.rejected_updates = 0
        self.steps_since_update = 0
        self.last: Decision | None = None
        self.version = 0  # bumped whenever the weights to serve change

    # ------------------------------------------------------------------ data
    def add_window(self, window: np.ndarray, K: np.ndarray) -> str:
        """Offer one window; returns ``"train"``, ``"holdout"``, ``"static"`` or ``"invalid"`` (and why).

        ``window``: (seq_len, H, W, 3) uint8 at the model size; ``K``: (3, 3) at that size.
        """
        self.frames_seen += 1
        shape = (self.seq_len, *self.size_hw, 3)
        if not isinstance(window, np.ndarray) or window.shape != shape or window.dtype != np.uint8:
            self.windows_invalid += 1
            got = f"{window.dtype} {window.shape}" if isinstance(window, np.ndarray) else type(window).__name__
            return f"invalid: window must be uint8 {shape}, got {got}"
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            self.windows_invalid += 1
            return f"invalid: K must be a finite (3, 3) matrix with positive focal lengths, got {K.tolist()}"
        mid = self.seq_len // 2
        for i in range(self.seq_len):
            if i != mid and not static_mask(window[[mid, i]], self.opts.min_motion)[1]:
                self.windows_static += 1
                return "static"
        self.windows_added += 1
        window = np.ascontiguousarray(window)
        item = (window, K.copy())
        holdout = self.windows_added % self.opts.holdout_every == 0
        if self.options.loss.epipolar_weight > 0 or holdout:  # held-out windows: the hand-over's depth check
            item = item + window_priors(window, K)
        if holdout:
            self.holdout.append(item)
            return "holdout"
        self.replay.append(item)
        return "train"

    # ------------------------------------------------------------------ learning
    def drift(self) -> float:
        """The learner's relative distance from the starting weights, ``|w - w0| / |w0|``."""
        with torch.no_grad():
            d2 = sum(float(((p.double() - a.double()) ** 2).sum()) for p, a in zip(_params(self.learner), self.anchor))
        return math.sqrt(d2 / max(self.anchor_norm2, 1e-30))

    def ready(self) -> bool:
        return len(self.replay) >= self.opts.min_buffer

    def step(self) -> float | None:
        """One optimiser step on a random batch of the buffer, then an update decision when due.

        Returns the step's loss (NaN for a skipped step), or None when the buffer is not yet full
        enough to train on."""
        if not self.ready():
            return None
        batch = self.rng.sample(list(self.replay), min(self.opts.batch_size, len(self.replay)))
        self.learner.train()
        loss = window_loss(self.learner, self.options, batch, self.device)
        if self.opts.anchor_weight > 0:
            d2 = sum(((p - a) ** 2).sum() for p, a in zip(_params(self.learner), self.anchor))
            loss = loss + self.opts.anchor_weight * d2 / self.anchor_norm2
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self.steps_since_update += 1
        value = float(loss.detach())
        ok = math.isfinite(value)
        if ok:
            loss.backward()
            grads = [p.grad for p in self.learner.parameters() if p.grad is not None]
            ok = all(bool(torch.isfinite(g).all()) for g in grads)
        if ok:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            value = math.nan
        if self.steps_since_update >= self.opts.steps_per_update and len(self.holdout) >= self.opts.min_holdout:
            self.decide()
        return value

    @torch.no_grad()
    def score(self, model: SfMModel) -> float:
        """Mean held-out loss of ``model`` (a fixed noise seed; NaN when not finite)."""
        with forked_rng(self.device):  # the training's random streams go on untouched
            torch.manual_seed(SCORE_SEED)
            model.train()  # every scale, as in training ...
            norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            for m in norms:  # ... but batch-norm (ResNet variants) with its statistics, left unchanged
                m.eval()
            items = list(self.holdout)
            total = 0.0
            for i in range(0, len(items), self.opts.batch_size):
                chunk = items[i:i + self.opts.batch_size]
                total += float(window_loss(model, self.options, chunk, self.device)) * len(chunk)
            return total / max(len(items), 1)

    def decide(self) -> Decision:
        """Score the learner against the accepted weights on the held-out slice; accept or roll back."""
        self.steps_since_update = 0
        before, after, drift = self.score(self.accepted), self.score(self.learner), self.drift()
        finite = math.isfinite(after) and all(bool(torch.isfinite(p).all()) for p in self.learner.parameters())
        if not finite:
            reason = "non-finite"
        elif drift > self.opts.max_drift:
            reason = "drift"
        elif math.isfinite(before) and after > before * (1 + self.opts.tolerance):
            reason = "worse"
        else:
            reason = "better"
        accepted = reason == "better"
        if accepted:
            self.accepted.load_state_dict(self.learner.state_dict())
            self.accepted_updates += 1
        else:
            self.learner.load_state_dict(self.accepted.state_dict())
            self.optimizer.state.clear()
            self.rejected_updates += 1
        d_acc = d_start = math.nan
        if self.accepted_updates:
            items = list(self.holdout)
            d_acc = geometric_depth_error(self.accepted, items, self.device)
            d_start = geometric_depth_error(self.start, items, self.device)
        serve = self.accepted_updates > 0 and math.isfinite(d_acc) and math.isfinite(d_start) and \
            d_acc <= d_start * (1 - self.opts.handover_margin)
        if serve != self.serving or (serve and accepted):
            self.version += 1
        self.serving = serve
        self.last = Decision(accepted, reason, before, after, drift, self.steps, serve, d_acc, d_start)
        return self.last

    # ------------------------------------------------------------------ hand-over and saving
    def served(self) -> SfMModel:
        """The weights to serve: the accepted ones once they beat the starting ones by the margin."""
        return self.accepted if self.serving else self.start

    def inference_model(self) -> SfMModel:
        """A fresh eval-mode copy of the weights to serve (swap it in with one assignment)."""
        model = copy.deepcopy(self.served()).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def stats(self) -> dict:
        d = {k: getattr(self, k) for k in ("frames_seen", "windows_added", "windows_static", "windows_invalid",
                                           "steps", "skipped_steps", "accepted_updates", "rejected_updates")}
        d["buffer"], d["holdout"] = len(self.replay), len(self.holdout)
        d["serving"] = "adapted" if self.serving else "starting weights"
        d["options"] = asdict(self.opts)
        if self.last is not None:
            d["holdout_before"], d["holdout_after"] = self.last.holdout_before, self.last.holdout_after
            d["depth_error_accepted"], d["depth_error_start"] = self.last.depth_accepted, self.last.depth_start
            d["drift"] = self.last.drift
        return d

    def save(self, path: str | Path) -> None:
        """Write the served weights (:meth:`served`) atomically as an ordinary checkpoint."""
        save_checkpoint(path, self.served(), self.base_options, adapted_from=self.started_from,
                        frames_seen=self.frames_seen, accepted_updates=self.accepted_updates,
                        adapt_steps=self.steps, adapt_options=asdict(self.opts),
                        serving="adapted" if self.serving else "starting weights")


def prequential(adapter: Adapter, frames, K: np.ndarray, stride: int = 1,
                steps_per_frame: int = 1):
    """Run adaptation over ``frames`` in order, prequentially (each frame is evaluated before it is learnt).

    Yields ``(i, model)`` for every frame: ``model`` holds the served weights *before* any window
    containing frame ``i`` was learnt from (evaluate frame ``i`` with it); then the window
    ``(i - 2 stride, i - stride, i)`` (for ``seq_len`` 3; in general ``seq_len`` frames ``stride``
    apart ending at ``i``) is offered to the adapter and ``steps_per_frame`` steps are run. This is
    the node's order: a frame is published first, learnt from afterwards.

    ``frames``: an iterable of (H, W, 3) uint8 RGB frames at the model size; ``K`` at that size.
    """
    if stride < 1 or steps_per_frame < 0:
        raise ValueError(f"need stride >= 1 and steps_per_frame >= 0, got {stride}, {steps_per_frame}")
    span = (adapter.seq_len - 1) * stride
    recent: deque = deque(maxlen=span + 1)
    model, version = adapter.inference_model(), adapter.version
    for i, frame in enumerate(frames):
        if adapter.version != version:
            model, version = adapter.inference_model(), adapter.version
        yield i, model
        recent.append(frame)
        if len(recent) == span + 1:
            adapter.add_window(np.stack([recent[j * stride] for j in range(adapter.seq_len)]), K)
        for _ in range(steps_per_frame):
            adapter.step()
