"""``sfm_play``: play a ROS 1 or ROS 2 bag into a live ROS 2 graph (a small ``ros2 bag play``).

Usage::

    sfm_play BAG [--topics T [T ...]] [--rate R] [--loop] [--qos sensor|reliable] [--clock]
                 [--delay S] [--wait-for-subscribers S [--wait-topics T ...]]
                 [--ros-args -r /old:=/new ...]

``BAG`` is a ROS 1 ``.bag`` file, a ROS 2 bag folder (``metadata.yaml``) or a bare ``.mcap`` /
``.db3`` file (read with ``rosbags``' ``AnyReader``; no ROS 1 install needed). Messages are
published on their recorded topics in recording order, paced by their recorded (log) times divided
by ``--rate``; header stamps are the recorded ones, untouched. With ``--clock`` the recorded time
is published on ``/clock`` (rosgraph_msgs/Clock, about 100 Hz and before every message) so nodes
with ``use_sim_time:=true`` follow the bag. ``--loop`` starts again at the end (time jumps back:
consumers such as ``sfm_node`` reset their odometry).

Conversion to rclpy messages: ROS 2 bags hand over their CDR bytes to
``rclpy.serialization.deserialize_message``; ROS 1 bags (or a CDR blob rclpy rejects) are
deserialised by ``rosbags`` and copied field by field into the rclpy class of the same name (ROS 1
``K``/``D``/``R``/``P`` of CameraInfo map to ``k``/``d``/``r``/``p``, ``seq`` is dropped). Topics
whose type is not a message of an installed ROS interface package (listed in the ament index, or
a generated package on the Python path) are skipped with a warning, without importing anything: a
bag names its types, and importing whatever module it names would run that module's code.

Publishers are ``reliable`` (keep last 100) by default; ``--qos sensor`` uses the sensor-data
profile (best effort, keep last 5). Messages published before a subscriber is matched are lost
(the publishers are volatile, as the subscribers of ``sfm_node`` are): ``--wait-for-subscribers S``
waits for subscribers on the image topics (or ``--wait-topics``), then half a second more so a
best-effort subscriber has matched the publisher too, before the first message. Exit status: 0 at the end / on Ctrl-C, 2 on a bad bag or
arguments.
"""
from __future__ import annotations

import argparse
import array
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.bags import IMAGE_MSGTYPES, bag_paths, open_bag
from sfm_ros.ros.message_types import QOS_CHOICES, msg_class, qos_profile

__all__ = ["main", "to_rclpy", "BagPlayer"]


def _field(src: Any, name: str):
    if hasattr(src, name):
        return getattr(src, name)
    for cand in (name.upper(), name.lower()):
        if hasattr(src, cand):
            return getattr(src, cand)
    return None


def to_rclpy(src: Any, cls):
    """Copy a ``rosbags`` message (ROS 1 or ROS 2 dataclass) into a new rclpy message of ``cls``."""
    from rosidl_parser.definition import AbstractNestedType, BasicType, NamespacedType

    msg = cls()
    for (name, _), slot in zip(cls.get_fields_and_field_types().items(), cls.SLOT_TYPES):
        val = _field(src, name)
        if val is None:
            continue
        if isinstance(slot, NamespacedType):
            val = to_rclpy(val, msg_class("/".join(slot.namespaces + [slot.name])))
        elif isinstance(slot, AbstractNestedType) and isinstance(slot.value_type, NamespacedType):
            vt = slot.value_type
            sub = msg_class("/".join(vt.namespaces + [vt.name]))
            val = [to_rclpy(v, sub) for v in val]
        elif isinstance(slot, AbstractNestedType):
            tn = getattr(slot.value_type, "typename", "")
            if tn == "octet":
                val = [v if isinstance(v, bytes) else bytes([int(v)]) for v in val]
            elif isinstance(val, np.ndarray):
                if tn == "uint8" and isinstance(getattr(msg, name), array.array):
                    val = val.astype(np.uint8, copy=False).tobytes()
                elif not isinstance(getattr(msg, name), np.ndarray):
                    val = val.tolist()
        elif isinstance(slot, BasicType):
            if slot.typename == "octet" and isinstance(val, int):
                val = bytes([val])
            elif slot.typename in ("float", "double"):
                val = float(val)
            elif slot.typename == "boolean":
                val = bool(val)
            elif isinstance(val, np.generic):
                val = val.item()
        setattr(msg, name, val)
    return msg


class BagPlayer:
    """Publishes the messages of a bag on a node (see the module doc)."""

    def __init__(self, node, bag: str | Path, topics: list[str] | None = None, rate: float = 1.0,
                 qos: str = "reliable", clock: bool = False):
        self.node = node
        self.paths = bag_paths(bag)
        self.rate = float(rate)
        if self.rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        profile = qos_profile(qos)
        self.publishers: dict[str, Any] = {}
        self.classes: dict[str, Any] = {}
        self.image_topics: list[str] = []
        with open_bag(self.paths) as reader:
            self.is2 = bool(getattr(reader, "is2", True))
            available = {c.topic: c.msgtype for c in reader.connections}
        wanted = topics or sorted(available)
        for t in wanted:
            if t not in available:
                raise ValueError(f"topic {t} is not in the bag (topics: {', '.join(sorted(available))})")
            try:
                cls = msg_class(available[t])
            except (ImportError, AttributeError) as exc:
                node.get_logger().warning(f"skipping {t}: message type {available[t]} is not available in "
                                          f"Python ({exc})")
                continue
            self.classes[t] = cls
            self.publishers[t] = node.create_publisher(cls, t, profile)
            if available[t] in IMAGE_MSGTYPES:
                self.image_topics.append(t)
        if not self.publishers:
            raise ValueError("no playable topics")
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self.published = 0

    def without_subscribers(self, topics: list[str] | None = None) -> list[str]:
        """Those of ``topics`` (default: the image topics, or every played topic when the bag has
        no image topic) that have no subscriber now; ``ValueError`` for a topic not played."""
        wanted = list(topics) if topics else (self.image_topics or list(self.publishers))
        unknown = [t for t in wanted if t not in self.publishers]
        if unknown:
            raise ValueError(f"cannot wait for {', '.join(unknown)}: not played "
                             f"(played: {', '.join(self.publishers)})")
        return [t for t in wanted if self.publishers[t].get_subscription_count() == 0]

    def wait_for_subscribers(self, timeout: float, topics: list[str] | None = None,
                             settle: float = 0.5) -> bool:
        """Wait up to ``timeout`` s until each of ``topics`` (as :meth:`without_subscribers`) has a
        subscriber; whether they all have. A publisher sees a subscription before the subscriber
        has matched the publisher in turn, and a best-effort subscriber drops what comes before, so
        ``settle`` s more pass after the last match (the first frames are not lost)."""
        end = time.monotonic() + timeout
        while self.without_subscribers(topics):
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        time.sleep(settle)
        return True

    def _publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is not None:
            from rosgraph_msgs.msg import Clock

            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
            self.clock_pub.publish(msg)

    def _convert(self, reader, conn, raw):
        cls = self.classes[conn.topic]
        if self.is2:
            from rclpy.serialization import deserialize_message

            try:
                return deserialize_message(bytes(raw), cls)
            except Exception:
                pass
        return to_rclpy(reader.deserialize(raw, conn.msgtype), cls)

    def play_once(self, should_stop=lambda: False) -> int:
        """Play the bag once in real time / ``rate``; returns the number of messages published."""
        n = 0
        with open_bag(self.paths) as reader:
            conns = [c for c in reader.connections if c.topic in self.publishers]
            start_wall = None
            t0 = None
            for conn, t_ns, raw in reader.messages(connections=conns):
                if should_stop():
                    break
                if start_wall is None:
                    start_wall, t0 = time.monotonic(), t_ns
                target = start_wall + (t_ns - t0) * 1e-9 / self.rate
                while True:  # sleep until the message is due, ticking /clock at ~100 Hz
                    now = time.monotonic()
                    if now >= target or should_stop():
                        break
                    self._publish_clock(t0 + int((now - start_wall) * self.rate * 1e9))
                    time.sleep(min(0.01, target - now))
                try:
                    msg = self._convert(reader, conn, raw)
                except Exception as exc:
                    self.node.get_logger().warning(f"skipping a message on {conn.topic}: {exc}")
                    continue
                self._publish_clock(t_ns)
                self.publishers[conn.topic].publish(msg)
                n += 1
        self.published += n
        return n


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sfm_play", description="Play a ROS 1 / ROS 2 bag into ROS 2.")
    ap.add_argument("bag", help="ROS 1 .bag, ROS 2 bag folder, or .mcap/.db3 file")
    ap.add_argument("--topics", nargs="+", default=None, help="topics to play (default: all)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    ap.add_argument("--loop", action="store_true", help="play again and again")
    ap.add_argument("--qos", choices=QOS_CHOICES, default="reliable",
                    help="publisher QoS: sensor (best effort) or reliable (default)")
    ap.add_argument("--clock", action="store_true", help="publish the bag time on /clock")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before playing")
    ap.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                    help="before playing, wait up to S seconds until each --wait-topics topic has a "
                         "subscriber (then 0.5 s more, so a best-effort subscriber such as sfm_node "
                         "gets the first frames); on timeout the topics without one are named and the "
                         "bag is played anyway. Without it, messages published before a subscriber is "
                         "matched are lost (default 0: no wait)")
    ap.add_argument("--wait-topics", nargs="+", default=None, metavar="T",
                    help="the topics --wait-for-subscribers waits for (default: the played image "
                         "topics, sensor_msgs/Image and CompressedImage; every played topic when "
                         "there is none)")
    return ap


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["sfm_play"] + argv)[1:])
    if not Path(args.bag).exists():
        print(f"sfm_play: error: bag {args.bag} does not exist", file=sys.stderr)
        return 2
    rclpy.init(args=["sfm_play"] + argv)
    node = rclpy.create_node("sfm_play")
    status = 0
    try:
        try:
            player = BagPlayer(node, args.bag, args.topics, args.rate, args.qos, args.clock)
        except ValueError as exc:  # BagError is a ValueError
            print(f"sfm_play: error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        if args.wait_for_subscribers > 0:
            try:
                matched = player.wait_for_subscribers(args.wait_for_subscribers, args.wait_topics)
            except ValueError as exc:
                print(f"sfm_play: error: --wait-topics: {exc}", file=sys.stderr)
                return 2
            if not matched:
                node.get_logger().warning(f"no subscriber for {', '.join(player.without_subscribers(args.wait_topics))}"
                                          f" after {args.wait_for_subscribers:g} s; playing anyway")
        if args.delay > 0:
            time.sleep(args.delay)
        stop = lambda: not rclpy.ok()  # noqa: E731
        node.get_logger().info(f"playing {args.bag}: {', '.join(player.publishers)} at x{args.rate:g}"
                               + (" (loop)" if args.loop else ""))
        while True:
            n = player.play_once(stop)
            if not args.loop or stop() or n == 0:
                break
        node.get_logger().info(f"done: {player.published} messages published")
        time.sleep(0.2)  # let the middleware flush reliable messages
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        from rclpy.executors import ExternalShutdownException

        if not isinstance(exc, ExternalShutdownException):
            if rclpy.ok():
                print(f"sfm_play: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                      file=sys.stderr)
                status = 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
