"""How online adaptation (:mod:`sfm_ros.training.adapt`) scores windows: the training objective on a
batch of windows (:func:`window_loss`, with each window's two-view prior, :func:`window_priors`), and
the geometric depth error that decides the hand-over (:func:`geometric_depth_error`: the depth
alone, judged against the motion of tracked corners, not the pose network).

Convention: windows are ``(seq_len, H, W, 3)`` uint8 RGB at the model's input size, the target in the
middle (as :class:`sfm_ros.data.datasets.WindowDataset`); ``K`` is the (3, 3) intrinsics at that size.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from sfm_ros.core.losses import add_epipolar_prior, compute_losses
from sfm_ros.core.model import SfMModel, source_offsets
from sfm_ros.core.options import Options
from sfm_ros.data.datasets import Sequence
from sfm_ros.training.priors import epipolar_priors

__all__ = ["window_priors", "window_loss", "BASELINE_SHARES", "geometric_depth_error"]


def _window_tensors(windows: list[tuple[np.ndarray, np.ndarray]], device: torch.device):
    imgs = torch.from_numpy(np.stack([w for w, _ in windows]).astype(np.float32) / 255.0)
    imgs = imgs.permute(0, 1, 4, 2, 3).to(device)  # (B, T, 3, H, W)
    K = torch.from_numpy(np.stack([k for _, k in windows]).astype(np.float32)).to(device)
    mid = imgs.shape[1] // 2
    target = imgs[:, mid]
    sources = [imgs[:, i] for i in range(imgs.shape[1]) if i != mid]
    return target, sources, K


def window_priors(window: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two-view prior of a window's (target, source) pairs, in :func:`sfm_ros.core.model.source_offsets`
    order: ``(N, 4, 4)`` unit-baseline ``T_src_tgt`` and ``(N, 2)`` weights (the trainer's rule)."""
    n = len(window)
    mid = n // 2
    pr = epipolar_priors([Sequence(window, K, np.arange(n, dtype=np.float64), "window")], [(0, list(range(n)))], n)
    order = [mid + o for o in source_offsets(n)]
    return (np.stack([pr[(0, mid, j)].T_src_tgt for j in order]),
            np.array([[pr[(0, mid, j)].w_rot, pr[(0, mid, j)].w_dir] for j in order]))


def window_loss(model: SfMModel, options: Options, windows: list, device: torch.device) -> torch.Tensor:
    """The training objective (``options.loss``, with the two-view prior when the windows carry one)
    of ``model`` on a batch of ``(window, K[, prior_T, prior_w])`` items."""
    target, sources, K = _window_tensors([w[:2] for w in windows], device)
    offsets = source_offsets(options.model.seq_len)
    outputs = model(target, sources, source_depth=options.loss.needs_source_depth)
    losses, _ = compute_losses(target, dict(zip(offsets, sources)), K, outputs, options.loss)
    if options.loss.epipolar_weight > 0 and len(windows[0]) == 4:
        prior_T = torch.from_numpy(np.stack([w[2] for w in windows]).astype(np.float32)).to(device)
        prior_w = torch.from_numpy(np.stack([w[3] for w in windows]).astype(np.float32)).to(device)
        add_epipolar_prior(losses, outputs, prior_T, prior_w, offsets, options.loss.epipolar_weight)
    return losses["loss"]


#: Step lengths tried by :func:`geometric_depth_error`, as a share of the target's median depth.
BASELINE_SHARES = tuple(float(x) for x in np.exp(np.linspace(np.log(2e-3), np.log(0.5), 25)))


@torch.no_grad()
def geometric_depth_error(model: SfMModel, windows: list, device: torch.device) -> float:
    """How well ``model``'s depth alone explains held-out windows (lower is better; NaN when no
    window has a two-view direction of travel).

    For each ``(window, K, prior_T, prior_w)`` item (:meth:`sfm_ros.training.adapt.Adapter.add_window`)
    and each source whose two-view geometry found the direction of travel (``prior_w[:, 1] > 0``), the target is
    synthesised from the source with the model's depth of the target and the geometry's motion
    (rotation and unit direction from tracked corners, :func:`window_priors`: not the pose
    network), its length tried at :data:`BASELINE_SHARES` of the target's median depth; the mean
    absolute grey error over the valid pixels at the best length is the source's error. Returns the
    mean over all such sources. Depth is judged up to scale, as the node's scale is set apart."""
    from sfm_ros.core.geometry import inverse_warp

    errors = []
    shares = torch.tensor(BASELINE_SHARES, dtype=torch.float32, device=device)
    n = len(shares)
    model.eval()
    for item in windows:
        if item is None or len(item) < 4:
            continue
        window, K, prior_T, prior_w = item
        target, sources, Kt = _window_tensors([(window, K)], device)
        depth = 1.0 / model.predict_disp(target)[0].float()  # (1, 1, H, W)
        med = float(depth.median())
        tgt_grey = target.mean(1, keepdim=True)
        for j, src in enumerate(sources):
            if not prior_w[j][1] > 0:
                continue
            T = torch.as_tensor(prior_T[j], dtype=torch.float32, device=device).expand(n, 4, 4).clone()
            T[:, :3, 3] = T[:, :3, 3] * (shares * med)[:, None]
            warped, valid = inverse_warp(src.mean(1, keepdim=True).expand(n, 1, -1, -1), depth.expand(n, -1, -1, -1),
                                         T, Kt.expand(n, 3, 3))
            err = ((warped - tgt_grey).abs() * valid).sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3)).clamp(min=1.0)
            ok = valid.mean(dim=(1, 2, 3)) > 0.5  # a length that moves most of the view out says nothing
            if bool(ok.any()):
                errors.append(float(err[ok].min()))
    return float(np.mean(errors)) if errors else math.nan
