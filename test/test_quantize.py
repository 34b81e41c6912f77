"""int8 graphs (:mod:`sfm_ros.runtime.quantize`), the int8 estimator and ``sfm_export --int8``."""
from __future__ import annotations

import json
import os

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
    pl.int8._thread.join(timeout=180)
    assert not pl.int8._thread.is_alive(), "the int8 calibration did not finish in 180 s"
    assert not est.needs_calibration and pl.diagnostic_values()["int8"] == "int8"
    r = pl.process(InputFrame(None, 10.0, "cam", time.monotonic(), image=images[0]))
    assert r is not None and np.isfinite(r.depth).any()


@pytest.mark.parametrize("faster,equal", [(True, True), (True, False), (False, True)])
def test_precision_auto_measures_int8_on_the_first_frames_and_switches_only_when_it_pays(tiny, monkeypatch,
                                                                                       faster, equal):
    """precision auto in the node: the start-up path serves; after the camera's first frames int8 is
    calibrated on three quarters of them, compared on the rest and timed against the path serving;
    it serves from then on only when faster (by MIN_GAIN) at equal output. Timing is the machine's:
    here it is replaced, both ways, so the rule is checked on its own."""
    import time

    import sfm_ros.runtime.model_loading as ml
    import sfm_ros.runtime.path_measure as pm
    from sfm_ros.runtime.frames import InputFrame
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.runtime.pipeline import FramePipeline, Settings
    from sfm_ros.runtime.quantize import NODE_CALIB_FRAMES

    path, _, images = tiny
    est, _ = ml.load_estimator(str(path), device="cpu", precision="auto")
    start = (est.precision, est.backend)
    assert est.int8_candidate and start[0] in ("fp32", "bf16") and not est.needs_calibration
    timed = {}

    def fake_time(estimators, x, runs):
        assert [e.precision for e in estimators][1] == "int8" and estimators[0] is est
        timed["x"] = x
        return [10.0, 5.0 if faster else 9.5]
    monkeypatch.setattr(pm, "time_ms", fake_time)
    # the output change is the CPU's int8 arithmetic on a random network: replaced too, both ways
    monkeypatch.setattr(pm, "output_change", lambda live, twin, fr: (0.001, 0.001 if equal else 0.5))
    pl = FramePipeline(est, camera_extrinsic(), Settings(refine_pose="none"))
    assert pl.diagnostic_values()["int8"].startswith(f"{start[0]}; int8 measured after 32 frames")
    frames = (images * 3)[:NODE_CALIB_FRAMES]
    for i, im in enumerate(frames):
        assert pl.process(InputFrame(None, 1.0 + 0.1 * i, "cam", time.monotonic(), image=im)) is not None
    pl.int8.join(timeout=180)
    assert not pl.int8._thread.is_alive(), "the int8 measurement did not finish in 180 s"
    state = pl.diagnostic_values()["int8"]
    assert "onnxruntime int8 " in state and "ms depth + pose" in state, state
    switched = faster and equal
    assert (est.precision, est.backend) == (("int8", "onnxruntime") if switched else start), state
    assert state.startswith("int8 (" if switched else f"{start[0]} ("), state
    assert ("int8 output not equal" in state) == (not equal)
    r = pl.process(InputFrame(None, 10.0, "cam", time.monotonic(), image=images[0]))
    assert r is not None and np.isfinite(r.depth).any()


def test_precision_auto_does_not_measure_int8_while_adapting_or_when_asked_for_a_precision(tiny):
    from sfm_ros.runtime.model_loading import load_estimator
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.runtime.pipeline import FramePipeline, Settings

    path, _, _ = tiny
    est, _ = load_estimator(str(path), device="cpu", precision="auto")
    assert FramePipeline(est, camera_extrinsic(), Settings(refine_pose="none", adapt=True)).int8 is None
    fixed, _ = load_estimator(str(path), device="cpu", precision="fp32")
    assert not fixed.int8_candidate
    assert FramePipeline(fixed, camera_extrinsic(), Settings(refine_pose="none")).int8 is None


def test_an_int8_twin_shares_the_weights_and_is_refused_after_new_weights(tiny):
    import copy

    path, model, images = tiny
    e = Estimator(path, device="cpu", precision="fp32", backend="torch")
    frames = [e.preprocess(im) for im in images[:6]]
    twin = e.int8_twin(frames)
    assert (twin.precision, twin.backend, e.precision, e.backend) == ("int8", "onnxruntime", "fp32", "torch")
    assert twin.model is e.model
    e.set_model(copy.deepcopy(e.model))  # new weights (online adaptation) meanwhile
    with pytest.raises(ValueError, match="weights changed"):
        e.adopt(twin)
    assert e.precision == "fp32"


def test_int8_quantised_in_a_child_process_equals_the_in_process_graphs(tiny):
    """The node quantises in a low-priority child process (its frames keep the interpreter lock and
    the cores): the graphs it gets run like the ones made in-process (the same calibration)."""
    from sfm_ros.core.options import Options as _O
    from sfm_ros.runtime.export import ort_session
    from sfm_ros.runtime.quantize import int8_graphs_isolated

    _, model, images = tiny
    frames = _pre(images)
    opts = _O()
    opts.model = model.opts
    d8, p8 = int8_graphs(model, H, W, frames[:16])[2:]
    i8, ip8 = int8_graphs_isolated(model, opts, frames[:16])
    d_feeds, p_feeds = calibration_feeds(frames[16:], 3, model.offsets)
    for a, b, feeds in ((d8, i8, d_feeds), (p8, ip8, p_feeds)):
        sa, sb = ort_session(a, threads=1, spinning=False), ort_session(b, threads=1, spinning=False)
        for f in feeds:
            np.testing.assert_allclose(sa.run(None, f)[0], sb.run(None, f)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 3 consecutive frames"):
        int8_graphs_isolated(model, opts, frames[:2])


def test_the_quantisation_worker_fails_on_one_line(tmp_path, capsys):
    from sfm_ros.runtime.quantize_worker import main

    assert main([str(tmp_path)]) == 1  # no model.pt
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("int8 quantisation failed: ")
    assert main([]) == 2


def test_a_killed_nodes_quantisation_folder_is_removed_by_the_next_one(tmp_path):
    """A node ended by SIGKILL leaves its ``sfm_int8_<pid>_*`` folder (weights and frames, tens of
    MB); the next quantisation removes the folders of processes that no longer run, and only those."""
    import subprocess
    import sys

    from sfm_ros.runtime.quantize import WORK_PREFIX, remove_stale_work_dirs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{WORK_PREFIX}{gone.pid}_abc"
    alive = tmp_path / f"{WORK_PREFIX}{os.getpid()}_def"
    other = tmp_path / f"{WORK_PREFIX}notapid"
    odd = [tmp_path / f"{WORK_PREFIX}\u00b2_x", tmp_path / f"{WORK_PREFIX}{'9' * 30}_x"]  # not process ids
    for d in odd:
        d.mkdir()
        os.utime(d, (0, 0))
    recent = tmp_path / f"{WORK_PREFIX}{gone.pid}_ghi"
    for d in (dead, alive, other, recent):
        d.mkdir()
        (d / "model.pt").write_bytes(b"x")
    for d in (dead, alive, other):
        os.utime(d, (0, 0))  # untouched since 1970
    assert remove_stale_work_dirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists() and all(d.exists() for d in odd)
    assert recent.exists()  # its process looks gone, but it was written to a moment ago
