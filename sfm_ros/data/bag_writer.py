"""Write ROS 2 image bags, without ROS (reading: :mod:`sfm_ros.data.bags`).

:func:`write_image_bag` produces a ROS 2 bag (mcap or sqlite3 storage) with ``sensor_msgs/msg/Image``
+ ``sensor_msgs/msg/CameraInfo`` and optional ``nav_msgs/msg/Odometry``; :func:`set_bag_aside` and
:func:`finish_overwrite` replace an existing bag folder safely (also used by the ROS recorder).

Every problem with the input raises :class:`sfm_ros.data.bags.BagError` (a ``ValueError``) naming
the input and what was expected.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.core.se3 import matrix_to_quat
from sfm_ros.data.bags import (CAMERA_INFO_MSGTYPE, IMAGE_MSGTYPE, ODOMETRY_MSGTYPE, BagError, PathLike,
                               bag_typestore)
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.image_codec import ImageCodecError, encode_image
from sfm_ros.data.sources import Frame

__all__ = ["write_image_bag", "set_bag_aside", "finish_overwrite"]


def _as_frames(frames: Iterable[Any], fps: float, start_time: float) -> Iterator[tuple[float, np.ndarray]]:
    for i, f in enumerate(frames):
        if isinstance(f, Frame):
            yield float(f.stamp), f.image
        elif isinstance(f, np.ndarray):
            yield start_time + i / fps, f
        elif isinstance(f, tuple) and len(f) == 2:
            yield float(f[0]), np.asarray(f[1])
        else:
            raise BagError(f"frame {i}: expected a Frame, an ndarray or (stamp, image), got {type(f).__name__}")


def write_image_bag(path: PathLike, frames: Iterable[Any], camera: CameraModel | np.ndarray | None,
                    *, topic: str = "/camera/image_raw", info_topic: str | None = "/camera/camera_info",
                    frame_id: str = "camera_optical_frame", storage: str = "mcap",
                    encoding: str | None = None, poses: Sequence[np.ndarray] | np.ndarray | None = None,
                    odom_topic: str = "/ground_truth/odom", odom_frame_id: str = "world",
                    fps: float = 10.0, start_time: float = 0.0, overwrite: bool = False) -> int:
    """Write ``frames`` as a ROS 2 bag folder at ``path``; returns the number of frames written.

    * ``frames``: :class:`Frame` objects (their stamps are used), ``(stamp, image)`` tuples or bare
      arrays (stamped ``start_time + i / fps``); images as :mod:`sfm_ros.data.image_codec` takes them.
    * ``camera``: a :class:`CameraModel`, a 3x3 ``K`` (size taken from the first frame) or
      ``None`` (no CameraInfo). A CameraInfo with the same stamp goes with every image on
      ``info_topic``.
    * ``encoding``: ``rgb8`` | ``bgr8`` | ``mono8`` (| ``mono16``); default ``mono8`` for grey
      frames and ``rgb8`` for colour ones (decided by the first frame).
    * ``poses``: optional camera-to-world 4x4 (or 3x4) poses, one per frame, written as
      ``nav_msgs/msg/Odometry`` on ``odom_topic`` (header.frame_id ``odom_frame_id``,
      child_frame_id ``frame_id``) with the frame's stamp.
    * ``storage``: ``mcap`` or ``sqlite3``. An existing ``path`` is an error unless ``overwrite``
      and it is a ROS 2 bag folder holding nothing but its bag (:func:`set_bag_aside`); the old
      bag is kept until the new one is complete, and put back if writing fails.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in ("mcap", "sqlite3"):
        raise BagError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if encoding is not None and encoding not in ("rgb8", "bgr8", "mono8", "mono16"):
        raise BagError(f"encoding must be one of rgb8, bgr8, mono8, mono16; got {encoding!r}")
    if fps <= 0:
        raise BagError(f"fps must be > 0, got {fps}")
    out = Path(path)
    if out.exists() and not overwrite:
        raise BagError(f"output {out} already exists (remove it or use --overwrite)")
    if not out.parent.is_dir():
        raise BagError(f"output folder {out.parent} does not exist")
    pose_arr = None
    if poses is not None:
        pose_arr = np.asarray(poses, dtype=np.float64)
        if pose_arr.ndim != 3 or pose_arr.shape[1:] not in ((4, 4), (3, 4)):
            raise BagError(f"poses must be (N, 4, 4) or (N, 3, 4), got {pose_arr.shape}")
        if not np.all(np.isfinite(pose_arr[:, :3, 3])):
            raise BagError(f"poses: translations must be finite (pose {int(np.argwhere(~np.isfinite(pose_arr[:, :3, 3]))[0, 0])})")
        try:
            quats = matrix_to_quat(pose_arr[:, :3, :3])
        except ValueError as exc:
            raise BagError(f"poses: {exc}") from None

    ts = bag_typestore(False)
    T = ts.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    old_bag = set_bag_aside(out) if out.exists() else None
    n = 0
    ok = False
    writer = None
    try:
        writer = Writer(out, version=9, storage_plugin=plugin)
        writer.open()
        c_img = writer.add_connection(topic, IMAGE_MSGTYPE, typestore=ts)
        c_info = None
        c_odom = writer.add_connection(odom_topic, ODOMETRY_MSGTYPE, typestore=ts) if pose_arr is not None else None
        cam: CameraModel | None = None
        for stamp, img in _as_frames(frames, fps, start_time):
            img = np.asarray(img)
            if stamp < 0:
                raise BagError(f"frame {n}: negative stamp {stamp}")
            if n == 0:
                if encoding is None:
                    encoding = "mono16" if img.dtype == np.uint16 else (
                        "mono8" if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1) else "rgb8")
                if camera is not None:
                    if isinstance(camera, CameraModel):
                        cam = camera
                    else:
                        cam = CameraModel(img.shape[1], img.shape[0], np.asarray(camera, np.float64))
                    if info_topic:
                        c_info = writer.add_connection(info_topic, CAMERA_INFO_MSGTYPE, typestore=ts)
            try:
                enc, h, w, step, data = encode_image(img, encoding)
            except ImageCodecError as exc:
                raise BagError(f"frame {n}: {exc}") from None
            sec = int(np.floor(stamp))
            nsec = min(int(round((stamp - sec) * 1e9)), 999_999_999)
            t_ns = sec * 1_000_000_000 + nsec
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)
            msg = T[IMAGE_MSGTYPE](header=header, height=h, width=w, encoding=enc, is_bigendian=0,
                                   step=step, data=np.frombuffer(data, dtype=np.uint8))
            writer.write(c_img, t_ns, ts.serialize_cdr(msg, IMAGE_MSGTYPE))
            if c_info is not None and cam is not None:
                f = cam.camera_info_fields()
                info = T[CAMERA_INFO_MSGTYPE](
                    header=header, height=f["height"], width=f["width"],
                    distortion_model=f["distortion_model"], d=f["d"], k=f["k"], r=f["r"], p=f["p"],
                    binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                writer.write(c_info, t_ns, ts.serialize_cdr(info, CAMERA_INFO_MSGTYPE))
            if c_odom is not None:
                if n >= len(pose_arr):
                    raise BagError(f"{len(pose_arr)} poses given but there are more frames")
                writer.write(c_odom, t_ns, ts.serialize_cdr(
                    _odometry(T, pose_arr[n, :3, 3], quats[n], sec, nsec, odom_frame_id, frame_id), ODOMETRY_MSGTYPE))
            n += 1
        if n == 0:
            raise BagError("no frames to write")
        ok = True
    finally:
        try:
            if writer is not None and ok:
                ok = False  # until the bag is closed (metadata written)
                writer.close()
                ok = True
            elif writer is not None:
                writer.abort() if hasattr(writer, "abort") else writer.close()
        finally:
            if not ok and out.exists():
                shutil.rmtree(out, ignore_errors=True)
            finish_overwrite(out, old_bag, ok)
    return n


def _bag_files(folder: Path) -> set[str]:
    """The entries of a ROS 2 bag folder a bag writer owns: ``metadata.yaml``, the storage files it
    lists and their sqlite3 journals (empty when ``metadata.yaml`` is unreadable)."""
    import yaml

    try:
        meta = yaml.safe_load((folder / "metadata.yaml").read_text()) or {}
        files = [str(f) for f in meta["rosbag2_bagfile_information"].get("relative_file_paths") or []]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return set()
    return {"metadata.yaml", *files, *(f + j for f in files for j in ("-wal", "-shm", "-journal"))}


def set_bag_aside(out: Path) -> Path:
    """Before overwriting the ROS 2 bag folder ``out``: rename it to a hidden sibling (restored by
    :func:`finish_overwrite` if the new bag fails, deleted once it is complete). A folder holding
    anything a bag writer does not own (notes, sub-folders) is never overwritten: BagError."""
    import tempfile

    if not (out.is_dir() and (out / "metadata.yaml").is_file()):
        raise BagError(f"output {out} exists and is not a ROS 2 bag folder; not overwriting it")
    owned = _bag_files(out)
    foreign = sorted(e.name + ("/" if e.is_dir() else "") for e in out.iterdir() if e.name not in owned)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise BagError(f"output {out} holds files that are not part of its bag ({listed}); not "
                       f"overwriting it: move them away or choose another output")
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    aside.rmdir()
    out.rename(aside)
    return aside


def finish_overwrite(out: Path, aside: Path | None, ok: bool) -> None:
    """After writing ``out`` over a bag set aside: delete the old bag, or put it back on failure."""
    if aside is None:
        return
    if ok:
        shutil.rmtree(aside, ignore_errors=True)
    elif not out.exists():
        aside.rename(out)


def _odometry(T: Mapping[str, Any], t: np.ndarray, q_xyzw: np.ndarray, sec: int, nsec: int, frame_id: str,
              child_frame_id: str) -> Any:
    qx, qy, qz, qw = (float(v) for v in q_xyzw)
    V = T["geometry_msgs/msg/Vector3"]
    return T[ODOMETRY_MSGTYPE](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                        frame_id=frame_id),
        child_frame_id=child_frame_id,
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
                orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)),
            covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=V(x=0.0, y=0.0, z=0.0), angular=V(x=0.0, y=0.0, z=0.0)),
            covariance=np.zeros(36)),
    )
