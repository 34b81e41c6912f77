"""The tests' own rclpy node (test_node.py, test_launch_run.py): a context of its own, spun in a thread;
``collect`` keeps every message of a topic as ``(receipt time, message)``."""
from __future__ import annotations

import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)


class RosClient:
    def __init__(self, name: str):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()
        self.msgs: dict[str, list] = {}

    def collect(self, msg_type, topic: str, qos=RELIABLE) -> list:
        box = self.msgs.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, lambda m: box.append((time.time(), m)), qos)
        return box

    def close(self) -> None:
        self.ex.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self.thread.join(timeout=2.0)

    def now(self):
        return self.node.get_clock().now().to_msg()
