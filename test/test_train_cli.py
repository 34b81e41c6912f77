"""sfm_train (sfm_ros.cli.train): inputs, intrinsics, configuration, exit codes, Ctrl-C.

Bags are written inside the tests (rosbags, mcap and sqlite3) from the synthetic renderer. Training
is tiny: 32x96 network input, width_mult 0.25, batch 2, 2 steps, one torch thread.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import default_sigint

from sfm_ros.cli import train as train_cli
from sfm_ros.data.bag_writer import write_image_bag
from sfm_ros.data.camera import CameraModel
from sfm_ros.core.checkpoint import read_checkpoint
from sfm_ros.data.image_codec import encode_image
from sfm_ros.core.options import load_options, preset
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.run_inputs import load_inputs

REPO = Path(__file__).resolve().parents[1]
SH, SW = 48, 128  # recorded size (resized to the 32x96 network input)
TINY = ["--height", "32", "--width", "96", "--width-mult", "0.25", "--batch-size", "2",
        "--max-steps", "2", "--workers", "0", "--device", "cpu", "--amp", "off", "--no-progress",
        "--no-tensorboard", "--config", "paper"]


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def synth():
    return render_sequence(10, SH, SW, seed=5)


def _cam(synth) -> CameraModel:
    return CameraModel(SW, SH, synth.K)


def _bag(path: Path, synth, storage="mcap", camera="auto", n=None, grey=False, **kw) -> Path:
    imgs = synth.images[:n] if n else synth.images
    if grey:
        imgs = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in imgs]
    cam = _cam(synth) if camera == "auto" else camera
    write_image_bag(path, list(zip(synth.timestamps, imgs)), cam, storage=storage, **kw)
    return path


def _png_folder(d: Path, synth, n=None) -> Path:
    """The rendered frames as a folder of PNG files (an ``--images`` input)."""
    d.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(synth.images[:n] if n else synth.images):
        cv2.imwrite(str(d / f"{i:06d}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return d


def _raw_image_bag(path: Path, items: list[tuple[float, np.ndarray, str]], extra=None) -> Path:
    """A ROS 2 mcap bag written message by message: (header stamp, image, encoding); bag times
    increase whatever the header stamps do. ``extra``: (topic, msgtype, fields) messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    c = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
    conns = {}
    for i, (stamp, img, enc) in enumerate(items):
        sec, nsec = int(stamp), int(round((stamp % 1) * 1e9))
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="c")
        e, h, wd, step, data = encode_image(img, "rgb8" if img.ndim == 3 else "mono8")
        msg = T["sensor_msgs/msg/Image"](header=hdr, height=h, width=wd, encoding=enc, is_bigendian=0,
                                         step=step, data=np.frombuffer(data, np.uint8))
        w.write(c, (i + 1) * 10**8, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
        for topic, msgtype, fields in extra or []:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=ts)
            w.write(conns[topic], (i + 1) * 10**8, ts.serialize_cdr(T[msgtype](header=hdr, **fields), msgtype))
    w.close()
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = train_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_bad_input(rc, err, *needles, out_dir: Path | None = None):
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sfm_train: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    if out_dir is not None:
        assert not (out_dir / "last.pt").exists() and not (out_dir / "model.pt").exists()


# ------------------------------------------------------------------------- training from inputs
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_train_from_ros2_bag(tmp_path, synth, capsys, storage):
    bag = _bag(tmp_path / f"bag_{storage}", synth, storage=storage)
    out = tmp_path / "run"
    rc, stdout, err = _run(["--bag", bag, "--out", out, *TINY], capsys)  # topic auto-detected
    assert rc == 0, err
    assert f"bag {bag} topic /camera/image_raw: 10 frames" in stdout
    assert "intrinsics from the bag's CameraInfo" in stdout
    state = read_checkpoint(out / "last.pt")  # weights_only=True
    assert state["step"] == 2 and state["optimizer"]
    opts = state["options"]
    assert opts["model"]["height"] == 32 and opts["model"]["width_mult"] == 0.25
    assert opts["loss"] == preset("paper").to_dict()["loss"]  # the config used is in the checkpoint
    assert (out / "model.pt").is_file() and not (out / "tb").exists()


def test_bag_pipeline_keeps_stamps_and_scales_intrinsics(tmp_path, synth):
    """The decoded sequence: training size, grey replicated to RGB, K scaled, stamps kept."""
    bag = _bag(tmp_path / "b", synth, grey=True)
    args = train_cli.build_parser().parse_args(["--bag", str(bag), "--out", str(tmp_path / "o"),
                                                "--height", "32", "--width", "96"])
    opts = train_cli.build_options(args)
    (seq,) = load_inputs(args, opts, log=lambda m: None)
    assert seq.frames.shape == (10, 32, 96, 3) and seq.frames.dtype == np.uint8
    assert np.array_equal(seq.frames[..., 0], seq.frames[..., 2])  # mono8 -> 3 equal channels
    np.testing.assert_allclose(seq.stamps, synth.timestamps, atol=1e-6)
    sx, sy = 96 / SW, 32 / SH
    np.testing.assert_allclose(seq.K[0, 0], synth.K[0, 0] * sx)
    np.testing.assert_allclose(seq.K[1, 2], (synth.K[1, 2] + 0.5) * sy - 0.5)


def test_grey_frames_resize_like_rgb_ones():
    """resize_frame resizes grey images on one channel (3x less work): the same bytes as
    resizing the grey image replicated to RGB."""
    from sfm_ros.data.datasets import resize_frame

    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (94, 310), dtype=np.uint8),
                rng.integers(0, 65536, (60, 100), dtype=np.uint16),
                (rng.random((40, 50)) * 1.2).astype(np.float32)):
        for hw in ((32, 96), img.shape[:2]):
            assert np.array_equal(resize_frame(img, hw), resize_frame(np.repeat(img[:, :, None], 3, 2), hw))
    assert resize_frame(img[:, :, None], (32, 96)).shape == (32, 96, 3)  # (H, W, 1) is grey too


def test_frame_cache_is_used(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth)
    cache = tmp_path / "cache"
    base = ["--bag", bag, "--cache-dir", cache, *TINY, "--max-steps", "1"]
    rc, stdout, err = _run([*base, "--out", tmp_path / "r1"], capsys)
    assert rc == 0 and "10 frames decoded" in stdout, err
    assert len(list(cache.glob("*.npz"))) == 1
    rc, stdout, err = _run([*base, "--out", tmp_path / "r2"], capsys)
    assert rc == 0 and "from the cache" in stdout, err


def _kitti_layout(root: Path, synth) -> Path:
    """A KITTI odometry sequence folder (image_0 grey PNGs, calib.txt, times.txt from 0)."""
    _png_folder(root / "image_0", synth)
    P = np.zeros((3, 4))
    P[:, :3] = synth.K
    (root / "calib.txt").write_text("P0: " + " ".join(f"{v:.6e}" for v in P.ravel()) + "\n")
    (root / "times.txt").write_text("".join(f"{t:.6e}\n" for t in synth.timestamps))
    return root


@pytest.mark.parametrize("kind", ["kitti", "images"])
def test_frame_cache_notices_a_changed_input_file(tmp_path, synth, capsys, kind):
    """Replacing one frame under the same name (KITTI), or the times.txt next to an image folder,
    changes the cache key: the next run decodes again and trains on the new content."""
    seq_dir = _kitti_layout(tmp_path / "seq", synth)
    inputs = ["--kitti", seq_dir] if kind == "kitti" else ["--images", seq_dir / "image_0", "--fx", "60"]
    base = [*inputs, "--cache-dir", tmp_path / "cache", *TINY, "--max-steps", "1"]
    rc, stdout, err = _run([*base, "--out", tmp_path / "r1"], capsys)
    assert rc == 0 and "10 frames decoded" in stdout, err
    if kind == "kitti":
        frame = seq_dir / "image_0" / "000003.png"
        cv2.imwrite(str(frame), 255 - cv2.imread(str(frame)))
        st = frame.stat()
        os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later modification time
    else:
        (seq_dir / "times.txt").write_text("".join(f"{10 + t:.6e}\n" for t in synth.timestamps))
    args = train_cli.build_parser().parse_args([str(a) for a in [*base, "--out", tmp_path / "r2"]])
    opts = train_cli.build_options(args)
    logs: list[str] = []
    (seq,) = load_inputs(args, opts, log=logs.append)
    assert "10 frames decoded" in logs[0] and "from the cache" not in logs[0], logs
    if kind == "kitti":
        fresh = load_inputs(train_cli.build_parser().parse_args(
            [str(a) for a in [*inputs, *TINY, "--out", tmp_path / "r3"]]), opts, log=lambda m: None)[0]
        np.testing.assert_array_equal(seq.frames, fresh.frames)  # the new pixels
    else:
        assert seq.stamps[0] == pytest.approx(10.0)


def test_a_foreign_cache_file_is_not_used(tmp_path, synth, capsys):
    """A file under the cache entry's name that is not the entry (3 frames of 16x16, K = I) is
    decoded over, not trained on."""
    bag = _bag(tmp_path / "b", synth)
    cache = tmp_path / "cache"
    base = ["--bag", bag, "--cache-dir", cache, *TINY, "--max-steps", "1"]
    rc, _, err = _run([*base, "--out", tmp_path / "r1"], capsys)
    assert rc == 0, err
    (entry,) = cache.glob("*.npz")
    np.savez(entry, frames=np.zeros((3, 16, 16, 3), np.uint8), K=np.eye(3), stamps=np.arange(3.0))
    rc, stdout, err = _run([*base, "--out", tmp_path / "r2"], capsys)
    assert rc == 0 and "10 frames decoded" in stdout, stdout + err
    assert "training on 10 frames in 1 sequence(s)" in stdout  # the bag's 10 frames, not 3
    rc, stdout, err = _run([*base, "--out", tmp_path / "r3"], capsys)  # the entry was rewritten
    assert rc == 0 and "from the cache" in stdout, err


def test_frame_cache_size_is_bounded_oldest_first(tmp_path, synth):
    from sfm_ros.data.datasets import prepare_sequence

    cache = tmp_path / "cache"
    (cache / "notes").mkdir(parents=True)
    (cache / "notes" / "mine.txt").write_text("not an entry")

    def fill(i: int, bound: int | None) -> Path:  # a new entry; returns its path
        before = set(cache.glob("*.npz"))
        prepare_sequence(zip(synth.images, synth.timestamps), synth.K, (32, 96), cache_dir=cache,
                         cache_key={"input": i}, cache_max_bytes=bound)
        (new,) = set(cache.glob("*.npz")) - before
        return new

    first = fill(0, None)
    size = first.stat().st_size
    second = fill(1, None)
    os.utime(first, ns=(0, first.stat().st_mtime_ns + 10**9))  # the first was used last
    third = fill(2, int(2.5 * size))  # over the bound: the least recently used (second) goes
    assert sorted(cache.glob("*.npz")) == sorted([first, third])
    fill(3, size // 2)  # a bound below one entry: only the newest is kept
    assert len(list(cache.glob("*.npz"))) == 1 and not third.exists() and not first.exists()
    assert (cache / "notes" / "mine.txt").is_file()  # nothing but entries is ever removed


def test_static_frames_are_dropped(tmp_path, synth, capsys):
    imgs = list(synth.images)
    imgs = imgs[:5] + [imgs[4]] * 4 + imgs[5:]  # the camera stops for 4 frames
    stamps = np.arange(len(imgs)) * 0.1
    write_image_bag(tmp_path / "b", list(zip(stamps, imgs)), _cam(synth))
    rc, stdout, err = _run(["--bag", tmp_path / "b", "--out", tmp_path / "o", *TINY,
                            "--static-threshold", "0.01"], capsys)
    assert rc == 0, err
    assert "10 frames (14 frames decoded" in stdout


def test_distorted_camera_info_is_rectified(tmp_path, synth, capsys):
    cam = CameraModel(SW, SH, synth.K, "plumb_bob", [-0.1, 0.01, 0.0, 0.0, 0.0])
    bag = _bag(tmp_path / "b", synth, camera=cam)
    rc, stdout, err = _run(["--bag", bag, "--out", tmp_path / "o", *TINY], capsys)
    assert rc == 0, err
    assert "rectified (plumb_bob" in stdout


def test_image_folder_video_and_synthetic_mixed(tmp_path, synth, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, im in enumerate(synth.images):
        cv2.imwrite(str(d / f"{i:04d}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SW, SH))
    for im in synth.images:
        vw.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    vw.release()
    fx, cx, cy = synth.K[0, 0], synth.K[0, 2], synth.K[1, 2]
    rc, stdout, err = _run(["--images", d, "--video", video, "--synthetic", "1", "--synthetic-frames", "8",
                            "--fx", fx, "--cx", cx, "--cy", cy, "--out", tmp_path / "o", *TINY], capsys)
    assert rc == 0, err
    assert f"image folder {d}: 10 frames" in stdout
    assert f"video {video}: 10 frames" in stdout
    assert "synthetic sequence 0 (seed 0): 8 frames" in stdout
    assert "training on 28 frames in 3 sequence(s)" in stdout


def test_kitti_short_training(kitti_dir, tmp_path, capsys):
    rc, stdout, err = _run(["--kitti", kitti_dir, "--max-frames", "8", "--out", tmp_path / "o", *TINY], capsys)
    assert rc == 0, err
    assert "(image_0): 8 frames" in stdout and "intrinsics from calib.txt" in stdout
    assert read_checkpoint(tmp_path / "o" / "last.pt")["step"] == 2


def test_t265_ros1_bag(t265_bag, tmp_path, capsys):
    """The real ROS 1 bag (3 mono8 848x800 fisheye frames a camera, no CameraInfo)."""
    out = tmp_path / "o"
    # Two image topics: --topic is needed, and the message lists them.
    rc, _, err = _run(["--bag", t265_bag, "--out", out, *TINY], capsys)
    _assert_bad_input(rc, err, "2 image topics", "/camera/fisheye1/image_raw (mono8 848x800, 3 msgs)",
                      "/camera/fisheye2/image_raw", out_dir=out)
    base = ["--bag", t265_bag, "--topic", "/camera/fisheye1/image_raw", "--out", out, *TINY]
    # No CameraInfo in the bag and none on the command line.
    rc, _, err = _run(base, capsys)
    _assert_bad_input(rc, err, "/camera/fisheye1/image_raw: no intrinsics", "--calib", "--fx", out_dir=out)
    # 3 frames cannot make a 5-frame window.
    rc, _, err = _run([*base, "--fx", "285", "--seq-len", "5"], capsys)
    _assert_bad_input(rc, err, "3 frames", "fewer frames than one window", "expected at least 5",
                      out_dir=out)
    # seq_len 3, batch 1, no validation: one window, one step.
    rc, stdout, err = _run([*base, "--fx", "285", "--batch-size", "1", "--val-fraction", "0",
                            "--max-steps", "1"], capsys)
    assert rc == 0, err
    assert "3 frames (3 frames decoded" in stdout and "mono8 848x800" in stdout
    assert read_checkpoint(out / "last.pt")["step"] == 1


# ------------------------------------------------------------------------------- bad inputs
def test_missing_topic_lists_image_topics(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth)
    rc, _, err = _run(["--bag", bag, "--topic", "/front/image", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "'/front/image' is not in bag", "/camera/image_raw (sensor_msgs/msg/Image, 10 msgs)",
                      out_dir=tmp_path / "o")


def test_unsupported_encoding(tmp_path, synth, capsys):
    bag = _raw_image_bag(tmp_path / "b", [(1.0 + i, synth.images[i], "bayer_rggb8") for i in range(4)])
    rc, _, err = _run(["--bag", bag, "--fx", "50", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "/cam/image_raw", "'bayer_rggb8' is not supported", out_dir=tmp_path / "o")


def test_empty_bag(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    w = Writer(tmp_path / "empty", version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=get_typestore(Stores.ROS2_KILTED))
    w.close()
    rc, _, err = _run(["--bag", tmp_path / "empty", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, str(tmp_path / "empty"), "is empty (no messages)", out_dir=tmp_path / "o")


@pytest.mark.parametrize("storage,ext", [("mcap", "mcap"), ("sqlite3", "db3")])
def test_truncated_bag(tmp_path, synth, capsys, storage, ext):
    bag = _bag(tmp_path / "b", synth, storage=storage)
    f = next(bag.glob(f"*.{ext}"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    rc, _, err = _run(["--bag", bag, "--topic", "/camera/image_raw", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, str(bag), "truncated or corrupt", out_dir=tmp_path / "o")


def test_no_intrinsics_anywhere(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth, camera=None)
    rc, _, err = _run(["--bag", bag, "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, f"bag {bag} topic /camera/image_raw: no intrinsics",
                      "CameraInfo", "--calib YAML", out_dir=tmp_path / "o")
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), synth.images[0])
    rc, _, err = _run(["--images", d, "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, f"image folder {d}: no intrinsics", out_dir=tmp_path / "o")


def test_fewer_frames_than_one_window(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth, n=4)
    rc, _, err = _run(["--bag", bag, "--seq-len", "5", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "topic /camera/image_raw: 4 frames", "fewer frames than one window",
                      "at least 5", out_dir=tmp_path / "o")


def test_timestamps_going_backwards(tmp_path, synth, capsys):
    stamps = [10.0, 10.1, 10.2, 10.15, 10.3]
    bag = _raw_image_bag(tmp_path / "b", [(t, synth.images[i], "rgb8") for i, t in enumerate(stamps)])
    rc, _, err = _run(["--bag", bag, "--fx", "50", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "timestamps go backwards at message 3", out_dir=tmp_path / "o")


def test_image_size_changing(tmp_path, synth, capsys):
    imgs = list(synth.images[:6])
    imgs[4] = cv2.resize(imgs[4], (SW // 2, SH // 2))
    write_image_bag(tmp_path / "b", list(zip(synth.timestamps, imgs)), _cam(synth))
    rc, _, err = _run(["--bag", tmp_path / "b", "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "image size changes at message 4", f"{SW // 2}x{SH // 2}x3 after {SW}x{SH}x3",
                      out_dir=tmp_path / "o")


def test_unsupported_distortion_model(tmp_path, synth, capsys):
    cam = CameraModel(SW, SH, synth.K, "my_model", [0.1, 0.2, 0.0, 0.0])
    bag = _bag(tmp_path / "b", synth, camera=cam)
    rc, _, err = _run(["--bag", bag, "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, "cannot rectify", "'my_model' is not supported", "equidistant",
                      out_dir=tmp_path / "o")


def test_bad_options(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth)
    for extra, needle in [(["--set", "loss.nope=1"], "unknown option 'loss.nope'"),
                          (["--seq-len", "4"], "model.seq_len must be odd"),
                          (["--config", "nope"], "neither a preset"),
                          (["--batch-size", "20"], "expected at least train.batch_size=20"),
                          (["--bogus"], "unrecognized arguments: --bogus"),
                          (["--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
                          (["--max-frames", "0"], "argument --max-frames: expected an integer >= 1, got '0'"),
                          (["--ckpt-every", "-5"], "argument --ckpt-every: expected an integer >= 0, got '-5'"),
                          (["--fps", "0"], "--fps must be a frame rate > 0, got 0"),
                          (["--seed", "-1"], "train.seed must be an integer >= 0, got -1"),
                          (["--lr", "nan"], "train.lr must be a finite number >= 0, got nan"),
                          (["--set", "loss.smooth_weight=-1"], "loss.smooth_weight must be a finite number >= 0"),
                          (["--set", "data.turn_deg=30"], "data.turn_deg must be in [0, 15] degrees, got 30"),
                          (["--set", "data.turn_step_deg=nan"], "data.turn_step_deg must be in [0, 5] degrees, got nan"),
                          (["--device", "cuda:abc"], "--device cuda:abc: train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")]:
        rc, _, err = _run(["--bag", bag, "--out", tmp_path / "o", *TINY, *extra], capsys)
        _assert_bad_input(rc, err, needle, out_dir=tmp_path / "o")
    rc, _, err = _run(["--out", tmp_path / "o"], capsys)
    _assert_bad_input(rc, err, "no input")


@pytest.mark.parametrize("where", ["config", "set", "calib"])
def test_bad_yaml_is_one_line_and_exit_2(tmp_path, synth, capsys, where):
    """Every YAML input takes one path: a syntax error names the input and where it is."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1,\n")
    extra = {"config": ["--config", bad], "set": ["--set", "train.lr=[1,"],
             "calib": ["--calib", bad]}[where]
    inputs = ["--images", _png_folder(tmp_path / "imgs", synth)] if where == "calib" else ["--synthetic", "1"]
    rc, _, err = _run([*inputs, "--out", tmp_path / "o", *TINY, *extra], capsys)
    what = {"config": f"config file {bad}", "set": "--set train.lr=[1,: the value of train.lr",
            "calib": f"calibration file {bad}"}[where]
    _assert_bad_input(rc, err, f"{what} is not valid YAML", "(line ", out_dir=tmp_path / "o")


@pytest.mark.parametrize("flags, needle", [
    (["--fx", "1e300"], "fx=1e+300"),             # overflowed float32 K: a non-finite loss
    (["--fx", "1e-300"], "fx=1e-300"),            # singular K: numpy LinAlgError
    (["--fx", "60", "--cx", "1e9"], "cx=1e+09"),
    (["--fx", "nan"], "non-finite"),
    ("camera_info", "fx=1e+300"),                 # a bag's CameraInfo is checked the same way
])
def test_unusable_intrinsics_are_refused_before_training(tmp_path, synth, capsys, flags, needle):
    if flags == "camera_info":
        bad = synth.K.copy()
        bad[0, 0] = 1e300
        inputs = ["--bag", _bag(tmp_path / "b", synth, camera=CameraModel(SW, SH, bad))]
    else:
        inputs = ["--images", _png_folder(tmp_path / "imgs", synth), *flags]
    rc, stdout, err = _run([*inputs, "--out", tmp_path / "o", *TINY], capsys)
    _assert_bad_input(rc, err, needle, out_dir=tmp_path / "o")
    if flags != ["--fx", "nan"]:
        assert "unusable intrinsics" in err and "expected" in err
    assert "training on" not in stdout


def test_set_keeps_string_options_as_written(tmp_path):
    args = train_cli.build_parser().parse_args(["--out", "x", "--set", "train.amp=off", "--set",
                                                "train.lr=1e-3", "--lr", "5e-4", "--config", "paper"])
    opts = train_cli.build_options(args)
    assert opts.train.amp == "off"  # YAML would read `off` as False
    assert opts.train.lr == 5e-4  # the flag wins over --set


def test_config_train_yaml_is_the_paper_preset():
    opts = load_options(REPO / "config" / "train.yaml").to_dict()
    paper = preset("paper").to_dict()
    diff = {(g, k) for g in paper for k in paper[g] if opts[g][k] != paper[g][k]}
    assert diff == {("data", "static_threshold")}  # static frames dropped, as the paper did
    assert (opts["model"]["height"], opts["model"]["width"], opts["model"]["seq_len"]) == (128, 416, 3)
    assert (opts["train"]["lr"], opts["train"]["beta1"], opts["train"]["batch_size"]) == (2e-4, 0.9, 4)


def test_only_the_default_preset_turns_the_camera():
    """The ``default`` preset's augmentation turns the camera (measured on KITTI: BENCHMARKS.md,
    session 27); the paper's and the successors' presets and config/train.yaml shift the crop."""
    from sfm_ros.core.options import DEFAULT_TURN_DEG, DEFAULT_TURN_STEP_DEG

    d = preset("default").data
    assert (d.turn_deg, d.turn_step_deg) == (DEFAULT_TURN_DEG, DEFAULT_TURN_STEP_DEG) and DEFAULT_TURN_DEG > 0
    for o in (preset("paper"), preset("successors"), load_options(REPO / "config" / "train.yaml")):
        assert (o.data.turn_deg, o.data.turn_step_deg) == (0.0, 0.0)


# ------------------------------------------------------------------- unwritable or full --out
def test_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    """A read-only --out (EROFS; root ignores permission bits, so the file system call fails here)
    is reported on one line, exit 2, before any input is decoded, even with --no-tensorboard."""
    import errno
    import tempfile

    real = tempfile.mkstemp

    def read_only(*a, dir=None, **kw):
        if dir is not None and Path(dir).resolve().is_relative_to(tmp_path.resolve()):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **kw)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    for out in (tmp_path / "new_run", tmp_path):  # a folder to create, and an existing one
        rc, stdout, err = _run(["--synthetic", "1", "--out", out, *TINY], capsys)
        _assert_bad_input(rc, err, f"--out {out} is not writable (Read-only file system)", out_dir=out)
        assert "synthetic sequence" not in stdout and "training on" not in stdout


def test_full_disk_during_a_save_keeps_the_last_good_checkpoint(tmp_path, synth, capsys, monkeypatch):
    """ENOSPC in the second save of last.pt (--ckpt-every 1; each save writes last.pt, then
    model.pt): the first files stay intact, the partial temporary file is removed, and one line
    says which checkpoints are the last good ones."""
    import errno

    from sfm_ros.core import checkpoint

    real, calls = torch.save, []

    def full_disk(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **kw)
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    out = tmp_path / "o"
    rc, _, err = _run(["--synthetic", "1", "--out", out, *TINY, "--max-steps", "3", "--ckpt-every", "1"], capsys)
    assert rc == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"could not write {out / 'last.pt'} at step 2 (No space left on device)" in lines[0]
    assert "last good checkpoints written by this run: last.pt (step 1), model.pt (step 1)" in lines[0]
    assert read_checkpoint(out / "last.pt")["step"] == 1
    assert read_checkpoint(out / "model.pt")["step"] == 1
    assert sorted(p.name for p in out.iterdir()) == [".sfm_train.lock", "last.pt", "model.pt"]  # no temporary file left


# -------------------------------------------------------------------------- resume, checkpoints
def test_resume_checks(tmp_path, synth, capsys):
    bag = _bag(tmp_path / "b", synth)
    out = tmp_path / "o"
    rc, _, err = _run(["--bag", bag, "--out", out, *TINY], capsys)
    assert rc == 0, err
    good = (out / "last.pt").read_bytes()

    # An existing run is not overwritten by accident.
    rc, _, err = _run(["--bag", bag, "--out", out, *TINY], capsys)
    _assert_bad_input(rc, err, "last.pt exists", "--resume")
    # Another architecture.
    rc, _, err = _run(["--bag", bag, "--out", out, *TINY, "--width-mult", "0.5", "--resume"], capsys)
    _assert_bad_input(rc, err, "another architecture", "width_mult: checkpoint 0.25 vs requested 0.5")
    assert (out / "last.pt").read_bytes() == good
    # Resume continues (the checkpoint's options when no --config is given).
    tiny_no_config = [a for a in TINY if a not in ("--config", "paper")]
    rc, stdout, err = _run(["--bag", bag, "--out", out, *tiny_no_config, "--max-steps", "3", "--resume"], capsys)
    assert rc == 0, err
    assert "resuming" in stdout and "at step 2" in stdout
    state = read_checkpoint(out / "last.pt")
    assert state["step"] == 3 and state["options"]["loss"] == preset("paper").to_dict()["loss"]

    # A corrupt checkpoint: a clear error, the file left as it was.
    corrupt = out / "last.pt"
    corrupt.write_bytes(good[: len(good) // 3])
    rc, _, err = _run(["--bag", bag, "--out", out, *TINY, "--resume"], capsys)
    _assert_bad_input(rc, err, f"checkpoint {corrupt} is truncated")
    assert corrupt.read_bytes() == good[: len(good) // 3]
    rc, _, err = _run(["--bag", bag, "--out", tmp_path / "o2", *TINY, "--resume", tmp_path / "missing.pt"], capsys)
    _assert_bad_input(rc, err, "does not exist", out_dir=tmp_path / "o2")


def test_training_error_exits_1(tmp_path, synth, capsys, monkeypatch):
    from sfm_ros.training.trainer import Trainer, TrainingError

    def fit(self):
        raise TrainingError("the loss was non-finite for 10 steps in a row")

    monkeypatch.setattr(Trainer, "fit", fit)
    rc, _, err = _run(["--bag", _bag(tmp_path / "b", synth), "--out", tmp_path / "o", *TINY], capsys)
    assert rc == 1 and "training failed: the loss was non-finite" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_exits_130_with_a_loadable_checkpoint(tmp_path):
    """``python -m sfm_ros.cli.train`` in a subprocess; SIGINT once the progress line shows a step."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "sfm_ros.cli.train", "--synthetic", "1", "--synthetic-frames", "12",
           "--out", str(out), "--height", "32", "--width", "96", "--width-mult", "0.25", "--workers", "0",
           "--device", "cpu", "--amp", "off", "--no-tensorboard", "--config", "paper",
           "--max-steps", "100000", "--batch-size", "1", "--epochs", "1000", "--ckpt-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=default_sigint)  # also when the tests run as a background job
    err = bytearray()
    reader = threading.Thread(target=lambda: [err.extend(c) for c in iter(lambda: proc.stdout.read1(4096), b"")],
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not re.search(rb"step [1-9]\d*/\d+ steps", bytes(err)):  # no terminal: plain lines
            assert proc.poll() is None, bytes(err).decode(errors="replace")
            assert time.monotonic() < deadline, "training never started stepping"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    text = bytes(err).decode(errors="replace")
    assert rc == 130, text
    assert "Ctrl-C: stopping after step" in text and "interrupted at step" in text
    assert "Traceback" not in text
    state = read_checkpoint(out / "last.pt")
    assert state["step"] >= 1 and state["extra"]["interrupted"] is True
    assert not list(out.glob(".*.tmp"))


def test_help(capsys):
    assert train_cli.main(["--help"]) == 0
    assert "--synthetic" in capsys.readouterr().out


def test_augmentation_is_chosen_by_the_training_set_size_unless_set(tmp_path, capsys):
    """The default preset augments a small training set (fewer windows than
    ``AUGMENT_BELOW_WINDOWS``) and says so, with what it does; a user's choice and other presets are
    kept; the camera's turn (the default preset's, or a user's) is named in the line, and without a
    turn the shifted crop is."""
    from sfm_ros.data.autoconfig import AUGMENT_BELOW_WINDOWS, auto_augment

    logs: list[str] = []
    assert auto_augment(AUGMENT_BELOW_WINDOWS - 1, logs.append) is True
    assert auto_augment(AUGMENT_BELOW_WINDOWS, logs.append) is False
    assert logs[0].startswith(f"augmentation on (chosen: {AUGMENT_BELOW_WINDOWS - 1} training windows")
    tiny = [a for a in TINY if a not in ("--config", "paper")]
    base = ["--synthetic", "1", "--synthetic-frames", "10", "--val-fraction", "0", *tiny]
    on_default = tmp_path / "mine.yaml"
    on_default.write_text("loss:\n  smooth_weight: 0.2\n")  # no preset: key = based on the default
    on_paper = tmp_path / "paper_based.yaml"
    on_paper.write_text("preset: paper\nloss:\n  smooth_weight: 0.2\n")
    no_aug = tmp_path / "no_aug.yaml"
    no_aug.write_text("data:\n  augment: false\n")
    chosen = "augmentation on (chosen: 8 training windows"
    for n, (extra, want, logged) in enumerate((([], True, chosen),
                                               (["--set", "data.augment=false"], False, None),
                                               (["--config", "paper"], True, None),
                                               (["--config", str(on_default)], True, chosen),
                                               (["--config", str(on_paper)], True, None),
                                               (["--config", str(no_aug)], False, None))):
        out = tmp_path / f"run{n}"
        rc, stdout, err = _run([*base, "--out", out, *extra], capsys)
        assert rc == 0, err
        assert read_checkpoint(out / "last.pt")["options"]["data"]["augment"] is want
        if logged:
            # the default preset turns the camera (DEFAULT_TURN_DEG, DEFAULT_TURN_STEP_DEG)
            assert logged in stdout and "the camera turned by up to 5 deg a window and 1.5 deg a source frame" \
                in stdout, stdout
        else:
            assert "augmentation on (chosen" not in stdout and "augmentation off (chosen" not in stdout
    rc, stdout, err = _run([*base, "--out", tmp_path / "turned", "--set", "data.turn_deg=4",
                            "--set", "data.turn_step_deg=1"], capsys)
    assert rc == 0, err
    assert "the camera turned by up to 4 deg a window and 1 deg a source frame" in stdout, stdout
    rc, stdout, err = _run([*base, "--out", tmp_path / "cropped", "--set", "data.turn_deg=0",
                            "--set", "data.turn_step_deg=0"], capsys)
    assert rc == 0, err
    assert "random scale and crop, colour jitter" in stdout, stdout
    # --init without --config fine-tunes on new data: chosen again (the checkpoint said false)
    rc, stdout, err = _run([*base, "--out", tmp_path / "init", "--init", tmp_path / "run1" / "last.pt"], capsys)
    assert rc == 0, err
    assert chosen in stdout and read_checkpoint(tmp_path / "init" / "last.pt")["options"]["data"]["augment"] is True
