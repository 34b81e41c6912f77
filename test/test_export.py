"""sfm_export: TorchScript and ONNX graphs match PyTorch; metadata; clear errors for bad checkpoints.

Tolerances (float32, random inputs): depth max relative difference < 1e-4, pose vectors max
absolute difference < 1e-5 (they are ~0.01-scaled).
"""
import json

import onnx
import pytest
import torch

from sfm_ros.core.checkpoint import save_checkpoint
from sfm_ros.runtime.export import DEPTH_RTOL, POSE_ATOL, ort_session
from sfm_ros.cli.export import main
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import ModelOptions, preset

pytestmark = pytest.mark.slow  # make test-fast leaves it out

H, W = 64, 160

# Operators a TensorRT ONNX parser handles (no Loop/If/ScatterND/NonZero/dynamic Resize tricks).
TRT_FRIENDLY = {"Conv", "ConvTranspose", "Relu", "Elu", "Sigmoid", "Resize", "Concat", "Slice", "MaxPool",
                "ReduceMean", "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Constant", "Gather",
                "Shape", "Unsqueeze", "Squeeze", "Identity", "Split", "Cast", "Reciprocal"}


def _model(depth_arch: str, pose_arch: str, width_mult: float, seed: int = 0) -> tuple[SfMModel, object]:
    torch.manual_seed(seed)
    opts = preset("default")
    opts.model = ModelOptions(depth_arch=depth_arch, width_mult=width_mult, pose_arch=pose_arch, height=H, width=W)
    model = SfMModel(opts.model)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # batch-norm statistics as after training (checks the folding too)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model.eval(), opts


@pytest.mark.parametrize("depth_arch,pose_arch,width_mult", [("dispnet", "posexp", 0.25), ("resnet", "pair", 0.5),
                                                             ("dispnet_sep", "posexp", 0.5)])
def test_export_matches_pytorch(tmp_path, capsys, depth_arch, pose_arch, width_mult):
    model, opts = _model(depth_arch, pose_arch, width_mult)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model, opts)
    out = tmp_path / "export"
    assert main([str(ckpt), "--out", str(out)]) == 0
    assert "wrote depth.pt, pose.pt, depth.onnx, pose.onnx" in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    assert (meta["height"], meta["width"], meta["seq_len"], meta["source_offsets"]) == (H, W, 3, [-1, 1])
    assert meta["depth_arch"] == depth_arch and meta["onnx_opset"] >= 17
    assert "target->source" in meta["pose_convention"] and "network units" in meta["depth_units"]
    for fmt in ("torchscript", "onnx"):
        assert meta["check"][fmt]["depth_max_rel_diff"] < DEPTH_RTOL
        assert meta["check"][fmt]["pose_max_abs_diff"] < POSE_ATOL

    # Independent check against the PyTorch model, batch 1 and 2 (dynamic batch axis).
    ts_d, ts_p = torch.jit.load(str(out / "depth.pt")), torch.jit.load(str(out / "pose.pt"))
    ort_d, ort_p = ort_session(out / "depth.onnx"), ort_session(out / "pose.onnx")
    g = torch.Generator().manual_seed(1)
    for b in (1, 2):
        img = torch.rand(b, 3, H, W, generator=g)
        srcs = torch.rand(b, 2, 3, H, W, generator=g)
        with torch.no_grad():
            ref = model(img, [srcs[:, 0], srcs[:, 1]])  # sources in source_offsets order: -1, +1
            ref_depth, ref_pose = ref[("depth", 0, 0)], torch.stack([ref[("pose_vec", -1)], ref[("pose_vec", 1)]], 1)
            outs = {"torchscript": (ts_d(img), ts_p(img, srcs))}
        outs["onnx"] = (torch.from_numpy(ort_d.run(None, {"image": img.numpy()})[0]),
                        torch.from_numpy(ort_p.run(None, {"target": img.numpy(), "sources": srcs.numpy()})[0]))
        for fmt, (depth, pose) in outs.items():
            assert depth.shape == (b, 1, H, W) and pose.shape == (b, 2, 6), fmt
            assert ((depth - ref_depth).abs() / ref_depth).max() < DEPTH_RTOL, fmt
            assert (pose - ref_pose).abs().max() < POSE_ATOL, fmt

    for name in ("depth", "pose"):
        m = onnx.load(str(out / f"{name}.onnx"))
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
        ops = {n.op_type for n in m.graph.node}
        assert ops <= TRT_FRIENDLY, ops - TRT_FRIENDLY
        assert "BatchNormalization" not in ops  # folded into the convolutions
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_one_format_and_size(tmp_path):
    model, opts = _model("resnet", "pair", 0.25)
    save_checkpoint(tmp_path / "m.pt", model, opts)
    out = tmp_path / "e"
    argv = [str(tmp_path / "m.pt"), "--out", str(out), "--format", "onnx", "--height", "96", "--width", "128"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth.onnx", "model.json", "pose.onnx"]
    meta = json.loads((out / "model.json").read_text())
    assert (meta["height"], meta["width"]) == (96, 128)
    sess = ort_session(out / "depth.onnx")
    assert sess.run(None, {"image": torch.rand(1, 3, 96, 128).numpy()})[0].shape == (1, 1, 96, 128)


@pytest.mark.parametrize("depth_arch,pose_arch,width_mult", [("dispnet", "posexp", 0.25), ("resnet", "pair", 0.25)])
def test_onnx_axes_are_named_and_model_json_agrees(tmp_path, depth_arch, pose_arch, width_mult):
    """Dynamic axes named batch, height, width (no exporter-made names); model.json declares the same
    shapes, says which axes are dynamic and the trained size; the graphs run at another size."""
    from sfm_ros.runtime.export import onnx_shapes

    model, opts = _model(depth_arch, pose_arch, width_mult)
    save_checkpoint(tmp_path / "m.pt", model, opts)
    out = tmp_path / "e"
    assert main([str(tmp_path / "m.pt"), "--out", str(out), "--format", "onnx"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["trained_size"] == [H, W] and set(meta["dynamic_axes"]) == {"batch", "height", "width"}
    assert meta["checked_sizes"] == [[H, W], [H + 32, W + 32]]
    depth, pose = onnx_shapes(out / "depth.onnx"), onnx_shapes(out / "pose.onnx")
    assert depth == {"image": ["batch", 3, "height", "width"], "depth": ["batch", 1, "height", "width"]}
    assert pose == {"target": ["batch", 3, "height", "width"], "sources": ["batch", 2, 3, "height", "width"],
                    "poses": ["batch", 2, 6]}
    assert meta["inputs"] == {"depth": {"image": depth["image"]},
                              "pose": {"target": pose["target"], "sources": pose["sources"]}}
    assert meta["outputs"] == {"depth": {"depth": depth["depth"]}, "pose": {"poses": pose["poses"]}}
    d_s, p_s = ort_session(out / "depth.onnx"), ort_session(out / "pose.onnx")
    for h, w in ((H, W), (H + 64, W + 96)):
        img = torch.rand(2, 3, h, w)
        assert d_s.run(None, {"image": img.numpy()})[0].shape == (2, 1, h, w)
        srcs = torch.rand(2, 2, 3, h, w)
        assert p_s.run(None, {"target": img.numpy(), "sources": srcs.numpy()})[0].shape == (2, 2, 6)


def test_existing_out_is_refused_without_overwrite(tmp_path, capsys):
    model, opts = _model("dispnet", "posexp", 0.25)
    save_checkpoint(tmp_path / "m.pt", model, opts)
    out = tmp_path / "e"
    assert main([str(tmp_path / "m.pt"), "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([str(tmp_path / "m.pt"), "--out", str(out), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sfm_export: error: --out {out} exists (holds depth.onnx, depth.pt") and "\n" not in err
    assert "pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # --overwrite: the earlier export's files that this one does not write go (model.json agrees)
    assert main([str(tmp_path / "m.pt"), "--out", str(out), "--format", "onnx", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth.onnx", "model.json", "pose.onnx"]
    assert set(json.loads((out / "model.json").read_text())["files"].values()) == {"depth.onnx", "pose.onnx"}
    (tmp_path / "f").write_text("x")
    assert main([str(tmp_path / "m.pt"), "--out", str(tmp_path / "f")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "m.pt"), "--out", str(tmp_path / "empty"), "--format", "torchscript"]) == 0


def test_bad_checkpoint_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfm_export: error:") and "does not exist" in err and "\n" not in err
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"checkpoint {bad} is not a PyTorch checkpoint" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
    for argv, needle in ((["--format", "tflite"], "unknown format(s)"), (["--height", "abc"], "--height")):
        assert main([str(bad), "--out", str(tmp_path / "o"), *argv]) == 2  # one line, not argparse's usage block
        err = capsys.readouterr().err.strip()
        assert err.startswith("sfm_export: error: argument ") and needle in err and "\n" not in err, err


@pytest.mark.parametrize("depth_arch,pose_arch,width_mult", [("dispnet", "posexp", 0.25), ("resnet", "pair", 0.5)])
def test_estimator_onnxruntime_backend_matches_torch(tmp_path, depth_arch, pose_arch, width_mult):
    """The node's ``backend: onnxruntime`` path: same depth and poses as PyTorch (export tolerances)."""
    import numpy as np

    from sfm_ros.runtime.inference import Estimator

    model, opts = _model(depth_arch, pose_arch, width_mult)
    save_checkpoint(tmp_path / "m.pt", model, opts)
    ref = Estimator(tmp_path / "m.pt", device="cpu")
    ort = Estimator(tmp_path / "m.pt", device="cpu", backend="onnxruntime", threads=1)
    assert ort.backend == "onnxruntime"
    frames = [ref.preprocess(np.random.default_rng(i).integers(0, 255, (100, 250, 3), dtype=np.uint8))
              for i in range(3)]
    d_ref, d_ort = ref.depth(frames[1]), ort.depth(frames[1])
    assert d_ort.shape == d_ref.shape == (1, 1, H, W) and d_ort.dtype == torch.float32
    assert ((d_ort - d_ref).abs() / d_ref).max() < DEPTH_RTOL
    T_ref, T_ort = ref.poses(frames), ort.poses(frames)
    assert T_ort.shape == (1, 2, 4, 4)
    assert (T_ort - T_ref).abs().max() < 10 * POSE_ATOL  # through pose_vec_to_mat: same order
    if pose_arch == "posexp":  # explainability masks still come from PyTorch
        assert ort.explainability(frames) is not None
    # pose_flip (one batch of two): the mean of the window's motion and the mirrored window's
    # mirrored back, so a mirrored window gives exactly the mirrored motion; both backends agree
    from sfm_ros.core.geometry import mat_to_pose_vec
    mirrored = [torch.flip(f, dims=[-1]) for f in frames]
    sign = torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    from sfm_ros.core.geometry import pose_vec_to_mat
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))  # the x mirror: sign is M T M in vector form
    rv = torch.randn(8, 6) * torch.tensor([1.0, 1.0, 1.0, 0.3, 0.3, 0.3])
    assert torch.allclose(pose_vec_to_mat(rv * sign), M @ pose_vec_to_mat(rv) @ M, atol=1e-6)
    for est in (ref, ort):
        v = mat_to_pose_vec(est.poses(frames, flip=True)[0])
        v0, v1 = mat_to_pose_vec(est.poses(frames)[0]), mat_to_pose_vec(est.poses(mirrored)[0])
        assert torch.allclose(v, 0.5 * (v0 + v1 * sign), atol=1e-5)
        assert torch.allclose(mat_to_pose_vec(est.poses(mirrored, flip=True)[0]), v * sign, atol=1e-5)
        assert not torch.allclose(v, v0, atol=1e-5)
    assert (ort.poses(frames, flip=True) - ref.poses(frames, flip=True)).abs().max() < 10 * POSE_ATOL
    on = Estimator(tmp_path / "m.pt", device="cpu", pose_flip=True)
    assert torch.equal(on.poses(frames), ref.poses(frames, flip=True)) and on.poses(frames, flip=False).shape == (1, 2, 4, 4)


def test_estimator_backend_errors(tmp_path):
    from sfm_ros.runtime.inference import Estimator

    model, opts = _model("dispnet", "posexp", 0.25)
    save_checkpoint(tmp_path / "m.pt", model, opts)
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, got 'tensorrt'"):
        Estimator(tmp_path / "m.pt", device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="backend onnxruntime runs fp32 or int8 on the CPU"):
        Estimator(tmp_path / "m.pt", device="cpu", precision="bf16", backend="onnxruntime")


def test_auto_backend_rule():
    from sfm_ros.runtime.inference import auto_backend

    assert auto_backend("cpu", "fp32") == "onnxruntime"  # measured faster on the CPU (BENCHMARKS.md)
    assert auto_backend("cpu", "bf16") == "torch"
    assert auto_backend("cpu", "fp32", size_override=True) == "torch"  # ONNX graphs have a fixed size
    assert auto_backend("cuda:7", "fp32") == "torch"  # invalid here: the Estimator reports it
    if torch.cuda.is_available():
        assert auto_backend("cuda", "fp32") == "torch"


def test_python_m_export_cli_help():
    """``python -m sfm_ros.cli.export`` is the console script's module (``sfm_export``)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sfm_ros.cli.export", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "sfm_export" in r.stdout
