"""Networks: shapes at 4 scales for any input size, output ranges, pose scaling, eval mode."""
import pytest
import torch

from sfm_ros.core.model import SfMModel, source_offsets
from sfm_ros.core.networks import DISP_ALPHA, DISP_BETA, DispNet, PoseExpNet
from sfm_ros.core.options import ModelOptions
from sfm_ros.core.resnet import ResNetDepthNet


@pytest.mark.parametrize("net_cls", [DispNet, ResNetDepthNet, lambda **kw: DispNet(separable=True, **kw)],
                         ids=["dispnet", "resnet", "dispnet_sep"])
@pytest.mark.parametrize("hw", [(128, 416), (100, 333), (64, 64), (37, 50)])
def test_depth_nets_four_scales_any_size(net_cls, hw):
    """Every depth network: 4 disparity scales of size H/2^s rounded up, in the head's range."""
    torch.manual_seed(0)
    net = net_cls(width_mult=0.25).train()
    h, w = hw
    disps = net(torch.randn(2, 3, h, w))
    assert len(disps) == 4
    for s, d in enumerate(disps):
        assert d.shape == (2, 1, -(-h // 2**s), -(-w // 2**s)), (s, d.shape)
        assert (d >= DISP_BETA).all() and (d <= DISP_ALPHA + DISP_BETA).all()
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, h, w))
    assert len(out) == 1 and out[0].shape == (1, 1, h, w)


def test_dispnet_is_the_papers_size():
    n = sum(p.numel() for p in DispNet().parameters())
    assert 31e6 < n < 32.5e6, n  # ~31.6 M parameters, as the paper's DispNet


def test_the_separable_dispnet_factors_every_convolution_but_the_first_and_the_heads():
    """``dispnet_sep``: DispNet's layout and channels, each k x k convolution after the image's
    first as a depthwise k x k + pointwise 1 x 1 pair; 3-4x fewer weights at half width."""
    from sfm_ros.core.model import build_depth_net

    torch.manual_seed(0)
    net = build_depth_net(ModelOptions(depth_arch="dispnet_sep", width_mult=0.5))
    full = DispNet(width_mult=0.5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    depthwise = [m for m in convs if m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    plain_k = [m for m in convs if m.groups == 1 and m.kernel_size != (1, 1)]
    assert len(plain_k) == 1 + 4  # the image's first convolution and the four disparity heads
    assert len(depthwise) == 2 * 7 - 1 + 7  # the encoder's 13 after the first, the decoder's 7
    n, n_full = (sum(p.numel() for p in m.parameters()) for m in (net, full))
    assert 2.5 < n_full / n < 4.5, (n, n_full)
    # initialised to carry the image to the finest head as the full network does (torch's Xavier
    # counts a depthwise filter's channels into its fan-out: the finest disparity started flat)
    x, spread = torch.randn(2, 3, 96, 128), {}
    for name, m in (("sep", net.train()), ("full", full.train())):
        out = []
        m.heads[-1].register_forward_hook(lambda mod, i, o: out.append(float(o.detach().std())))
        with torch.no_grad():
            m(x)
        spread[name] = out[0]
    assert spread["sep"] > 0.3 * spread["full"] > 0, spread


def test_posexpnet_shapes_and_scale():
    torch.manual_seed(0)
    net = PoseExpNet(num_sources=4).train()
    t = torch.randn(3, 3, 128, 416)
    pose, masks = net(t, [torch.randn_like(t) for _ in range(4)])
    assert pose.shape == (3, 4, 6)
    # 0.01 scaling: at initialisation the predicted motion is small
    assert pose.abs().max() < 0.5
    assert [m.shape for m in masks] == [(3, 4, 128 // 2**s, 416 // 2**s) for s in range(4)]
    assert all(((m > 0) & (m < 1)).all() for m in masks)
    net.eval()
    with torch.no_grad():
        pose_eval, masks_eval = net(t, [torch.randn_like(t) for _ in range(4)])
    assert pose_eval.shape == (3, 4, 6) and masks_eval == []
    assert len(net.explainability(t, [t] * 4)) == 4 and not net.training
    with pytest.raises(ValueError, match="built for 4 sources"):
        net(t, [t])
    with pytest.raises(ValueError, match="frame 1"):
        net(t, [t[..., :64, :], t, t, t])


def test_model_outputs_keyed_by_name_frame_scale():
    torch.manual_seed(0)
    model = SfMModel(ModelOptions(width_mult=0.25, height=64, width=96, seq_len=5)).train()
    assert source_offsets(5) == [-2, -1, 1, 2]
    t = torch.rand(2, 3, 64, 96)
    out = model(t, [torch.rand_like(t) for _ in range(4)], source_depth=True)
    for s in range(4):
        for f in (0, -2, -1, 1, 2):
            assert torch.allclose(out[("depth", f, s)], 1 / out[("disp", f, s)])
    for f in (-2, -1, 1, 2):
        assert out[("T", f)].shape == (2, 4, 4) and out[("pose_vec", f)].shape == (2, 6)
        assert out[("exp", f, 0)].shape == (2, 1, 64, 96)
    with pytest.raises(ValueError, match="expected 4 sources"):
        model(t, [t])


def test_disparity_head_range_and_start_depth_follow_the_model_options():
    from sfm_ros.core.model import build_depth_net, disparity_head
    from sfm_ros.core.options import ModelOptions

    assert disparity_head(ModelOptions()) == (10.0, 0.01)  # the paper's head, exactly
    opts = ModelOptions(min_depth=0.01, max_depth=50.0, init_depth=0.5, width_mult=0.25)
    alpha, beta = disparity_head(opts)
    assert abs(beta - 0.02) < 1e-12 and abs(alpha + beta - 100.0) < 1e-9
    torch.manual_seed(0)
    net = build_depth_net(opts).eval()
    with torch.no_grad():
        depth = 1.0 / net(torch.zeros(1, 3, 64, 96))[0]
    assert 0.3 < float(depth.median()) < 0.8  # starts near init_depth (the weights add spread)
    assert float(depth.min()) >= 0.01 - 1e-6 and float(depth.max()) <= 50.0 + 1e-4
