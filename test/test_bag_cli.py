"""The sfm_bag command (sfm_ros.cli.bag): info, from-images, from-video, from-kitti, errors, hook."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sfm_ros.cli import bag as bag_cli
from sfm_ros.cli.bag import main, register_subcommand
from sfm_ros.data.bag_writer import write_image_bag
from sfm_ros.data.bags import list_topics, read_camera_info, read_image_stream, read_odometry
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.sources import Frame

H, W = 24, 32


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sfm_bag")
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    for i in range(4):
        g = ((u * 5 + v * 9 + i * 13) % 256).astype(np.uint8)
        cv2.imwrite(str(d / f"{i:06d}.png"), np.dstack([g, 255 - g, np.full_like(g, 60)]))
    return d


@pytest.fixture()
def small_bag(tmp_path):
    frames = [Frame(np.full((H, W, 3), i * 30, np.uint8), 10.0 + 0.1 * i, i) for i in range(5)]
    out = tmp_path / "small"
    write_image_bag(out, frames, CameraModel.from_intrinsics(30, 30, 15.5, 11.5, W, H))
    return out


# --------------------------------------------------------------------------------------- info
def test_info_table(capsys, small_bag):
    rc, out, err = _run(capsys, "info", small_bag)
    assert rc == 0 and err == ""
    # start (bag receive time of the first message, epoch seconds and UTC) and duration
    assert f"bag: {small_bag}" in out and ("(2 topics, 10 messages; start 10.000 (1970-01-01T00:00:10.000Z), "
                                           "duration 0.400 s)") in out, out
    line = next(ln for ln in out.splitlines() if "/camera/image_raw" in ln)
    for s in ("sensor_msgs/msg/Image", " 5 ", "10.00 Hz", "rgb8", f"{W}x{H}", "camera_optical_frame",
              "/camera/camera_info"):
        assert s in line, (s, line)
    assert "frame_id" in out.splitlines()[1]


def test_info_json_multiple_bags(capsys, small_bag, tmp_path):
    write_image_bag(tmp_path / "grey", [np.zeros((H, W), np.uint8)] * 2, None, storage="sqlite3")
    rc, out, _ = _run(capsys, "info", "--json", small_bag, tmp_path / "grey")
    assert rc == 0
    rep = json.loads(out)
    assert [r["bag"] for r in rep] == [str(small_bag), str(tmp_path / "grey")]
    img = next(t for t in rep[1]["topics"] if t["topic"] == "/camera/image_raw")
    assert (img["encoding"], img["count"], img["camera_info_topic"]) == ("mono8", 2, None)
    assert rep[0]["start_s"] == pytest.approx(10.0) and rep[0]["duration_s"] == pytest.approx(0.4)
    assert rep[0]["topics"][1]["start_s"] == pytest.approx(10.0)


def test_info_t265(capsys, t265_bag):
    rc, out, _ = _run(capsys, "info", t265_bag)
    assert rc == 0
    line = next(ln for ln in out.splitlines() if "/camera/fisheye1/image_raw" in ln)
    for s in ("sensor_msgs/msg/Image", " 3 ", "mono8", "848x800", "none"):
        assert s in line, (s, line)
    assert "/camera/odom/sample" in out and "nav_msgs/msg/Odometry" in out


# ------------------------------------------------------------------------------- from-images
def test_from_images_mixed_folder_names_the_file_and_suggests_a_pattern(capsys, tmp_path):
    """A 7-Scenes folder (``frame-NNNNNN.color.jpg`` next to 16-bit ``frame-NNNNNN.depth.png``):
    the error names the depth file and a --pattern that selects the colour images, which works."""
    d = tmp_path / "scene"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"frame-{i:06d}.color.png"), np.full((H, W, 3), 40 * i, np.uint8))
        cv2.imwrite(str(d / f"frame-{i:06d}.depth.png"), np.full((H, W), 1000 + i, np.uint16))
        (d / f"frame-{i:06d}.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    rc, _, err = _run(capsys, "from-images", d, tmp_path / "o", "--fx", "20")
    _assert_one_line_error(rc, err, f"{d / 'frame-000000.depth.png'} (frame 1) is a uint16 1-channel image",
                           "frame-000000.color.png, is uint8 3-channel", "--pattern '*.color.png'")
    assert not (tmp_path / "o").exists()
    rc, out, err = _run(capsys, "from-images", d, tmp_path / "o", "--fx", "20", "--pattern", "*.color.png")
    assert rc == 0, err
    assert len(list(read_image_stream(tmp_path / "o", "/camera/image_raw"))) == 3


def test_from_images_with_numbers(capsys, image_dir, tmp_path):
    out_bag = tmp_path / "out"
    rc, out, err = _run(capsys, "from-images", image_dir, out_bag, "--fx", "40", "--fps", "5",
                        "--storage", "sqlite3", "--topic", "/cam/image", "--max-frames", "3")
    assert rc == 0, err
    assert "wrote 3 frames" in out
    frames = list(read_image_stream(out_bag, "/cam/image"))
    assert len(frames) == 3 and frames[0].encoding == "rgb8"
    # index / fps from the default start time (not 0.0: see test_written_bags_start_at_a_real_time)
    np.testing.assert_allclose([f.stamp - bag_cli.RELATIVE_START for f in frames], [0.0, 0.2, 0.4], atol=1e-6)
    ref = cv2.cvtColor(cv2.imread(str(image_dir / "000001.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames[1].image, ref)
    cam = read_camera_info(out_bag, image_topic="/cam/image")
    np.testing.assert_allclose(cam.K, [[40, 0, (W - 1) / 2], [0, 40, (H - 1) / 2], [0, 0, 1]])
    assert next(out_bag.glob("*.db3"))


def test_from_images_with_calib_yaml_mono8(capsys, image_dir, tmp_path):
    calib = tmp_path / "cam.yaml"
    CameraModel.from_intrinsics(41, 42, 16, 12, W, H, "plumb_bob", [0.1, 0, 0, 0, 0]).save_yaml(calib)
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--calib", calib, "--encoding", "mono8")
    assert rc == 0, err
    f = next(read_image_stream(tmp_path / "o", "/camera/image_raw"))
    assert f.encoding == "mono8" and f.image.shape == (H, W)
    cam = read_camera_info(tmp_path / "o", "/camera/camera_info")
    assert cam.fy == 42 and cam.D[0] == pytest.approx(0.1)


# -------------------------------------------------------------------------------- from-video
def test_from_video(capsys, tmp_path):
    p = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (W, H))
    for i in range(6):
        w.write(np.full((H, W, 3), i * 30, np.uint8))
    w.release()
    rc, out, err = _run(capsys, "from-video", p, tmp_path / "vb", "--fx", "30", "--fy", "31", "--cx", "16",
                        "--cy", "12")
    assert rc == 0, err
    info = {t.topic: t for t in list_topics(tmp_path / "vb")}["/camera/image_raw"]
    assert info.count == 6 and info.rate_hz == pytest.approx(20.0, rel=1e-3)


# -------------------------------------------------------------------------------- from-kitti
def test_from_kitti(capsys, kitti_dir, tmp_path):
    rc, out, err = _run(capsys, "from-kitti", kitti_dir, tmp_path / "k", "--max-frames", "5")
    assert rc == 0, err
    assert "wrote 5 frames" in out and "ground-truth odometry" in out
    topics = {t.topic: t for t in list_topics(tmp_path / "k")}
    img = topics["/camera/image_raw"]
    assert (img.count, img.encoding, img.width, img.height) == (5, "mono8", 1241, 376)
    assert img.camera_info_topic == "/camera/camera_info"
    cam = read_camera_info(tmp_path / "k", "/camera/camera_info")
    assert cam.fx == pytest.approx(718.856)
    stamps, poses = read_odometry(tmp_path / "k", "/ground_truth/odom")
    np.testing.assert_allclose(stamps - bag_cli.RELATIVE_START, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    assert poses.shape == (5, 4, 4)
    rc, _, _ = _run(capsys, "from-kitti", kitti_dir, tmp_path / "k2", "--max-frames", "2", "--no-poses",
                    "--fx", "100")
    assert rc == 0
    assert "/ground_truth/odom" not in {t.topic for t in list_topics(tmp_path / "k2")}
    assert read_camera_info(tmp_path / "k2", "/camera/camera_info").fx == 100


# ------------------------------------------------------------------------------ stamps, overwrite
@pytest.mark.parametrize("command", ["from-synthetic", "from-images"])
def test_written_bags_start_at_a_real_time(capsys, image_dir, tmp_path, command):
    """Relative input times (the renderer's, index / fps) are written from a real epoch, not 0.0 (a
    zero stamp reads as a driver that does not stamp); their spacing is kept."""
    args = {"from-synthetic": ["from-synthetic", tmp_path / "b", "--frames", "4", "--height", "24",
                               "--width", "32", "--fps", "5"],
            "from-images": ["from-images", image_dir, tmp_path / "b", "--fx", "40", "--fps", "5"]}[command]
    rc, _, err = _run(capsys, *args)
    assert rc == 0, err
    stamps = np.array([f.stamp for f in read_image_stream(tmp_path / "b", "/camera/image_raw")])
    assert stamps[0] > 1e9 and stamps[0] == pytest.approx(bag_cli.RELATIVE_START)
    np.testing.assert_allclose(np.diff(stamps), 0.2, atol=1e-6)
    if command == "from-synthetic":  # the ground truth carries the same stamps
        odom_stamps, _ = read_odometry(tmp_path / "b", "/ground_truth/odom")
        np.testing.assert_allclose(odom_stamps, stamps, atol=1e-9)
    rc, _, err = _run(capsys, *args, "--overwrite", "--start-time", "1800000000.5")
    assert rc == 0, err
    first = next(read_image_stream(tmp_path / "b", "/camera/image_raw")).stamp
    assert first == pytest.approx(1800000000.5)


def test_overwrite_only_replaces_a_bag(capsys, image_dir, tmp_path, small_bag):
    """--overwrite replaces a bag folder that holds only its bag; a folder with anything else in it
    is refused and left as it was."""
    before = sorted(p.name for p in small_bag.iterdir())
    (small_bag / "notes.txt").write_text("mine")
    (small_bag / "sub").mkdir()
    (small_bag / "sub" / "keep.txt").write_text("mine too")
    rc, _, err = _run(capsys, "from-images", image_dir, small_bag, "--fx", "40", "--overwrite")
    _assert_one_line_error(rc, err, str(small_bag), "notes.txt", "sub/", "not overwriting")
    assert (small_bag / "notes.txt").read_text() == "mine" and (small_bag / "sub" / "keep.txt").is_file()
    assert len(list(read_image_stream(small_bag, "/camera/image_raw"))) == 5  # the old bag, intact
    (small_bag / "notes.txt").unlink()
    (small_bag / "sub" / "keep.txt").unlink()
    (small_bag / "sub").rmdir()
    assert sorted(p.name for p in small_bag.iterdir()) == before
    rc, _, err = _run(capsys, "from-images", image_dir, small_bag, "--fx", "40", "--overwrite")
    assert rc == 0, err
    assert len(list(read_image_stream(small_bag, "/camera/image_raw"))) == 4  # the new bag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "small"]  # nothing left aside


def test_from_synthetic_drives_with_hills_and_stops(capsys, tmp_path):
    """--hills, --stops, --yaw-rate and --camera-height reach the renderer: the ground truth climbs,
    stands still through the stop, and turns as asked."""
    common = ["--frames", "60", "--height", "24", "--width", "64", "--seed", "3", "--speed", "8"]
    rc, _, err = _run(capsys, "from-synthetic", tmp_path / "hilly", *common, "--hills", "0.12",
                      "--stops", "3:1.5", "--yaw-rate", "0.02", "--camera-height", "1.2")
    assert rc == 0, err
    rc, _, err = _run(capsys, "from-synthetic", tmp_path / "flat", *common, "--yaw-rate", "0.02")
    assert rc == 0, err
    _, hilly = read_odometry(tmp_path / "hilly", "/ground_truth/odom")
    _, flat = read_odometry(tmp_path / "flat", "/ground_truth/odom")
    up_h, up_f = -hilly[:, 1, 3], -flat[:, 1, 3]  # the renderer's optical world frame: y down
    assert np.ptp(up_f) < 1e-9 and np.ptp(up_h) > 0.1
    step = np.linalg.norm(np.diff(hilly[:, :3, 3], axis=0), axis=1)
    assert np.sum(step < 1e-9) >= 10  # 1.5 s standing still at 10 Hz
    # The gentle curve: ~0.02 rad/s over the drive, far from the seed's own drawn rate.
    yaw = np.arctan2(flat[-1, 0, 2], flat[-1, 2, 2])
    assert abs(yaw) < 0.02 * 6.0 * 1.5 + 0.05


# ------------------------------------------------------------------------------------ errors
def test_usage_errors(capsys):
    rc, _, err = _run(capsys)
    _assert_one_line_error(rc, err, "give a command", "info", "from-images")
    rc, _, err = _run(capsys, "frobnicate")
    _assert_one_line_error(rc, err, "invalid choice", "frobnicate")
    rc, _, err = _run(capsys, "info")
    _assert_one_line_error(rc, err, "sfm_bag info", "BAG")
    rc, _, err = _run(capsys, "from-images", "a", "b", "--storage", "zip")
    _assert_one_line_error(rc, err, "--storage", "zip")
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0 and "from-kitti" in out


def test_input_errors(capsys, tmp_path, image_dir, small_bag):
    rc, _, err = _run(capsys, "info", tmp_path / "nope.mcap")
    _assert_one_line_error(rc, err, "nope.mcap does not exist")
    rc, _, err = _run(capsys, "from-images", tmp_path / "nodir", tmp_path / "o", "--fx", "1")
    _assert_one_line_error(rc, err, "image folder", "nodir", "does not exist")
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o")
    _assert_one_line_error(rc, err, "no calibration", "--calib", "--fx")
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--cx", "3")
    _assert_one_line_error(rc, err, "need --fx")
    rc, _, err = _run(capsys, "from-images", image_dir, small_bag, "--fx", "9")
    _assert_one_line_error(rc, err, "already exists", "use --overwrite")
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--fx", "9", "--max-frames", "0")
    _assert_one_line_error(rc, err, "--max-frames must be > 0")
    for flag, value, needle in (("--start-time", "nan", "--start-time must be a finite time >= 0 s, got nan"),
                                ("--fps", "0", "--fps must be a frame rate > 0, got 0")):
        rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--fx", "9", flag, value)
        _assert_one_line_error(rc, err, needle)
    rc, _, err = _run(capsys, "info", image_dir)
    _assert_one_line_error(rc, err, "is not a bag: expected a ROS 1 .bag file, a ROS 2 bag folder")
    for flag, value, needle in (("--start-time", "-5", "--start-time must be a finite time >= 0 s, got -5"),
                                ("--fps", "nan", "--fps must be a frame rate > 0, got nan"),
                                ("--hills", "0.5", "--hills must be a grade (rise over run) in [0, 0.15], got 0.5"),
                                ("--stops", "1:x", "--stops: a stop is START:DURATION in seconds, got '1:x'"),
                                ("--camera-height", "-1", "--camera-height must be a height > 0 m, got -1"),
                                ("--yaw-rate", "0.5", "--yaw-rate must be within +-0.267 rad/s at --speed 6 m/s")):
        rc, _, err = _run(capsys, "from-synthetic", tmp_path / "o", "--frames", "3", flag, value)
        _assert_one_line_error(rc, err, needle)
    assert not (tmp_path / "o").exists()
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--calib", tmp_path / "none.yaml")
    _assert_one_line_error(rc, err, "none.yaml does not exist")
    calib = tmp_path / "c.yaml"
    CameraModel.from_intrinsics(1, 1, 1, 1, 640, 480).save_yaml(calib)
    rc, _, err = _run(capsys, "from-images", image_dir, tmp_path / "o", "--calib", calib)
    _assert_one_line_error(rc, err, "for 640x480 images but the input is 32x24")
    rc, _, err = _run(capsys, "from-video", tmp_path / "none.mp4", tmp_path / "o", "--fx", "1")
    _assert_one_line_error(rc, err, "video file", "does not exist")
    rc, _, err = _run(capsys, "from-kitti", tmp_path, tmp_path / "o")
    _assert_one_line_error(rc, err, "no image_0 or image_2 folder")
    assert not (tmp_path / "o").exists()
    f = next(small_bag.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:100])
    rc, _, err = _run(capsys, "info", small_bag)
    _assert_one_line_error(rc, err, str(small_bag), "truncated or corrupt")


# ------------------------------------------------------------------------------ extension hook
def test_register_subcommand(capsys, tmp_path):
    def add(p):
        p.add_argument("out")
        bag_cli.add_writer_arguments(p)

    def run(args):
        frames = [np.zeros((4, 6), np.uint8)] * 3
        return bag_cli.write_bag_from_args(args, frames, CameraModel.from_intrinsics(5, 5, 3, 2, 6, 4),
                                           what="test scene")

    register_subcommand("from-test", "a test subcommand", add, run)
    try:
        rc, out, err = _run(capsys, "from-test", tmp_path / "t", "--storage", "sqlite3")
        assert rc == 0, err
        assert "wrote 3 frames from test scene" in out
        assert len(list(read_image_stream(tmp_path / "t", "/camera/image_raw"))) == 3
    finally:
        bag_cli._SUBCOMMANDS.pop("from-test")


def test_module_entry_point(small_bag):
    r = subprocess.run([sys.executable, "-m", "sfm_ros.cli.bag", "info", str(small_bag)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "/camera/image_raw" in r.stdout
    r = subprocess.run([sys.executable, "-m", "sfm_ros.cli.bag", "info", str(small_bag) + "_missing"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
