"""The node's interface table (:mod:`sfm_ros.ros.interface`) against what a running node creates,
``--help`` and the README: a topic changed in one place and not the others fails here."""
from __future__ import annotations

import re

import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import REPO, save_tiny_checkpoint  # noqa: E402
from sfm_ros.ros import interface  # noqa: E402
from sfm_ros.ros.interface import PUBLICATIONS, SUBSCRIPTIONS, Topic  # noqa: E402

pytestmark = pytest.mark.slow  # starts a node (model load) in this process


def _resolved(name: str, ns: str = "") -> str:
    return name if name.startswith("/") else f"{ns}/{name}"


@pytest.fixture(scope="module")
def running_node(tmp_path_factory):
    """An SfmNode in its own context (namespace /robot1, compressed input), its publishers and
    subscriptions read back from rclpy."""
    from rclpy.parameter import Parameter

    from sfm_ros.ros.node import SfmNode

    ckpt = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = None
    try:
        node = SfmNode(context=ctx, namespace="/robot1", parameter_overrides=[
            Parameter("checkpoint", value=str(ckpt)), Parameter("backend", value="torch"),
            Parameter("compressed", value=True),
            Parameter("qos_overrides./robot1/odom.publisher.reliability", value="best_effort"),
            Parameter("qos_overrides./robot1/camera_info.subscription.depth", value=3)])
        pubs = {p.topic_name: p.msg_type for p in node.publishers}
        subs = {s.topic_name: s.msg_type for s in node.subscriptions}
        yield node, pubs, subs
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_every_published_topic_is_a_publisher_of_the_running_node(running_node):
    node, pubs, _ = running_node
    for t in PUBLICATIONS:
        name = _resolved(t.name, "/robot1")
        assert name in pubs, f"{t.name} is in the table but the node has no publisher {name} ({sorted(pubs)})"
        cls = pubs[name]
        assert f"{cls.__module__.split('.')[0]}/{cls.__name__}" == t.msg_type, (t.name, cls)
    own = {n for n in pubs if not n.endswith("/rosout") and not n.startswith("/parameter_events")}
    extra = own - {_resolved(t.name, "/robot1") for t in PUBLICATIONS}
    assert not extra, f"the node publishes topics the interface table does not list: {sorted(extra)}"
    assert set(node.pubs) == {t.name for t in PUBLICATIONS}


def test_the_node_subscribes_to_the_table_topics(running_node):
    _, _, subs = running_node
    own = {n for n in subs if not n.startswith("/parameter_events")}
    # compressed:=true: image/compressed instead of image
    assert own == {"/robot1/image/compressed", "/robot1/camera_info"}, own
    assert {t.name for t in SUBSCRIPTIONS} == {"image", "image/compressed", "camera_info"}


def test_readme_table_is_the_generated_one():
    text = (REPO / "README.md").read_text()
    section = interface.readme_section(text)
    assert section is not None, "README.md lost its generated topic table markers"
    assert section == interface.readme_table(), \
        "README.md's topic table differs from sfm_ros/ros/interface.py: run python -m sfm_ros.ros.interface " \
        "--readme README.md"
    for t in SUBSCRIPTIONS + PUBLICATIONS:
        assert re.search(rf"\| `{re.escape(t.name)}` \| `{re.escape(t.type_text)}` \|", section), t.name


def test_help_and_node_documentation_list_every_topic():
    import sfm_ros.ros.node as node

    text = node.help_text()
    for t in SUBSCRIPTIONS + PUBLICATIONS:
        assert re.search(rf"^  {re.escape(t.name)} +{re.escape(t.type_text)} ", text, re.M), t.name
        assert f"``{t.name}``" in node.__doc__, t.name
    assert "{topics}" not in node.__doc__


def test_rows_are_checked():
    with pytest.raises(ValueError, match="qos must be one of"):
        Topic("x", "sensor_msgs/Image", "fast", "", "")
    with pytest.raises(ValueError, match="package/Type"):
        Topic("x", "Image", "output", "", "")
    with pytest.raises(KeyError, match="no topic 'depth'"):
        interface.topic("depth")


def test_qos_kinds():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    assert interface.qos_profile("input", 5, "best_effort").reliability == ReliabilityPolicy.BEST_EFFORT
    assert interface.qos_profile("input", 5, "reliable").reliability == ReliabilityPolicy.RELIABLE
    assert interface.qos_profile("output", 7, "best_effort").reliability == ReliabilityPolicy.RELIABLE
    assert interface.qos_profile("output", 7).depth == 7
    static = interface.qos_profile("tf_static")
    assert static.durability == DurabilityPolicy.TRANSIENT_LOCAL and static.depth == 1
    assert interface.qos_profile("tf").depth == 100
    with pytest.raises(ValueError, match="qos_reliability must be"):
        interface.qos_profile("input", 5, "sometimes")


def test_write_readme_rewrites_only_the_section(tmp_path):
    p = tmp_path / "README.md"
    p.write_text(f"head\n{interface.README_BEGIN}\nold\n{interface.README_END}\ntail\n")
    assert interface.write_readme(p)
    text = p.read_text()
    assert text.startswith("head\n") and text.endswith("tail\n") and "old" not in text
    assert not interface.write_readme(p)
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- topics"):
        interface.write_readme(tmp_path / "bare.md")


def test_qos_overrides_apply_to_the_table_topics(running_node):
    """REP-2003 style overrides (qos_overrides./TOPIC.publisher|subscription.POLICY) reach the
    publishers and subscriptions; topics not overridden keep the table's QoS."""
    from rclpy.qos import ReliabilityPolicy

    node = running_node[0]
    assert node.pubs["odom"].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert node.pubs["depth/image"].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert node.sub_info.qos_profile.depth == 3
    assert node.sub_image.qos_profile.depth == 5
