"""The node's model loading (:mod:`sfm_ros.runtime.model_loading`): ``precision auto`` on the CPU
chooses by a measurement at start."""
from __future__ import annotations

import importlib.util

import pytest

from conftest import save_tiny_checkpoint
from sfm_ros.runtime import model_loading as ml


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, m):
        self.lines.append(m)

    def warning(self, m):
        self.lines.append(m)


def test_auto_measures_and_says_why(tiny):
    log = _Log()
    e, _ = ml.load_estimator(tiny, device="cpu", precision="auto", log=log)
    assert e.precision in ("fp32", "bf16") and e.device.type == "cpu"
    assert len(log.lines) == 1 and log.lines[0].startswith("precision auto: ")
    # measured where the CPU has bf16 instructions; said without a measurement where it has none
    from sfm_ros.core.device import cpu_has_bf16_instructions

    assert (" ms" in log.lines[0]) if cpu_has_bf16_instructions() else ("no bf16 instructions" in log.lines[0])


@pytest.mark.parametrize("has_bf16", [True, False])
def test_a_bad_checkpoint_is_refused_before_anything_is_said(tmp_path, monkeypatch, has_bf16):
    """The node's one-line error for a broken checkpoint stays the only line, whatever the CPU (a CPU
    without bf16 instructions decides without measuring, and used to say so before the load failed)."""
    monkeypatch.setattr("sfm_ros.core.device.cpu_has_bf16_instructions", lambda: has_bf16)
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    log = _Log()
    with pytest.raises(Exception, match="is truncated"):
        ml.load_estimator(str(bad), device="cpu", precision="auto", log=log)
    assert log.lines == []


@pytest.mark.parametrize("times, change, expected", [
    ((10.0, 5.0), (0.001, 0.0001), ("torch", "bf16")),         # clearly faster, equal output
    ((10.0, 9.5), (0.001, 0.0001), ("onnxruntime", "fp32")),   # within MIN_GAIN: not worth it
    ((10.0, 5.0), (0.05, 0.0001), ("onnxruntime", "fp32")),    # faster but the depth changes
    ((10.0, 5.0), (0.001, 0.05), ("onnxruntime", "fp32")),     # faster but the poses change
])
def test_bf16_only_when_faster_at_equal_output(tiny, monkeypatch, times, change, expected):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ml, "time_ms", lambda es, x, runs: list(times))
    monkeypatch.setattr(ml, "output_change", lambda a, b, f: change)
    monkeypatch.setattr("sfm_ros.core.device.cpu_has_bf16_instructions", lambda: True)
    backend, precision, why, _ = ml.choose_cpu_path(tiny)
    assert (backend, precision) == expected, why
    assert "torch bf16 " in why


def test_no_bf16_instructions_no_bf16(tiny, monkeypatch):
    monkeypatch.setattr("sfm_ros.core.device.cpu_has_bf16_instructions", lambda: False)
    backend, precision, why, _ = ml.choose_cpu_path(tiny, backend="torch")
    assert (backend, precision) == ("torch", "fp32") and "no bf16 instructions" in why


def test_output_change_of_bf16_is_small_for_one_model(tiny):
    """bf16 autocast against fp32 on rendered frames: the measured change is finite and small."""
    import torch

    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.runtime.inference import Estimator

    e32 = Estimator(tiny, device="cpu", precision="fp32", backend="torch")
    e16 = Estimator(tiny, device="cpu", precision="bf16", backend="torch")
    seq = render_sequence(num_frames=3, height=64, width=96, seed=1)
    depth, pose = ml.output_change(e32, e16, [e32.preprocess(im) for im in seq.images])
    assert 0.0 <= depth < 0.05 and 0.0 <= pose < 0.05 and torch.isfinite(torch.tensor([depth, pose])).all()


def test_auto_that_is_not_measured_is_fp32_on_the_cpu(tiny, monkeypatch):
    """A backend given (or a size override) skips the measurement: fp32, whatever the CPU's flags
    (the estimator's own auto would take bf16 with AMX, which ONNX Runtime cannot run)."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr("sfm_ros.runtime.inference.cpu_supports_bf16", lambda: True)
    e, _ = ml.load_estimator(tiny, device="cpu", precision="auto", backend="onnxruntime")
    assert (e.backend, e.precision) == ("onnxruntime", "fp32")
    e, _ = ml.load_estimator(tiny, device="cpu", precision="auto", height=96, width=128)
    assert (e.backend, e.precision) == ("torch", "fp32")


def test_a_failing_bf16_trial_falls_back_to_fp32(tiny, monkeypatch):
    monkeypatch.setattr("sfm_ros.core.device.cpu_has_bf16_instructions", lambda: True)

    def boom(*a, **k):
        raise RuntimeError("no bf16 kernel for this op\nmore")
    monkeypatch.setattr(ml, "output_change", boom)
    backend, precision, why, _ = ml.choose_cpu_path(tiny, backend="torch")
    assert precision == "fp32" and "bf16 failed: no bf16 kernel for this op" in why


def test_a_grey_image_is_preprocessed_as_its_rgb_copy(tiny):
    """A grey camera's frame (uint8, uint16, float; resized or at the network size) gives the
    tensor its three-channel copy gives (the grey path converts and resizes one channel; exactly,
    but to a float32 step where both sides halve), and OpenCV's pool follows ``num_threads``."""
    import cv2
    import numpy as np

    import torch

    before = cv2.getNumThreads(), torch.get_num_threads()
    try:
        e, _ = ml.load_estimator(tiny, device="cpu", precision="fp32", backend="torch", num_threads=1)
        assert cv2.getNumThreads() == 1 and torch.get_num_threads() == 1
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])
    rng = np.random.default_rng(0)
    for g in (rng.integers(0, 256, (97, 311), dtype=np.uint8), rng.integers(0, 65536, (97, 311), dtype=np.uint16),
              rng.uniform(-0.2, 1.2, (97, 311)).astype(np.float32),
              rng.integers(0, 256, (e.height, e.width), dtype=np.uint8),
              rng.integers(0, 256, (2 * e.height, 2 * e.width), dtype=np.uint8)):
        x = e.preprocess(g)
        assert x.shape == (1, 3, e.height, e.width) and x.dtype.is_floating_point
        rgb = e.preprocess(np.repeat(g[:, :, None], 3, axis=2)).numpy()
        if g.shape == (2 * e.height, 2 * e.width):  # OpenCV halves one channel by its own path: a float32 step
            np.testing.assert_allclose(x.numpy(), rgb, rtol=0, atol=1e-6)
        else:
            assert np.array_equal(x.numpy(), rgb)
        assert np.array_equal(x.numpy(), e.preprocess(g[:, :, None]).numpy())


def test_a_folder_checkpoint_and_an_unknown_backend_are_named(tiny, tmp_path):
    from sfm_ros.core.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path} is a folder; expected a checkpoint file"):
        ml.load_estimator(str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnxruntime, got 'tensorrt'"):
        ml.load_estimator(tiny, device="cpu", backend="tensorrt")


def test_one_side_of_the_size_override_keeps_the_checkpoints_other(tiny):
    """``height`` alone (``width`` 0, "the checkpoint's"): the other side is the checkpoint's."""
    e0, _ = ml.load_estimator(tiny, device="cpu", precision="fp32", backend="torch")
    e, _ = ml.load_estimator(tiny, device="cpu", precision="fp32", backend="torch", height=e0.height + 32)
    assert (e.height, e.width) == (e0.height + 32, e0.width)
    e, _ = ml.load_estimator(tiny, device="cpu", precision="fp32", backend="torch", width=e0.width)
    assert (e.height, e.width) == (e0.height, e0.width)  # the checkpoint's own size: no override
    # ... so precision auto still measures the CPU's paths, as without the parameter
    e, _ = ml.load_estimator(tiny, device="cpu", precision="auto", width=e0.width)
    assert e.int8_candidate == (importlib.util.find_spec("onnxruntime") is not None)
    with pytest.raises(ValueError, match=rf"height/width override must be >= 16, got 8x{e0.width} \(height x width; "
                                         rf"a 0 is the checkpoint's {e0.height}x{e0.width}\)"):
        ml.load_estimator(tiny, device="cpu", precision="fp32", backend="torch", height=8)
