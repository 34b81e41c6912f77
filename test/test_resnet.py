"""ResNet depth network and pair-wise pose network: shapes, ranges, sizes, gradients, checkpoints."""
import numpy as np
import pytest
import torch

from sfm_ros.core.checkpoint import CheckpointError, load_model, save_checkpoint
from sfm_ros.core.losses import compute_losses
from sfm_ros.core.model import SfMModel, build_depth_net, build_pose_net
from sfm_ros.core.options import ModelOptions, Options, load_options, preset
from sfm_ros.core.resnet import PairPoseNet, ResNetDepthNet, count_parameters, fold_batchnorm


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial batch-norm statistics, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


def test_resnet_depth_rejects_wrong_channels():
    # output sizes and range: test_networks.py::test_depth_nets_four_scales_any_size
    net = ResNetDepthNet(width_mult=0.25)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 1, 37, 50))


def test_parameter_counts():
    # Full width = Monodepth2's ResNet-18 depth network (11.2 M encoder + 3.2 M decoder).
    assert count_parameters(ResNetDepthNet(width_mult=1.0)) == 14_329_236
    # Half width (32-256 channels, 8-128 decoder): the fast network.
    assert count_parameters(ResNetDepthNet(width_mult=0.5)) == 3_587_852
    # Pair pose net: quarter-width ResNet-18 on 6 channels + 256-channel decoder.
    assert count_parameters(PairPoseNet(num_sources=2)) == 1_919_174
    # For scale: the paper's DispNet has 31.6 M parameters, PoseExpNet 2.6 M (1.3 M without masks).


def test_pair_pose_interface_and_batching():
    torch.manual_seed(0)
    net = PairPoseNet(num_sources=2).train()
    assert net.output_exp is False and net.num_sources == 2
    t = torch.randn(3, 3, 64, 96)
    srcs = [torch.randn_like(t) for _ in range(2)]
    pose, masks = net(t, srcs)
    assert pose.shape == (3, 2, 6) and masks == []
    assert pose.abs().max() < 0.5  # 0.01 scaling: small motions at initialisation
    with pytest.raises(ValueError, match="built for 2 sources"):
        net(t, srcs[:1])
    with pytest.raises(ValueError, match="frame 2"):
        net(t, [srcs[0], srcs[1][..., :32, :]])
    # The N pairs run as one batch: pose[:, i] must be the pose of the pair (target, source i) alone.
    _randomise_bn(net)
    net.eval()
    single = PairPoseNet(num_sources=1).eval()
    single.load_state_dict(net.state_dict())
    with torch.no_grad():
        pose = net(t, srcs)[0]
        for i in range(2):
            torch.testing.assert_close(pose[:, i], single(t, [srcs[i]])[0][:, 0], rtol=1e-5, atol=1e-7)
        # swapping the sources swaps the outputs
        torch.testing.assert_close(net(t, srcs[::-1])[0], pose.flip(1), rtol=1e-5, atol=1e-7)


def test_fold_batchnorm_matches_eval():
    torch.manual_seed(0)
    for net, args in ((ResNetDepthNet(width_mult=0.25), (torch.randn(2, 3, 64, 96),)),
                      (PairPoseNet(2), (torch.randn(2, 3, 64, 96), [torch.randn(2, 3, 64, 96)] * 2))):
        _randomise_bn(net)
        net.eval()
        folded = fold_batchnorm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
        with torch.no_grad():
            a, b = net(*args)[0], folded(*args)[0]
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_registered_in_model_and_options():
    opts = ModelOptions(depth_arch="resnet", width_mult=0.5, pose_arch="pair", seq_len=5)
    assert isinstance(build_depth_net(opts), ResNetDepthNet)
    pose = build_pose_net(opts, output_exp=True)  # no mask branch whatever output_exp says
    assert isinstance(pose, PairPoseNet) and pose.num_sources == 4 and not pose.output_exp
    o = load_options("default", ["model.depth_arch=resnet", "model.pose_arch=pair", "model.width_mult=0.5"])
    assert (o.model.depth_arch, o.model.pose_arch, o.model.width_mult) == ("resnet", "pair", 0.5)
    with pytest.raises(ValueError, match="depth_arch"):
        load_options("default", ["model.depth_arch=resnet50"])
    with pytest.raises(ValueError, match="pose_arch"):
        load_options("default", ["model.pose_arch=posenet"])
    with pytest.raises(ValueError, match="width_mult"):
        load_options("default", ["model.width_mult=0"])


@pytest.mark.parametrize("depth_arch,pose_arch", [("resnet", "pair"), ("resnet", "posexp"), ("dispnet", "pair")])
def test_gradients_flow_through_default_losses(depth_arch, pose_arch):
    torch.manual_seed(0)
    opts = preset("default")
    opts.model = ModelOptions(depth_arch=depth_arch, pose_arch=pose_arch, width_mult=0.25, height=64, width=96)
    model = SfMModel(opts.model, output_exp=opts.loss.exp_weight > 0).train()
    b, h, w = 2, 64, 96
    tgt = torch.rand(b, 3, h, w)
    srcs = [torch.rand_like(tgt) for _ in model.offsets]
    K = torch.tensor([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]]).expand(b, 3, 3)
    out = model(tgt, srcs)
    for s in range(4):
        assert out[("disp", 0, s)].shape == (b, 1, h // 2**s, w // 2**s)
    losses, _ = compute_losses(tgt, dict(zip(model.offsets, srcs)), K, out, opts.loss)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for name, net in (("depth", model.depth_net), ("pose", model.pose_net)):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    opts = preset("default")
    opts.model = ModelOptions(depth_arch="resnet", width_mult=0.25, pose_arch="pair", height=64, width=96)
    model = SfMModel(opts.model, output_exp=False)
    _randomise_bn(model)
    path = tmp_path / "resnet.pt"
    save_checkpoint(path, model, opts, step=3)
    loaded, lopts, state = load_model(path)
    assert isinstance(loaded.depth_net, ResNetDepthNet) and isinstance(loaded.pose_net, PairPoseNet)
    assert lopts.model == opts.model and state["step"] == 3
    model.eval()
    t = torch.rand(1, 3, 64, 96)
    srcs = [torch.rand_like(t) for _ in range(2)]
    with torch.no_grad():
        a, b = model(t, srcs), loaded(t, srcs)
    torch.testing.assert_close(b[("depth", 0, 0)], a[("depth", 0, 0)], rtol=0, atol=0)
    torch.testing.assert_close(b[("pose_vec", 1)], a[("pose_vec", 1)], rtol=0, atol=0)
    # a checkpoint of another architecture is refused clearly
    other = Options()
    other.model = ModelOptions(depth_arch="resnet", width_mult=0.5, pose_arch="pair", height=64, width=96)
    with pytest.raises(CheckpointError, match="width_mult"):
        load_model(path, expect=other)
    # weights that do not fit the declared architecture
    state["options"]["model"]["pose_arch"] = "posexp"
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="pose_net weights do not fit"):
        load_model(tmp_path / "bad.pt")


def test_estimator_runs_new_archs(tmp_path):
    from sfm_ros.runtime.inference import Estimator

    torch.manual_seed(0)
    opts = preset("default")
    opts.model = ModelOptions(depth_arch="resnet", width_mult=0.25, pose_arch="pair", height=64, width=96)
    save_checkpoint(tmp_path / "m.pt", SfMModel(opts.model), opts)
    est = Estimator(tmp_path / "m.pt", device="cpu")
    frames = [est.preprocess(np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8))
              for i in range(3)]
    depth = est.depth(frames[1])
    assert depth.shape == (1, 1, 64, 96) and (depth > 0).all()
    T = est.poses(frames)
    assert T.shape == (1, 2, 4, 4)
    assert est.explainability(frames) is None
