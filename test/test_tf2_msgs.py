"""tf2_msgs (built into the venv by tools/build_tf2_msgs.sh) works and matches upstream on the wire.

In a child process with the venv's python (localhost discovery, the run's own ROS domain): import
``tf2_msgs.msg.TFMessage``, build one with a ``TransformStamped``, check the type hash that rmw
announces for a /tf publisher and subscription equals upstream tf2_msgs' (so real tf2 tools accept it),
and publish/receive one message on /tf through rclpy.
"""
from __future__ import annotations

import json
import subprocess

from conftest import ros_env

# Upstream ros2/geometry2 tf2_msgs/msg/TFMessage (ROS 2 Kilted).
UPSTREAM_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"

CHILD = r'''
import json, sys, time

try:
    from tf2_msgs.msg import TFMessage
except ImportError as e:
    print(json.dumps({"import_error": repr(e)}))
    sys.exit(0)
from geometry_msgs.msg import TransformStamped
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy, HistoryPolicy

t = TransformStamped()
t.header.stamp.sec = 1234
t.header.stamp.nanosec = 567
t.header.frame_id = "odom"
t.child_frame_id = "base_link"
t.transform.translation.x = 1.5
t.transform.translation.y = -2.25
t.transform.rotation.z = 0.6
t.transform.rotation.w = 0.8
sent = TFMessage(transforms=[t])

out = {"type": TFMessage.__module__ + "." + TFMessage.__name__}
rclpy.init()
node = rclpy.create_node("tf2_msgs_check")
try:
    qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    received = []
    node.create_subscription(TFMessage, "/tf", received.append, qos)
    pub = node.create_publisher(TFMessage, "/tf", qos)

    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    out["matched"] = pub.get_subscription_count()

    # The type hash as the graph sees it (rmw announces it in discovery data: what tf2 tools compare).
    out["topic_types"] = dict(node.get_topic_names_and_types()).get("/tf")
    out["pub_hashes"] = [str(i.topic_type_hash) for i in node.get_publishers_info_by_topic("/tf")]
    out["sub_hashes"] = [str(i.topic_type_hash) for i in node.get_subscriptions_info_by_topic("/tf")]

    next_pub = 0.0
    while not received and time.monotonic() < deadline:
        if time.monotonic() >= next_pub:  # re-send now and then in case the first one raced matching
            pub.publish(sent)
            next_pub = time.monotonic() + 0.5
        rclpy.spin_once(node, timeout_sec=0.05)
    if received:
        r = received[0].transforms
        out["received"] = [{
            "stamp": [x.header.stamp.sec, x.header.stamp.nanosec],
            "frame_id": x.header.frame_id, "child_frame_id": x.child_frame_id,
            "translation": [x.transform.translation.x, x.transform.translation.y,
                            x.transform.translation.z],
            "rotation": [x.transform.rotation.x, x.transform.rotation.y, x.transform.rotation.z,
                         x.transform.rotation.w],
        } for x in r]
        out["equal"] = received[0] == sent
finally:
    node.destroy_node()
    rclpy.shutdown()
print(json.dumps(out))
'''


def test_tf2_msgs_tfmessage_hash_and_pubsub(python_exe: str) -> None:
    env = ros_env()
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    proc = subprocess.run([python_exe, "-c", CHILD], env=env, capture_output=True, text=True,
                          timeout=40)
    assert proc.returncode == 0, f"child failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from child:\n{proc.stdout}\n{proc.stderr}"
    out = json.loads(lines[-1])

    assert "import_error" not in out, (
        f"tf2_msgs is not importable ({out['import_error']}): run `bash tools/build_tf2_msgs.sh .venv`"
        " (or `make venv`)")
    assert out["type"] == "tf2_msgs.msg._tf_message.TFMessage"
    assert out["matched"] >= 1, "publisher and subscription on /tf never matched"
    assert out["topic_types"] == ["tf2_msgs/msg/TFMessage"]
    assert out["pub_hashes"] == [UPSTREAM_TFMESSAGE_HASH]
    assert out["sub_hashes"] == [UPSTREAM_TFMESSAGE_HASH]

    assert "received" in out, "no TFMessage came back on /tf within the timeout"
    assert out["equal"] is True
    assert out["received"] == [{
        "stamp": [1234, 567], "frame_id": "odom", "child_frame_id": "base_link",
        "translation": [1.5, -2.25, 0.0], "rotation": [0.0, 0.0, 0.6, 0.8],
    }]
