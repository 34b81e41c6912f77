"""The joint model: depth and pose networks behind one forward pass, and its checkpoints.

Outputs are a small dict keyed by ``(name, frame, scale)`` tuples (monodepth2 style). Frames are
offsets relative to the target: ``0`` is the target, ``-1``/``+1`` its neighbours, and so on.

===========================  =================================================================
key                          value
===========================  =================================================================
``("disp", 0, s)``           (B, 1, H/2^s, W/2^s) target disparity at scale ``s``
``("depth", 0, s)``          (B, 1, H/2^s, W/2^s) target depth ``1 / disp``
``("disp", f, s)``           source disparities (only when ``source_depth=True``, for SC losses)
``("pose_vec", f)``          (B, 6) target→source pose vector for source ``f``, as the pose network
                             saw it (of the turned cameras, with ``pose_turn``)
``("T", f)``                 (B, 4, 4) target→source transform ``T_src_tgt`` for source ``f``, of the
                             cameras the depth network and the losses see
``("exp", f, s)``            (B, 1, H/2^s, W/2^s) explainability of source ``f`` (training only)
===========================  =================================================================
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from sfm_ros.core.geometry import pose_vec_to_mat, unturn_motion
from sfm_ros.core.networks import DISP_ALPHA, DISP_BETA, DispNet, PoseExpNet, normalize_image
from sfm_ros.core.options import DEPTH_ARCHS, POSE_ARCHS, ModelOptions
from sfm_ros.core.resnet import PairPoseNet, ResNetDepthNet

Tensor = torch.Tensor


def source_offsets(seq_len: int) -> list[int]:
    """Frame offsets of the sources in a window with the target in the middle: 3 → [-1, 1]."""
    if seq_len < 3 or seq_len % 2 == 0:
        raise ValueError(f"seq_len must be odd and >= 3, got {seq_len}")
    half = seq_len // 2
    return [o for o in range(-half, half + 1) if o != 0]


def disparity_head(opts: ModelOptions) -> tuple[float, float]:
    """``(alpha, beta)`` of ``disparity = alpha * sigmoid(x) + beta`` spanning
    ``[1 / max_depth, 1 / min_depth]``; the paper's ``(10, 0.01)`` for its 0.1 / 100 m."""
    if (opts.min_depth, opts.max_depth) == (0.1, 100.0):
        return DISP_ALPHA, DISP_BETA
    beta = 1.0 / opts.max_depth
    return 1.0 / opts.min_depth - beta, beta


def build_depth_net(opts: ModelOptions) -> nn.Module:
    """``dispnet``: the paper's DispNet; ``dispnet_sep``: its layout with depthwise-separable
    convolutions; ``resnet``: ResNet-18 encoder + Monodepth2 decoder
    (:class:`sfm_ros.core.resnet.ResNetDepthNet`). ``width_mult`` scales the channels of both; the
    disparity heads span ``model.min_depth``-``model.max_depth`` and, with ``model.init_depth``,
    start there (head biases; the weights keep their initialisation)."""
    alpha, beta = disparity_head(opts)
    if opts.depth_arch in ("dispnet", "dispnet_sep"):
        net = DispNet(alpha=alpha, beta=beta, width_mult=opts.width_mult, separable=opts.depth_arch == "dispnet_sep")
    elif opts.depth_arch == "resnet":
        net = ResNetDepthNet(alpha=alpha, beta=beta, width_mult=opts.width_mult)
    else:
        raise ValueError(f"unknown model.depth_arch {opts.depth_arch!r}; expected one of {list(DEPTH_ARCHS)}")
    if opts.init_depth:
        p = (1.0 / opts.init_depth - beta) / alpha
        with torch.no_grad():
            for head in net.heads:
                head.bias.fill_(math.log(p / (1 - p)))
    return net


def build_pose_net(opts: ModelOptions, output_exp: bool) -> nn.Module:
    """``posexp``: the paper's PoseExpNet (explainability masks when ``output_exp``); ``pair``:
    the pair-wise :class:`sfm_ros.core.resnet.PairPoseNet` (no masks; ``output_exp`` is ignored)."""
    if opts.pose_arch == "posexp":
        return PoseExpNet(num_sources=opts.seq_len - 1, output_exp=output_exp)
    if opts.pose_arch == "pair":
        return PairPoseNet(num_sources=opts.seq_len - 1)
    raise ValueError(f"unknown model.pose_arch {opts.pose_arch!r}; expected one of {list(POSE_ARCHS)}")


class SfMModel(nn.Module):
    """Depth network + pose(/explainability) network.

    ``forward(target, sources)`` takes images in ``[0, 1]``: the target (B, 3, H, W) and the sources
    ordered as :func:`source_offsets`, and returns the outputs dict described in the module doc.
    With ``pose_images = (target, sources)`` the pose network sees those frames instead: the same
    window seen by turned cameras (``data.turn_pose_only``), whose turns ``pose_turn`` (B, F, 3, 3),
    one per frame of the window in order (the target in the middle), turn its motions back to the
    cameras of ``target`` and ``sources`` (:func:`sfm_ros.core.geometry.unturn_motion`).
    """

    def __init__(self, opts: ModelOptions, output_exp: bool = True):
        super().__init__()
        self.opts = opts
        self.offsets = source_offsets(opts.seq_len)
        self.depth_net = build_depth_net(opts)
        self.pose_net = build_pose_net(opts, output_exp)

    def predict_disp(self, images: Tensor) -> list[Tensor]:
        """Disparities (finest first) of (B, 3, H, W) images in ``[0, 1]``."""
        return self.depth_net(normalize_image(images))

    def predict_poses(self, target: Tensor, sources: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Target→source pose vectors (B, N, 6) and explainability masks (list of (B, N, h, w))."""
        return self.pose_net(normalize_image(target), [normalize_image(s) for s in sources])

    def forward(self, target: Tensor, sources: list[Tensor], source_depth: bool = False,
                pose_images: tuple[Tensor, list[Tensor]] | None = None, pose_turn: Tensor | None = None) -> dict:
        if len(sources) != len(self.offsets):
            raise ValueError(f"expected {len(self.offsets)} sources for seq_len={self.opts.seq_len}, "
                             f"got {len(sources)}")
        if (pose_images is None) != (pose_turn is None):
            raise ValueError("pose_images and pose_turn go together: the turned frames and their turns")
        if pose_turn is not None and tuple(pose_turn.shape) != (target.shape[0], self.opts.seq_len, 3, 3):
            raise ValueError(f"pose_turn must have shape ({target.shape[0]}, {self.opts.seq_len}, 3, 3), "
                             f"got {tuple(pose_turn.shape)}")
        out: dict = {}
        if source_depth:
            # One batched pass for the target and all sources (SC-SfMLearner's consistency loss).
            b = target.shape[0]
            disps = self.predict_disp(torch.cat([target, *sources], dim=0))
            for s, d in enumerate(disps):
                for i, f in enumerate([0, *self.offsets]):
                    out[("disp", f, s)] = d[i * b:(i + 1) * b]
                    out[("depth", f, s)] = 1.0 / out[("disp", f, s)]
        else:
            for s, d in enumerate(self.predict_disp(target)):
                out[("disp", 0, s)] = d
                out[("depth", 0, s)] = 1.0 / d
        poses, masks = self.predict_poses(*((target, sources) if pose_images is None else pose_images))
        mid = self.opts.seq_len // 2
        for i, f in enumerate(self.offsets):
            vec = poses[:, i]
            out[("pose_vec", f)] = vec
            out[("T", f)] = pose_vec_to_mat(vec.float())
            if pose_turn is not None:
                out[("T", f)] = unturn_motion(out[("T", f)], pose_turn[:, mid + f], pose_turn[:, mid])
            for s, m in enumerate(masks):
                out[("exp", f, s)] = m[:, i:i + 1]
        return out
