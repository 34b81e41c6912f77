"""Which of the node's inputs nobody publishes, and what is published instead.

A wrong remapping (``-r image:=/camera/image`` while the camera publishes ``/camera/image_raw``)
leaves the node waiting in silence. :func:`missing_publishers` asks the ROS graph, for each input
subscription, how many publishers it has; for one without any it lists the topics that carry the
same message type (the likely right names), so the node can say ``no publisher on /camera/image
(sensor_msgs/Image); publishers of that type: /camera/image_raw (remap with -r image:=...)``.
"""
from __future__ import annotations

from typing import Any, Iterable

#: seconds after start before a missing publisher is reported (DDS discovery takes a moment)
DISCOVERY_GRACE_S = 3.0
#: topics of a type listed at most (a busy graph)
MAX_CANDIDATES = 5


def graph_type(msg_type: str) -> str:
    """``sensor_msgs/Image`` as the ROS graph names it: ``sensor_msgs/msg/Image``."""
    package, name = msg_type.split("/")
    return f"{package}/msg/{name}"


def published_topics_of_type(node: Any, msg_type: str, exclude: str = "") -> list[str]:
    """The topics of the graph with message type ``msg_type`` (``package/Type``) that another node
    publishes (``node``'s own outputs are not candidates for its input), sorted, without ``exclude``."""
    want = graph_type(msg_type)
    own = {p.topic_name for p in node.publishers}
    out = []
    for name, types in node.get_topic_names_and_types():
        if want in types and name != exclude and name not in own and node.count_publishers(name) > 0:
            out.append(name)
    return sorted(out)


def missing_publishers(node: Any, inputs: Iterable[tuple[Any, str, str]]) -> list[str]:
    """One line per input without a publisher. ``inputs``: ``(subscription, table name, msg_type)``
    of each input to check (``table name``: the relative name a user remaps, e.g. ``image``)."""
    lines = []
    for sub, name, msg_type in inputs:
        topic = sub.topic_name
        if node.count_publishers(topic) > 0:
            continue
        others = published_topics_of_type(node, msg_type, exclude=topic)
        if others:
            shown = ", ".join(others[:MAX_CANDIDATES]) + (" ..." if len(others) > MAX_CANDIDATES else "")
            hint = f"publishers of that type: {shown} (remap with -r {name}:={others[0]})"
        else:
            hint = f"nothing publishes {msg_type} yet"
        lines.append(f"no publisher on {topic} ({msg_type}); {hint}")
    return lines
