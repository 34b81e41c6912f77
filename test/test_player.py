"""sfm_play (bag → live topics) and sfm_record (live topics → bag) with real rclpy.

The player runs in a separate process (``sys.executable -m sfm_ros.ros.player``) with the environment
of ``conftest.ros_env()`` (localhost discovery, the run's own domain); the subscriber and the
recorder run in this process on their own rclpy context.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from conftest import REPO, ros_env, wait_until as _wait  # noqa: E402
from sfm_ros.data.bag_writer import write_image_bag  # noqa: E402
from sfm_ros.data.bags import read_image_stream  # noqa: E402
from sfm_ros.data.image_codec import decode_image  # noqa: E402

pytestmark = pytest.mark.slow  # make test-fast leaves it out


@pytest.fixture
def ros_node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("test_player_client", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        yield node
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        th.join(timeout=2.0)


def _frames(n: int = 6, h: int = 24, w: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _play(bag, *extra: str, timeout: float = 40.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sfm_ros.ros.player", str(bag), *extra],
        cwd=REPO, env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_play_ros2_bag_stamps_and_data(tmp_path, ros_node):
    frames = _frames()
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    bag = tmp_path / "bag"
    write_image_bag(bag, frames, K, topic="/play/image_raw", info_topic="/play/camera_info",
                    fps=20.0, start_time=1000.5)
    images: list[Image] = []
    infos: list[CameraInfo] = []
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    ros_node.create_subscription(Image, "/play/image_raw", images.append, qos)
    ros_node.create_subscription(CameraInfo, "/play/camera_info", infos.append, qos)
    proc = _play(bag, "--wait-for-subscribers", "20", "--rate", "2")
    try:
        assert _wait(lambda: len(images) >= len(frames) and len(infos) >= len(frames), 40), \
            f"got {len(images)} images; player stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.wait(timeout=10)
    for i, (msg, img) in enumerate(zip(images, frames)):
        t = 1000.5 + i / 20.0
        assert msg.header.stamp.sec == int(t) and abs(msg.header.stamp.nanosec - (t % 1) * 1e9) < 2
        got = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        np.testing.assert_array_equal(got, img)
    assert np.allclose(np.asarray(infos[0].k).reshape(3, 3), K)
    assert infos[0].header.stamp == images[0].header.stamp


def test_play_ros1_bag_with_field_copy(t265_bag, ros_node):
    """A ROS 1 bag (rosbags deserialises, fields are copied into rclpy messages)."""
    topic = "/camera/fisheye1/image_raw"
    ref = [f for _, f in zip(range(3), read_image_stream(t265_bag, topic))]
    got: list[Image] = []
    ros_node.create_subscription(Image, topic, got.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    proc = _play(t265_bag, "--topics", topic, "--wait-for-subscribers", "20", "--rate", "5")
    try:
        assert _wait(lambda: len(got) >= 3, 40), "no image from the ROS 1 bag"
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # Ctrl-C: clean exit
        assert proc.wait(timeout=15) == 0, proc.stderr.read()
    for msg, fr in zip(got, ref):
        assert abs(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 - fr.stamp) < 1e-6
        img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        np.testing.assert_array_equal(img, fr.image)


def test_player_missing_bag_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.ros.player", str(tmp_path / "nope")],
                          cwd=REPO, env=ros_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_player_imports_only_message_packages(tmp_path):
    """A bag names its message types: one typed ``this/msg/Foo`` must not import the ``this``
    module (it prints the Zen of Python), only be skipped with a warning."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from sfm_ros.ros.message_types import msg_class

    ts = get_typestore(Stores.ROS2_KILTED)
    ts.register(get_types_from_msg("int32 x", "this/msg/Foo"))
    T = ts.types
    bag = tmp_path / "odd"
    with Writer(bag, version=9) as w:
        c = w.add_connection("/odd", "this/msg/Foo", typestore=ts)
        w.write(c, 1_000_000_000, ts.serialize_cdr(T["this/msg/Foo"](x=1), "this/msg/Foo"))
        c = w.add_connection("/img", "sensor_msgs/msg/Image", typestore=ts)
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c")
        img = T["sensor_msgs/msg/Image"](header=hdr, height=1, width=1, encoding="mono8", is_bigendian=0,
                                         step=1, data=np.zeros(1, np.uint8))
        w.write(c, 1_100_000_000, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.ros.player", str(bag), "--rate", "20"],
                          cwd=REPO, env=ros_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Beautiful is better than ugly" not in proc.stdout + proc.stderr
    assert re.search(r"skipping /odd: message type this/msg/Foo", proc.stderr), proc.stderr
    assert re.search(r"playing .*: /img", proc.stderr), proc.stderr  # the image topic was played
    with pytest.raises(ImportError, match="not a message of an installed ROS interface package"):
        msg_class("this/msg/Foo")
    assert "this" not in sys.modules
    assert msg_class("sensor_msgs/Image") is Image  # ROS 1 spelling of a known package


def test_recorder_roundtrip(tmp_path, ros_node):
    """Recorder (in this process) writes what a publisher sends; the bag reads back identically."""
    from sfm_ros.data.image_codec import encode_image
    from sfm_ros.ros.recorder import Recorder

    frames = _frames(4)
    pub = ros_node.create_publisher(Image, "/rec/image", 10)
    rec = Recorder(ros_node, tmp_path / "rec")
    assert _wait(lambda: rec.topic_type("/rec/image") == "sensor_msgs/msg/Image", 10)
    rec.add_topic("/rec/image", "sensor_msgs/msg/Image")
    assert _wait(lambda: pub.get_subscription_count() > 0, 10)
    for i, img in enumerate(frames):
        enc, h, w, step, data = encode_image(img, "rgb8")
        m = Image(encoding=enc, height=h, width=w, step=step)
        m.header.stamp.sec, m.header.stamp.nanosec = 50 + i, 1000
        m.header.frame_id = "cam"
        m.data = data
        pub.publish(m)
    assert _wait(lambda: rec.total >= len(frames), 10)
    rec.close()
    back = list(read_image_stream(tmp_path / "rec", "/rec/image"))
    assert len(back) == len(frames)
    for i, (fr, img) in enumerate(zip(back, frames)):
        assert fr.stamp == pytest.approx(50 + i + 1e-6)
        np.testing.assert_array_equal(fr.image, img)


def test_recorder_names_missing_topics_and_ctrl_c_exits_0(tmp_path, ros_node):
    """A topic that never appears is named after a few seconds (the recording goes on and takes a
    topic that appears late); Ctrl-C ends it with exit 0 and what was recorded."""
    from sfm_ros.data.image_codec import encode_image

    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "sfm_ros.ros.recorder", str(out), "--topics", "/never",
                             "/late/image"], cwd=REPO, env=ros_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    threading.Thread(target=lambda: [err.append(x) for x in proc.stderr], daemon=True).start()
    try:
        assert _wait(lambda: any("no publisher for /late/image, /never" in x for x in err), 8), "".join(err)
        pub = ros_node.create_publisher(Image, "/late/image",
                                        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        assert _wait(lambda: pub.get_subscription_count() > 0, 10), "".join(err)
        enc, h, w, step, data = encode_image(_frames(1)[0], "rgb8")
        for i in range(3):
            m = Image(encoding=enc, height=h, width=w, step=step, data=data)
            m.header.stamp.sec = 100 + i
            pub.publish(m)
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(2)  # Ctrl-C
        rc = proc.wait(timeout=15)
    text = "".join(err)
    assert rc == 0, text
    assert "Traceback" not in text
    assert re.search(r"wrote 3 messages to .*: /late/image 3; not recorded .*: /never", text), text
    assert len(list(read_image_stream(out, "/late/image"))) == 3


def test_wait_for_subscribers_waits_for_image_topics_and_keeps_the_first_frames(tmp_path, ros_node):
    """A 3-frame bag with ground-truth odometry nobody subscribes to: ``--wait-for-subscribers``
    waits for the image topic only (no timeout on /ground_truth/odom) and a best-effort, keep-last-5
    subscriber (sfm_node's input QoS) gets 3 of 3 frames."""
    from rclpy.qos import qos_profile_sensor_data

    bag = tmp_path / "three"
    poses = np.tile(np.eye(4), (3, 1, 1))
    write_image_bag(bag, _frames(3), np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]),
                    topic="/three/image", info_topic="/three/camera_info", poses=poses, fps=30.0)
    got: list[Image] = []
    ros_node.create_subscription(Image, "/three/image", got.append, qos_profile_sensor_data)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.ros.player", str(bag), "--wait-for-subscribers", "30"],
                          cwd=REPO, env=ros_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 25, "it waited for a topic nobody subscribes to"
    assert "no subscriber" not in proc.stderr, proc.stderr
    assert _wait(lambda: len(got) >= 3, 5), f"got {len(got)} of 3 frames; {proc.stderr}"
    assert len(got) == 3


def test_wait_topics_names_the_topics_without_subscribers(tmp_path):
    bag = tmp_path / "one"
    write_image_bag(bag, _frames(1), None, topic="/lonely/image", info_topic=None)
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.ros.player", str(bag), "--wait-for-subscribers", "0.5"],
                          cwd=REPO, env=ros_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"no subscriber for /lonely/image after 0.5 s; playing anyway", proc.stderr), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.ros.player", str(bag), "--wait-for-subscribers", "1",
                           "--wait-topics", "/other"], cwd=REPO, env=ros_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--wait-topics: cannot wait for /other: not played" in proc.stderr, proc.stderr


def test_recorder_started_late_gets_tf_static_and_writes_offered_qos(tmp_path, ros_node):
    """A transient-local /tf_static published before the recorder starts is recorded (the
    subscription takes the publisher's durability), and the bag's metadata names the offered QoS."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import Reader
    from tf2_msgs.msg import TFMessage
    from geometry_msgs.msg import TransformStamped

    from sfm_ros.ros.recorder import Recorder

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = ros_node.create_publisher(TFMessage, "/tf_static", latched)
    tf = TransformStamped()
    tf.header.frame_id, tf.child_frame_id = "base_link", "camera"
    tf.transform.rotation.w = 1.0
    pub.publish(TFMessage(transforms=[tf]))
    time.sleep(0.3)
    rec = Recorder(ros_node, tmp_path / "rec")
    assert _wait(lambda: rec.topic_type("/tf_static") == "tf2_msgs/msg/TFMessage", 10)
    rec.add_topic("/tf_static", "tf2_msgs/msg/TFMessage")
    assert rec.profiles["/tf_static"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert _wait(lambda: rec.total >= 1, 10), "the latched /tf_static was not recorded"
    rec.close()
    with Reader(tmp_path / "rec") as reader:
        (conn,) = [c for c in reader.connections if c.topic == "/tf_static"]
        assert conn.msgcount == 1
        (qos,) = conn.ext.offered_qos_profiles
    assert qos.durability == QosDurability.TRANSIENT_LOCAL and qos.reliability == QosReliability.RELIABLE
