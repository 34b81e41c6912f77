"""The node's ROS-free pipeline (sfm_ros/runtime/pipeline.py) driven frame by frame, without DDS."""
from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import save_tiny_checkpoint
from sfm_ros.runtime.diagnostics import FRAME_COUNTS, Counters, Log
from sfm_ros.runtime.model_loading import load_estimator
from sfm_ros.runtime.odometry import camera_extrinsic
from sfm_ros.runtime.motion.covariance import GROUND_SCALE_REL
from sfm_ros.runtime.frames import FrameQueue, InputFrame, cloud_points, rep118_depth
from sfm_ros.runtime.pipeline import FramePipeline, Settings
from sfm_ros.data.synthetic import render_sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "sfm_default.pt"
H, W = 96, 128


class Sink:
    """A logger stand-in: keeps (level, message)."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def has(self, text: str, level: str = "warning") -> bool:
        return any(lv == level and text in m for lv, m in self.lines)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    # seeded: about 1 random initialisation in 30 saturates the untrained depth at the head's near
    # end over most pixels, and test_result_values needs a depth range with both ends
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    return load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]


@pytest.fixture(scope="module")
def seq():
    return render_sequence(num_frames=12, height=H, width=W, seed=0)


def _intrinsics(K: np.ndarray) -> tuple[float, float, float, float]:
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])


def _pipeline(estimator, seq=None, **settings) -> tuple[FramePipeline, Sink]:
    sink = Sink()
    if seq is not None and "intrinsics" not in settings:
        settings["intrinsics"] = _intrinsics(seq.K)
    pl = FramePipeline(estimator, camera_extrinsic(), Settings(**settings), Log(sink), Counters(*FRAME_COUNTS))
    return pl, sink


def _frame(img, t: float, **kw) -> InputFrame:
    return InputFrame(stamp=("stamp", t), t=t, frame_id="cam", recv=time.monotonic(), image=img, **kw)


def test_pipeline_runs_without_ros(tiny_ckpt):
    """pipeline.py, frame_input.py, metric_scale.py, diagnostics.py and model_loading.py import neither rclpy nor a ROS message package."""
    code = f"""
import sys, time
for m in ("rclpy", "sensor_msgs", "sensor_msgs.msg", "geometry_msgs", "nav_msgs", "builtin_interfaces",
          "diagnostic_msgs", "tf2_msgs", "rcl_interfaces"):
    sys.modules[m] = None  # any import of them raises ImportError
from sfm_ros.runtime.model_loading import load_estimator
from sfm_ros.runtime.odometry import camera_extrinsic
from sfm_ros.runtime.frames import InputFrame
from sfm_ros.runtime.pipeline import FramePipeline, Settings
from sfm_ros.data.synthetic import render_sequence
seq = render_sequence(num_frames=4, height=48, width=64)
pl = FramePipeline(load_estimator({str(tiny_ckpt)!r}, device="cpu", backend="torch")[0], camera_extrinsic())
out = [pl.process(InputFrame(None, 10.0 + 0.1 * i, "cam", time.monotonic(), image=im))
       for i, im in enumerate(seq.images)]
assert all(r is not None for r in out) and out[-1].odometry is not None
print("PIPELINE_OK")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0 and "PIPELINE_OK" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="models/sfm_default.pt is not trained yet")
def test_forward_drive_moves_forward():
    seq = render_sequence(num_frames=10, height=128, width=416, seed=0)
    estimator, path = load_estimator("", device="cpu")
    assert Path(path).resolve() == DEFAULT_MODEL.resolve()  # "" = the shipped model
    pl, sink = _pipeline(estimator, seq)
    xs = []
    for i, img in enumerate(seq.images):
        r = pl.process(_frame(img, 100.0 + 0.1 * i))
        assert r is not None
        if r.odometry is not None and not r.odometry.first:
            xs.append(r.odometry.position)
            assert r.odometry.linear[0] > 0  # base_link x forward
    xs = np.array(xs)
    assert len(xs) == len(seq.images) - 2  # the first frame, then one while the window fills
    assert np.all(np.diff(xs[:, 0]) > 0), xs
    assert abs(xs[-1, 2]) < 0.2 * xs[-1, 0], xs[-1]  # no climbing
    assert pl.refined.snapshot().get("epipolar", 0) == len(xs)


def test_pose_flip_setting_reaches_the_pose_network(tiny_ckpt):
    """``pose_flip`` (default on) averages the network's motion with the mirrored window's; off,
    the network's own: the odometry differs, and switching it at run time takes effect."""
    est = load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]
    seq = render_sequence(num_frames=6, height=H, width=W, seed=4)
    ends = {}
    for flip in (True, False):
        pl, _ = _pipeline(est, seq, refine_pose="none", pose_flip=flip)
        for i, img in enumerate(seq.images):
            r = pl.process(_frame(img, 1.0 + 0.1 * i))
        ends[flip] = np.asarray(r.odometry.position)
    assert Settings().pose_flip is True
    assert np.all(np.isfinite(ends[True])) and not np.allclose(ends[True], ends[False], atol=1e-6), ends
    pl, _ = _pipeline(est, seq, refine_pose="none", pose_flip=False)
    for i, img in enumerate(seq.images):
        if i == 3:
            pl.settings.pose_flip = True  # switched at run time: the motions from here on change
        r = pl.process(_frame(img, 1.0 + 0.1 * i))
    assert not np.allclose(np.asarray(r.odometry.position), ends[False], atol=1e-6)


def test_new_weights_reset_the_refiners_length_scale(tiny_ckpt):
    """The refiner's depth/network length ratios belong to the weights they were measured with: a
    swap (online adaptation's hand-over) makes the pipeline forget them."""
    import copy

    est = load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]
    seq = render_sequence(num_frames=8, height=H, width=W, seed=6)
    pl, _ = _pipeline(est, seq, refine_pose="epipolar")
    for i, img in enumerate(seq.images[:5]):
        pl.process(_frame(img, 1.0 + 0.1 * i))
    refiner = pl._refiner
    refiner.ratios.extend([5.0, 5.0])  # stand-ins for ratios measured with the old weights
    est.set_model(copy.deepcopy(est.model))
    pl.process(_frame(seq.images[5], 1.5))
    assert 5.0 not in refiner.ratios and pl._refiner is refiner


def test_result_values(tiny, seq):
    import torch

    # the (untrained, randomly initialised) network's depth of the last frame: a range that cuts
    # both ends of it, so that REP 118's markers and in-range depths are both there
    with torch.no_grad():
        raw = tiny.depth(tiny.preprocess(seq.images[3]))[0, 0].cpu().numpy()
    lo, hi = (float(q) for q in np.quantile(raw, [0.2, 0.8]))
    pl, sink = _pipeline(tiny, seq, min_depth=lo, max_depth=hi, points_stride=8)
    results = [pl.process(_frame(img, 5.0 + 0.1 * i)) for i, img in enumerate(seq.images[:4])]
    r = results[-1]
    assert r.stamp == ("stamp", 5.3) and r.t == 5.3 and r.frame_id == "cam"  # carried through
    assert r.depth.shape == (tiny.height, tiny.width) and r.depth.dtype == np.float32
    # REP 118: out of [min_depth, max_depth] is -inf (too close) / +inf (too far), never clamped
    assert r.scale == 1.0
    inside = (raw >= lo) & (raw <= hi)
    np.testing.assert_array_equal(r.depth[inside], raw[inside])
    assert np.all(r.depth[raw < lo] == -np.inf) and np.all(r.depth[raw > hi] == np.inf)
    assert (raw < lo).any() and (raw > hi).any() and inside.any()
    # intrinsics of the input image (96x128) scaled once to the network size (64x96)
    from sfm_ros.data.camera import CameraModel

    want = CameraModel.from_intrinsics(*_intrinsics(seq.K), W, H).scaled(tiny.width, tiny.height).K
    assert (r.camera.width, r.camera.height) == (tiny.width, tiny.height)
    np.testing.assert_allclose(r.camera.K, want)
    assert r.points.dtype.names == ("x", "y", "z", "rgb") and 0 < r.points.size <= (64 // 8) * (96 // 8)
    assert np.all(r.points["z"] > 0)
    assert results[0].odometry.first and results[1].odometry is None and results[2].odometry is not None
    assert sink.has("using the 'intrinsics' parameter", "info")


def test_without_intrinsics_depth_and_odometry_only(tiny, seq):
    pl, sink = _pipeline(tiny)
    r = [pl.process(_frame(img, 1.0 + 0.1 * i)) for i, img in enumerate(seq.images[:3])][-1]
    assert r.camera is None and r.points is None and r.odometry is not None
    assert sink.has("no camera_info received")
    pl.camera_info({"k": seq.K.reshape(-1).tolist(), "width": W, "height": H})
    assert pl.process(_frame(seq.images[3], 1.3)).camera is not None
    pl.camera_info({"k": [0.0] * 9, "width": W, "height": H})  # uncalibrated: ignored, warned
    assert sink.has("ignoring a bad camera_info") and pl.camera.fx == pytest.approx(seq.K[0, 0])


def test_stamps_backwards_gap_and_duplicate(tiny, seq):
    pl, sink = _pipeline(tiny, seq, max_gap=0.5)
    for i in range(4):
        last = pl.process(_frame(seq.images[i], 10.0 + 0.1 * i))
    assert pl.process(_frame(seq.images[4], 10.3)) is None  # the same stamp again
    assert pl.counts.snapshot()["skipped"] == 1 and sink.has("same stamp")
    held = last.odometry.T_odom_base
    r = pl.process(_frame(seq.images[4], 20.0))  # gap > max_gap: restart from the last pose
    assert r.odometry.first and sink.has("gap of") and pl.odometry.resets == 1
    np.testing.assert_allclose(r.odometry.T_odom_base, held)
    r = pl.process(_frame(seq.images[5], 15.0))  # backwards: restart at the identity
    assert r.odometry.first and sink.has("backwards") and pl.odometry.resets == 2
    np.testing.assert_allclose(r.odometry.T_odom_base, np.eye(4), atol=1e-12)
    assert len(pl.window) == 1


def test_bad_images_rejected_and_the_pipeline_goes_on(tiny, seq):
    pl, sink = _pipeline(tiny, seq)
    assert pl.process(_frame(seq.images[0], 1.0)) is not None
    assert pl.process(_frame(np.zeros((H, W, 2), np.uint8), 1.1)) is None
    assert sink.has("dropping an image of shape (96, 128, 2): expected (H, W), (H, W, 3) or (H, W, 4)")
    assert pl.process(_frame(np.zeros((0, W, 3), np.uint8), 1.15)) is None
    assert pl.counts.snapshot()["rejected"] == 2
    assert pl.process(_frame(seq.images[1], 1.2)) is not None
    # a resolution change resets the window (the pose is held) and goes on at the new size
    small = [np.ascontiguousarray(im[::2, ::2]) for im in seq.images[2:6]]
    out = [pl.process(_frame(im, 1.3 + 0.1 * i)) for i, im in enumerate(small)]
    assert sink.has("input resolution changed from 128x96 to 64x48") and out[0].odometry.first
    assert out[-1].odometry is not None and not out[-1].odometry.first


def test_compressed_frames(tiny, seq):
    import cv2

    pl, sink = _pipeline(tiny, seq)
    ok, png = cv2.imencode(".png", seq.images[0][:, :, ::-1])
    assert ok
    r = pl.process(InputFrame(None, 1.0, "cam", time.monotonic(), compressed=("rgb8; png compressed", png.tobytes())))
    assert r is not None and r.depth.shape == (tiny.height, tiny.width)
    assert pl.process(InputFrame(None, 1.1, "cam", time.monotonic(), compressed=("jpeg", b"not a jpeg"))) is None
    assert pl.counts.snapshot()["rejected"] == 1 and sink.has("dropping a bad compressed image")


def test_explainability_of_the_middle_frame(tiny, seq):
    pl, sink = _pipeline(tiny, seq, publish_explainability=True)
    out = [pl.process(_frame(img, 2.0 + 0.1 * i)) for i, img in enumerate(seq.images[:4])]
    assert pl.has_explainability  # the tiny model has the mask head (exp_weight > 0 by default)
    assert out[1].explainability is None  # window not full yet
    r = out[-1]
    assert r.explainability.shape == (tiny.height, tiny.width)
    assert r.explainability_t == pytest.approx(2.2)  # the middle of the window (2.1, 2.2, 2.3)
    # its stamp is that frame's input stamp as received (not rebuilt from float seconds, which can
    # differ by a nanosecond from the depth image's stamp of the same frame)
    assert r.explainability_stamp == out[2].stamp == ("stamp", 2.0 + 0.1 * 2)


def test_settings_are_checked_and_changed_at_run_time(tiny, seq):
    with pytest.raises(ValueError, match="min_depth 3.0 must be < max_depth 2.0"):
        Settings(min_depth=3.0, max_depth=2.0).check()
    modes = r"none, epipolar, photometric, epipolar\+photometric"
    with pytest.raises(ValueError, match=f"refine_pose must be one of {modes}, got 'magic'"):
        Settings().check(refine_pose="magic")
    for bad in ((80.0, 80.0, 63.5), (80.0, 80.0, 63.5, 47.5, 1.0), (-80.0, 80.0, 63.5, 47.5), (80.0, math.nan, 1.0, 1.0),
                ("a", 1, 1, 1), "1234", None):  # one dropped, one too many, a negative focal length, NaN, not numbers
        with pytest.raises(ValueError, match=r"intrinsics must be 4 numbers fx, fy, cx, cy with fx, fy > 0 "
                                             r"\(fx = fy = 0: unset\), got " + re.escape(repr(list(bad) if isinstance(bad, tuple) else bad))):
            Settings().check(intrinsics=bad)
    Settings().check(intrinsics=(0.0, 0.0, 0.0, 0.0))  # unset
    Settings().check(intrinsics=(0.0, 0.0, 63.5, 47.5))  # unset too: the pipeline reads only the focal lengths
    Settings().check(intrinsics=(80, 80.0, 63.5, 47.5))
    Settings().check(intrinsics=np.array([80.0, 80.0, 63.5, 47.5]))
    pl, sink = _pipeline(tiny, seq, scale=2.0)
    for i in range(3):
        r = pl.process(_frame(seq.images[i], 3.0 + 0.1 * i))
    assert r.scale == 2.0 and pl.diagnostic_values()["scale_source"] == "scale parameter"
    pl.settings.scale, pl.settings.refine_pose = 0.0, "none"
    r = pl.process(_frame(seq.images[3], 3.3))
    values = pl.diagnostic_values()
    assert r.scale == 1.0 and values["scale_source"] == "default (1)" and values["refine_pose"] == "none"


def test_zero_stamp_policy(tiny):
    pl, sink = _pipeline(tiny)
    assert pl.zero_stamp(True) == "skip" and pl.counts.snapshot()["skipped"] == 1
    assert pl.zero_stamp(False) == "keep"
    assert pl.zero_stamp(True) == "skip"  # one odd frame again
    assert pl.zero_stamp(True) == "reception" and sink.has("using the reception time")


def test_frame_queue_newest_wins():
    q = FrameQueue(2)
    assert [q.put(i) for i in range(4)] == [0, 0, 1, 1]
    assert [q.get(), q.get(), q.get(timeout=0.01)] == [2, 3, None]


def test_rep118_depth_marks_and_the_cloud_skips_them():
    d = np.array([[0.05, 0.5, np.nan], [150.0, np.inf, 3.0]], np.float32)
    out = rep118_depth(d, 0.1, 100.0)
    assert out.dtype == np.float32
    assert out[0, 0] == -np.inf and out[1, 0] == np.inf  # too close / too far
    assert np.isnan(out[0, 2]) and np.isnan(out[1, 1])  # unknown (a non-finite prediction)
    assert out[0, 1] == np.float32(0.5) and out[1, 2] == 3.0
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        rep118_depth(d, 2.0, 1.0)
    K = np.array([[2.0, 0, 1.0], [0, 2.0, 0.5], [0, 0, 1]])
    pts = cloud_points(out, np.zeros((2, 3, 3), np.uint8), K, 1)
    assert pts.size == 2 and np.all(np.isfinite(pts["x"])) and sorted(pts["z"].tolist()) == [0.5, 3.0]


def test_partly_nonfinite_depth_is_published_as_nan(tiny, seq, monkeypatch):
    import torch

    pl, sink = _pipeline(tiny, seq)
    real = tiny.depth

    def half_nan(x):
        d = real(x).clone()
        d[..., :5, :] = float("nan")
        return d

    monkeypatch.setattr(tiny, "depth", half_nan)
    r = pl.process(_frame(seq.images[0], 1.0))
    assert r is not None and np.isnan(r.depth[:5]).all() and np.isfinite(r.depth[5:]).any()
    assert sink.has("published as NaN (unknown, REP 118)")
    assert r.points.size > 0 and np.all(np.isfinite(r.points["z"]))
    monkeypatch.setattr(tiny, "depth", lambda x: torch.full_like(real(x), float("nan")))
    assert pl.process(_frame(seq.images[1], 1.1)) is None and sink.has("NaN/Inf only: frame skipped")


def test_diagnostic_warnings_name_what_is_missing(tiny, seq):
    pl, _ = _pipeline(tiny)  # no camera_info, no intrinsics, no scale
    w = pl.diagnostic_warnings("/cam/camera_info")
    assert len(w) == 2
    assert "no intrinsics (no points, no depth/camera_info)" in w[0] and "/cam/camera_info" in w[0]
    assert w[1].startswith("scale not calibrated")
    pl.camera_info({"k": seq.K.reshape(-1).tolist(), "width": W, "height": H})
    assert [x for x in pl.diagnostic_warnings() if "intrinsics" in x] == []
    pl.settings.scale = 2.0
    assert pl.diagnostic_warnings() == []
    pl, _ = _pipeline(tiny, seq, camera_height=1.5)  # intrinsics given: only the scale is missing
    assert pl.diagnostic_warnings() == ["scale not calibrated yet: camera_height is set, no frame processed yet"]
    pl.metric_scale.source = "camera_height (no ground plane yet)"
    assert pl.diagnostic_warnings() == ["scale not calibrated yet: camera_height (no ground plane yet)"]
    pl.metric_scale.source = "camera_height"
    assert pl.diagnostic_warnings() == []


def test_stamp_latency_only_in_the_nodes_clock():
    from sfm_ros.runtime.diagnostics import Latencies

    lat = Latencies()
    assert "latency_stamp_p50_s" not in lat.values()
    assert lat.values()["latency_stamp_absent"] == "no frame processed yet"
    lat.add(10.0, 0.02, 1.8e9)  # stamps of another time base (a bag without --clock)
    v = lat.values()
    assert "latency_stamp_p50_s" not in v and "not in its time base" in v["latency_stamp_absent"]
    assert v["latency_wall_p50_s"] == "0.0200"
    lat.add(10.0, 0.02, None)
    assert "clock is zero" in lat.values()["latency_stamp_absent"]
    lat.add(10.0, 0.02, 0.05)
    v = lat.values()
    assert v["latency_stamp_p50_s"] == "0.0500" and "latency_stamp_absent" not in v


def test_parameter_coercion_and_unknown_names():
    from sfm_ros.ros.node_params import coerce_param, param_type_name, unknown_parameters

    assert coerce_param("scale", 0.0, 2) == 2.0 and isinstance(coerce_param("scale", 0.0, 2), float)
    assert coerce_param("camera_xyz", [0.0, 0.0, 0.0], [0, 0, 1]) == [0.0, 0.0, 1.0]
    assert coerce_param("scale", 0.0, "fast") == "fast"  # left for rclpy to reject
    assert coerce_param("scale", 0.0, True) is True and coerce_param("qos_depth", 5, 7) == 7
    assert [param_type_name(v) for v in (True, 1, 1.0, "", [0.0])] == ["bool", "int", "double", "string",
                                                                       "double[]"]
    given = ["scale", "sclae", "use_sim_time", "qos_overrides./tf.publisher.depth", "unknown_param"]
    assert unknown_parameters(given, ["scale"]) == ["sclae", "unknown_param"]


def test_adapt_setting_switches_online_adaptation(tiny_ckpt, tmp_path):
    """``adapt`` on: the pipeline's windows reach the adaptation, accepted weights reach the estimator
    (inference never waits); off: the weights are written; diagnostics say so. Without an adaptation
    object the setting is ignored with a warning."""
    from sfm_ros.training.adapt import AdaptOptions
    from sfm_ros.training.online import OnlineAdaptation

    est = load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]
    seq = render_sequence(num_frames=14, height=H, width=W, seed=5)
    online = OnlineAdaptation(est, str(tiny_ckpt), tmp_path / "adapted.pt", duty=1.0,
                              opts=AdaptOptions(steps_per_update=2, min_buffer=2, holdout_every=2, min_holdout=1,
                                                batch_size=1, max_drift=10.0, tolerance=10.0, lr=1e-3))
    pl, sink = _pipeline(est, seq, adapt=True)
    pl.adaptation = online
    start = est.model
    for i, img in enumerate(seq.images):
        assert pl.process(_frame(img, 1.0 + 0.1 * i)) is not None
    assert online.offered == len(seq.images) - 2
    t0 = time.time()
    while online.version < 1 and time.time() - t0 < 60:
        time.sleep(0.05)
    assert online.version >= 1 and est.model is not start, pl.diagnostic_values()
    assert pl.diagnostic_values()["adapt"] == "on"
    assert not [w for w in pl.diagnostic_warnings() if "adapt" in w]  # running: no warning
    pl.settings.adapt = False
    pl.process(_frame(seq.images[0], 3.0))
    assert (tmp_path / "adapted.pt").is_file() and pl.diagnostic_values()["adapt"].startswith("off (last saved")
    pl.close()

    bare, sink = _pipeline(est, seq, adapt=True)
    bare.process(_frame(seq.images[0], 1.0))
    assert sink.has("adapt is on but this pipeline has no adaptation")

    other = load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]
    other.height += 32  # the node's height override: adaptation refuses, and the status says so
    refused, _ = _pipeline(other, seq, adapt=True)
    refused.adaptation = OnlineAdaptation(other, str(tiny_ckpt), tmp_path / "b.pt")
    refused.process(_frame(seq.images[0], 1.0))
    assert [w for w in refused.diagnostic_warnings() if w.startswith("adapt needs the checkpoint's input size")]
    refused.close()


def test_camera_height_gives_metres_from_the_ground_whatever_the_depth(tiny_ckpt):
    """With ``camera_height`` the refiner measures each step's metres from the ground's homography:
    even an untrained model (its depth has no scale and its ground plane may not be found) gives
    odometry in metres. A level camera 1.5 m above a rendered street, 0.6 m a frame: the distance
    travelled over 9 steps is measured 7 % over the truth (5.78 m for 5.40 m); the test allows 15 %. Without
    ``camera_height`` the same frames give the untrained depth's units."""
    from sfm_ros.evaluation.trajectory import relative_poses

    est = load_estimator(str(tiny_ckpt), device="cpu", backend="torch")[0]
    seq = render_sequence(num_frames=10, height=128, width=416, seed=5, speed=6.0, weave=0.0, pitch_roll=0.0,
                          camera_height=1.5)
    true = float(np.linalg.norm(relative_poses(seq.poses)[:, :3, 3], axis=1).sum())
    travelled = {}
    for height in (1.5, 0.0):
        pl, _ = _pipeline(est, seq, refine_pose="epipolar", camera_height=height)
        last, dist = None, 0.0
        for i, img in enumerate(seq.images):
            r = pl.process(_frame(img, 1.0 + 0.1 * i))
            p = None if r.odometry is None else np.asarray(r.odometry.position, dtype=np.float64)
            if p is not None and last is not None:
                dist += float(np.linalg.norm(p - last))
            last = p if p is not None else last
        travelled[height] = dist
        # the pose covariance carries the ground's persisting scale error only with camera_height
        assert pl.odometry.noise.scale_rel == (GROUND_SCALE_REL if height > 0 else 0.0)
        if height > 0:
            assert pl._refiner.counts.get("epipolar", 0) >= 7
            d = pl.diagnostic_values()
            assert re.search(r"(^|, )ground \d+", d["refined_lengths"]), d  # the ground measured them
            assert d["refine_corners"] == "500" and d["refine_ms_p50"] == "n/a"  # < 20 refinements yet
            # the tilt to the ground from the direction of travel: one chord of 8 steps in 9
            assert len(pl._refiner.tilt.measurements) == 1
            assert d["ground_tilt"] == "not in use yet (the mount's down): 1 of the 3 measurements it needs", d
            # the rotation window (on by default): 9 frames held; the step and up to 3 baselines measured
            assert re.fullmatch(r"9 frames, \d+ corners, [1-4] of [1-4] rotations agree, \d+\.\d ms"
                                r"( \(the step's own outvoted\))?; rotation sd \d+\.\d{3} deg "
                                r"\((the window's agreement|the frame pair's)\)"
                                r"(; direction of travel solved again with the window's rotation on \d+ of the "
                                r"last \d+ frames)?", d["rotation_window"]), d
            assert len(pl._refit) == len(pl._hurried) and not any(pl._refit)  # this street: none set aside
            pl._refit[-1] = True  # as a frame whose own rotation the window set aside would count
            assert re.search(r"; direction of travel solved again with the window's rotation on 1 of the last "
                             rf"{len(pl._refit)} frames$", pl.diagnostic_values()["rotation_window"])
            pl.behind = lambda: True  # the node when a newer frame waits: the window measures no baseline
            pl.process(_frame(seq.images[-3], 1.95))
            assert not pl._last_refinement.window.solved and pl._last_refinement.window.predictions == 1
            d = pl.diagnostic_values()
            assert re.search(r"; no baselines on 1 of the last \d+ frames \(a newer frame waited\)$",
                             d["rotation_window"]), d
            pl.settings.window_hurry = False  # the node's setting: every frame's baselines all the same
            pl.process(_frame(seq.images[-4], 1.97))
            assert pl._last_refinement.window.solved and pl._last_refinement.window.predictions > 1
            pl.behind = None
            refiner = pl._refiner
            pl.settings.ground_tilt = False  # a drone: the mount's down as given (the same refiner)
            pl.settings.rotation_window = False
            pl.process(_frame(seq.images[-2], 2.0))  # another image (a repeated one is held)
            assert pl._refiner is refiner and not refiner.ground_tilt and refiner.chord is None
            assert refiner.window is None and pl._last_refinement.window is None
            assert len(refiner.tilt.measurements) == 1 and refiner.length.log_length is not None
            d = pl.diagnostic_values()
            assert d["ground_tilt"] == "off (the mount's down)"
            assert d["rotation_window"] == "off (each step's own rotation)"
        else:
            assert pl.diagnostic_values()["ground_tilt"] == "n/a (no ground: camera_height unset or scale set)"
    assert travelled[1.5] == pytest.approx(true, rel=0.15), (travelled, true)
    assert not travelled[0.0] == pytest.approx(true, rel=0.15), (travelled, true)


def test_stage_times_report_medians_per_stage():
    from sfm_ros.runtime.diagnostics import FRAME_STAGES, StageTimes, Ticker

    st = StageTimes(n=5)
    assert st.text() == "n/a"
    for ms in (1.0, 2.0, 30.0):
        st.add("depth", ms)
    st.add("decode", 0.5)
    assert st.p50() == {"decode": 0.5, "depth": 2.0}
    assert st.text() == "decode 0.5, depth 2.0 (sum 2.5)"  # in FRAME_STAGES order
    assert FRAME_STAGES.index("decode") < FRAME_STAGES.index("depth")
    tick = Ticker(st)
    tick("refine", minus=1e9)  # a stage's time less what it contains, as the odometry's less the refinement
    assert st.p50()["refine"] < 0


def test_pipeline_reports_its_frame_cost(tiny, seq):
    pl, _ = _pipeline(tiny, seq)
    assert pl.diagnostic_values()["frame_ms_p50"] == "n/a"
    for i, im in enumerate(seq.images[:4]):
        pl.process(_frame(im, 1.0 + 0.1 * i))
    text = pl.diagnostic_values()["frame_ms_p50"]
    for stage in ("decode", "resize", "depth", "pose", "odometry", "cloud"):
        assert f"{stage} " in text, text
    assert "(sum " in text


def test_camera_info_is_paired_with_its_image_by_stamp(tiny, seq):
    """Two camera_infos (a zoom: fx changes): each image is read with the one of its own stamp, an
    image without a matching stamp with the latest."""
    from types import SimpleNamespace

    from sfm_ros.runtime.frame_input import FrameInputs

    def info(fx, t):
        stamp = SimpleNamespace(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))
        return SimpleNamespace(k=[fx, 0, W / 2, 0, fx, H / 2, 0, 0, 1], width=W, height=H, d=[],
                               distortion_model="plumb_bob", header=SimpleNamespace(stamp=stamp))

    class _Log:
        def warn(self, *a): pass
        def info(self, *a): pass
        def warning(self, *a): pass

    fi = FrameInputs(Settings(), _Log(), Counters(*FRAME_COUNTS))
    fi.camera_info(info(100.0, 5.0))
    fi.camera_info(info(150.0, 5.1))
    assert fi.intrinsics((H, W), 5.0).fx == 100.0
    assert fi.intrinsics((H, W), 5.1 + 2e-4).fx == 150.0
    assert fi.intrinsics((H, W), 7.0).fx == 150.0  # no match: the latest
    assert fi.intrinsics((H, W)).fx == 150.0
    fi.camera_info({"k": [120.0, 0, W / 2, 0, 120.0, H / 2, 0, 0, 1], "width": W, "height": H})  # no stamp
    assert fi.intrinsics((H, W), 5.0).fx == 100.0 and fi.intrinsics((H, W), 9.0).fx == 120.0
