"""sfm_ros.data.bags (reading/writing bags with rosbags) and sfm_ros.data.sources (folders, KITTI, video)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sfm_ros.data.bags import (
    BagError,
    BagWarning,
    Frame,
    find_camera_info_topic,
    list_topics,
    read_camera_info,
    read_image_stream,
    read_odometry,
)
from sfm_ros.data.bag_writer import write_image_bag
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.image_codec import encode_image
from sfm_ros.core.se3 import axis_angle_to_matrix
from sfm_ros.data.sources import SourceError, read_image_folder, read_kitti_odometry, read_video

H, W = 24, 32
CAM = CameraModel.from_intrinsics(30.0, 31.0, 15.5, 11.5, W, H)


def _frames(n: int = 5, t0: float = 100.0, dt: float = 0.1, colour: bool = True) -> list[Frame]:
    out = []
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    for i in range(n):
        g = ((u * 7 + v * 3 + i * 11) % 256).astype(np.uint8)
        img = np.dstack([g, 255 - g, np.full_like(g, i * 20)]) if colour else g
        out.append(Frame(img, t0 + i * dt, i))
    return out


def _raw_bag(path: Path, msgs: list[tuple[str, str, float, dict]], storage: str = "mcap") -> Path:
    """A ROS 2 bag with arbitrary messages: (topic, msgtype, stamp, fields without header)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    w.open()
    conns: dict[str, object] = {}
    for topic, msgtype, stamp, fields in msgs:
        if topic not in conns:
            conns[topic] = w.add_connection(topic, msgtype, typestore=ts)
        sec = int(stamp)
        nsec = int(round((stamp - sec) * 1e9))
        header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                          frame_id="cam")
        msg = T[msgtype](header=header, **fields)
        bag_t = int(round((stamp or 50.0) * 1e9))  # receive time = header stamp (50 s when 0)
        w.write(conns[topic], bag_t, ts.serialize_cdr(msg, msgtype))
    w.close()
    return path


def _image_fields(img: np.ndarray, enc: str) -> dict:
    e, h, w, step, data = encode_image(img, enc)
    return dict(height=h, width=w, encoding=e, is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_read_round_trip(tmp_path, storage):
    frames = _frames()
    poses = np.tile(np.eye(4), (5, 1, 1))
    for i in range(5):
        poses[i, :3, :3] = axis_angle_to_matrix([0.1 * i, -0.2, 0.05 * i])
        poses[i, :3, 3] = (i, 0.5 * i, -i)
    out = tmp_path / f"bag_{storage}"
    assert write_image_bag(out, frames, CAM, storage=storage, poses=poses) == 5
    assert (out / "metadata.yaml").is_file()
    got = list(read_image_stream(out, "/camera/image_raw"))
    assert len(got) == 5
    for f, g in zip(frames, got):
        np.testing.assert_array_equal(g.image, f.image)
        assert g.stamp == pytest.approx(f.stamp, abs=1e-9)
        assert g.frame_id == "camera_optical_frame" and g.encoding == "rgb8"
    assert [g.index for g in got] == list(range(5))
    cam = read_camera_info(out, image_topic="/camera/image_raw")
    np.testing.assert_allclose(cam.K, CAM.K)
    assert (cam.width, cam.height) == (W, H)
    stamps, got_poses = read_odometry(out, "/ground_truth/odom")
    np.testing.assert_allclose(stamps, [f.stamp for f in frames], atol=1e-9)
    np.testing.assert_allclose(got_poses, poses, atol=1e-9)
    # a bare storage file opens too
    bare = next(out.glob("*.mcap" if storage == "mcap" else "*.db3"))
    assert len(list(read_image_stream(bare, "/camera/image_raw", max_frames=2))) == 2


def _odom_fields(q_xyzw, xyz=(1.0, 2.0, 3.0)) -> dict:
    from rosbags.typesys import Stores, get_typestore

    T = get_typestore(Stores.ROS2_KILTED).types
    V = T["geometry_msgs/msg/Vector3"]
    return dict(
        child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=xyz[0], y=xyz[1], z=xyz[2]),
                                             orientation=T["geometry_msgs/msg/Quaternion"](
                                                 x=q_xyzw[0], y=q_xyzw[1], z=q_xyzw[2], w=q_xyzw[3])),
            covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V(x=0.0, y=0.0, z=0.0), angular=V(x=0.0, y=0.0, z=0.0)),
            covariance=np.zeros(36)))


def test_read_odometry_skips_messages_without_a_pose(tmp_path):
    """A zero quaternion ("orientation unknown") or a non-finite position: that message is skipped
    with one warning naming the topic, the message and its stamp; a non-unit quaternion is normalised."""
    odom = "nav_msgs/msg/Odometry"
    msgs = [("/odom", odom, 1.0, _odom_fields((0.0, 0.0, 0.0, 2.0))),
            ("/odom", odom, 1.5, _odom_fields((0.0, 0.0, 0.0, 0.0))),
            ("/odom", odom, 2.0, _odom_fields((0.0, 0.0, 0.0, 1.0), (float("nan"), 0.0, 0.0))),
            ("/odom", odom, 2.5, _odom_fields((0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5))))]
    bag = _raw_bag(tmp_path / "o", msgs)
    with pytest.warns(BagWarning, match=r"topic '/odom': skipped 2 of 4 odometry messages .*message 1 at "
                                        r"1\.500000000 s \(quaternions .* non-zero norm.*message 2 at 2\.000000000 s"):
        stamps, poses = read_odometry(bag, "/odom")
    np.testing.assert_allclose(stamps, [1.0, 2.5])
    np.testing.assert_allclose(poses[0], [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(poses[1, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    # nothing usable at all: an error, not an empty trajectory
    bag = _raw_bag(tmp_path / "z", [("/odom", odom, 1.0, _odom_fields((0.0, 0.0, 0.0, 0.0)))])
    with pytest.raises(BagError, match="none of its 1 odometry messages holds a pose: message 0 at 1.000000000 s"):
        read_odometry(bag, "/odom")


def test_write_rejects_poses_that_are_not_rigid(tmp_path):
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[1, :3, :3] *= 1.5  # a Sim(3) pose
    with pytest.raises(BagError, match=r"poses: R must be a rotation matrix .* at index \(1,\)"):
        write_image_bag(tmp_path / "b", _frames(3), CAM, poses=poses)
    assert not (tmp_path / "b").exists()
    poses[1] = np.eye(4)
    poses[2, 0, 3] = np.inf
    with pytest.raises(BagError, match=r"poses: translations must be finite \(pose 2\)"):
        write_image_bag(tmp_path / "b", _frames(3), CAM, poses=poses)


@pytest.mark.parametrize("enc", ["bgr8", "mono8"])
def test_write_encodings(tmp_path, enc):
    frames = _frames(3)
    write_image_bag(tmp_path / "b", frames, CAM.K, encoding=enc)
    got = list(read_image_stream(tmp_path / "b", "/camera/image_raw"))
    assert got[0].encoding == enc
    if enc == "bgr8":
        np.testing.assert_array_equal(got[2].image, frames[2].image)
    else:
        assert got[0].image.shape == (H, W)
        np.testing.assert_array_equal(got[1].image, cv2.cvtColor(frames[1].image, cv2.COLOR_RGB2GRAY))


def test_grey_frames_default_to_mono8_and_arrays_get_fps_stamps(tmp_path):
    imgs = [f.image for f in _frames(4, colour=False)]
    write_image_bag(tmp_path / "b", imgs, None, fps=20.0, start_time=5.0, storage="sqlite3")
    got = list(read_image_stream(tmp_path / "b", "/camera/image_raw"))
    assert [g.encoding for g in got] == ["mono8"] * 4
    np.testing.assert_allclose([g.stamp for g in got], [5.0, 5.05, 5.1, 5.15])
    assert read_camera_info(tmp_path / "b", image_topic="/camera/image_raw") is None


def test_list_topics(tmp_path):
    write_image_bag(tmp_path / "b", _frames(6), CAM)
    topics = {t.topic: t for t in list_topics(tmp_path / "b")}
    img = topics["/camera/image_raw"]
    assert img.is_image and img.msgtype == "sensor_msgs/msg/Image" and img.count == 6
    assert img.encoding == "rgb8" and img.resolution == f"{W}x{H}"
    assert img.rate_hz == pytest.approx(10.0) and img.camera_info_topic == "/camera/camera_info"
    info = topics["/camera/camera_info"]
    assert info.msgtype == "sensor_msgs/msg/CameraInfo" and not info.is_image and info.count == 6


def test_find_camera_info_topic():
    types = {"/cam/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
             "/cam/camera_info": "sensor_msgs/msg/CameraInfo",
             "/other/image": "sensor_msgs/msg/Image",
             "/third/camera_info": "std_msgs/msg/String"}
    assert find_camera_info_topic(types, "/cam/image_raw/compressed") == "/cam/camera_info"
    assert find_camera_info_topic(types, "/other/image") is None
    assert find_camera_info_topic(types, "/third/image") is None  # wrong type is not taken


@pytest.mark.parametrize("fmt,ext", [("jpeg", ".jpg"), ("png", ".png")])
def test_compressed_image_topic(tmp_path, fmt, ext):
    frames = _frames(3)
    msgs = []
    for f in frames:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
        msgs.append(("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", f.stamp,
                     dict(format=fmt, data=buf.reshape(-1))))
    bag = _raw_bag(tmp_path / "c", msgs)
    got = list(read_image_stream(bag, "/cam/image_raw/compressed"))
    assert len(got) == 3 and got[0].image.shape == (H, W, 3) and got[0].encoding == fmt
    if fmt == "png":
        np.testing.assert_array_equal(got[1].image, frames[1].image)
    t = {x.topic: x for x in list_topics(bag)}["/cam/image_raw/compressed"]
    assert (t.encoding, t.width, t.height) == (fmt, W, H)


def test_multiple_bags_are_merged(tmp_path):
    fr = _frames(6)
    write_image_bag(tmp_path / "a", fr[:3], CAM)
    write_image_bag(tmp_path / "b", fr[3:], CAM)
    got = list(read_image_stream([tmp_path / "b", tmp_path / "a"], "/camera/image_raw"))
    assert [round(g.stamp, 3) for g in got] == [round(f.stamp, 3) for f in fr]


def test_every_max_frames_and_stamp_fallback(tmp_path):
    fr = _frames(6)
    write_image_bag(tmp_path / "b", fr, CAM)
    got = list(read_image_stream(tmp_path / "b", "/camera/image_raw", every=2, max_frames=2))
    assert [round(g.stamp, 3) for g in got] == [100.0, 100.2]
    # header stamp 0 -> the bag receive time
    bag = _raw_bag(tmp_path / "z", [("/img", "sensor_msgs/msg/Image", 0.0, _image_fields(fr[0].image, "rgb8"))])
    assert next(read_image_stream(bag, "/img")).stamp == pytest.approx(50.0)


# --------------------------------------------------------------------------------- real data
def test_t265_ros1_bag(t265_bag):
    topics = {t.topic: t for t in list_topics(t265_bag)}
    f1 = topics["/camera/fisheye1/image_raw"]
    assert (f1.msgtype, f1.count, f1.encoding, f1.width, f1.height) == ("sensor_msgs/msg/Image", 3, "mono8", 848, 800)
    assert f1.camera_info_topic is None
    assert topics["/camera/odom/sample"].msgtype == "nav_msgs/msg/Odometry"
    frames = list(read_image_stream(t265_bag, "/camera/fisheye1/image_raw"))
    assert len(frames) == 3
    assert all(f.image.shape == (800, 848) and f.image.dtype == np.uint8 for f in frames)
    assert frames[0].frame_id == "camera_fisheye1_optical_frame"
    stamps = [f.stamp for f in frames]
    assert stamps == sorted(stamps) and stamps[0] == pytest.approx(1553180224.360915899)
    assert 5.0 < frames[0].image.mean() < 250.0
    with pytest.raises(BagError, match=f"{t265_bag.parent} is not a bag: expected a ROS 1 .bag file, a ROS 2 bag folder"):
        read_image_stream([t265_bag, t265_bag.parent], "/x")  # a folder without metadata.yaml


def test_ros1_and_ros2_bags_are_not_mixed(tmp_path):
    ros1 = tmp_path / "a.bag"
    ros1.write_bytes(b"#ROSBAG V2.0\n")  # refused for the mix before it is opened
    write_image_bag(tmp_path / "b", _frames(3), CAM)
    with pytest.raises(BagError, match="cannot read ROS 1 and ROS 2 bags together"):
        read_image_stream([ros1, tmp_path / "b"], "/x")
    for bad in (tmp_path / "notes.txt", tmp_path / "empty"):
        bad.mkdir() if bad.suffix == "" else bad.write_text("x")
        with pytest.raises(BagError, match=f"{bad} is not a bag"):
            read_image_stream(bad, "/x")


def test_kitti_five_frames_to_bag(kitti_dir, tmp_path):
    seq = read_kitti_odometry(kitti_dir, max_frames=5)
    assert len(seq) == 5 and seq.poses.shape == (5, 4, 4)
    assert (seq.camera.width, seq.camera.height) == (1241, 376)
    np.testing.assert_allclose(seq.stamps, np.arange(5) / 10.0)
    frames = list(seq)
    assert frames[0].image.shape == (376, 1241) and frames[0].image.dtype == np.uint8
    out = tmp_path / "kitti"
    write_image_bag(out, frames, seq.camera, poses=seq.poses, storage="sqlite3")
    got = list(read_image_stream(out, "/camera/image_raw"))
    assert len(got) == 5 and got[4].encoding == "mono8"
    np.testing.assert_array_equal(got[3].image, frames[3].image)
    np.testing.assert_allclose(read_camera_info(out, "/camera/camera_info").K, seq.camera.K)
    _, poses = read_odometry(out, "/ground_truth/odom")
    np.testing.assert_allclose(poses, seq.poses, atol=1e-6)  # KITTI rotations are orthonormal to ~1e-7


# ------------------------------------------------------------------------------------ errors
def test_missing_bag(tmp_path):
    with pytest.raises(BagError, match=r"bag .*nope.bag does not exist"):
        list_topics(tmp_path / "nope.bag")


def test_missing_topic_lists_image_topics(tmp_path):
    write_image_bag(tmp_path / "b", _frames(2), CAM, topic="/front/image_raw", info_topic="/front/camera_info")
    with pytest.raises(BagError) as ei:
        read_image_stream(tmp_path / "b", "/camera/image_raw")
    msg = str(ei.value)
    assert "'/camera/image_raw' is not in bag" in msg and str(tmp_path / "b") in msg
    assert "image topics in it: /front/image_raw (sensor_msgs/msg/Image, 2 msgs)" in msg
    assert "/front/camera_info" not in msg
    with pytest.raises(BagError, match="'/front/camera_info' .* is sensor_msgs/msg/CameraInfo, not an image"):
        read_image_stream(tmp_path / "b", "/front/camera_info")


def test_unsupported_encoding_names_topic(tmp_path):
    f = _image_fields(_frames(1)[0].image, "rgb8")
    f["encoding"] = "bayer_rggb8"
    bag = _raw_bag(tmp_path / "b", [("/cam/image_raw", "sensor_msgs/msg/Image", 1.0, f)])
    with pytest.raises(BagError) as ei:
        list(read_image_stream(bag, "/cam/image_raw"))
    msg = str(ei.value)
    assert "topic '/cam/image_raw', message 0" in msg and "'bayer_rggb8' is not supported" in msg
    assert "mono8" in msg  # the supported ones are listed


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_empty_bag(tmp_path, storage):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "empty"
    w = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    w.open()
    w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=get_typestore(Stores.ROS2_KILTED))
    w.close()
    with pytest.raises(BagError, match=r"bag .*empty is empty \(no messages\)"):
        read_image_stream(out, "/camera/image_raw")
    assert [(t.topic, t.count) for t in list_topics(out)] == [("/camera/image_raw", 0)]


def test_topic_without_messages(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    w = Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    w.add_connection("/a/image_raw", "sensor_msgs/msg/Image", typestore=ts)
    c = w.add_connection("/a/note", "std_msgs/msg/String", typestore=ts)
    w.write(c, 10**9, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    w.close()
    with pytest.raises(BagError, match="topic '/a/image_raw' in .* has no messages"):
        read_image_stream(tmp_path / "b", "/a/image_raw")
    with pytest.raises(BagError, match=r"image topics in it: /a/image_raw \(sensor_msgs/msg/Image, 0 msgs\)"):
        read_image_stream(tmp_path / "b", "/b/image_raw")
    w = Writer(tmp_path / "n", version=9, storage_plugin=StoragePlugin.SQLITE3)
    w.open()
    c = w.add_connection("/a/note", "std_msgs/msg/String", typestore=ts)
    w.write(c, 10**9, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    w.close()
    with pytest.raises(BagError, match=r"it has no image topics \(topics: /a/note\)"):
        read_image_stream(tmp_path / "n", "/a/image_raw")


@pytest.mark.parametrize("storage,ext", [("mcap", "mcap"), ("sqlite3", "db3")])
def test_truncated_bag(tmp_path, storage, ext):
    out = tmp_path / "t"
    write_image_bag(out, _frames(5), CAM, storage=storage)
    f = next(out.glob(f"*.{ext}"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError) as ei:
        list(read_image_stream(out, "/camera/image_raw"))
    assert str(out) in str(ei.value) and "truncated or corrupt" in str(ei.value)
    with pytest.raises(BagError, match="truncated or corrupt"):
        list_topics(out)


def test_truncated_ros1_bag(t265_bag, tmp_path):
    data = t265_bag.read_bytes()
    cut = tmp_path / "cut.bag"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(BagError) as ei:
        list(read_image_stream(cut, "/camera/fisheye1/image_raw"))
    assert str(cut) in str(ei.value) and "rosbag reindex" in str(ei.value)


def test_timestamps_going_backwards(tmp_path):
    img = _image_fields(_frames(1)[0].image, "rgb8")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    w = Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    c = w.add_connection("/img", "sensor_msgs/msg/Image", typestore=ts)
    for i, (hs, bt) in enumerate([(10.0, 1), (10.5, 2), (10.2, 3)]):  # bag times increase, header does not
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=int(hs), nanosec=int(round(hs % 1 * 1e9))),
                                       frame_id="c")
        w.write(c, bt * 10**9, ts.serialize_cdr(T["sensor_msgs/msg/Image"](header=hdr, **img), "sensor_msgs/msg/Image"))
    w.close()
    with pytest.raises(BagError, match=r"backwards at message 2: 10.200000000 s < 10.500000000 s of message 1"):
        list(read_image_stream(tmp_path / "b", "/img"))
    assert [f.stamp for f in read_image_stream(tmp_path / "b", "/img", stamp_source="bag")] == [1.0, 2.0, 3.0]


def test_image_size_change(tmp_path):
    fr = _frames(3)
    fr[2].image = cv2.resize(fr[2].image, (16, 12))
    write_image_bag(tmp_path / "b", fr, CAM)
    with pytest.raises(BagError, match=r"image size changes at message 2: 16x12x3 after 32x24x3"):
        list(read_image_stream(tmp_path / "b", "/camera/image_raw"))
    assert len(list(read_image_stream(tmp_path / "b", "/camera/image_raw", allow_size_change=True))) == 3


def test_writer_errors(tmp_path):
    write_image_bag(tmp_path / "b", _frames(1), CAM)
    with pytest.raises(BagError, match="already exists"):
        write_image_bag(tmp_path / "b", _frames(1), CAM)
    assert write_image_bag(tmp_path / "b", _frames(2), CAM, overwrite=True) == 2
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="not a ROS 2 bag folder"):
        write_image_bag(tmp_path / "plain", _frames(1), CAM, overwrite=True)

    def failing():  # the new bag fails half-way: the old one is put back
        yield from _frames(1)
        raise BagError("frame 1: the source broke")
    with pytest.raises(BagError, match="the source broke"):
        write_image_bag(tmp_path / "b", failing(), CAM, overwrite=True)
    assert len(list(read_image_stream(tmp_path / "b", "/camera/image_raw"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "plain"]
    with pytest.raises(BagError, match="no frames to write"):
        write_image_bag(tmp_path / "none", [], CAM)
    assert not (tmp_path / "none").exists()
    with pytest.raises(BagError, match="storage must be 'mcap' or 'sqlite3'"):
        write_image_bag(tmp_path / "x", _frames(1), CAM, storage="bag")
    with pytest.raises(BagError, match="2 poses given but there are more frames"):
        write_image_bag(tmp_path / "p", _frames(3), CAM, poses=np.tile(np.eye(4), (2, 1, 1)))


# ----------------------------------------------------------------------------------- sources
def test_image_folder(tmp_path):
    fr = _frames(3)
    for i, f in enumerate(fr):  # natural order: 2 before 10
        cv2.imwrite(str(tmp_path / f"img{[2, 10, 33][i]}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    got = list(read_image_folder(tmp_path, fps=4.0))
    assert [Path(g.source).name for g in got] == ["img2.png", "img10.png", "img33.png"]
    np.testing.assert_allclose([g.stamp for g in got], [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(got[1].image, fr[1].image)
    (tmp_path / "times.txt").write_text("1.5\n1.6\n1.7\n")
    np.testing.assert_allclose([g.stamp for g in read_image_folder(tmp_path)], [1.5, 1.6, 1.7])
    (tmp_path / "times.txt").write_text("1.5\n")
    with pytest.raises(SourceError, match="has 1 times but there are 3 images"):
        read_image_folder(tmp_path)


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match="image folder .*missing does not exist"):
        read_image_folder(tmp_path / "missing")
    with pytest.raises(SourceError, match=r"no image files matching \*.png"):
        read_image_folder(tmp_path, "*.png")
    with pytest.raises(SourceError, match="video file .*none.mp4 does not exist"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "bad.avi").write_bytes(b"garbage" * 10)
    with pytest.raises(SourceError, match="bad.avi"):
        list(read_video(tmp_path / "bad.avi"))
    with pytest.raises(SourceError, match="KITTI sequence folder .* does not exist"):
        read_kitti_odometry(tmp_path / "seq")
    (tmp_path / "seq").mkdir()
    with pytest.raises(SourceError, match="has no image_0 or image_2 folder"):
        read_kitti_odometry(tmp_path / "seq")
    (tmp_path / "seq" / "image_2").mkdir()
    cv2.imwrite(str(tmp_path / "seq" / "image_2" / "000000.png"), np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(SourceError, match="has no calib.txt"):
        read_kitti_odometry(tmp_path / "seq")
    (tmp_path / "seq" / "calib.txt").write_text("P0: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(SourceError, match="no 'P2:' line"):
        read_kitti_odometry(tmp_path / "seq")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="cannot decode image file .*bad.png"):
        list(read_image_folder(tmp_path, "bad.png"))


def test_video(tmp_path):
    p = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (W, H))
    for i in range(5):
        w.write(np.full((H, W, 3), (i * 40, 10, 200), np.uint8))  # BGR
    w.release()
    got = list(read_video(p))
    assert len(got) == 5 and got[0].image.shape == (H, W, 3)
    np.testing.assert_allclose([g.stamp for g in got], np.arange(5) / 15.0, atol=2e-3)
    assert abs(int(got[0].image[0, 0, 0]) - 200) < 12  # RGB order
    assert len(list(read_video(p, max_frames=2))) == 2
