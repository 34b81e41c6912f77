"""Losses: gradients reach both networks; each term does what it claims on small cases."""
import pytest
import torch

from sfm_ros.core.losses import compute_losses, photometric_error, smoothness_second_order, ssim
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import LossOptions, ModelOptions, default_loss, paper_loss


def _batch(b=2, h=64, w=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, 3, h, w, generator=g)
    K = torch.tensor([[60.0, 0, w / 2 - 0.5], [0, 60.0, h / 2 - 0.5], [0, 0, 1]]).expand(b, 3, 3).clone()
    return t, {-1: torch.rand(b, 3, h, w, generator=g), 1: torch.rand(b, 3, h, w, generator=g)}, K


@pytest.mark.parametrize("loss_opts", [paper_loss(), default_loss(),
                                       LossOptions(geometry_weight=0.5, geometry_mask=True)],
                         ids=["paper", "default", "sc"])
def test_gradients_reach_both_networks(loss_opts):
    torch.manual_seed(0)
    model = SfMModel(ModelOptions(width_mult=0.25, height=64, width=96)).train()
    t, src, K = _batch()
    out = model(t, [src[-1], src[1]], source_depth=loss_opts.geometry_weight > 0)
    losses, images = compute_losses(t, src, K, out, loss_opts)
    assert images == {}  # no diagnostic images unless asked for
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for name, net in (("depth", model.depth_net), ("pose", model.pose_net)):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name
    # the explainability branch learns only when its regulariser is on (paper)
    mask_head_grad = model.pose_net.mask_heads[0].weight.grad
    assert (mask_head_grad is not None and mask_head_grad.abs().sum() > 0) == (loss_opts.exp_weight > 0)


def test_photometric_error_ranges():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.ones(1, 3, 8, 8)
    assert torch.allclose(photometric_error(a, b, paper_loss()), torch.full((1, 1, 8, 8), 2.0))  # [-1,1] L1
    assert torch.allclose(photometric_error(a, a, default_loss()), torch.zeros(1, 1, 8, 8))
    x = torch.rand(1, 3, 16, 16)
    assert ssim(x, x).max() < 1e-6 and ssim(x, 1 - x).mean() > 0.3


def test_second_order_smoothness_ignores_planes():
    v, u = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    plane = (0.3 * u + 0.2 * v)[None, None]
    assert smoothness_second_order(plane) < 1e-5
    assert smoothness_second_order(plane + torch.rand_like(plane)) > 0.1


def test_normalised_smoothness_does_not_pull_on_the_depths_scale():
    """``smooth_normalize`` (the default preset's): the smoothness of a depth map and of the same map
    at any scale are equal, and its gradient has no component along the scale; unnormalised
    (the paper's, on depth), halving every depth halves the term: the pull towards the near end."""
    g = torch.Generator().manual_seed(0)
    disp = (0.5 + torch.rand(2, 1, 16, 24, generator=g)).requires_grad_(True)
    t, src, K = _batch(2, 16, 24)
    out = {("disp", 0, 0): disp}
    for f in (-1, 1):
        out[("T", f)] = torch.eye(4).expand(2, 4, 4).clone()
    opts = default_loss()
    opts.num_scales = 1
    assert opts.smooth_normalize and opts.smooth_on == "depth"
    plain = LossOptions(**{**opts.__dict__, "smooth_normalize": False})
    term = {}
    for name, o in (("normalised", opts), ("plain", plain)):
        for k in (1.0, 2.0):  # disparity x2: depth / 2
            o2 = {**out, ("disp", 0, 0): disp * k}
            term[name, k] = compute_losses(t, src, K, o2, o)[0][("smooth", 0)]
    assert torch.allclose(term["normalised", 1.0], term["normalised", 2.0], rtol=1e-5)
    assert torch.allclose(term["plain", 2.0], 0.5 * term["plain", 1.0], rtol=1e-5)
    (grad,) = torch.autograd.grad(term["normalised", 1.0], disp)
    d = disp.detach()
    assert abs(float((grad * d).sum())) < 1e-6 * float(grad.abs().sum() * d.abs().mean())  # d/dk at k=1
    from sfm_ros.core.options import load_options

    assert load_options("default").loss.smooth_normalize and not load_options("paper").loss.smooth_normalize


def _identity_outputs(b, h, w, depth=5.0):
    out = {}
    for s in range(4):
        shape = (b, 1, -(-h // 2**s), -(-w // 2**s))
        out[("disp", 0, s)] = torch.full(shape, 1 / depth)
        for f in (-1, 1):
            out[("exp", f, s)] = torch.full(shape, 0.5)
    for f in (-1, 1):
        out[("T", f)] = torch.eye(4).expand(b, 4, 4).clone()
    return out


def test_explainability_mask_weights_the_error_and_is_regularised():
    t, src, K = _batch()
    out = _identity_outputs(2, 64, 96)
    half, _ = compute_losses(t, src, K, out, paper_loss())
    for s in range(4):
        for f in (-1, 1):
            out[("exp", f, s)] = torch.full_like(out[("exp", f, s)], 1.0 - 1e-6)
    full, _ = compute_losses(t, src, K, out, paper_loss())
    # halving the mask halves the photometric term, and the regulariser charges for it
    assert torch.allclose(half[("photo", 0)], 0.5 * full[("photo", 0)], rtol=1e-4)
    assert torch.allclose(half[("exp", 0)], torch.tensor(2 * 0.2 * 0.6931), rtol=1e-3)
    assert full[("exp", 0)] < 1e-4


def test_min_reprojection_and_automask():
    t, src, K = _batch()
    src = {-1: t.clone(), 1: torch.rand_like(t)}  # source -1 equals the target
    out = _identity_outputs(2, 64, 96)
    mean, _ = compute_losses(t, src, K, out, LossOptions(exp_weight=0, reduce_sources="mean"))
    mn, _ = compute_losses(t, src, K, out, LossOptions(exp_weight=0, reduce_sources="min"))
    assert mn[("photo", 0)] < 1e-4 < 0.1 < mean[("photo", 0)]
    # auto-masking: with an identity pose the warped and unwarped errors tie; pixels whose static
    # source explains them are dropped from the loss
    am, images = compute_losses(t, {-1: torch.rand_like(t), 1: torch.rand_like(t)}, K, out,
                                LossOptions(exp_weight=0, reduce_sources="min", automask=True), keep_images=True)
    frac = images[("automask", 0)].mean()
    assert 0.3 < frac < 0.7  # identical errors: the tie-break noise decides, about half are kept


def test_geometry_needs_source_depth():
    t, src, K = _batch()
    with pytest.raises(ValueError, match="source_depth=True"):
        compute_losses(t, src, K, _identity_outputs(2, 64, 96), LossOptions(geometry_weight=0.5))


def test_epipolar_prior_loss_is_zero_at_the_prior_and_pulls_towards_it():
    """At the prior's rotation and direction the loss is 0 whatever the step length; a 1° turn
    error costs ~ EPIPOLAR_ROT_GAIN * 0.01745; the gradient moves the prediction towards it; a
    zero weight removes a term."""
    import math

    from sfm_ros.core.geometry import pose_vec_to_mat
    from sfm_ros.core.losses import EPIPOLAR_ROT_GAIN, epipolar_prior_loss

    prior = pose_vec_to_mat(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.02, 0.0]]))  # unit step, 1.15° yaw
    w = torch.ones(1, 1, 2)
    exact = {("T", 1): pose_vec_to_mat(torch.tensor([[0.0, 0.0, 0.37, 0.0, 0.02, 0.0]]))}
    assert float(epipolar_prior_loss(exact, prior[:, None], w, [1])) == pytest.approx(0.0, abs=1e-6)
    one_deg = math.radians(1.0)
    turned = {("T", 1): pose_vec_to_mat(torch.tensor([[0.0, 0.0, 0.37, 0.0, 0.02 + one_deg, 0.0]]))}
    assert float(epipolar_prior_loss(turned, prior[:, None], w, [1])) == pytest.approx(EPIPOLAR_ROT_GAIN * one_deg,
                                                                                      rel=1e-3)
    vec = torch.tensor([[0.3, 0.0, 1.0, 0.0, 0.0, 0.0]], requires_grad=True)  # sideways, no turn
    loss = epipolar_prior_loss({("T", 1): pose_vec_to_mat(vec)}, prior[:, None], w, [1])
    loss.backward()
    assert vec.grad[0, 0] > 0 and vec.grad[0, 4] < 0  # less sideways, more yaw
    none = torch.zeros(1, 1, 2)
    assert float(epipolar_prior_loss(turned, prior[:, None], none, [1])) == 0.0


def test_epipolar_weight_must_be_finite_and_non_negative():
    from sfm_ros.core.options import load_options

    for bad in ("-1", "nan"):
        with pytest.raises(ValueError, match="epipolar_weight"):
            load_options("default", [f"loss.epipolar_weight={bad}"])
    assert load_options("default", []).loss.epipolar_weight == 1.0
    assert load_options("paper", []).loss.epipolar_weight == 0.0


def test_losses_and_images_are_separate():
    """The losses are scalars only (all loggable); the warped images and masks come apart."""
    t, src, K = _batch()
    out = _identity_outputs(2, 64, 96)
    losses, images = compute_losses(t, src, K, out, LossOptions(exp_weight=0, reduce_sources="min", automask=True),
                                    keep_images=True)
    assert all(v.ndim == 0 for v in losses.values())
    assert {k[0] for k in losses if isinstance(k, tuple)} == {"photo", "smooth", "automask_keep"}
    assert {k[0] for k in images} == {"warped", "valid", "automask"}
    assert images[("warped", -1, 0)].shape == t.shape and images[("valid", 1, 0)].shape[1] == 1


def test_sparse_depth_loss_is_scale_free_and_pulls_towards_the_corners():
    """Zero for a predicted depth proportional to the corners' (any scale a pair), positive
    otherwise, padding (depth 0) ignored, a pair with too few corners not counted; its gradient
    reaches the disparity."""
    from sfm_ros.core.losses import SPARSE_MIN_POINTS, sparse_depth_loss

    torch.manual_seed(0)
    h, w, p = 16, 24, 20
    disp = (0.2 + torch.rand(2, 1, h, w)).requires_grad_(True)
    pts = torch.stack([torch.randint(0, w, (2, 2, p)), torch.randint(0, h, (2, 2, p))], -1).float()
    true = 1.0 / disp.detach()[torch.arange(2)[:, None, None], 0, pts[..., 1].long(), pts[..., 0].long()]
    depth = true * torch.tensor([[3.0, 0.5], [7.0, 1.0]])[..., None]  # one scale a pair
    depth[:, :, -5:] = 0.0  # padding
    out = {("disp", 0, 0): disp}
    assert sparse_depth_loss(out, pts, depth).item() == pytest.approx(0.0, abs=1e-9)
    noisy = depth * torch.exp(0.3 * torch.randn_like(depth))
    loss = sparse_depth_loss(out, pts, noisy)
    assert loss.item() > 0.01
    loss.backward()
    assert disp.grad is not None and disp.grad.abs().sum() > 0
    few = noisy.clone()
    few[:, :, SPARSE_MIN_POINTS - 1:] = 0.0
    assert sparse_depth_loss(out, pts, few).item() == 0.0
