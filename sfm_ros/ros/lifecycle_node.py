"""``sfm_lifecycle_node``: ``sfm_node`` as a managed (lifecycle) node, for launch systems and
supervisors that bring nodes up in order (nav2's lifecycle manager, ``ros2 lifecycle set``).

Run: ``ros2 run sfm_ros sfm_lifecycle_node --ros-args ...`` (or ``python -m
sfm_ros.ros.lifecycle_node``); the topics, parameters and frames are ``sfm_node``'s
(:mod:`sfm_ros.ros.node`, ``sfm_node --help``). The node starts *unconfigured* and does nothing
until its transitions are triggered (``ros2 lifecycle set /sfm_node configure``, then
``activate``; or through the ``~/change_state`` service):

=============  ===================================================================================
transition     what it does (:mod:`sfm_ros.ros.node_core`)
=============  ===================================================================================
configure      loads the model and builds the pipeline (a bad checkpoint or setting fails the
               transition with the reason logged: the node stays unconfigured and can be
               configured again), creates the publishers (lifecycle publishers: they publish only
               while active)
activate       subscribes to the camera and camera_info, starts the worker and the diagnostics
deactivate     unsubscribes, stops the worker and online adaptation (the model stays loaded:
               activate again at once)
cleanup        destroys the publishers, writes adapted weights (``adapt``) and releases the model
shutdown       deactivate and cleanup, from any state
=============  ===================================================================================

Parameters are declared at construction: ``-p`` / ``--params-file`` give them, the dynamic ones
(``*`` in ``sfm_node --help``) can be changed with ``ros2 param set`` in any state (checked as in
the running node), the others
(``checkpoint``, ``device`` ...) are fixed for the process. A failed ``configure`` (a missing
checkpoint) can be retried after the cause is fixed (the file put in place).
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from sfm_ros.ros import node as plain
from sfm_ros.ros.interface import NODE_NAME
from sfm_ros.ros.node_core import SfmNodeCore
from sfm_ros.ros.node_params import first_line

LIFECYCLE_EXECUTABLE = "sfm_lifecycle_node"


class SfmLifecycleNode(SfmNodeCore, LifecycleNode):
    """``sfm_node``'s behaviour on ``rclpy.lifecycle`` transitions (module doc)."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._declare()

    def _make_publisher(self, cls, name: str, qos, overriding):
        return self.create_lifecycle_publisher(cls, name, qos, qos_overriding_options=overriding)

    def _destroy_publisher(self, pub) -> None:
        self.destroy_lifecycle_publisher(pub)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # StartupError (a bad checkpoint, setting or QoS override) or a bug
            self.get_logger().error(f"configure failed: {first_line(exc)}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers first: /tf_static goes out at once
        try:
            self._activate()
        except Exception as exc:
            self.get_logger().error(f"activate failed: {first_line(exc)}")
            self._deactivate()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and go back to unconfigured."""
        self.get_logger().error(f"error in state {state.label}: releasing the model; configure again")
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        self._deactivate()
        self._cleanup()
        return super().destroy_node()


def help_text() -> str:
    return (plain.help_text().replace(f"usage: {NODE_NAME}", f"usage: {LIFECYCLE_EXECUTABLE}", 1)
            + "\nA managed node: it starts unconfigured; ros2 lifecycle set /sfm_node configure, then activate.\n")


def main(args=None) -> int:
    """Entry point of ``sfm_lifecycle_node`` (exit codes as ``sfm_node``'s)."""
    return plain.run(SfmLifecycleNode, help_text, args, name=LIFECYCLE_EXECUTABLE)


if __name__ == "__main__":
    sys.exit(main())
