"""The input size and depth network a time budget affords: enough training steps on the running
CPU to learn depth.

A self-supervised run needs updates before its depth leaves a constant. On 7-Scenes (the plain
12-minute command, frames 400-499 never trained on) the depth's median climbs from the head's near
end at about the same pace at every size, and the snapshots scored like a constant depth (abs rel
0.34-0.39) until it took off, between steps 600 and 1000 (after ~3000-4000 windows: halving the
batch to buy steps did not bring it sooner). A 2-core CPU without AVX-512 made 730 steps with the
full-width DispNet at the automatic 192x256 in the 12 minutes (``model.pt`` 0.289, just past the
take-off), 832 at 160x224 (0.350: not yet) and 1025-1175 at 128x160 (0.2385-0.210); with the
half-width DispNet (the shipped model's) at 192x256 it made 1452 steps and scored **0.183**; a
quarter-width one 2506 steps, 0.210. A CPU with AVX-512 made 1500 full-width steps at 192x256
(0.149). Until the learning has taken off, steps are worth more than channels or pixels. On KITTI
the pose learns from the first hundred steps, and the 20-minute command on the slow CPU did not gain
from a smaller size (972 steps at 128x416: snippet ATE 0.0302 m; 1251 at 96x320: 0.0333 m, within
the ±15 % its snapshots scatter) (BENCHMARKS.md).

So when a run's only budget is time (``--max-minutes``), the user left the size to the trainer, and
it trains on the CPU in one process, :func:`budget_size` times a few training steps (in the
precision the run will use, :func:`sfm_ros.core.precision.cpu_step_seconds`) at the automatic size
and, when the budget would buy fewer than :data:`MIN_STEPS` of them, steps down: to the half-width
DispNet (:data:`NARROW_WIDTH`) when the depth network is the default one and not chosen by the user
(:func:`narrows`), then to the camera's aspect ratio at :data:`SMALL_SHARE` of the pixels
(:func:`size_ladder`); each step far enough to clear the take-off (an intermediate size is where the
run ends just before it). On the slow CPU the plain 7-Scenes command times 729 full-width steps at
192x256 in 12 minutes and 1828 at half width (the run made 1691: ``model.pt`` 0.169), and the
full-width 128x416 in 20 minutes times 1147 steps (kept); a run makes 85-97 % of the timed steps (data, validation, the
weight average, the machine's load). A GPU, a step or epoch budget, a size given, ``--init`` or
``--resume`` (the checkpoint's size) and distributed runs keep the automatic size and network.
ROS-free.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from sfm_ros.data.autoconfig import PAPER_PIXELS, auto_size

__all__ = ["MIN_STEPS", "SMALL_SHARE", "NARROW_WIDTH", "size_ladder", "sizes_time", "budget_size", "narrows"]

#: timed training steps a time budget should buy: past the 600-1000 steps 7-Scenes' depth took to
#: leave a constant (module doc)
MIN_STEPS = 1000
#: the smaller size has about this share of the automatic size's pixels
SMALL_SHARE = 0.4
#: the depth network's channel multiplier tried first when the user left it to the trainer: the
#: shipped model's DispNet x0.5 (module doc)
NARROW_WIDTH = 0.5


def size_ladder(width: int, height: int) -> list[tuple[int, int]]:
    """The sizes (H, W) tried for a ``width`` x ``height`` camera, largest first: the automatic size
    (:func:`sfm_ros.data.autoconfig.auto_size`), then the camera's aspect ratio at
    :data:`SMALL_SHARE` of its pixels (one size when both round to the same).

    >>> size_ladder(640, 480)
    [(192, 256), (128, 160)]
    >>> size_ladder(1241, 376)
    [(128, 416), (96, 320)]
    """
    out: list[tuple[int, int]] = []
    for share in (1.0, SMALL_SHARE):
        hw = auto_size(width, height, pixels=int(PAPER_PIXELS * share))
        if hw not in out:
            out.append(hw)
    return out


def narrows(opts, explicit: set[str]) -> bool:
    """Whether the budget may take the half-width depth network: the default DispNet at full width,
    its architecture and width not chosen by the user (command line or YAML ``config``)."""
    m = opts.model
    return (m.depth_arch == "dispnet" and m.width_mult == 1.0
            and not {"model.depth_arch", "model.width_mult"} & explicit)


def sizes_time(opts) -> str | None:
    """Why the time budget does not choose the size of this run (None when it does): only a run
    whose one budget is ``train.max_minutes``, on the CPU, in one process."""
    from sfm_ros.core.device import resolve_device

    t = opts.train
    if not t.max_minutes or t.epochs or t.max_steps:
        return "a step or epoch budget"
    try:
        if resolve_device(t.device).type != "cpu":
            return "a GPU"
    except (ValueError, RuntimeError):  # a device that does not exist: the trainer says so
        return "no CPU run"
    if t.amp not in ("auto", "off", "bf16"):  # fp16 or a typo: the trainer refuses it
        return f"train.amp={t.amp}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "a distributed run"
    return None


def budget_size(width: int, height: int, opts, step_seconds: Callable | None = None,
                min_steps: int = MIN_STEPS, narrow: bool = False) -> tuple[tuple[int, int], float, str]:
    """``((H, W), width_mult, reason)``: the first network of the ladder at which
    ``opts.train.max_minutes`` buys ``min_steps`` training steps by the measured step time
    (``step_seconds(opts_at_that_network) -> (seconds, precision)``, default
    :func:`sfm_ros.core.precision.cpu_step_seconds`), else the last. The ladder: the automatic size
    at the run's ``model.width_mult``; with ``narrow`` (the user left the depth network to the
    trainer) the automatic size at :data:`NARROW_WIDTH`, then the smaller size at it; without, the
    smaller size at the run's width (:func:`size_ladder`). ``reason`` lists what was measured, for
    the log."""
    if step_seconds is None:
        from sfm_ros.core.precision import cpu_step_seconds as step_seconds
    sizes = size_ladder(width, height)
    wm = opts.model.width_mult
    ladder = [(sizes[0], wm)]
    if narrow:
        wm = NARROW_WIDTH
        ladder.append((sizes[0], wm))
    ladder += [(hw, wm) for hw in sizes[1:]]
    budget_s = 60.0 * opts.train.max_minutes
    measured = []
    chosen = ladder[-1]
    for hw, w in ladder:
        o = opts.copy()
        (o.model.height, o.model.width), o.model.width_mult = hw, w
        seconds, precision = step_seconds(o)
        steps = int(budget_s / seconds) if seconds > 0 else 0
        net = f" x{w:g}" if narrow else ""
        measured.append(f"{hw[0]}x{hw[1]}{net} {1000 * seconds:.0f} ms a step ({precision}), {steps} steps")
        if steps >= min_steps:
            chosen = (hw, w)
            break
    return chosen[0], chosen[1], (f"the {opts.train.max_minutes:g}-minute budget on this CPU: {'; '.join(measured)}; "
                                  f"a run needs about {min_steps} timed steps to learn depth")
