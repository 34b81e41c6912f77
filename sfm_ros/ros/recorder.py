"""``sfm_record``: record live ROS 2 topics into an mcap bag (a small ``ros2 bag record``).

Usage::

    sfm_record OUT --topics /a /b [--duration S] [--max-messages N] [--storage mcap|sqlite3]
               [--wait S] [--qos auto|sensor|reliable] [--overwrite] [--ros-args ...]

Each topic's type is taken from the ROS graph when a publisher appears; topics without a publisher
after ``--wait`` seconds (default 3) are named in a warning, and recorded as soon as they appear.
Messages are received *serialized* (``raw=True``: the CDR bytes rclpy gets from the middleware,
equal to ``rclpy.serialization.serialize_message`` of the message) and written with ``rosbags``'
``Writer`` under the topic's message type, stamped with the reception time of the node clock (wall
time, or sim time with ``use_sim_time``). The bag is readable by ``ros2 bag``, ``rosbags`` and
:mod:`sfm_ros.data.bags`. The bag is closed cleanly on Ctrl-C / SIGTERM, at ``--duration`` or after
``--max-messages`` messages in total; a summary line names what was recorded and what was not.
Exit status: 0 on success and after Ctrl-C / SIGTERM (what was recorded is kept), 1 when
``--duration`` or ``--max-messages`` ended a recording in which a topic never appeared, 2 on bad
arguments. ``--overwrite`` replaces only a folder holding nothing but a bag, and keeps the old bag
until the new one is closed.

QoS: each topic is subscribed (keep last 100) with the QoS its publishers offer when it is found
(``--qos auto``, the default, rosbag2's rule): transient local when every publisher is transient
local, so a recorder started late still gets the latched ``/tf_static``; reliable when every
publisher is reliable, else best effort. ``--qos reliable`` / ``--qos sensor`` (best effort) force
the reliability (a reliable subscriber gets nothing from a best-effort publisher; a best-effort one
accepts both but may lose messages, and DDS does not deliver a transient-local publisher's earlier
messages to it). The publishers' offered QoS is written into the bag
(``offered_qos_profiles`` of the topic's metadata), as ``ros2 bag record`` does.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from sfm_ros.ros.message_types import QOS_CHOICES, msg_class, offered_qos, publisher_qos, qos_profile

__all__ = ["Recorder", "main"]


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY", "LATEST"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise RuntimeError("rosbags has no ROS 2 type store")  # pragma: no cover


class Recorder:
    """Subscribes (raw) to topics on ``node`` and writes every message to a ROS 2 bag at ``out``."""

    def __init__(self, node, out: str | Path, storage: str = "mcap", qos: str = "auto",
                 overwrite: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        from sfm_ros.data.bag_writer import finish_overwrite, set_bag_aside

        self.node = node
        self.out = Path(out)
        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
        if qos != "auto" and qos not in QOS_CHOICES:
            raise ValueError(f"qos must be auto, {' or '.join(QOS_CHOICES)}, got {qos!r}")
        if self.out.exists() and not overwrite:
            raise ValueError(f"output {self.out} already exists (use --overwrite)")
        # an old bag is kept aside until this one is closed (BagError, a ValueError, when the
        # folder holds anything but a bag)
        self._old_bag = set_bag_aside(self.out) if self.out.exists() else None
        self.qos = qos
        self.typestore = _typestore()
        try:
            self.writer = Writer(self.out, version=9,
                                 storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
            self.writer.open()
        except BaseException:
            finish_overwrite(self.out, self._old_bag, False)
            raise
        self.connections: dict[str, Any] = {}
        self.subscriptions: dict[str, Any] = {}
        self.profiles: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.total = 0
        self._closed = False

    def topic_type(self, topic: str) -> str | None:
        for name, types in self.node.get_topic_names_and_types():
            if name == topic and types:
                return types[0]
        return None

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Subscribe to ``topic`` of ``msgtype`` (``pkg/msg/Name``) with the QoS its current publishers
        offer (see the module doc) and create its bag connection, with their offered QoS."""
        cls = msg_class(msgtype)
        profile = publisher_qos(self.node, topic, None if self.qos == "auto" else self.qos)
        if profile is None:  # no publisher (yet): volatile, as asked
            profile = qos_profile("reliable" if self.qos == "auto" else self.qos)
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=offered_qos(self.node, topic))
        self.counts[topic] = 0
        self.subscriptions[topic] = self.node.create_subscription(
            cls, topic, lambda data, t=topic: self._on_message(t, data), profile, raw=True)
        self.profiles[topic] = profile

    def _on_message(self, topic: str, data: bytes) -> None:
        if self._closed:
            return
        t_ns = self.node.get_clock().now().nanoseconds or time.time_ns()
        self.writer.write(self.connections[topic], t_ns, bytes(data))
        self.counts[topic] += 1
        self.total += 1

    def close(self) -> None:
        from sfm_ros.data.bag_writer import finish_overwrite

        if not self._closed:
            self._closed = True
            self.writer.close()
            finish_overwrite(self.out, self._old_bag, True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sfm_record", description="Record ROS 2 topics into an mcap bag.")
    ap.add_argument("out", help="output bag folder (created)")
    ap.add_argument("--topics", nargs="+", required=True, help="topics to record")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = never)")
    ap.add_argument("--max-messages", type=int, default=0, help="stop after N messages in total")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                    help="bag storage plugin: mcap (default; a .mcap file, rosbag2's default since "
                         "Iron) or sqlite3 (a .db3 file, the default before)")
    ap.add_argument("--qos", choices=("auto",) + QOS_CHOICES, default="auto",
                    help="subscription QoS: auto (default) matches each topic's publishers: reliable "
                         "when all are reliable, transient local when all are (so /tf_static is "
                         "recorded); reliable or sensor (best effort) force the reliability, the "
                         "durability still follows the publishers (a best-effort subscriber does not "
                         "get what a transient-local publisher sent before it started)")
    ap.add_argument("--wait", type=float, default=3.0,
                    help="after S seconds, name the topics that have no publisher yet (they are still "
                         "recorded when they appear; default 3)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUT")
    return ap


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["sfm_record"] + argv)[1:])
    rclpy.init(args=["sfm_record"] + argv)
    node = rclpy.create_node("sfm_record")
    rec = None
    status = 0
    interrupted = False
    pending: set[str] = set()
    unrecordable: set[str] = set()
    try:
        try:
            rec = Recorder(node, args.out, args.storage, args.qos, args.overwrite)
        except ValueError as exc:
            print(f"sfm_record: error: {exc}", file=sys.stderr)
            return 2
        pending = {t if t.startswith("/") else node.resolve_topic_name(t) for t in args.topics}
        named = False
        start = time.monotonic()
        while rclpy.ok():
            for t in sorted(pending):
                ty = rec.topic_type(t)
                if ty is None:
                    continue
                pending.discard(t)
                try:
                    rec.add_topic(t, ty)
                except (ImportError, AttributeError) as exc:  # a type no installed package has
                    node.get_logger().warning(f"not recording {t}: {exc}")
                    unrecordable.add(t)
                    continue
                prof = rec.profiles[t]
                node.get_logger().info(f"recording {t} [{ty}] ({prof.reliability.name.lower()}, "
                                       f"{prof.durability.name.lower()})")
            if pending and not named and time.monotonic() - start >= args.wait:
                named = True
                node.get_logger().warning(
                    f"no publisher for {', '.join(sorted(pending))} after {args.wait:g} s; recording the "
                    f"others and waiting for these (Ctrl-C ends the recording)")
            rclpy.spin_once(node, timeout_sec=0.05)
            if args.duration > 0 and time.monotonic() - start >= args.duration:
                break
            if args.max_messages > 0 and rec.total >= args.max_messages:
                break
        else:  # the context was shut down: Ctrl-C / SIGTERM
            interrupted = True
    except (KeyboardInterrupt, ExternalShutdownException):
        interrupted = True
    finally:
        if rec is not None:
            rec.close()
            missing = sorted(pending | unrecordable)
            print(f"sfm_record: wrote {rec.total} messages to {rec.out}: "
                  + ", ".join(f"{t} {n}" for t, n in rec.counts.items())
                  + (f"; not recorded (no publisher or unknown type): {', '.join(missing)}" if missing else ""),
                  file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
    if (pending or unrecordable) and not interrupted:
        status = 1  # --duration / --max-messages ended a recording that missed a topic
    return status


if __name__ == "__main__":
    sys.exit(main())
