"""The paper's networks: DispNet (single-view depth) and PoseExpNet (pose + explainability).

Architectures follow Zhou et al., CVPR 2017, Fig. 4 (and the authors' TensorFlow code):

* **DispNet**: encoder of seven (stride-2, stride-1) convolution pairs with 32, 64, 128, 256, 512,
  512, 512 channels and kernels 7, 5, then 3; ReLU, no batch norm; a decoder of up-convolutions with
  skip connections; disparity predicted at 4 scales (1, 1/2, 1/4, 1/8 of the input), each
  ``disparity = alpha * sigmoid(x) + beta`` with ``alpha = 10, beta = 0.01``; ``depth = 1 / disparity``.
  ``width_mult`` scales every channel count (1.0 = the paper's network, 31.6 M parameters).
  Any input size works: the decoder crops every up-sampled map to its skip connection's size, and
  coarser disparities are up-sampled to the next scale's size.
* **PoseExpNet**: the target and ``N`` source frames stacked on channels; 5 stride-2 convolutions
  (16, 32, 64, 128, 256) then two 256 stride-2 convolutions; a 1x1 convolution to ``6 N`` channels,
  spatial mean, scaled by 0.01 → ``N`` pose vectors ``[tx, ty, tz, rx, ry, rz]`` (target→source, see
  :mod:`sfm_ros.core.geometry`); an up-convolution branch from the 5th convolution gives one
  explainability mask per source at 4 scales (sigmoid, 1 = explainable).

Images enter the networks normalised to ``[-1, 1]`` (``(x - 0.5) / 0.5`` from ``[0, 1]``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

DISP_ALPHA = 10.0
DISP_BETA = 0.01
POSE_SCALE = 0.01


def normalize_image(img: Tensor) -> Tensor:
    """``[0, 1]`` images to the networks' ``[-1, 1]`` input range."""
    return (img - 0.5) / 0.5


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2), nn.ReLU(inplace=True))


def _separable_conv(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    """A k x k convolution factored into a depthwise k x k and a pointwise 1 x 1 one, one ReLU after
    both (MobileNet, Howard et al. 2017; no non-linearity in between, as Xception, Chollet 2017):
    ``cin * (k² + cout)`` weights instead of ``cin * k² * cout``. Inputs of fewer than 8 channels
    (the image) keep the full convolution."""
    if cin < 8:
        return _conv(cin, cout, k, stride)
    return nn.Sequential(nn.Conv2d(cin, cin, k, stride=stride, padding=(k - 1) // 2, groups=cin),
                         nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))


def _upconv(cin: int, cout: int) -> nn.Sequential:
    # Exactly doubles the size (3x3 transposed conv, stride 2, padding 1, output padding 1).
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True)
    )


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every (transposed) convolution, as the paper's code.
    A depthwise convolution's fans are its kernel's k² (each channel its own filter): torch's
    ``xavier_uniform_`` counts the channels into the fan-out and starts it ~sqrt(channels) too small,
    and the disparity of a separable DispNet (:func:`_separable_conv`) then starts flat (std 0.0 at
    the finest head)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels:
                fan = m.weight[0].numel()  # k²
                nn.init.uniform_(m.weight, -math.sqrt(3.0 / fan), math.sqrt(3.0 / fan))  # Xavier, fans k², k²
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def crop_like(x: Tensor, ref: Tensor) -> Tensor:
    """Crop ``x`` (B, C, H, W) to the spatial size of ``ref`` (top-left aligned)."""
    h, w = ref.shape[-2:]
    if x.shape[-2] < h or x.shape[-1] < w:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to larger {(h, w)}")
    return x[..., :h, :w]


def _upsample_to(x: Tensor, ref: Tensor) -> Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class DispNet(nn.Module):
    """Single-view disparity network of the paper (DispNet with skips, 4-scale output).

    ``forward(img)`` takes (B, 3, H, W) images in ``[-1, 1]`` and returns a list of 4 disparity maps,
    finest first: shapes (B, 1, H, W), (B, 1, H/2, W/2), (B, 1, H/4, W/4), (B, 1, H/8, W/8)
    (sizes rounded up). In eval mode only the finest scale is computed and returned (a list of one).
    ``separable``: every convolution but the first, the heads and the transposed up-convolutions
    is depthwise-separable (:func:`_separable_conv`, which keeps inputs of fewer than 8 channels
    full; ``model.depth_arch: dispnet_sep``): the same layout with 3-4x fewer weights at half width.
    """

    CHANNELS = (32, 64, 128, 256, 512, 512, 512)
    KERNELS = (7, 5, 3, 3, 3, 3, 3)

    def __init__(self, alpha: float = DISP_ALPHA, beta: float = DISP_BETA, width_mult: float = 1.0,
                 separable: bool = False):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        self.alpha, self.beta = alpha, beta
        conv = _separable_conv if separable else _conv

        def ch(n: int) -> int:
            return max(4, int(round(n * width_mult)))

        c = tuple(ch(n) for n in self.CHANNELS)
        enc = []
        cin = 3
        for cout, k in zip(c, self.KERNELS):
            enc.append(nn.Sequential(conv(cin, cout, k, 2), conv(cout, cout, k, 1)))
            cin = cout
        self.encoder = nn.ModuleList(enc)
        up = tuple(ch(n) for n in (512, 512, 256, 128, 64, 32, 16))
        self.upconvs = nn.ModuleList()
        self.iconvs = nn.ModuleList()
        cin = c[-1]
        for i, cout in enumerate(up):
            self.upconvs.append(_upconv(cin, cout))
            level = 6 - i  # index of the encoder level whose output is the skip (None for the input)
            skip = c[level - 1] if level >= 1 else 0
            extra = 1 if i >= 4 else 0  # up-sampled coarser disparity for the 3 finest scales
            self.iconvs.append(conv(cout + skip + extra, cout, 3, 1))
            cin = cout
        # Disparity heads after iconv4 (1/8), iconv3 (1/4), iconv2 (1/2), iconv1 (1).
        self.heads = nn.ModuleList([nn.Conv2d(n, 1, 3, padding=1) for n in up[3:]])
        xavier_init(self)

    def _disp(self, head: nn.Module, x: Tensor) -> Tensor:
        return self.alpha * torch.sigmoid(head(x)) + self.beta

    def forward(self, img: Tensor) -> list[Tensor]:
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"DispNet expects (B, 3, H, W) images, got {tuple(img.shape)}")
        skips = [img]
        x = img
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        disps: list[Tensor] = []
        for i, (upconv, iconv) in enumerate(zip(self.upconvs, self.iconvs)):
            level = 6 - i
            ref = skips[level]
            x = crop_like(upconv(x), ref)
            parts = [x] if level == 0 else [x, ref]
            if i >= 4:
                parts.append(_upsample_to(disps[-1], ref))
            x = iconv(torch.cat(parts, dim=1))
            if i >= 3:  # every scale is needed: coarser ones feed the finer iconvs
                disps.append(self._disp(self.heads[i - 3], x))
        disps = disps[::-1]
        return disps if self.training else disps[:1]


class PoseExpNet(nn.Module):
    """Pose and explainability network of the paper.

    ``forward(target, sources)`` takes the target (B, 3, H, W) and a list of ``N`` sources, all in
    ``[-1, 1]``, and returns ``(poses, masks)``: poses (B, N, 6) target→source pose vectors, and
    masks, a list of 4 explainability maps (B, N, H_s, W_s), finest first (empty list when the mask
    branch is disabled with ``output_exp=False``).
    """

    CHANNELS = (16, 32, 64, 128, 256, 256, 256)
    KERNELS = (7, 5, 3, 3, 3, 3, 3)

    def __init__(self, num_sources: int = 2, output_exp: bool = True):
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {num_sources}")
        self.num_sources = num_sources
        self.output_exp = output_exp
        cin = 3 * (1 + num_sources)
        convs = []
        for cout, k in zip(self.CHANNELS, self.KERNELS):
            convs.append(_conv(cin, cout, k, 2))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.pose_pred = nn.Conv2d(256, 6 * num_sources, 1)
        if output_exp:
            up = (256, 128, 64, 32, 16)
            self.upconvs = nn.ModuleList()
            cin = 256
            for cout in up:
                self.upconvs.append(_upconv(cin, cout))
                cin = cout
            self.mask_heads = nn.ModuleList([nn.Conv2d(ch, num_sources, 3, padding=1) for ch in (128, 64, 32, 16)])
        xavier_init(self)

    def forward(self, target: Tensor, sources: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if len(sources) != self.num_sources:
            raise ValueError(f"PoseExpNet was built for {self.num_sources} sources, got {len(sources)}")
        for i, s in enumerate([target, *sources]):
            if s.dim() != 4 or s.shape[1] != 3 or s.shape != target.shape:
                raise ValueError(f"frame {i} must be (B, 3, H, W) like the target {tuple(target.shape)}, "
                                 f"got {tuple(s.shape)}")
        x = torch.cat([target, *sources], dim=1)
        feats = [x]
        for conv in self.convs:
            x = conv(x)
            feats.append(x)
        pose = self.pose_pred(x).mean(dim=(2, 3))
        pose = POSE_SCALE * pose.reshape(pose.shape[0], self.num_sources, 6)
        masks: list[Tensor] = []
        if self.output_exp and self.training:
            y = feats[5]  # output of the 5th convolution (1/32)
            for i, upconv in enumerate(self.upconvs):
                y = crop_like(upconv(y), feats[4 - i])
                if i >= 1:
                    masks.append(torch.sigmoid(self.mask_heads[i - 1](y)))
            masks = masks[::-1]
        return pose, masks

    def explainability(self, target: Tensor, sources: list[Tensor]) -> list[Tensor]:
        """The explainability masks regardless of train/eval mode (for visualisation)."""
        was = self.training
        self.train(True)
        try:
            with torch.no_grad():
                return self.forward(target, sources)[1]
        finally:
            self.train(was)
