"""Faster networks: a ResNet depth network and a pair-wise pose network (Monodepth2 style).

Plain PyTorch (no torchvision), trained from scratch (no pretrained weights here).

* :class:`ResNetEncoder`: ResNet-18 style (stem 7x7 stride-2 convolution + batch norm + ReLU,
  3x3 max-pool, then 4 stages of :class:`BasicBlock` ``[2, 2, 2, 2]`` with ``w, 2w, 4w, 8w``
  channels; ``w = 64`` is ResNet-18, ``width_mult`` scales it). Features at 1/2, 1/4, 1/8, 1/16,
  1/32 of the input.
* :class:`ResNetDepthNet`: that encoder + a Monodepth2 decoder (per level: 3x3 conv + ELU,
  nearest x2 up-sampling, concatenation with the encoder skip, 3x3 conv + ELU), disparity heads at
  the full, 1/2, 1/4 and 1/8 scales with the paper's ``alpha * sigmoid(x) + beta`` (``alpha = 10``,
  ``beta = 0.01``) so depth ranges match :class:`sfm_ros.core.networks.DispNet`. Same interface as
  DispNet: ``forward(img)`` → 4 disparities finest first in train mode, the finest only in eval
  mode; any input size (up-sampled maps are cropped to the skip sizes; sizes round up like DispNet).
* :class:`PairPoseNet`: a quarter-width ResNet-18 encoder (16-128 channels) on a (target, source) pair stacked on
  channels (6 channels) + the Monodepth2 pose decoder (1x1 squeeze, two 3x3 convs, 1x1 to 6,
  spatial mean, scaled by 0.01) → one ``[tx, ty, tz, rx, ry, rz]`` target→source vector per pair;
  the ``N`` pairs go through the encoder as one batch. Same interface as
  :class:`sfm_ros.core.networks.PoseExpNet` (``forward(target, sources) -> (poses (B, N, 6), [])``,
  ``output_exp = False``, ``num_sources``).

Both use batch norm: for inference, :func:`fold_batchnorm` folds it into the convolutions
(``torch.jit.freeze`` / ONNX Runtime do the same on exported graphs).

Images enter the networks normalised to ``[-1, 1]``, like the paper's networks.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sfm_ros.core.networks import DISP_ALPHA, DISP_BETA, POSE_SCALE

Tensor = torch.Tensor

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET34_BLOCKS = (3, 4, 6, 3)


class ConvBN(nn.Module):
    """Convolution (no bias) + batch norm, foldable into one convolution for inference."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def fold(self) -> None:
        """Fold the (eval-mode) batch norm into the convolution; the batch norm becomes identity."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


def fold_batchnorm(module: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of ``module`` (in eval mode) with every :class:`ConvBN` folded into one convolution.

    For inference only: the result gives the same outputs as ``module.eval()`` (to float rounding)
    but cannot be trained further, and its ``state_dict`` keys differ (no ``bn.*`` entries).
    """
    m = module if inplace else copy.deepcopy(module)
    m.eval()
    for sub in m.modules():
        if isinstance(sub, ConvBN):
            sub.fold()
    return m


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 ConvBN, identity (or 1x1 ConvBN projection) shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, 1)
        self.downsample = ConvBN(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(out)
        return F.relu(out + identity, inplace=True)


def _channels(width_mult: float, base: int = 64) -> int:
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    return max(8, int(round(base * width_mult)))


class ResNetEncoder(nn.Module):
    """ResNet-18 (or -34) style encoder; ``forward`` returns the 5 feature maps (1/2 ... 1/32)."""

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0, blocks: tuple[int, ...] = RESNET18_BLOCKS):
        super().__init__()
        w = _channels(width_mult)
        self.num_ch = (w, w, 2 * w, 4 * w, 8 * w)
        self.stem = ConvBN(in_channels, w, 7, 2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        cin = w
        for i, n in enumerate(blocks):
            cout = w * 2**i
            layers = [BasicBlock(cin, cout, 1 if i == 0 else 2)]
            layers += [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu(self.stem(x), inplace=True)
        feats = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _conv_elu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ELU(inplace=True))


def _up_to(x: Tensor, h: int, w: int) -> Tensor:
    """Nearest x2 up-sampling, cropped (top-left aligned) to ``(h, w)`` when that is smaller."""
    x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    if x.shape[-2] != h or x.shape[-1] != w:
        x = x[..., :h, :w]
    return x


class ResNetDepthNet(nn.Module):
    """ResNet encoder + Monodepth2 decoder with the paper's 4-scale disparity output.

    ``forward(img)`` takes (B, 3, H, W) images in ``[-1, 1]`` and returns a list of 4 disparity maps,
    finest first: (B, 1, H, W), (B, 1, H/2, W/2), (B, 1, H/4, W/4), (B, 1, H/8, W/8) (sizes rounded
    up). In eval mode only the finest scale is returned (the coarser heads are skipped).

    Args:
        width_mult: channel multiplier of the encoder and decoder (1.0: ResNet-18 64-512 channels
            with the Monodepth2 16-256 decoder, 14.3 M parameters; 0.5: 3.6 M).
        num_layers: 18 or 34.
    """

    DEC_CHANNELS = (16, 32, 64, 128, 256)

    def __init__(self, alpha: float = DISP_ALPHA, beta: float = DISP_BETA, width_mult: float = 1.0,
                 num_layers: int = 18):
        super().__init__()
        if num_layers not in (18, 34):
            raise ValueError(f"num_layers must be 18 or 34, got {num_layers}")
        self.alpha, self.beta = alpha, beta
        self.encoder = ResNetEncoder(3, width_mult, RESNET18_BLOCKS if num_layers == 18 else RESNET34_BLOCKS)
        enc = self.encoder.num_ch
        dec = tuple(max(8, int(round(c * width_mult))) for c in self.DEC_CHANNELS)
        self.num_ch_dec = dec
        # Decoder level i = 4 (coarsest) ... 0 (full resolution): upconv0 at the input level's
        # resolution, x2 up-sampling, concatenation with encoder feature i-1, upconv1.
        self.upconv0 = nn.ModuleList()
        self.upconv1 = nn.ModuleList()
        for i in range(4, -1, -1):
            cin = enc[-1] if i == 4 else dec[i + 1]
            self.upconv0.append(_conv_elu(cin, dec[i]))
            skip = enc[i - 1] if i > 0 else 0
            self.upconv1.append(_conv_elu(dec[i] + skip, dec[i]))
        # Disparity heads at levels 3, 2, 1, 0 (1/8, 1/4, 1/2, full); heads[s] is scale s.
        self.heads = nn.ModuleList([nn.Conv2d(dec[s], 1, 3, padding=1) for s in range(4)])

    def _disp(self, s: int, x: Tensor) -> Tensor:
        return self.alpha * torch.sigmoid(self.heads[s](x)) + self.beta

    def forward(self, img: Tensor) -> list[Tensor]:
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"ResNetDepthNet expects (B, 3, H, W) images, got {tuple(img.shape)}")
        feats = self.encoder(img)
        sizes = [img.shape[-2:]] + [f.shape[-2:] for f in feats[:-1]]  # target size per level 0..4
        x = feats[-1]
        disps: list[Tensor] = []
        for j, (conv0, conv1) in enumerate(zip(self.upconv0, self.upconv1)):
            i = 4 - j
            x = conv0(x)
            h, w = sizes[i]
            x = _up_to(x, int(h), int(w))
            if i > 0:
                x = torch.cat([x, feats[i - 1]], dim=1)
            x = conv1(x)
            if i <= 3 and (self.training or i == 0):
                disps.append(self._disp(i, x))
        return disps[::-1]


class PairPoseNet(nn.Module):
    """Pair-wise pose network (Monodepth2 style) with the PoseExpNet interface.

    ``forward(target, sources)`` takes the target (B, 3, H, W) and a list of ``N`` sources, all in
    ``[-1, 1]``; each (target, source) pair is stacked on channels and the ``N`` pairs run as one
    batch. Returns ``(poses, [])``: poses (B, N, 6) target→source ``[tx, ty, tz, rx, ry, rz]``
    (see :mod:`sfm_ros.core.geometry`); there is no explainability mask (``output_exp = False``).

    Args:
        num_sources: ``N`` (the network itself works for any number of pairs; this is checked
            so that it is a drop-in replacement of PoseExpNet).
        width_mult: encoder width relative to ResNet-18 (0.25 by default: 16-128 channels,
            like the paper's PoseExpNet's first four layers; 1.9 M parameters with the decoder).
        dec_channels: channels of the pose decoder (Monodepth2: 256).
    """

    def __init__(self, num_sources: int = 2, width_mult: float = 0.25, dec_channels: int = 256):
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {num_sources}")
        self.num_sources = num_sources
        self.output_exp = False
        self.encoder = ResNetEncoder(6, width_mult, RESNET18_BLOCKS)
        c = dec_channels
        self.squeeze = nn.Conv2d(self.encoder.num_ch[-1], c, 1)
        self.pose0 = nn.Conv2d(c, c, 3, padding=1)
        self.pose1 = nn.Conv2d(c, c, 3, padding=1)
        self.pose2 = nn.Conv2d(c, 6, 1)

    def forward(self, target: Tensor, sources: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if len(sources) != self.num_sources:
            raise ValueError(f"PairPoseNet was built for {self.num_sources} sources, got {len(sources)}")
        for i, s in enumerate([target, *sources]):
            if s.dim() != 4 or s.shape[1] != 3 or s.shape != target.shape:
                raise ValueError(f"frame {i} must be (B, 3, H, W) like the target {tuple(target.shape)}, "
                                 f"got {tuple(s.shape)}")
        n = len(sources)
        # (N*B, 6, H, W): pair k of batch element j is row k*B + j.
        pairs = torch.cat([torch.cat([target, s], dim=1) for s in sources], dim=0)
        x = self.encoder(pairs)[-1]
        x = F.relu(self.squeeze(x))
        x = F.relu(self.pose0(x))
        x = F.relu(self.pose1(x))
        pose = POSE_SCALE * self.pose2(x).mean(dim=(2, 3))  # (N*B, 6)
        return pose.reshape(n, -1, 6).transpose(0, 1), []


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
