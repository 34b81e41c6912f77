"""Self-supervised losses: view synthesis (photometric), explainability, smoothness, consistency.

The paper's objective (Zhou et al., 2017, Eq. 3-4) summed over 4 scales ``s``:

    L = sum_s [ L_vs^s + lambda_s / 2^s * L_smooth^s + lambda_e * sum_f L_reg(E_f^s) ]

* ``L_vs``: mean over pixels and sources of ``E_f(p) * |I_t(p) - I_f_warped(p)|``: the
  explainability mask ``E_f`` down-weights pixels the rigid warp cannot explain. As in the
  authors' code the L1 error is measured on images in ``[-1, 1]`` (twice the error in ``[0, 1]``),
  so their weights (``lambda_s = 0.5``, ``lambda_e = 0.2``) keep their published meaning.
* ``L_reg``: cross-entropy of ``E_f`` towards 1 ("explainable"), which stops ``E = 0``.
* ``L_smooth``: mean absolute second-order gradients of the disparity.

Beyond the paper: ``smooth_normalize`` divides the smoothed map by its mean per image first (Wang et
al., "Learning Depth from Monocular Videos using Direct Methods", CVPR 2018, Sec. 3.2). Unnormalised,
the smoothness of depth falls in proportion to the depth's scale, so the cheapest way to lower it
is to shrink the depth (and the pose network's translation with it, which leaves the view
synthesis unchanged) until the disparity head saturates at ``min_depth``, where its sigmoid has no
gradient left: measured on the plain 7-Scenes command, the depth sat at the head's near end from
step 50 and in one run of three never left it (BENCHMARKS.md).

Successors' options (see :class:`sfm_ros.core.options.LossOptions`): ``ssim_l1`` photometric error
(0.85 (1 - SSIM) / 2 + 0.15 L1 on ``[0, 1]`` images, 3x3 SSIM), per-pixel minimum over sources,
auto-masking (Monodepth2), edge-aware first-order smoothness of mean-normalised disparity,
full-resolution multi-scale warping, and SC-SfMLearner's geometry consistency.

Out-of-view pixels and points behind a source camera carry no photometric error (the warp's
validity mask); with ``reduce_sources="min"`` they lose the minimum to any valid source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sfm_ros.core.geometry import backproject, inverse_warp, pixels_to_grid, project, scale_intrinsics
from sfm_ros.core.options import LossOptions

Tensor = torch.Tensor

L1_RANGE = 2.0  # the paper's L1 is on [-1, 1] images: twice the [0, 1] error
_INVALID = 1e3  # error given to invalid pixels under the per-pixel minimum


def _box3(t: Tensor) -> Tensor:
    """3x3 mean of a (reflection-)padded map (valid region only), as a depthwise convolution.

    Same result as ``avg_pool2d(t, 3, 1)`` (to float rounding), about 5x faster forward and 2x
    backward on the CPU, where the pooling kernel took half of a training step.
    """
    c = t.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1.0 / 9.0, dtype=t.dtype, device=t.device)
    return F.conv2d(t, kernel, groups=c)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel structural dissimilarity ``(1 - SSIM) / 2`` with 3x3 windows (reflection padded)."""
    c1, c2 = 0.01**2, 0.03**2
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    c = x.shape[1]
    pooled = _box3(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    mu_x, mu_y, xx, yy, xy = pooled.split(c, dim=1)
    sigma_x = xx - mu_x**2
    sigma_y = yy - mu_y**2
    sigma_xy = xy - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    d = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def photometric_error(pred: Tensor, target: Tensor, opts: LossOptions) -> Tensor:
    """Per-pixel photometric error (B, 1, H, W) between ``[0, 1]`` images."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    if opts.photometric == "l1":
        return L1_RANGE * l1
    return opts.ssim_weight * ssim(pred, target).mean(1, keepdim=True) + (1 - opts.ssim_weight) * l1


def smoothness_second_order(disp: Tensor) -> Tensor:
    """The paper's smoothness: mean |d2/dx2| + |d2/dxdy| + |d2/dydx| + |d2/dy2| of disparity."""
    def grad(t: Tensor) -> tuple[Tensor, Tensor]:
        return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]

    dx, dy = grad(disp)
    dx2, dxdy = grad(dx)
    dydx, dy2 = grad(dy)
    return dx2.abs().mean() + dxdy.abs().mean() + dydx.abs().mean() + dy2.abs().mean()


def smoothness_edge_aware(disp: Tensor, img: Tensor) -> Tensor:
    """Monodepth2's smoothness: |grad d*| exp(-|grad I|) with d* = d / mean(d)."""
    disp = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    gx = (disp[..., :, :-1] - disp[..., :, 1:]).abs()
    gy = (disp[..., :-1, :] - disp[..., 1:, :]).abs()
    ix = (img[..., :, :-1] - img[..., :, 1:]).abs().mean(1, keepdim=True)
    iy = (img[..., :-1, :] - img[..., 1:, :]).abs().mean(1, keepdim=True)
    return (gx * torch.exp(-ix)).mean() + (gy * torch.exp(-iy)).mean()


def resize_to(img: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode="area")


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def compute_losses(
    target: Tensor,
    sources: dict[int, Tensor],
    K: Tensor,
    outputs: dict,
    opts: LossOptions,
    keep_images: bool = False,
) -> tuple[dict, dict]:
    """All training losses for one batch.

    Args:
        target: (B, 3, H, W) target image in ``[0, 1]``.
        sources: source images by frame offset, each (B, 3, H, W) in ``[0, 1]``.
        K: (B, 3, 3) intrinsics at the input resolution (H, W).
        outputs: :class:`sfm_ros.core.model.SfMModel` outputs for this batch.
        opts: loss options.
        keep_images: also fill the diagnostic images (else ``images`` is empty).
    Returns:
        ``(losses, images)``. ``losses``: scalar tensors only, every one worth logging: ``"loss"``
        (to minimise) and its parts per scale, ``("photo", s)``, ``("smooth", s)``, ``("exp", s)``,
        ``("geometry", s)``; with auto-masking the fraction of pixels it keeps,
        ``("automask_keep", s)`` (detached). ``images`` (detached, with ``keep_images``): the
        warped sources ``("warped", f, s)`` (B, 3, h, w), their validity masks ``("valid", f, s)``
        (B, 1, h, w) and, with auto-masking, the kept pixels ``("automask", s)`` (B, 1, h, w).
    """
    b, _, h, w = target.shape
    offsets = sorted(sources)
    use_exp = opts.exp_weight > 0 and ("exp", offsets[0], 0) in outputs
    use_geo = opts.needs_source_depth
    if use_geo and ("depth", offsets[0], 0) not in outputs:
        raise ValueError("geometry consistency needs source depths: call the model with source_depth=True")
    losses: dict = {}
    images: dict = {}
    identity_cache: dict = {}
    total = target.new_zeros(())
    for s in range(opts.num_scales):
        disp = outputs[("disp", 0, s)].float()
        if opts.full_res:
            size = (h, w)
            depth = 1.0 / _upsample(disp, size)
        else:
            size = tuple(disp.shape[-2:])
            depth = 1.0 / disp
        K_s = scale_intrinsics(K, size[1] / w, size[0] / h)
        tgt = resize_to(target, size)
        errors, geo_terms = [], []
        for f in offsets:
            src = resize_to(sources[f], size)
            warped, valid = inverse_warp(src, depth, outputs[("T", f)], K_s)
            err = photometric_error(warped, tgt, opts)
            if use_geo:
                err, geo = _geometry_consistency(err, depth, outputs, f, s, K_s, valid, size, opts)
                geo_terms.append(geo)
            if use_exp:
                mask = outputs[("exp", f, s)].float()
                if tuple(mask.shape[-2:]) != size:
                    mask = _upsample(mask, size)
                err = err * mask
                # = binary cross-entropy with target 1, written out: NaN (from non-finite weights)
                # propagates to the loss, which the trainer skips, where F.binary_cross_entropy raises
                reg = -torch.log(mask.clamp(1e-6, 1 - 1e-6)).mean()
                losses[("exp", s)] = losses.get(("exp", s), 0.0) + opts.exp_weight * reg
            errors.append((err, valid))
            if keep_images:
                images[("warped", f, s)] = warped.detach()
                images[("valid", f, s)] = valid.detach()
        if opts.reduce_sources == "mean":
            photo = torch.stack([(e * v).mean() for e, v in errors]).sum()
        else:
            err = torch.cat([torch.where(v > 0, e, torch.full_like(e, _INVALID)) for e, v in errors], 1)
            if opts.automask:
                if size not in identity_cache:  # the same at every scale when warping at full res
                    with torch.no_grad():
                        identity_cache[size] = torch.cat(
                            [photometric_error(resize_to(sources[f], size), tgt, opts) for f in offsets], 1)
                ident = identity_cache[size] + 1e-5 * torch.randn_like(identity_cache[size])  # ties
                err = torch.cat([err, ident], 1)
            best, idx = err.min(1, keepdim=True)
            keep = best < _INVALID
            if opts.automask:
                keep = keep & (idx < len(offsets))
                losses[("automask_keep", s)] = keep.float().mean().detach()
                if keep_images:
                    images[("automask", s)] = keep.float().detach()
            photo = (best * keep).sum() / keep.sum().clamp_min(1)
        losses[("photo", s)] = photo
        field = disp if opts.smooth_on == "disp" else 1.0 / disp
        if opts.smooth == "second_order":
            if opts.smooth_normalize:  # scale-free: shrinking (or growing) the whole map gains nothing
                field = field / field.mean(dim=(2, 3), keepdim=True)
            smooth = smoothness_second_order(field)
        else:
            smooth = smoothness_edge_aware(field, resize_to(target, tuple(disp.shape[-2:])))
        losses[("smooth", s)] = opts.smooth_weight / (opts.smooth_decay**s) * smooth
        scale_total = photo + losses[("smooth", s)]
        if use_exp:
            scale_total = scale_total + losses[("exp", s)]
        if opts.geometry_weight > 0:
            losses[("geometry", s)] = opts.geometry_weight * torch.stack(geo_terms).mean()
            scale_total = scale_total + losses[("geometry", s)]
        total = total + scale_total
    losses["loss"] = total
    return losses, images


#: weight of the rotation angle against the direction-of-travel angle in :func:`epipolar_prior_loss`:
#: per-frame rotations and their errors are about ten times smaller than direction errors.
EPIPOLAR_ROT_GAIN = 10.0


def epipolar_prior_loss(outputs: dict, prior_T: Tensor, prior_w: Tensor, offsets: list[int]) -> Tensor:
    """Distance of the predicted target→source motions from the pairs' two-view geometry
    (:class:`sfm_ros.training.priors.EpipolarPrior`, found from the images alone, no labels).

    For each source ``f`` (``prior_T[:, i]``, ``i`` its place in ``offsets``): the rotation angle
    between the predicted and the epipolar rotation (``‖R - R_e‖_F / √2``, smooth at zero, ≈ the
    angle in radians) times :data:`EPIPOLAR_ROT_GAIN`, plus the angle between the directions of
    translation (the chord between unit vectors); each counted where ``prior_w[:, i, 0]`` /
    ``prior_w[:, i, 1]`` is 1. The translation's length is left to view synthesis (the epipolar
    geometry does not know it). Mean over batch and sources."""
    terms = []
    for i, f in enumerate(offsets):
        T = outputs[("T", f)].float()
        Te = prior_T[:, i].to(T)
        w = prior_w[:, i].to(T)
        rot = (T[:, :3, :3] - Te[:, :3, :3]).flatten(1).norm(dim=1) / math.sqrt(2.0)
        t = T[:, :3, 3]
        direction = (t / t.norm(dim=1, keepdim=True).clamp_min(1e-6) - Te[:, :3, 3]).norm(dim=1)
        terms.append(EPIPOLAR_ROT_GAIN * w[:, 0] * rot + w[:, 1] * direction)
    return torch.stack(terms).mean()


def add_epipolar_prior(losses: dict, outputs: dict, prior_T: Tensor, prior_w: Tensor, offsets: list[int],
                       weight: float) -> dict:
    """Add ``weight`` times :func:`epipolar_prior_loss` to ``losses`` (as ``"epipolar"``, and into
    ``"loss"``): the objective of the trainer and of online adaptation."""
    losses["epipolar"] = weight * epipolar_prior_loss(outputs, prior_T, prior_w, offsets)
    losses["loss"] = losses["loss"] + losses["epipolar"]
    return losses


#: a pair's corners count in :func:`sparse_depth_loss` only when at least this many are valid
SPARSE_MIN_POINTS = 8


def sparse_depth_loss(outputs: dict, pts: Tensor, depth: Tensor) -> Tensor:
    """Scale-free distance of the target's predicted depth from the corners' triangulated depths
    (:class:`sfm_ros.training.priors.EpipolarPrior`: each pair's inliers triangulated with its
    two-view motion, one unknown scale a pair; no labels).

    ``pts`` (B, N, P, 2) pixel-centre coordinates in the input image, ``depth`` (B, N, P) the
    triangulated depths (0: no corner). For each (item, pair) with at least
    :data:`SPARSE_MIN_POINTS` corners: the variance of ``log(predicted) - log(triangulated)`` over its
    corners (Eigen et al., NeurIPS 2014, the scale-invariant error with λ = 1: zero for any depth
    proportional to the corners'), the predicted depth read bilinearly from the finest disparity.
    Mean over the counted pairs; 0 when none counts."""
    disp = outputs[("disp", 0, 0)].float()
    b, n, p, _ = pts.shape
    h, w = disp.shape[-2:]
    grid = pixels_to_grid(pts.to(disp).reshape(b, n * p, 1, 2), h, w)
    d = F.grid_sample(disp, grid, mode="bilinear", padding_mode="border", align_corners=False)
    log_pred = -torch.log(d.reshape(b, n, p).clamp_min(1e-6))
    z = depth.to(disp)
    m = (z > 0).to(disp)
    r = (log_pred - torch.log(z.clamp_min(1e-6))) * m
    count = m.sum(-1)
    mean = r.sum(-1) / count.clamp_min(1.0)
    var = ((r - mean[..., None]) ** 2 * m).sum(-1) / count.clamp_min(1.0)
    use = (count >= SPARSE_MIN_POINTS).to(disp)
    return (var * use).sum() / use.sum().clamp_min(1.0)


def add_sparse_depth_prior(losses: dict, outputs: dict, pts: Tensor, depth: Tensor, weight: float) -> dict:
    """Add ``weight`` times :func:`sparse_depth_loss` to ``losses`` (as ``"sparse_depth"``, and into
    ``"loss"``)."""
    losses["sparse_depth"] = weight * sparse_depth_loss(outputs, pts, depth)
    losses["loss"] = losses["loss"] + losses["sparse_depth"]
    return losses


def _geometry_consistency(err, depth, outputs, f, s, K_s, valid, size, opts):
    """SC-SfMLearner: the target depth moved into source ``f`` must match the source's own depth."""
    src_disp = outputs[("disp", f, s)].float()
    src_depth = 1.0 / (_upsample(src_disp, size) if opts.full_res else src_disp)
    pix, z = project(backproject(depth, K_s), K_s, outputs[("T", f)])
    grid = pixels_to_grid(pix, *size)
    sampled = F.grid_sample(src_depth, grid, mode="bilinear", padding_mode="border", align_corners=False)
    diff = ((z - sampled).abs() / (z.abs() + sampled)).clamp(0, 1)
    geo = (diff * valid).sum() / valid.sum().clamp_min(1)
    if opts.geometry_mask:
        err = err * (1 - diff)
    return err, geo
