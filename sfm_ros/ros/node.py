"""``sfm_node``: SfMLearner monocular depth and visual odometry as a ROS 2 node.

Run: ``ros2 run sfm_ros sfm_node --ros-args -r image:=/cam/image_raw -r camera_info:=/cam/camera_info``
or ``ros2 launch sfm_ros camera.launch.py image:=/cam/image_raw camera_info:=/cam/camera_info``
(also ``python -m sfm_ros.ros.node``); ``sfm_node --help`` prints the topics and parameters below.

Both inputs use the sensor-data QoS by default (best effort, keep last ``qos_depth``, volatile);
``qos_reliability:=reliable`` for recorders / reliable-only publishers. All names are relative
except ``/tf``, ``/tf_static`` and ``/diagnostics`` (absolute as in tf2_ros and
diagnostic_updater): ``__ns`` and remapping work as usual. Each topic's history, depth and
reliability can be overridden at start with ``qos_overrides./TOPIC.publisher|subscription.POLICY``
parameters (REP-2003). An input without a publisher is named, with the published topics of its
type, in the log (every 30 s) and in ``/diagnostics`` (:mod:`sfm_ros.ros.graph_check`).

The topic tables below are generated from :mod:`sfm_ros.ros.interface` (the one place a topic is
defined, with its QoS kind; the node creates its subscriptions and publishers from it by name).

{topics}
Parameters
----------
The parameters (``config/sfm_ros.yaml``), their types, defaults and meaning, and which of them
``ros2 param set`` can change at run time are tabled in :mod:`sfm_ros.ros.node_params`, beside
their declaration; ``sfm_node --help`` lists them too.

Frames
------
=====================  =======================================================================
frame                  role
=====================  =======================================================================
``odom_frame``         fixed odometry frame: the base_link pose at start (identity); after a
                       backwards time jump the odometry restarts at the identity, after a gap
                       it continues from the last pose (REP-105 continuity)
``base_frame``         child of ``odom`` (odometry, /tf); REP-103 x forward, y left, z up
camera optical frame   child of ``base_frame`` (``publish_static_tf``: camera_xyz/rpy); x right,
                       y down, z forward; frame of ``depth/image``, ``points``, ``depth/camera_info``
=====================  =======================================================================

Processing
----------
The callbacks only decode and validate, then queue the frame (``queue_size``, newest wins); a worker
thread runs the ROS-free :class:`sfm_ros.runtime.pipeline.FramePipeline` (its module doc: window, time
checks, bad input) and publishes its results through :mod:`sfm_ros.ros.messages`. A missing
or corrupt checkpoint stops the node at start with a one-line message and exit status 2.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import rclpy
from rclpy.node import Node

from sfm_ros.ros import interface
from sfm_ros.ros.interface import NODE_NAME
from sfm_ros.ros.node_core import SfmNodeCore
from sfm_ros.ros.node_params import PARAMETERS, StartupError

__doc__ = __doc__.replace("{topics}", interface.topic_sections_rst())


def help_text() -> str:
    """``sfm_node --help``: generated from :mod:`sfm_ros.ros.interface` and
    :data:`~sfm_ros.ros.node_params.PARAMETERS`."""
    return interface.help_text(PARAMETERS)


class SfmNode(SfmNodeCore, Node):
    """Depth + visual odometry node (see the module documentation for the interface): configured
    and active from construction (:mod:`sfm_ros.ros.node_core` holds the behaviour;
    :mod:`sfm_ros.ros.lifecycle_node` is the managed variant)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._declare()
        self._configure()
        self._activate()

    def _make_publisher(self, cls, name: str, qos, overriding):
        return self.create_publisher(cls, name, qos, qos_overriding_options=overriding)

    def destroy_node(self):
        self._deactivate()
        self._cleanup()
        return super().destroy_node()


class _stderr_held:
    """Collect what C code writes to file descriptor 2 inside the block (``.text`` afterwards)."""

    def __enter__(self):
        import tempfile

        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc) -> bool:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()
        return False


def _init_error(argv: list[str], exc: Exception) -> str:
    """One line for a failed ``rclpy.init``: the ``--params-file`` it could not use, else rcl's reason."""
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--params-file"]
    for f in files:
        if not os.path.isfile(f):
            return f"--params-file {f} does not exist; expected a ROS 2 parameter YAML file"
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if files:
        return (f"cannot use --params-file {' '.join(files)} ({first}); expected a ROS 2 parameter YAML "
                f"file (/**: ros__parameters: ...)")
    return f"cannot start ROS 2 with these arguments ({first})"


def main(args=None) -> int:
    """Entry point of ``sfm_node``: exit status 0 on Ctrl-C / shutdown, 2 on a startup error;
    ``-h`` / ``--help`` (before ``--ros-args``) prints :func:`help_text` and exits 0 without DDS."""
    return run(SfmNode, help_text, args)


def run(make_node: Callable[[], Node], help_text: Callable[[], str], args=None, name: str = NODE_NAME) -> int:
    """Start rclpy, spin the node ``make_node()`` makes until Ctrl-C / shutdown and shut down:
    exit status 0, or 2 on a startup error (one line); ``-h`` / ``--help`` prints ``help_text()``."""
    from rclpy.executors import ExternalShutdownException

    argv = list(sys.argv if args is None else args)
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(help_text(), flush=True)
        return 0

    try:
        with _stderr_held() as held:  # rcl logs its own line before raising: one line is ours
            rclpy.init(args=args)
    except Exception as exc:  # RCLError: a missing or unreadable --params-file, bad --ros-args
        print(f"[{name}] error: {_init_error(argv, exc)}", file=sys.stderr, flush=True)
        return 2
    if held.text:  # a successful start: what rcl said goes out as it would have
        sys.stderr.write(held.text)
        sys.stderr.flush()
    node = None
    status = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr, flush=True)
        status = 2
    except Exception:
        if rclpy.ok():
            raise  # a bug: keep the traceback
        # Ctrl-C / SIGTERM while starting (e.g. during the model load): the context is shut down.
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
