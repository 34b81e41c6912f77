"""The behaviour shared by ``sfm_node`` (:mod:`sfm_ros.ros.node`) and ``sfm_lifecycle_node``
(:mod:`sfm_ros.ros.lifecycle_node`), in the phases of a managed node:

=================  ==========================================================================
phase              what it does
=================  ==========================================================================
:meth:`_declare`   declares the parameters (a bad one: :class:`StartupError`)
:meth:`_configure` loads the model and builds the pipeline (a bad checkpoint or setting:
                   :class:`StartupError`), creates the publishers of the interface table
:meth:`_activate`  subscribes to the inputs, starts the worker and the diagnostics timer
:meth:`_deactivate` unsubscribes, stops the worker (its frame is finished, queued ones dropped), the
                   timer and online adaptation
:meth:`_cleanup`   destroys the publishers, closes the pipeline (adaptation: its weights are
                   written) and releases the model
=================  ==========================================================================

The plain node runs the first three at construction and the last two at shutdown. The class is a
mixin: the node class supplies ``rclpy``'s ``Node`` (or ``LifecycleNode``) methods and
:meth:`_make_publisher`.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from rclpy.clock import Clock, ClockType
from rclpy.parameter import Parameter
from rclpy.qos_overriding_options import QoSOverridingOptions
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CompressedImage, Image

from sfm_ros.ros import graph_check, interface
from sfm_ros.ros import messages as rm
from sfm_ros.ros.node_params import StartupError, apply_changes, build_pipeline, declare_parameters, first_line
from sfm_ros.runtime.diagnostics import FRAME_COUNTS, Counters, Latencies, Log, RateLimiter
from sfm_ros.runtime.frames import FrameQueue, FrameResult, InputFrame


class SfmNodeCore:
    """Depth + visual odometry on a ROS node, in phases (module doc)."""

    pipeline = None
    estimator = None
    sub_image = sub_info = diag_timer = None
    _worker: threading.Thread | None = None

    # ------------------------------------------------------------------------------ phases
    def _declare(self) -> None:
        self.log = Log(self.get_logger())
        self.counts = Counters(*FRAME_COUNTS)
        self.latencies = Latencies()
        self._dropped_reported = 0
        self._started = time.monotonic()
        self._graph_log = RateLimiter(period=30.0)  # a missing input publisher: logged every 30 s
        self.pubs: dict[str, Any] = {}
        self._static_frame: str | None = None
        self._stop = threading.Event()
        try:
            declare_parameters(self)
        except Exception as exc:  # out of range / wrong type given with -p or a params file
            raise StartupError(f"bad parameter: {first_line(exc)}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _destroy_publisher(self, pub) -> None:
        self.destroy_publisher(pub)

    def _qos(self, kind: str):
        """A profile of its own for each topic: rclpy's overrides change it in place."""
        return interface.qos_profile(kind, self._param("qos_depth"), self._param("qos_reliability"))

    def _configure(self) -> None:
        p = self._param
        self._cleanup()  # a configure after a failed one starts from nothing
        self.estimator, self.checkpoint, self.T_base_cam, self.pipeline = build_pipeline(
            p, self.log, self.counts, self.get_logger().info,  # the QoS parameters checked before the model
            checks=(lambda: interface.qos_profile("input", p("qos_depth"), p("qos_reliability")),))
        #: the publishers by topic name (:data:`sfm_ros.ros.interface.PUBLICATIONS`); a message type
        #: that is not installed (tf2_msgs) leaves its topic out, warned. REP-2003 / rclpy: history,
        #: depth and reliability of every topic can be overridden with
        #: qos_overrides./TOPIC.publisher|subscription.POLICY parameters (read-only, at start)
        self.pubs = {}
        for t in interface.PUBLICATIONS:
            cls = interface.message_class(t.msg_type)
            if cls is None:
                self.get_logger().warning(f"{t.msg_type} is not installed: {t.name} is disabled")
                continue
            try:
                self.pubs[t.name] = self._make_publisher(cls, t.name, self._qos(t.qos),
                                                         QoSOverridingOptions.with_default_policies())
            except Exception as exc:  # a bad qos_overrides./TOPIC... parameter (rclpy's RuntimeError)
                raise StartupError(f"cannot create the publisher of {t.name}: {first_line(exc)} (see its "
                                   f"qos_overrides.*.publisher parameters)") from None

    def _activate(self) -> None:
        p = self._param
        overridable = QoSOverridingOptions.with_default_policies()
        self._queue = FrameQueue(p("queue_size"))
        self.pipeline.behind = lambda: len(self._queue) > 0  # a newer frame waits: the window hurries
        # each worker its own stop event: one that outlives a deactivate (a slow frame) still stops
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, args=(self._stop,), name="sfm_inference", daemon=True)
        image = interface.topic("image/compressed" if p("compressed") else "image")
        info = interface.topic("camera_info")
        try:
            self.sub_image = self.create_subscription(
                interface.message_class(image.msg_type), image.name,
                self._on_compressed if p("compressed") else self._on_image, self._qos(image.qos),
                qos_overriding_options=overridable)
            self.sub_info = self.create_subscription(interface.message_class(info.msg_type), info.name,
                                                     self.pipeline.camera_info, self._qos(info.qos),
                                                     qos_overriding_options=overridable)
        except Exception as exc:  # a bad qos_overrides./TOPIC... parameter (rclpy's RuntimeError)
            raise StartupError(f"cannot subscribe to the inputs: {first_line(exc)}") from None
        # Diagnostics on the steady clock: they keep coming while sim time is paused.
        self.diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._started = time.monotonic()
        if p("camera_frame"):
            self._publish_static_tf(p("camera_frame"))
        self._worker.start()
        e = self.estimator
        self.get_logger().info(
            f"ready: model {self.checkpoint} ({e.height}x{e.width}, seq_len {e.seq_len}) on "
            f"{e.device} {e.precision} ({e.backend}); input {self.sub_image.topic_name} "
            f"({'CompressedImage' if p('compressed') else 'Image'}), camera_info "
            f"{self.sub_info.topic_name}; " + (f"scale {p('scale'):g} m/unit" if p("scale") > 0 else
                                                f"scale from camera_height {p('camera_height'):g} m"
                                                if p("camera_height") > 0 else
                                                "scale 1 m/unit (set scale or camera_height for metres)")
            + ("" if p("publish_static_tf") else "; no /tf_static (publish_static_tf off: the mount is left to "
               "robot_state_publisher; set camera_xyz/camera_rpy to publish it)"))

    def _deactivate(self) -> None:
        self._stop.set()
        if self.pipeline is not None and self.pipeline.adaptation is not None:
            self.pipeline.adaptation.update(False)  # no learning while inactive (its weights are saved)
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self._worker = None
        for sub in (self.sub_image, self.sub_info):
            if sub is not None:
                self.destroy_subscription(sub)
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        self.sub_image = self.sub_info = self.diag_timer = None

    def _cleanup(self) -> None:
        for pub in self.pubs.values():
            self._destroy_publisher(pub)
        self.pubs = {}
        self._static_frame = None
        if self.pipeline is not None:
            self.pipeline.close()  # adaptation: the accepted weights are written
        self.pipeline = self.estimator = None

    # ------------------------------------------------------------------------------ parameters
    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        if self.pipeline is None:  # not configured (a lifecycle node): checked now, read at configure
            from sfm_ros.runtime.settings import SETTINGS, Settings

            changes = {q.name: q.value for q in params if q.name in SETTINGS}
            try:
                Settings(**{n: self._param(n) for n in SETTINGS}).check(**changes)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            return SetParametersResult(successful=True)
        result = apply_changes(self.pipeline.settings, params)
        if result.successful and {q.name: q.value for q in params}.get("publish_static_tf") and self._static_frame:
            self._static_frame = None  # re-publish the static TF with the next frame
        return result

    # ------------------------------------------------------------------------------ callbacks
    def _enqueue(self, msg, **data) -> None:
        stamp = msg.header.stamp
        action = self.pipeline.zero_stamp(not (stamp.sec or stamp.nanosec))
        if action == "skip":
            return
        if action == "reception":
            stamp = self.get_clock().now().to_msg()
        frame = InputFrame(stamp, rm.stamp_to_sec(stamp), msg.header.frame_id, data.pop("recv"), **data)
        dropped = self._queue.put(frame)
        if dropped:
            self.counts.add("dropped", dropped)

    def _on_image(self, msg: Image) -> None:
        from sfm_ros.data.image_codec import ImageDecodeError, decode_image

        self.counts.add("received")
        recv = time.monotonic()
        try:
            img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        except (ImageDecodeError, ValueError) as exc:
            self.pipeline.reject(f"image:{getattr(exc, 'kind', 'decode')}", f"dropping a bad image: {exc}")
            return
        if img.dtype == np.float32:
            self.pipeline.reject("image:depth", f"dropping an image with encoding {msg.encoding!r}: a depth "
                                 "image is not a camera image (expected rgb8/bgr8/mono8/mono16/...)")
            return
        self._enqueue(msg, recv=recv, image=img)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.counts.add("received")
        recv = time.monotonic()
        if len(msg.data) == 0:
            self.pipeline.reject("compressed:empty", "dropping a CompressedImage with no data")
            return
        self._enqueue(msg, recv=recv, compressed=(msg.format, bytes(msg.data)))

    # ------------------------------------------------------------------------------ worker
    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            frame = self._queue.get(timeout=0.1)
            if frame is None:
                continue
            try:
                result = self.pipeline.process(frame)
                if result is not None:
                    self._publish(result)
            except Exception as exc:  # never let one frame kill the worker
                if stop.is_set() or not self.context.ok():
                    break  # shutting down (Ctrl-C): publishers are gone, nothing to report
                self.counts.add("errors")
                self.log.warn("process", f"frame skipped: {type(exc).__name__}: {exc}")

    def _publish(self, r: FrameResult) -> None:
        p = self._param
        t0 = time.perf_counter()
        cam_frame = p("camera_frame") or r.frame_id or "camera_optical_frame"
        self._pub("depth/image", rm.depth_image(r, cam_frame))
        if r.camera is not None:
            self._pub("depth/camera_info", rm.camera_info(r.camera, r.stamp, cam_frame))
        if r.points is not None:
            self._pub("points", rm.point_cloud(r.points, r.stamp, cam_frame))
        if p("publish_compressed_depth"):
            self._pub("depth/image/compressedDepth",
                      rm.compressed_depth_msg(r.depth, r.stamp, cam_frame, depth_max=float(p("max_depth"))))
        if p("publish_colormap"):
            self._pub("depth/colormap", rm.colormap_image(r, cam_frame))
        if r.explainability is not None:
            self._pub("explainability", rm.explainability_image(r, cam_frame))
        if r.odometry is not None:
            odom, base = p("odom_frame"), p("base_frame")
            self._pub("odom", rm.odometry_msg(r.odometry, r.stamp, odom, base))
            if p("publish_tf"):
                self._pub("/tf", rm.tf_message(rm.transform_stamped(r.odometry.T_odom_base, r.stamp, odom, base)))
        if p("publish_static_tf") and self._static_frame != cam_frame:
            self._publish_static_tf(cam_frame)
        self.pipeline.stages.add("messages", 1000.0 * (time.perf_counter() - t0))
        now = self.get_clock().now().nanoseconds
        self.counts.add("processed")
        self.latencies.add(r.infer_ms, time.monotonic() - r.recv, now * 1e-9 - r.t if now > 0 else None)

    def _pub(self, name: str, msg) -> None:
        """Publish ``msg`` on topic ``name`` of the interface table (nothing when it is disabled)."""
        pub = self.pubs.get(name)
        if pub is not None:
            pub.publish(msg)

    def _publish_static_tf(self, cam_frame: str) -> None:
        if "/tf_static" not in self.pubs or not self._param("publish_static_tf"):
            return
        tf = rm.transform_stamped(self.T_base_cam, self.get_clock().now().to_msg(), self._param("base_frame"),
                                  cam_frame)
        self._pub("/tf_static", rm.tf_message(tf))
        self._static_frame = cam_frame

    def _missing_inputs(self) -> list[str]:
        """Inputs without a publisher (after the discovery grace period), each named with the topics
        of its type that are published; logged every 30 s, and WARN in the diagnostics."""
        if time.monotonic() - self._started < graph_check.DISCOVERY_GRACE_S:
            return []
        image = interface.topic("image/compressed" if self._param("compressed") else "image")
        inputs = [(self.sub_image, image.name, image.msg_type)]
        fx, fy = (list(self._param("intrinsics")) + [0.0] * 4)[:2]
        if self.pipeline.camera is None and not (fx > 0 and fy > 0):  # camera_info is what intrinsics wait for
            inputs.append((self.sub_info, "camera_info", interface.topic("camera_info").msg_type))
        try:
            lines = graph_check.missing_publishers(self, inputs)
        except Exception as exc:  # the graph API failing must not stop the diagnostics
            self.log.warn("graph", f"cannot read the ROS graph: {type(exc).__name__}: {exc}")
            return []
        for line in lines:
            if self._graph_log.ok(line.split(";")[0])[0]:
                self.get_logger().warning(line)
        return lines

    def _publish_diagnostics(self) -> None:
        s = self.counts.snapshot()
        new_drops = s["dropped"] - self._dropped_reported
        if new_drops > 0 and self.log.limiter.ok("drops")[0]:
            p50 = self.latencies.inference_p50_ms()
            took = (f"inference takes {p50:.0f} ms per frame, slower than the camera" if math.isfinite(p50)
                    else "no frame has finished yet")
            self.get_logger().warning(
                f"dropped {new_drops} frame(s) since the last report ({s['dropped']} in total): {took}; "
                "the newest frame is always processed")
            self._dropped_reported = s["dropped"]
        e = self.estimator
        values: dict[str, Any] = {
            "frames_received": s["received"], "frames_processed": s["processed"],
            "frames_dropped": s["dropped"], "frames_rejected": s["rejected"],
            "frames_skipped": s["skipped"], "errors": s["errors"],
            **self.latencies.values(),
            "model": self.checkpoint, "device": str(e.device), "precision": e.precision, "backend": e.backend,
            "input_size": f"{e.width}x{e.height}", "seq_len": e.seq_len,
            **self.pipeline.diagnostic_values(),
        }
        self._pub("/diagnostics", rm.diagnostics(f"{self.get_name()}: inference", str(e.device), s, values,
                                             self.get_clock().now().to_msg(),
                                             self._missing_inputs()
                                             + self.pipeline.diagnostic_warnings(self.sub_info.topic_name)))

