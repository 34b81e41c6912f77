"""``sfm_lifecycle_node``: the managed node's transitions, in this process (its own rclpy context)
and once as a subprocess driven through the ``~/change_state`` service."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from conftest import REPO, ros_env, save_tiny_checkpoint, wait_until as _wait  # noqa: E402
from ros_client import RosClient  # noqa: E402
from sfm_ros.data.image_codec import encode_image  # noqa: E402
from sfm_ros.data.synthetic import render_sequence  # noqa: E402
from sfm_ros.ros.interface import PUBLICATIONS  # noqa: E402

pytestmark = pytest.mark.slow  # loads a model, runs a node


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@contextlib.contextmanager
def _managed(ns: str, **params):
    """An SfmLifecycleNode in a context of its own, destroyed afterwards."""
    from sfm_ros.ros.lifecycle_node import SfmLifecycleNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = None
    try:
        node = SfmLifecycleNode(context=ctx, namespace=ns,
                                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        yield node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_transitions_in_process(tiny_ckpt, tmp_path):
    with _managed("/lc", checkpoint=str(tmp_path / "missing.pt"), backend="torch") as node:
        assert node.pipeline is None and not node.pubs  # unconfigured: nothing loaded
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE  # a missing checkpoint
        assert node.pipeline is None and not node.pubs
        node.set_parameters([Parameter("checkpoint", value=str(tiny_ckpt))])  # read-only: refused
        assert node.get_parameter("checkpoint").value == str(tmp_path / "missing.pt")

    with _managed("/lc", checkpoint=str(tiny_ckpt), backend="torch") as node:
        assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS
        assert node.pipeline is not None and "odom" in node.pubs and node.sub_image is None
        assert node.on_activate(None) == TransitionCallbackReturn.SUCCESS
        assert node.sub_image is not None and node._worker.is_alive()
        # the pipeline hurries its rotation window exactly while a newer frame waits in the queue
        assert node.pipeline.behind() is False
        with node._queue._cond:
            node._queue._q.append(object())
            assert node.pipeline.behind() is True
            node._queue._q.clear()
        assert node.on_deactivate(None) == TransitionCallbackReturn.SUCCESS
        assert node.sub_image is None and node._worker is None
        assert node.on_activate(None) == TransitionCallbackReturn.SUCCESS  # again, model kept
        assert node._worker.is_alive() and node.pipeline.behind() is False  # the new queue's
        node.on_deactivate(None)
        assert node.on_cleanup(None) == TransitionCallbackReturn.SUCCESS
        assert node.pipeline is None and not node.pubs
        assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS  # configurable again
        # dynamic parameters are checked while inactive as while running
        bad = node.set_parameters([Parameter("min_depth", value=500.0)])
        assert not bad[0].successful and "max_depth" in bad[0].reason


def test_a_failed_configure_leaves_nothing_behind(tiny_ckpt):
    """A QoS override rclpy refuses: configure fails with the reason, no publisher or model is
    left, and the unconfigured node checks dynamic parameters as a running one does."""
    with _managed("/lcq", checkpoint=str(tiny_ckpt), backend="torch",
                  **{"qos_overrides./lcq/odom.publisher.reliability": "sometimes"}) as node:
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node.pipeline is None and not node.pubs
        ours = {f"/lcq/{t.name}" if not t.name.startswith("/") else t.name for t in PUBLICATIONS}
        assert not [p.topic_name for p in node.publishers if p.topic_name in ours]
        bad = node.set_parameters([Parameter("min_depth", value=500.0)])
        assert not bad[0].successful and "max_depth" in bad[0].reason


def test_a_managed_node_publishes_only_once_activated(tiny_ckpt):
    """The executable, driven as a lifecycle manager would: nothing before configure + activate,
    depth and odometry after, a clean exit on Ctrl-C."""
    from lifecycle_msgs.srv import ChangeState, GetState

    ns = "/lcp"
    client = RosClient("sfm_lifecycle_test_client")
    proc = subprocess.Popen([sys.executable, "-m", "sfm_ros.ros.lifecycle_node", "--ros-args", "-r", f"__ns:={ns}",
                             "-p", f"checkpoint:={tiny_ckpt}", "-p", "backend:=torch",
                             "-p", "intrinsics:=[60.0, 60.0, 47.5, 31.5]", "-p", "camera_frame:=cam_opt",
                             "-p", "camera_xyz:=[0.2, 0.0, 1.0]"],
                            cwd=REPO, env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        depth = client.collect(Image, f"{ns}/depth/image")
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        static = client.collect(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        pub = client.node.create_publisher(Image, f"{ns}/image", 10)
        change = client.node.create_client(ChangeState, f"{ns}/sfm_node/change_state")
        get = client.node.create_client(GetState, f"{ns}/sfm_node/get_state")
        assert change.wait_for_service(timeout_sec=60) and get.wait_for_service(timeout_sec=10)

        def call(cli, req):
            fut = cli.call_async(req)
            assert _wait(fut.done, 60)
            return fut.result()

        assert call(get, GetState.Request()).current_state.label == "unconfigured"
        assert pub.get_subscription_count() == 0  # not subscribed before activate
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))).success
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))).success
        assert call(get, GetState.Request()).current_state.label == "active"
        assert _wait(lambda: pub.get_subscription_count() > 0, 20)
        # the mount goes out at activation (the lifecycle publishers are active by then)
        assert _wait(lambda: any(t.child_frame_id == "cam_opt" for _, m in static for t in m.transforms), 10)
        seq = render_sequence(num_frames=8, height=64, width=96, seed=2)
        for im in seq.images:
            enc, h, w, step, data = encode_image(im, "rgb8")
            m = Image(encoding=enc, height=h, width=w, step=step, data=data)
            m.header.stamp, m.header.frame_id = client.now(), "cam"
            pub.publish(m)
            time.sleep(0.1)
        assert _wait(lambda: len(depth) >= 4, 20), proc.stderr
        assert call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))).success
        assert _wait(lambda: pub.get_subscription_count() == 0, 10)
    finally:
        client.close()
        proc.send_signal(2)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err
