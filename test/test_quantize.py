"""int8 graphs (:mod:`sfm_ros.runtime.quantize`), the int8 estimator and ``sfm_export --int8``."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

import torch  # noqa: E402

from sfm_ros.core.checkpoint import save_checkpoint  # noqa: E402
from sfm_ros.core.model import SfMModel  # noqa: E402
from sfm_ros.core.options import ModelOptions, Options  # noqa: E402
from sfm_ros.data.synthetic import render_sequence  # noqa: E402
from sfm_ros.runtime.inference import Estimator  # noqa: E402
from sfm_ros.runtime.quantize import calibration_feeds, compare_graphs, int8_graphs  # noqa: E402

pytestmark = pytest.mark.slow  # quantises two graphs (a few seconds)

H, W = 64, 96


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    mo = ModelOptions(width_mult=0.25, height=H, width=W)
    opts = Options()
    opts.model = mo
    torch.manual_seed(0)
    model = SfMModel(mo).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, opts)
    seq = render_sequence(num_frames=24, height=96, width=128, seed=3)
    return path, model, list(seq.images)


def _pre(images):
    import cv2

    return [torch.from_numpy(cv2.resize(im.astype(np.float32) / 255.0, (W, H)).transpose(2, 0, 1).copy())[None]
            for im in images]


def test_calibration_feeds_are_windows_of_consecutive_frames(tiny):
    frames = _pre(tiny[2][:10])
    d, p = calibration_feeds(frames, 3, [-1, 1], max_windows=4)
    assert len(d) == len(p) == 4
    assert p[0]["sources"].shape == (1, 2, 3, H, W) and d[0]["image"].shape == (1, 3, H, W)
    np.testing.assert_array_equal(p[0]["target"], frames[1].numpy())      # first window 0-2
    np.testing.assert_array_equal(p[-1]["sources"][:, 1], frames[9].numpy())  # last window 7-9
    with pytest.raises(ValueError, match="at least 3 consecutive frames"):
        calibration_feeds(frames[:2], 3, [-1, 1])


def test_int8_graphs_run_and_stay_close_to_fp32(tiny):
    _, model, images = tiny
    frames = _pre(images)
    d32, p32, d8, p8 = int8_graphs(model, H, W, frames[:16])
    assert len(d8) < len(d32) and len(p8) < len(p32)  # int8 weights: smaller files
    diff = compare_graphs((d32, p32), (d8, p8), frames[16:], 3, model.offsets)
    assert diff["windows"] == 6
    # A uint8 activation range keeps the depth's shape within a few per cent (margin: measured ~1 %).
    assert 0.0 < diff["depth_median_rel_diff"] < 0.05, diff
    assert diff["pose_max_abs_diff"] < 0.05, diff


def test_int8_estimator(tiny):
    path, _, images = tiny
    e8 = Estimator(path, device="cpu", precision="int8", backend="onnxruntime", calibration=images[:12])
    e32 = Estimator(path, device="cpu", precision="fp32", backend="onnxruntime")
    x = e32.preprocess(images[20])
    d8, d32 = e8.depth(x), e32.depth(x)
    assert d8.shape == d32.shape and torch.isfinite(d8).all()
    r = (d8 / d32).numpy()
    assert np.median(np.abs(r / np.median(r) - 1)) < 0.05
    T = e8.poses([e8.preprocess(im) for im in images[18:21]])
    assert T.shape == (1, 2, 4, 4) and torch.isfinite(T).all()
    later = Estimator(path, device="cpu", precision="int8", backend="onnxruntime")
    assert later.needs_calibration and torch.equal(later.depth(x), d32)  # fp32 until calibrated
    later.calibrate([later.preprocess(im) for im in images[:12]])
    assert not later.needs_calibration and torch.allclose(later.depth(x), d8)
    with pytest.raises(ValueError, match="calibrate needs precision int8"):
        e32.calibrate([x] * 3)
    with pytest.raises(ValueError, match="backend onnxruntime"):
        Estimator(path, device="cpu", precision="int8", backend="torch", calibration=images[:12])


def test_sfm_export_int8(tiny, tmp_path, capsys):
    import cv2

    from sfm_ros.cli.export import main

    path, _, images = tiny
    calib = tmp_path / "frames"
    calib.mkdir()
    for i, im in enumerate(images):
        cv2.imwrite(str(calib / f"{i}.png"), im[:, :, ::-1])
    out = tmp_path / "export"
    assert main([str(path), "--out", str(out), "--format", "onnx", "--int8", "--calib", str(calib),
                 "--calib-frames", "20"]) == 0
    text = capsys.readouterr().out
    assert "int8 calibrated on 14 frames" in text and "checked on the next 6" in text, text
    meta = json.loads((out / "model.json").read_text())
    assert meta["files"]["depth_int8"] == "depth.int8.onnx" and (out / "pose.int8.onnx").is_file()
    assert meta["int8"]["check"]["depth_median_rel_diff"] < 0.05
    assert set(meta["int8"]["one_thread_ms"]) == {"depth_ms_fp32", "depth_ms_int8", "pose_ms_fp32", "pose_ms_int8"}


@pytest.mark.parametrize("extra, message", [
    (["--int8"], "--int8 needs --calib"),
    (["--calib", "x"], "--calib is only used with --int8"),
    (["--int8", "--calib", "/nonexistent/frames"], "is not a folder"),
    (["--int8", "--calib", "EMPTY"], "expected at least 8 consecutive frames"),
    (["--int8", "--calib", "EMPTY", "--format", "torchscript"], "include onnx in --format"),
])
def test_sfm_export_int8_refusals(tiny, tmp_path, capsys, extra, message):
    from sfm_ros.cli.export import main

    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if a == "EMPTY" else a for a in extra]
    assert main([str(tiny[0]), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_node_pipeline_calibrates_int8_on_its_first_frames(tiny):
    """precision int8 in the node: fp32 for the camera's first frames, then int8 calibrated on them
    (a background thread), the diagnostics saying which."""
    import time

    from sfm_ros.runtime.frames import InputFrame
    from sfm_ros.runtime.model_loading import load_estimator
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.runtime.pipeline import FramePipeline, Settings
    from sfm_ros.runtime.quantize import NODE_CALIB_FRAMES

    path, _, images = tiny
    est, _ = load_estimator(str(path), device="cpu", precision="int8")
    assert est.backend == "onnxruntime" and est.needs_calibration
    pl = FramePipeline(est, camera_extrinsic(), Settings(refine_pose="none"))
    assert pl.diagnostic_values()["int8"].startswith("fp32 until 32 frames")
    frames = (images * 3)[:NODE_CALIB_FRAMES]
    outs = [pl.process(InputFrame(None, 1.0 + 0.1 * i, "cam", time.monotonic(), image=im))
            for i, im in enumerate(frames)]
    assert all(o is not None for o in outs)
    pl.int8._thread.join(timeout=60)
    assert not est.needs_calibration and pl.diagnostic_values()["int8"] == "int8"
    r = pl.process(InputFrame(None, 10.0, "cam", time.monotonic(), image=images[0]))
    assert r is not None and np.isfinite(r.depth).any()
