"""ROS-layer helpers shared by ``sfm_play`` and ``sfm_record``: message classes and QoS.

- :func:`msg_class` turns a type name a bag or the ROS graph gives (``sensor_msgs/msg/Image``, or
  the ROS 1 spelling ``sensor_msgs/Image``) into the rclpy class, importing only packages that
  :func:`is_message_type` knows to be installed ROS interface packages.
- :func:`qos_profile` is the named profile of the tools' ``--qos`` option; :func:`publisher_qos`
  is the subscription QoS that matches a topic's current publishers (rosbag2's rule: reliable only
  when every publisher is reliable, transient local only when every publisher is transient local,
  so a late recorder still gets ``/tf_static``); :func:`offered_qos` converts the publishers' QoS
  into ``rosbags`` ``Qos`` values for a bag's ``offered_qos_profiles``.

``rclpy`` and ``rosbags`` are imported inside the functions (the module itself imports no ROS).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["QOS_CHOICES", "is_message_type", "msg_class", "qos_profile", "publisher_qos", "offered_qos"]

QOS_CHOICES = ("sensor", "reliable")


def _interface_prefixes() -> list[Path]:
    """Install prefixes whose ament index may list interface packages (``AMENT_PREFIX_PATH``, the
    venv)."""
    paths = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return paths + [Path(sys.prefix)]


def is_message_type(package: str, name: str) -> bool:
    """Whether ``package/msg/name`` is a message of an installed ROS interface package, decided
    without importing anything: listed in the ament index (``rosidl_interfaces``), or, for a
    package without an index entry, a generated interface package (its rosidl type support
    library next to its ``__init__``)."""
    if not (package.isidentifier() and name.isidentifier()):
        return False
    for prefix in _interface_prefixes():
        entry = prefix / "share" / "ament_index" / "resource_index" / "rosidl_interfaces" / package
        if entry.is_file():
            listed = set(entry.read_text().split())
            return f"msg/{name}.msg" in listed or f"msg/{name}.idl" in listed
    spec = importlib.util.find_spec(package)  # a top-level name: found, not run
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(any(Path(d).glob(f"{package}_s__rosidl_typesupport_c*")) for d in spec.submodule_search_locations)


def msg_class(msgtype: str):
    """``sensor_msgs/msg/Image`` (or ROS 1 ``sensor_msgs/Image``) → the rclpy message class.

    Only message packages :func:`is_message_type` knows are imported: a bag (or a remote
    publisher) names the type, and importing an arbitrary module would run its code."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg":
        raise ImportError(f"cannot parse message type {msgtype!r}; expected package/msg/Name")
    if not is_message_type(parts[0], parts[2]):
        raise ImportError(f"{msgtype} is not a message of an installed ROS interface package")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    return getattr(module, parts[2])


def qos_profile(name: str, depth: int = 100):
    """The ``--qos`` profile: ``reliable`` (reliable, keep last ``depth``, volatile) or ``sensor``
    (rclpy's sensor-data profile: best effort, keep last 5, volatile)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if name not in QOS_CHOICES:
        raise ValueError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {name!r}")
    if name == "sensor":
        return qos_profile_sensor_data
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def publisher_qos(node, topic: str, reliability: str | None = None, depth: int = 100):
    """A subscription QoS for ``topic`` that matches its current publishers (``None`` when it has
    none): keep last ``depth``; transient local when every publisher is transient local (latched
    topics such as ``/tf_static``), else volatile; reliable when every publisher is reliable, else
    best effort. ``reliability`` (``"reliable"`` / ``"sensor"``) overrides the reliability."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    offered = [i.qos_profile for i in infos]
    if reliability is None:
        rel = (ReliabilityPolicy.RELIABLE if all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
               else ReliabilityPolicy.BEST_EFFORT)
    elif reliability in QOS_CHOICES:
        rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    else:
        raise ValueError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {reliability!r}")
    dur = (DurabilityPolicy.TRANSIENT_LOCAL if all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
           else DurabilityPolicy.VOLATILE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel, durability=dur)


def _qos_time(duration: Any):
    from rosbags.interfaces import QosTime

    sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
    return QosTime(sec=sec, nsec=nsec)


def offered_qos(node, topic: str) -> list:
    """The QoS each current publisher of ``topic`` offers, as ``rosbags.interfaces.Qos`` values
    (for ``Writer.add_connection(offered_qos_profiles=...)``; rclpy's and rosbags' policy enums
    share the rmw numbering)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability

    out = []
    for info in node.get_publishers_info_by_topic(topic):
        q = info.qos_profile
        out.append(Qos(history=QosHistory(int(q.history)), depth=int(q.depth),
                       reliability=QosReliability(int(q.reliability)),
                       durability=QosDurability(int(q.durability)),
                       deadline=_qos_time(q.deadline), lifespan=_qos_time(q.lifespan),
                       liveliness=QosLiveliness(int(q.liveliness)),
                       liveliness_lease_duration=_qos_time(q.liveliness_lease_duration),
                       avoid_ros_namespace_conventions=bool(q.avoid_ros_namespace_conventions)))
    return out
