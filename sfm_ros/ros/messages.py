"""ROS 2 messages from the pipeline's results (:class:`sfm_ros.runtime.frames.FrameResult`) and back.

Stamps: ``builtin_interfaces/Time`` ↔ float seconds (:func:`stamp_to_sec`, :func:`stamp_from_sec`);
an output is stamped with the stamp of the input frame it comes from. Depth images are ``32FC1``
metres (REP 118: ``-inf`` too close, ``+inf`` too far, NaN unknown, as the pipeline marks them); CameraInfo is filled from :meth:`sfm_ros.data.camera.CameraModel.camera_info_fields`;
quaternions come from :func:`sfm_ros.core.se3.matrix_to_quat` (x, y, z, w). Frames: images,
CameraInfo and the cloud are in the camera optical frame given by the caller.
"""
from __future__ import annotations

import array
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from sfm_ros.data.camera import CameraModel
from sfm_ros.data import compressed_depth
from sfm_ros.data.image_codec import encode_image
from sfm_ros.runtime.odometry import OdomEstimate
from sfm_ros.core.se3 import matrix_to_quat
from sfm_ros.runtime.frames import FrameResult

try:  # built into the venv by tools/build_tf2_msgs.sh; part of every ROS 2 install
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the environment
    TFMessage = None


# ------------------------------------------------------------------------------------------------ stamps
def stamp_to_sec(stamp: Any) -> float:
    """A ``builtin_interfaces/Time`` (or anything with ``sec``/``nanosec``) → seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def stamp_from_sec(t: float) -> Time:
    """Seconds → ``builtin_interfaces/Time`` (rounded to the nanosecond)."""
    ns = int(round(float(t) * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ------------------------------------------------------------------------------------------------ images
def image_msg(array: np.ndarray, encoding: str, stamp: Any, frame_id: str) -> Image:
    """A sensor_msgs/Image of ``array`` (:func:`sfm_ros.data.image_codec.encode_image` encodings)."""
    enc, h, w, step, data = encode_image(array, encoding)
    m = Image(encoding=enc, height=h, width=w, step=step, is_bigendian=0)
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.data = data
    return m


def depth_image(result: FrameResult, frame_id: str) -> Image:
    """The result's depth (metres) as a ``32FC1`` image."""
    return image_msg(result.depth, "32FC1", result.stamp, frame_id)


def compressed_depth_msg(depth: np.ndarray, stamp: Any, frame_id: str,
                         depth_max: float = compressed_depth.DEFAULT_DEPTH_MAX,
                         quantization: float = compressed_depth.DEFAULT_QUANTIZATION,
                         png_level: int = compressed_depth.DEFAULT_PNG_LEVEL) -> CompressedImage:
    """A ``(H, W)`` depth image (metres, REP 118 markers) as the sensor_msgs/CompressedImage that
    ``compressed_depth_image_transport`` publishes on ``<topic>/compressedDepth`` (format
    ``"32FC1; compressedDepth png"``; :mod:`sfm_ros.data.compressed_depth`: depths at or beyond
    ``depth_max``, ``+inf`` and NaN arrive as NaN, ``-inf`` as the format's nearest depth)."""
    fmt, data = compressed_depth.encode_compressed_depth(depth, depth_max, quantization, png_level)
    m = CompressedImage(format=fmt)
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.data = array.array("B", data)
    return m


def colormap_image(result: FrameResult, frame_id: str) -> Image:
    """The result's depth as an ``rgb8`` picture (:func:`sfm_ros.runtime.visualize.colorize_depth`)."""
    from sfm_ros.runtime.visualize import colorize_depth

    return image_msg(colorize_depth(result.depth), "rgb8", result.stamp, frame_id)


def explainability_image(result: FrameResult, frame_id: str) -> Image:
    """The result's explainability mask as ``mono8``, stamped with the frame it belongs to (the
    window's middle frame); the result must have one."""
    if result.explainability is None:
        raise ValueError("this result has no explainability mask")
    stamp = result.stamp
    if result.explainability_stamp is not None:  # the middle frame's own stamp, exactly as received
        stamp = result.explainability_stamp
    elif result.explainability_t is not None and result.explainability_t != result.t:
        stamp = stamp_from_sec(result.explainability_t)
    mono = (np.clip(result.explainability, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image_msg(mono, "mono8", stamp, frame_id)


def camera_info(camera: CameraModel, stamp: Any, frame_id: str) -> CameraInfo:
    """A CameraInfo of ``camera`` (:meth:`~sfm_ros.data.camera.CameraModel.camera_info_fields`)."""
    f = camera.camera_info_fields()
    m = CameraInfo(width=int(f["width"]), height=int(f["height"]), distortion_model=f["distortion_model"])
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.d = [float(v) for v in f["d"]]
    m.k = [float(v) for v in f["k"]]
    m.r = [float(v) for v in f["r"]]
    m.p = [float(v) for v in f["p"]]
    return m


# ------------------------------------------------------------------------------------------------ cloud
def cloud_fields() -> list[PointField]:
    """x, y, z float32 + rgb (a packed uint32 read as float32 by RViz): 16 bytes a point."""
    return [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, n in enumerate(("x", "y", "z", "rgb"))]


def point_cloud(points: np.ndarray, stamp: Any, frame_id: str) -> PointCloud2:
    """An unordered PointCloud2 of :func:`sfm_ros.runtime.frames.cloud_points`' structured array."""
    if points.dtype.itemsize != 16 or points.dtype.names != ("x", "y", "z", "rgb"):
        raise ValueError(f"points must be the (x, y, z, rgb) 16-byte structured array, got {points.dtype}")
    n = int(points.size)
    m = PointCloud2(height=1, width=n, fields=cloud_fields(), is_bigendian=False, point_step=16,
                    row_step=16 * n, is_dense=True)
    m.header.stamp, m.header.frame_id = stamp, frame_id
    m.data = points.tobytes()
    return m


# ------------------------------------------------------------------------------------------------ poses
def odometry_msg(est: OdomEstimate, stamp: Any, odom_frame: str, base_frame: str) -> Odometry:
    """nav_msgs/Odometry: the pose of ``base_frame`` in ``odom_frame``, the twist in ``base_frame``,
    both covariances (row-major 6x6, x y z roll pitch yaw)."""
    m = Odometry()
    m.header.stamp, m.header.frame_id = stamp, odom_frame
    m.child_frame_id = base_frame
    pp = m.pose.pose
    pp.position.x, pp.position.y, pp.position.z = map(float, est.position)
    pp.orientation.x, pp.orientation.y, pp.orientation.z, pp.orientation.w = map(float, est.quaternion)
    m.pose.covariance = est.pose_covariance.reshape(-1).tolist()
    tw = m.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = map(float, est.linear)
    tw.angular.x, tw.angular.y, tw.angular.z = map(float, est.angular)
    m.twist.covariance = est.twist_covariance.reshape(-1).tolist()
    return m


def transform_stamped(T_parent_child: np.ndarray, stamp: Any, parent: str, child: str) -> TransformStamped:
    """A TransformStamped of the (4, 4) pose of ``child`` in ``parent`` (``p_parent = T p_child``)."""
    T = np.asarray(T_parent_child, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"T_parent_child must be 4x4, got {T.shape}")
    m = TransformStamped()
    m.header.stamp, m.header.frame_id = stamp, parent
    m.child_frame_id = child
    tr = m.transform.translation
    tr.x, tr.y, tr.z = map(float, T[:3, 3])
    r = m.transform.rotation
    r.x, r.y, r.z, r.w = map(float, matrix_to_quat(T[:3, :3]))
    return m


def tf_message(*transforms: TransformStamped):
    """A tf2_msgs/TFMessage of ``transforms`` (tf2_msgs must be installed: see :data:`TFMessage`)."""
    if TFMessage is None:
        raise RuntimeError("tf2_msgs is not installed")
    return TFMessage(transforms=list(transforms))


# ------------------------------------------------------------------------------------------------ diagnostics
def diagnostics(name: str, hardware_id: str, counts: dict[str, int], values: dict[str, Any],
                stamp: Any, warnings: Any = ()) -> DiagnosticArray:
    """One DiagnosticStatus: WARN before the first processed frame, once bad input was seen
    (``counts`` of :data:`sfm_ros.runtime.diagnostics.FRAME_COUNTS`) or with any of ``warnings`` (e.g.
    :meth:`sfm_ros.runtime.pipeline.FramePipeline.diagnostic_warnings`), the message naming each; else OK
    "running". ``values`` as key/value text."""
    st = DiagnosticStatus(name=name, hardware_id=hardware_id)
    problems = []
    if counts.get("processed", 0) == 0:
        problems.append("no frame processed yet")
    elif counts.get("rejected", 0) or counts.get("errors", 0):
        problems.append("bad input frames were rejected")
    problems += [str(w) for w in warnings]
    st.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
    st.message = "; ".join(problems) or "running"
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    arr = DiagnosticArray(status=[st])
    arr.header.stamp = stamp
    return arr
