"""Watching a training run for the ways self-supervised depth fails, and saying so.

Users of every SfMLearner-style trainer report "blank depth" and "the loss does not drop on my
data". Most of those runs show one of a few symptoms long before the end, which
:class:`CollapseMonitor` looks for in the batches the trainer already computes (no extra forward
pass), every ``train.log_every`` steps:

==================  ===========================================================================
symptom             test (over the last few checks, so one odd batch does not trigger it)
==================  ===========================================================================
``saturated``       > 50 % of the target's pixels within 2 % of the depth head's ends
                    (``model.min_depth`` / ``model.max_depth``): the scale drifted into the
                    sigmoid's flat end, where no gradient comes back
``flat_depth``      the depth of an image varies by < 2 % (std of log depth): a constant map
                    (from step 300: a network just initialised predicts a nearly flat map)
``no_translation``  the predicted translation is < 0.05 % of the median scene depth: the warp
                    explains the frames by rotation alone (a static or rotating camera; from
                    step 300)
``automask``        auto-masking keeps < 15 % of the pixels: the unwarped sources explain the
                    target as well as the warp (too little motion between the frames)
``flat_loss``       after 300 steps the loss is within 2 % of where it was at step ~50
==================  ===========================================================================

Each symptom is reported once, as one line naming what was seen and what to try. At the run's end
:meth:`CollapseMonitor.end_note` says when the depth had not yet taken shape: on real frames the
depth of a new run sits near a constant for its first several hundred steps (the plain 7-Scenes
command: log-depth spread 0.02-0.08 for 600-1000 steps, later with augmentation), then spreads
within ~150 steps to 0.2-0.3 (BENCHMARKS.md, sessions 22 and 29); a budget that ends before that
hands over a near-constant depth, which the run's last lines would not otherwise show.
"""
from __future__ import annotations

import math
from collections import deque

import torch

__all__ = ["CollapseMonitor", "batch_stats", "SHAPED_SPREAD"]

Tensor = torch.Tensor

#: the log-depth spread (``batch_stats``' ``depth_spread``) below which :meth:`CollapseMonitor.end_note`
#: reads the depth as not yet shaped: between the plain 7-Scenes command's 0.02-0.08 before the depth
#: leaves a constant and its 0.22-0.31 after (BENCHMARKS.md, session 29)
SHAPED_SPREAD = 0.12


@torch.no_grad()
def batch_stats(outputs: dict, losses: dict, offsets: list[int], min_depth: float, max_depth: float) -> dict:
    """Scalar health statistics of one training batch (see the module table)."""
    depth = outputs[("depth", 0, 0)].detach().float()
    near = depth <= min_depth * 1.02
    far = depth >= max_depth * 0.98
    logd = depth.clamp_min(1e-6).log().flatten(1)
    median = depth.flatten(1).median(dim=1).values.clamp_min(1e-9)
    trans = torch.stack([outputs[("pose_vec", f)].detach().float()[:, :3].norm(dim=1) for f in offsets], 1)
    stats = {
        "saturated": float((near | far).float().mean()),
        "saturated_near": float(near.float().mean()),
        "depth_spread": float(logd.std(dim=1).median()),
        "translation": float((trans / median[:, None]).median()),
        "median_depth": float(median.median()),
    }
    keep = [float(v) for k, v in losses.items() if isinstance(k, tuple) and k[0] == "automask_keep"]
    if keep:
        stats["automask_keep"] = sum(keep) / len(keep)
    return stats


class CollapseMonitor:
    """Collects :func:`batch_stats` and the loss; :meth:`check` returns new warnings (once each)."""

    WINDOW = 3  # consecutive checks a symptom must hold

    def __init__(self, stride: int | None = None):
        self.stride = stride
        self.recent: deque = deque(maxlen=self.WINDOW)
        self.early_loss: list[float] = []
        self.late_loss: deque = deque(maxlen=20)
        self.reported: set[str] = set()

    def update(self, step: int, loss: float, stats: dict | None) -> None:
        if math.isfinite(loss):
            if 30 <= step <= 80:
                self.early_loss.append(loss)
            self.late_loss.append(loss)
        if stats is not None:
            self.recent.append(stats)

    def _held(self, key: str, test, at_least: int = WINDOW) -> float | None:
        """The mean of ``key`` over the recent checks when at least ``at_least`` have it and each
        passes ``test``, else None."""
        vals = [s[key] for s in self.recent if key in s]
        if len(vals) < max(1, at_least) or not all(test(v) for v in vals):
            return None
        return sum(vals) / len(vals)

    def check(self, step: int) -> list[str]:
        stride = f" (now {self.stride})" if self.stride else ""
        found: list[tuple[str, str]] = []
        v = self._held("saturated", lambda x: x > 0.5)
        if v is not None:
            near = sum(s["saturated_near"] for s in self.recent) / len(self.recent)
            end = "nearest" if near > v / 2 else "farthest"
            found.append(("saturated", f"{100 * v:.0f} % of the depth sits at the depth head's {end} end: the "
                                       f"scale drifted where the sigmoid gives no gradient; check the "
                                       f"intrinsics (--fx/--cx/--cy), lower --lr, or train the default configuration"))
        v = self._held("depth_spread", lambda x: x < 0.02) if step >= 300 else None  # a new net is flat
        if v is not None:
            found.append(("flat_depth", f"the predicted depth is nearly constant (spread {100 * v:.1f} %): "
                                        f"too little parallax between the frames of a window: raise --stride{stride} "
                                        f"or train longer"))
        v = self._held("translation", lambda x: x < 5e-4) if step >= 300 else None
        if v is not None:
            found.append(("no_translation", f"the predicted translation is {100 * v:.3f} % of the scene depth: "
                                            f"the frames are explained by rotation alone; raise --stride{stride} "
                                            f"or drop static frames (--static-threshold 0.01)"))
        v = self._held("automask_keep", lambda x: x < 0.15)
        if v is not None:
            found.append(("automask", f"auto-masking keeps only {100 * v:.0f} % of the pixels (the unwarped frames "
                                      f"explain the target as well): raise --stride{stride}, drop static frames, "
                                      f"or --set loss.automask=false"))
        if step >= 300 and len(self.early_loss) >= 3 and len(self.late_loss) >= 10:
            early = sum(self.early_loss) / len(self.early_loss)
            late = sum(self.late_loss) / len(self.late_loss)
            if late > 0.98 * early:
                found.append(("flat_loss", f"the loss has not dropped since step ~50 ({early:.4f} -> {late:.4f}): "
                                           f"check the intrinsics, lower --lr, or raise --stride{stride}"))
        out = []
        for key, text in found:
            if key not in self.reported:
                self.reported.add(key)
                out.append(f"warning at step {step}: {text}")
        return out

    def end_note(self, more: str = "give it a larger budget") -> str | None:
        """A line for the run's end when the depth of each of the last checks (up to :attr:`WINDOW`
        of them) spread less than :data:`SHAPED_SPREAD` (the module doc), else None (also without
        any check: a run of fewer than ``train.log_every`` steps); ``more``: how to train longer.
        The last check may be up to ``train.log_every`` steps before the run's end."""
        v = self._held("depth_spread", lambda x: x < SHAPED_SPREAD, at_least=1)
        if v is None:
            return None
        return (f"note: the depth still varies little across each image at the end (log-depth spread "
                f"{v:.3f}; a learned depth spreads 0.2-0.3 on 7-Scenes, after several hundred steps near "
                f"a constant): unless the camera faces a flat surface, the budget ended before the depth "
                f"took shape; to train it longer, {more}")
