"""Read image streams from ROS 1 / ROS 2 bags, without ROS (writing: :mod:`sfm_ros.data.bag_writer`).

Pure Python on top of ``rosbags`` (no ``rclpy``), so the trainer runs on machines without ROS.

Reading (:func:`list_topics`, :func:`find_camera_info_topic`, :func:`read_camera_info`, :func:`open_bag`,
:func:`read_image_stream`, :func:`read_odometry`) accepts one path or a list of paths: ROS 1
``.bag`` files (several are merged by time), ROS 2 bag folders (``metadata.yaml``) or bare
``.mcap`` / ``.db3`` files. ROS 1 and ROS 2 bags cannot be mixed in one call.

Every problem with the input raises :class:`BagError` (a ``ValueError``) whose message names the
bag path, the topic and, for per-message problems, the message index.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.camera import CameraError, CameraModel
from sfm_ros.data.image_codec import (
    ImageCodecError,
    decode_compressed,
    decode_image,
)
from sfm_ros.core.se3 import make_pose, quat_to_matrix
from sfm_ros.data.sources import Frame

__all__ = [
    "BagError",
    "BagWarning",
    "Frame",
    "TopicSummary",
    "IMAGE_MSGTYPES",
    "CAMERA_INFO_MSGTYPE",
    "ODOMETRY_MSGTYPE",
    "list_topics",
    "find_camera_info_topic",
    "read_camera_info",
    "read_image_stream",
    "read_odometry",
    "bag_paths",
    "open_bag",
    "bag_typestore",
]

IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_MSGTYPES = (IMAGE_MSGTYPE, COMPRESSED_MSGTYPE)
CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_MSGTYPE = "nav_msgs/msg/Odometry"

PathLike = str | Path
Paths = PathLike | Sequence[PathLike]


class BagError(ValueError):
    """A bag cannot be read/written as asked (message names the path, topic and index)."""


class BagWarning(UserWarning):
    """Messages of a bag were skipped (the warning names the path, topic, indices and stamps)."""


# --------------------------------------------------------------------------------- opening bags
def bag_typestore(ros1: bool):
    """The rosbags type store for ROS 1 (Noetic) or the newest ROS 2 distribution rosbags knows."""
    from rosbags.typesys import Stores, get_typestore

    if ros1:
        return get_typestore(Stores.ROS1_NOETIC)
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "LATEST"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise BagError("rosbags has no ROS 2 type store")  # pragma: no cover


#: the files read as bags (a ROS 2 bag folder holds ``metadata.yaml``)
BAG_SUFFIXES = (".bag", ".mcap", ".db3")


def _paths(paths: Paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise BagError("no bag path given")
    for p in out:
        if not p.exists():
            raise BagError(f"bag {p} does not exist")
        if (p.is_dir() and not (p / "metadata.yaml").is_file()) or (p.is_file() and p.suffix not in BAG_SUFFIXES):
            raise BagError(f"{p} is not a bag: expected a ROS 1 .bag file, a ROS 2 bag folder (with metadata.yaml), "
                           f"or a .mcap or .db3 file")
    kinds = {p.suffix == ".bag" and p.is_file() for p in out}
    if len(kinds) > 1:
        raise BagError(f"cannot read ROS 1 and ROS 2 bags together: {', '.join(map(str, out))}")
    return out


def bag_paths(paths: Paths) -> list[Path]:
    """One path or a list of paths → the checked list of bag paths (each exists; ROS 1 and ROS 2
    bags not mixed); :class:`BagError` otherwise."""
    return _paths(paths)


@contextlib.contextmanager
def open_bag(paths: Paths):
    """Open one bag or several (merged by time) for reading: a context manager yielding the open
    ``rosbags.highlevel.AnyReader`` (its ``connections``, ``messages()``, ``deserialize()``, and
    ``is2`` for ROS 2 bags), closed on exit. A bag that cannot be opened raises :class:`BagError`
    naming the path."""
    with _open(_paths(paths)) as reader:
        yield reader


def _label(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else "[" + ", ".join(map(str, paths)) + "]"


@contextlib.contextmanager
def _wrap(paths: list[Path], what: str = "read"):
    """Re-raise rosbags' (and the storage libraries') exceptions as BagError naming the path."""
    try:
        yield
    except (BagError, GeneratorExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # rosbags raises many kinds for a corrupt/truncated file
        detail = str(exc).strip().rstrip(".") or type(exc).__name__
        hint = ""
        if any(p.suffix == ".bag" for p in paths):
            hint = "; `rosbag reindex` may repair an unfinished ROS 1 bag"
        elif any(p.suffix == ".mcap" or (p.is_dir() and any(p.glob("*.mcap"))) for p in paths):
            hint = "; `mcap recover` may repair an unfinished mcap file"
        raise BagError(
            f"cannot {what} bag {_label(paths)} (truncated or corrupt?): {type(exc).__name__}: "
            f"{detail}{hint}"
        ) from exc


@contextlib.contextmanager
def _open(paths: list[Path]):
    from rosbags.highlevel import AnyReader

    ros1 = paths[0].suffix == ".bag" and paths[0].is_file()
    with _wrap(paths, "open"):
        reader = AnyReader(paths, default_typestore=bag_typestore(ros1))
        reader.open()
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def _topics(reader) -> dict[str, tuple[str | None, int]]:
    return {name: (info.msgtype, info.msgcount) for name, info in reader.topics.items()}


def _stamp_of(msg: Any) -> float:
    st = getattr(getattr(msg, "header", None), "stamp", None)
    if st is None:
        return 0.0
    sec = getattr(st, "sec", getattr(st, "secs", 0))
    nsec = getattr(st, "nanosec", getattr(st, "nsecs", 0))
    return float(sec) + float(nsec) * 1e-9


# ------------------------------------------------------------------------------------- listing
@dataclass
class TopicSummary:
    """One topic of a bag, as :func:`list_topics` reports it."""

    topic: str
    msgtype: str
    count: int
    rate_hz: float | None = None          # (count - 1) / span of bag receive times
    duration_s: float | None = None       # span of bag receive times (first to last message)
    start_s: float | None = None          # bag receive time of the first message (s since the epoch)
    encoding: str | None = None           # images: Image.encoding or CompressedImage.format
    width: int | None = None
    height: int | None = None
    frame_id: str | None = None
    camera_info_topic: str | None = None  # images: the CameraInfo topic next to it, if any

    @property
    def is_image(self) -> bool:
        return self.msgtype in IMAGE_MSGTYPES

    @property
    def resolution(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None


def list_topics(paths: Paths) -> list[TopicSummary]:
    """All topics of the bag(s): type, count, rate, start and duration; for image topics also the encoding, the
    resolution (from the first message), the frame_id and the CameraInfo topic next to it."""
    ps = _paths(paths)
    with _open(ps) as reader, _wrap(ps):
        topics = _topics(reader)
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        counts: dict[str, int] = {}
        samples: dict[str, tuple[Any, bytes]] = {}
        for conn, ts, raw in reader.messages():
            t = conn.topic
            first.setdefault(t, ts)
            last[t] = ts
            counts[t] = counts.get(t, 0) + 1
            if conn.msgtype in IMAGE_MSGTYPES and t not in samples:
                samples[t] = (conn, raw)
        out: list[TopicSummary] = []
        types = {k: v[0] for k, v in topics.items()}
        for name in sorted(topics):
            msgtype, count = topics[name]
            n = counts.get(name, count)
            s = TopicSummary(name, msgtype or "?", n)
            if name in first:
                s.start_s = first[name] * 1e-9
            if n >= 2 and last[name] > first[name]:
                span = (last[name] - first[name]) * 1e-9
                s.rate_hz = (n - 1) / span
                s.duration_s = span
            if name in samples:
                conn, raw = samples[name]
                msg = reader.deserialize(raw, conn.msgtype)
                s.frame_id = getattr(msg.header, "frame_id", None)
                if conn.msgtype == IMAGE_MSGTYPE:
                    s.encoding, s.width, s.height = msg.encoding, int(msg.width), int(msg.height)
                else:
                    s.encoding = msg.format
                    with contextlib.suppress(ImageCodecError):
                        img = decode_compressed(msg.format, msg.data)
                        s.height, s.width = img.shape[:2]
            if msgtype in IMAGE_MSGTYPES:
                s.camera_info_topic = find_camera_info_topic(types, name)
            out.append(s)
    return out


def find_camera_info_topic(source: Paths | Mapping[str, str | None] | Iterable[TopicSummary],
                           image_topic: str) -> str | None:
    """The ``sensor_msgs/msg/CameraInfo`` topic that belongs to ``image_topic``, or ``None``.

    Looks for ``<namespace>/camera_info`` in the image topic's namespace, then in the namespaces
    above it (``/cam/image_raw/compressed`` -> ``/cam/image_raw/camera_info``,
    ``/cam/camera_info``, ``/camera_info``). ``source``: bag path(s), a ``{topic: msgtype}`` mapping
    or :class:`TopicSummary` objects.
    """
    if isinstance(source, Mapping):
        types = dict(source)
    elif isinstance(source, (str, Path)) or (
            isinstance(source, Sequence) and source and isinstance(source[0], (str, Path))):
        ps = _paths(source)  # type: ignore[arg-type]
        with _open(ps) as reader:
            types = {k: v[0] for k, v in _topics(reader).items()}
    else:
        types = {s.topic: s.msgtype for s in source}  # type: ignore[union-attr]
    parts = [p for p in image_topic.strip("/").split("/") if p]
    for n in range(len(parts) - 1, -1, -1):
        cand = "/" + "/".join(parts[:n] + ["camera_info"])
        if types.get(cand) == CAMERA_INFO_MSGTYPE:
            return cand
    return None


def _image_topics_text(topics: Mapping[str, tuple[str | None, int]]) -> str:
    imgs = [f"{t} ({ty}, {n} msgs)" for t, (ty, n) in sorted(topics.items()) if ty in IMAGE_MSGTYPES]
    if imgs:
        return "image topics in it: " + ", ".join(imgs)
    return "it has no image topics (topics: " + (", ".join(sorted(topics)) or "none") + ")"


def read_camera_info(paths: Paths, topic: str | None = None,
                     image_topic: str | None = None) -> CameraModel | None:
    """The first CameraInfo of ``topic`` (or the one :func:`find_camera_info_topic` finds next to
    ``image_topic``) as a :class:`CameraModel`; ``None`` when there is none."""
    ps = _paths(paths)
    with _open(ps) as reader, _wrap(ps):
        topics = _topics(reader)
        if topic is None:
            if image_topic is None:
                raise BagError("read_camera_info needs topic or image_topic")
            topic = find_camera_info_topic({k: v[0] for k, v in topics.items()}, image_topic)
            if topic is None:
                return None
        if topic not in topics:
            return None
        if topics[topic][0] != CAMERA_INFO_MSGTYPE:
            raise BagError(f"topic {topic} in {_label(ps)} is {topics[topic][0]}, not {CAMERA_INFO_MSGTYPE}")
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            try:
                return CameraModel.from_camera_info(reader.deserialize(raw, conn.msgtype))
            except CameraError as exc:
                raise BagError(f"{_label(ps)}: {topic}: {exc}") from None
    return None


# ------------------------------------------------------------------------------------- reading
def read_image_stream(paths: Paths, topic: str, *, max_frames: int | None = None, every: int = 1,
                      stamp_source: str = "header", check_stamps: bool = True,
                      allow_size_change: bool = False,
                      mono16_to_uint8: bool = False) -> Iterator[Frame]:
    """Decoded frames of an Image or CompressedImage topic, in bag order.

    ``Frame.image`` is what :func:`sfm_ros.data.image_codec.decode_image` / ``decode_compressed``
    return (RGB uint8 for colour, (H, W) for grey); ``Frame.stamp`` is ``header.stamp`` in seconds
    (``stamp_source="header"``; a zero stamp falls back to the bag time) or the bag receive time
    (``"bag"``). ``every``: keep every n-th message; ``max_frames``: stop after that many.

    The bag, the topic and its type are checked when this is called (:class:`BagError` for a
    missing/unreadable bag, an empty bag, a missing topic -- the message lists the image topics that
    exist -- a non-image topic or a topic without messages); per-message problems raise
    :class:`BagError` while iterating: an unsupported encoding or undecodable image (naming the
    topic and index), a stamp earlier than the previous one (``check_stamps``), an image size
    different from the first frame's (unless ``allow_size_change``), a truncated file.
    """
    if stamp_source not in ("header", "bag"):
        raise BagError(f"stamp_source must be 'header' or 'bag', got {stamp_source!r}")
    if every < 1:
        raise BagError(f"every must be >= 1, got {every}")
    ps = _paths(paths)
    with _open(ps) as reader, _wrap(ps):
        topics = _topics(reader)
        if not topics or reader.message_count == 0:
            raise BagError(f"bag {_label(ps)} is empty (no messages)")
        if topic not in topics:
            raise BagError(f"topic {topic!r} is not in bag {_label(ps)}; {_image_topics_text(topics)}")
        msgtype, count = topics[topic]
        if msgtype not in IMAGE_MSGTYPES:
            raise BagError(f"topic {topic!r} in {_label(ps)} is {msgtype}, not an image "
                           f"({' or '.join(IMAGE_MSGTYPES)})")
        if count == 0:
            raise BagError(f"topic {topic!r} in {_label(ps)} has no messages")
    return _iter_stream(ps, topic, max_frames, every, stamp_source, check_stamps,
                        allow_size_change, mono16_to_uint8)


def _iter_stream(ps: list[Path], topic: str, max_frames: int | None, every: int, stamp_source: str,
                 check_stamps: bool, allow_size_change: bool, mono16: bool) -> Iterator[Frame]:
    if max_frames is not None and max_frames <= 0:
        return
    with _open(ps) as reader, _wrap(ps):
        conns = [c for c in reader.connections if c.topic == topic]
        n_out = 0
        prev: tuple[int, float] | None = None
        size: tuple[int, int, int] | None = None
        for i, (conn, ts, raw) in enumerate(reader.messages(connections=conns)):
            if i % every:
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            try:
                if conn.msgtype == IMAGE_MSGTYPE:
                    enc = msg.encoding
                    img = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                       msg.is_bigendian, mono16_to_uint8=mono16)
                else:
                    enc = msg.format
                    img = decode_compressed(msg.format, msg.data)
            except ImageCodecError as exc:
                raise BagError(f"{_label(ps)}: topic {topic!r}, message {i}: {exc}") from None
            t = _stamp_of(msg) if stamp_source == "header" else 0.0
            if t == 0.0:
                t = ts * 1e-9
            if check_stamps and prev is not None and t < prev[1]:
                raise BagError(
                    f"{_label(ps)}: topic {topic!r}: timestamps go backwards at message {i}: "
                    f"{t:.9f} s < {prev[1]:.9f} s of message {prev[0]}")
            prev = (i, t)
            shape = img.shape if img.ndim == 3 else (*img.shape, 1)
            if size is None:
                size = shape
            elif shape != size and not allow_size_change:
                raise BagError(
                    f"{_label(ps)}: topic {topic!r}: image size changes at message {i}: "
                    f"{shape[1]}x{shape[0]}x{shape[2]} after {size[1]}x{size[0]}x{size[2]}")
            yield Frame(img, t, n_out, getattr(msg.header, "frame_id", ""), enc, topic)
            n_out += 1
            if max_frames is not None and n_out >= max_frames:
                return
        if n_out == 0:
            raise BagError(f"topic {topic!r} in {_label(ps)} has no messages")


def read_odometry(paths: Paths, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """``(stamps (N,), poses (N, 4, 4))`` of a ``nav_msgs/msg/Odometry`` topic (pose of
    ``child_frame_id`` in ``header.frame_id``).

    Orientations are normalised (:func:`sfm_ros.core.se3.quat_to_matrix`). A message whose pose is no
    pose (a zero-norm quaternion, as drivers send for "orientation unknown", or a non-finite
    value) is skipped: the poses come with their stamps, so consumers match them by time and
    see the gap. One :class:`BagWarning` names the topic, how many were skipped and the first
    ones' indices and stamps; a topic with no usable message at all is a :class:`BagError`.
    """
    ps = _paths(paths)
    stamps, poses, skipped = [], [], []
    n = 0
    with _open(ps) as reader, _wrap(ps):
        topics = _topics(reader)
        if topic not in topics:
            raise BagError(f"topic {topic!r} is not in bag {_label(ps)} (topics: {', '.join(sorted(topics))})")
        if topics[topic][0] != ODOMETRY_MSGTYPE:
            raise BagError(f"topic {topic!r} in {_label(ps)} is {topics[topic][0]}, not {ODOMETRY_MSGTYPE}")
        conns = [c for c in reader.connections if c.topic == topic]
        for i, (conn, ts, raw) in enumerate(reader.messages(connections=conns)):
            n += 1
            m = reader.deserialize(raw, conn.msgtype)
            p, q = m.pose.pose.position, m.pose.pose.orientation
            t = _stamp_of(m) or ts * 1e-9
            try:
                T = make_pose(quat_to_matrix([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])
                if not np.all(np.isfinite(T)):
                    raise ValueError(f"the position must be finite, got {[p.x, p.y, p.z]!r}")
            except ValueError as exc:
                skipped.append(f"message {i} at {t:.9f} s ({exc})")
                continue
            stamps.append(t)
            poses.append(T)
    if skipped:
        if not poses:
            raise BagError(f"{_label(ps)}: topic {topic!r}: none of its {n} odometry messages holds a pose: "
                           f"{skipped[0]}")
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(BagWarning(f"{_label(ps)}: topic {topic!r}: skipped {len(skipped)} of {n} odometry "
                                 f"messages that hold no pose: {'; '.join(skipped[:3])}{more}"), stacklevel=2)
    return np.asarray(stamps, dtype=np.float64), np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)

