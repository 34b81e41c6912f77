"""What the trainer writes to TensorBoard (``out_dir/tb``): scalars every ``train.log_every`` steps
(``train/loss``, ``train/epipolar``, each loss term per scale as ``train/<term>/scale<s>``,
``train/lr``, ``health/<stat>``) and images every ``train.image_every`` steps (the first target of
the batch, its depth colormap, ``warped/<offset>`` and ``explainability/<offset>`` at scale 0).
"""
from __future__ import annotations

from collections.abc import Sequence

from sfm_ros.runtime.visualize import colorize_depth

__all__ = ["log_scalars", "log_images"]


def log_scalars(writer, step: int, logs: dict, lr: float) -> None:
    """``logs``: the train step's floats (``"loss"``, optional ``"epipolar"``, ``(term, scale)``
    keys) and optional ``"health"`` dict; ``lr``: the optimiser's learning rate."""
    writer.add_scalar("train/loss", logs["loss"], step)
    if "epipolar" in logs:
        writer.add_scalar("train/epipolar", logs["epipolar"], step)
    for k, v in logs.items():
        if isinstance(k, tuple):
            writer.add_scalar(f"train/{k[0]}/scale{k[1]}", v, step)
    writer.add_scalar("train/lr", lr, step)
    for k, v in (logs.get("health") or {}).items():
        writer.add_scalar(f"health/{k}", v, step)


def log_images(writer, step: int, batch: dict, outputs: dict, images: dict, offsets: Sequence[int]) -> None:
    """The first sample of ``batch`` (``"target"`` (B, 3, H, W) in [0, 1]) with the model's
    ``outputs`` and the loss's diagnostic ``images`` (keys ``(kind, offset, scale)``)."""
    writer.add_image("target", batch["target"][0].clamp(0, 1), step)
    depth = outputs[("depth", 0, 0)][0, 0].detach().float().cpu().numpy()
    writer.add_image("depth", colorize_depth(depth), step, dataformats="HWC")
    for f in offsets:
        if ("warped", f, 0) in images:
            writer.add_image(f"warped/{f:+d}", images[("warped", f, 0)][0].clamp(0, 1), step)
        if ("exp", f, 0) in outputs:
            writer.add_image(f"explainability/{f:+d}", outputs[("exp", f, 0)][0].detach().float().cpu(), step)
