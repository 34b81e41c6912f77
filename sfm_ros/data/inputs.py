"""Inputs: a source (bag, image folder, video, KITTI sequence, the renderer) turned into a camera,
a rectified ``(image, stamp)`` stream and a frame-cache key (``sfm_train``), or into a selection of
frames with their stamps, intrinsics and ground truth (``sfm_eval``). ROS-free.

The choices come from an :class:`InputOptions` (any object with its attributes works, e.g. the
``argparse`` namespace of ``sfm_train``, whose flags the messages name). Intrinsics: a bag's
CameraInfo, else ``calib`` (a camera_calibration YAML) or ``fx [fy cx cy]``
(:func:`camera_from_args`); KITTI's ``calib.txt``; the renderer's own. Distorted cameras are
rectified (:class:`sfm_ros.data.rectify.Rectifier`, ``rectify_alpha``) and every camera's intrinsics
are checked (:meth:`sfm_ros.data.camera.CameraModel.check_intrinsics`). The cache key identifies the
decoded frames: the source's files (path, size, mtime), the topic, K, D, alpha and the frame limit.
Bad input raises :class:`InputError` (a ``ValueError``): one line naming the input and what was
expected.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.sevenscenes import SevenScenes, read_sevenscenes

__all__ = ["InputError", "InputOptions", "Input", "camera_from_args", "stat_key", "peek", "rectified",
           "image_topic", "bag_input", "folder_input", "video_input", "kitti_input", "synthetic_inputs", "FrameCounter",
           "parse_frames", "SelectedFrames", "select_indices", "select_frames"]


class InputError(ValueError):
    """An input that cannot be used: one line naming it and what was expected."""


@dataclass
class InputOptions:
    """How the sources are read (the ``sfm_train`` flags of the same names)."""

    topic: str | None = None              # image topic of bags (None: the bag's only one)
    camera_info_topic: str | None = None  # CameraInfo topic (None: camera_info next to the image topic)
    pattern: str | None = None            # file pattern of image folders
    fps: float | None = None              # stamps of folders/videos without times (folders: 10)
    kitti_camera: str | None = None       # image_0 .. image_3 (None: image_0, else image_2)
    max_frames: int | None = None         # at most this many frames of every input
    calib: str | None = None              # camera_calibration YAML for inputs without intrinsics
    fx: float | None = None               # or the pinhole numbers (at the input resolution)
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    rectify_alpha: float = 0.0            # distorted cameras: 0 keeps only valid pixels, 1 all
    synthetic: int = 0                    # rendered street sequences
    synthetic_frames: int = 60            # frames per rendered sequence


# ------------------------------------------------------------------------------ training inputs
def camera_from_args(args: Any, width: int, height: int, fallback: Any = None,
                     what: str | None = None, required: bool = True):
    """CameraModel from ``--calib`` or ``--fx/--fy/--cx/--cy``, else ``fallback``; with neither, an
    error (``required``) or ``None``. ``what`` names the input in the size-mismatch message."""
    from sfm_ros.data.camera import CameraModel

    have_numbers = any(getattr(args, k, None) is not None for k in ("fx", "fy", "cx", "cy"))
    if getattr(args, "calib", None) and have_numbers:
        raise InputError("give either --calib or --fx/--fy/--cx/--cy, not both")
    if getattr(args, "calib", None):
        cam = CameraModel.from_yaml(args.calib)
        if (cam.width, cam.height) != (width, height):
            size = f"the input is {width}x{height}" if what is None else f"{what} has {width}x{height} images"
            raise InputError(f"--calib {args.calib} is for {cam.width}x{cam.height} images but {size}")
        return cam
    if have_numbers:
        if args.fx is None:
            raise InputError("--fy/--cx/--cy need --fx")
        if args.fx <= 0 or (args.fy is not None and args.fy <= 0):
            raise InputError("--fx/--fy must be > 0")
        fy = args.fy if args.fy is not None else args.fx
        cx = args.cx if args.cx is not None else (width - 1) / 2.0
        cy = args.cy if args.cy is not None else (height - 1) / 2.0
        return CameraModel.from_intrinsics(args.fx, fy, cx, cy, width, height)
    if fallback is not None or not required:
        return fallback
    raise InputError("no calibration: give --calib YAML or --fx (and --fy --cx --cy)")


@dataclass
class Input:
    """One input before decoding: a frame stream, its intrinsics and a cache key."""

    name: str
    frames: Iterable[tuple[np.ndarray, float]]
    K: np.ndarray
    cache_key: dict | None = None
    notes: list[str] = field(default_factory=list)
    image_hw: tuple[int, int] | None = None  # camera image (H, W), for the automatic input size


def stat_key(*paths: Path) -> list:
    """What identifies the content of files and folders (every file in them) for the frame cache:
    each file's path, size and modification time."""
    key = []
    for path in paths:
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                st = f.stat()
                key.append([str(f), st.st_size, st.st_mtime_ns])
    return key


def peek(frames: Iterable[Any], what: str) -> tuple[Any, Iterator[Any]]:
    """(first item, the whole stream again) of a lazy stream; an empty one is an :class:`InputError`."""
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise InputError(f"{what}: no frames") from None

    def chain():
        yield first
        yield from it
    return first, chain()


def rectified(cam, frames: Iterable[Any], what: str, args: InputOptions, notes: list[str],
               image_wh: tuple[int, int]) -> tuple[np.ndarray, Iterable[tuple[np.ndarray, float]]]:
    """(K, stream of (image, stamp)) with distorted images rectified; the intrinsics of every
    input are checked here (:meth:`sfm_ros.data.camera.CameraModel.check_intrinsics`)."""
    from sfm_ros.data.camera import CameraError
    from sfm_ros.data.rectify import Rectifier

    try:
        cam.check_intrinsics(*image_wh, what=what)
    except CameraError as exc:
        raise InputError(str(exc)) from None
    pairs = ((f.image, f.stamp) for f in frames)
    if not cam.is_distorted:
        return cam.K.copy(), pairs
    try:
        rect = Rectifier(cam, alpha=args.rectify_alpha, balance=args.rectify_alpha)
    except CameraError as exc:
        raise InputError(f"{what}: cannot rectify its camera: {exc}") from None
    notes.append(f"rectified ({cam.distortion_model}, alpha {args.rectify_alpha:g})")

    def gen():
        for image, stamp in pairs:
            try:
                yield rect.rectify(image), stamp
            except CameraError as exc:
                raise InputError(f"{what}: {exc}") from None
    return rect.new_K.copy(), gen()


def check_size(cam, width: int, height: int, what: str, source: str) -> None:
    if cam.width > 0 and cam.height > 0 and (cam.width, cam.height) != (width, height):
        raise InputError(f"{what}: {source} is for {cam.width}x{cam.height} images but the images "
                         f"are {width}x{height}")


def no_intrinsics(what: str) -> InputError:
    return InputError(f"{what}: no intrinsics: expected a CameraInfo topic in the bag, --calib YAML "
                      f"or --fx [--fy --cx --cy]" if what.startswith("bag") else
                      f"{what}: no intrinsics: give --calib YAML or --fx [--fy --cx --cy]")


def image_topic(bag: str | Path, topic: str | None = None) -> str:
    """``topic``, or the bag's only image topic (``sensor_msgs/Image`` or ``CompressedImage``) when
    None; :class:`InputError` listing the image topics when there are none or several."""
    from sfm_ros.data.bags import list_topics

    if topic is not None:
        return topic
    topics = list_topics(bag)
    images = [t for t in topics if t.is_image]
    if len(images) != 1:
        listing = ", ".join(f"{t.topic} ({t.encoding or t.msgtype}"
                            f"{' ' + t.resolution if t.resolution else ''}, {t.count} msgs)" for t in images)
        if not images:
            raise InputError(f"bag {bag} has no image topics (topics: "
                             f"{', '.join(t.topic for t in topics) or 'none'}); expected "
                             f"sensor_msgs/Image or CompressedImage")
        raise InputError(f"bag {bag} has {len(images)} image topics; choose one with --topic: {listing}")
    return images[0].topic


def bag_input(path: str, args: InputOptions) -> Input:
    from sfm_ros.data.bags import read_camera_info, read_image_stream

    bag = Path(path)
    topic = image_topic(bag, args.topic)
    what = f"bag {bag} topic {topic}"
    stream = read_image_stream(bag, topic, max_frames=args.max_frames)
    first, frames = peek(stream, what)
    h, w = first.image.shape[:2]
    notes = [f"{first.encoding} {w}x{h}"]
    if args.camera_info_topic:
        cam = read_camera_info(bag, topic=args.camera_info_topic)
        if cam is None:
            raise InputError(f"{what}: --camera-info-topic {args.camera_info_topic} has no CameraInfo "
                             f"messages in the bag")
        notes.append(f"intrinsics from {args.camera_info_topic}")
        source = f"CameraInfo {args.camera_info_topic}"
    else:
        cam = read_camera_info(bag, image_topic=topic)
        source = "its CameraInfo"
        if cam is not None:
            notes.append("intrinsics from the bag's CameraInfo")
            if args.calib or args.fx is not None:
                notes.append("--calib/--fx ignored")
    if cam is None:
        cam = camera_from_args(args, w, h, what=what, required=False)
        source = f"--calib {args.calib}" if args.calib else "--fx/--fy/--cx/--cy"
        if cam is None:
            raise no_intrinsics(what)
        notes.append(f"intrinsics from {source}")
    check_size(cam, w, h, what, source)
    K, pairs = rectified(cam, frames, what, args, notes, (w, h))
    key = {"source": "bag", "path": str(bag.resolve()), "stat": stat_key(bag), "topic": topic,
           "K": K.tolist(), "D": cam.D.tolist(), "alpha": args.rectify_alpha, "max_frames": args.max_frames}
    return Input(what, pairs, K, key, notes, (h, w))


def folder_input(path: str, args: InputOptions) -> Input:
    from sfm_ros.data.sources import read_image_folder

    stream = read_image_folder(path, args.pattern, fps=args.fps or 10.0, max_frames=args.max_frames)
    times = [t for t in (Path(path).parent / "times.txt",) if t.is_file()]  # KITTI layout: stamps above
    return file_input(f"image folder {path}", stream, path, args,
                       {"source": "images", "pattern": args.pattern, "times": stat_key(*times)})


def video_input(path: str, args: InputOptions) -> Input:
    from sfm_ros.data.sources import read_video

    stream = read_video(path, max_frames=args.max_frames, fps=args.fps)
    return file_input(f"video {path}", stream, path, args, {"source": "video"})


def file_input(what: str, stream, path: str, args: InputOptions, key: dict) -> Input:
    """An image folder or video: intrinsics from the command line, rectified, with a cache key."""
    first, frames = peek(stream, what)
    h, w = first.image.shape[:2]
    cam = camera_from_args(args, w, h, what=what, required=False)
    if cam is None:
        raise no_intrinsics(what)
    notes = [f"{w}x{h}"]
    K, pairs = rectified(cam, frames, what, args, notes, (w, h))
    key = {**key, "path": str(Path(path).resolve()), "stat": stat_key(Path(path)), "fps": args.fps,
           "K": K.tolist(), "D": cam.D.tolist(), "alpha": args.rectify_alpha, "max_frames": args.max_frames}
    return Input(what, pairs, K, key, notes, (h, w))


def kitti_input(path: str, args: InputOptions) -> Input:
    from sfm_ros.data.sources import read_kitti_odometry

    seq = read_kitti_odometry(path, camera=args.kitti_camera, max_frames=args.max_frames)
    what = f"KITTI sequence {path} ({seq.image_paths[0].parent.name})"
    notes = [f"{seq.camera.width}x{seq.camera.height}", "intrinsics from calib.txt"]
    if args.calib or args.fx is not None:
        notes.append("--calib/--fx ignored")
    K, pairs = rectified(seq.camera, iter(seq), what, args, notes, (seq.camera.width, seq.camera.height))
    extra = [f for f in (seq.seq_dir / "calib.txt", seq.seq_dir / "times.txt") if f.is_file()]
    key = {"source": "kitti", "path": str(Path(path).resolve()), "camera": seq.image_paths[0].parent.name,
           "stat": stat_key(*seq.image_paths, *extra), "K": K.tolist(), "max_frames": args.max_frames}
    return Input(what, pairs, K, key, notes, (seq.camera.height, seq.camera.width))


def synthetic_inputs(args: InputOptions, opts) -> list[Input]:
    from sfm_ros.data.synthetic import render_sequence

    if args.synthetic < 0 or args.synthetic_frames < 1:
        raise InputError("--synthetic and --synthetic-frames must be positive")
    out = []
    n = args.synthetic_frames if args.max_frames is None else min(args.synthetic_frames, args.max_frames)
    for i in range(args.synthetic):
        seed = opts.train.seed * 1000 + i
        s = render_sequence(n, opts.model.height, opts.model.width, seed=seed)
        out.append(Input(f"synthetic sequence {i} (seed {seed})", zip(s.images, s.timestamps), s.K,
                          None, [f"{opts.model.width}x{opts.model.height} rendered"]))
    return out




class FrameCounter:
    """Counts the frames a stream yields (0 when the cache answered)."""

    def __init__(self, frames: Iterable[Any]):
        self.frames, self.n = frames, 0

    def __iter__(self):
        for f in self.frames:
            self.n += 1
            yield f


# ------------------------------------------------------------------------------ evaluation frames
def parse_frames(text: str | None, n: int | None = None, what: str = "--frames") -> tuple[int, int | None]:
    """``"A:B"`` (either side optional) → ``(A, B)``; checked against ``n`` frames when given."""
    if text is None:
        return 0, n
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise InputError(f"{what} {text!r} must look like A:B (frame indices, B exclusive), e.g. 0:100")
    a = int(m.group(1)) if m.group(1) else 0
    b = int(m.group(2)) if m.group(2) else n
    if b is not None and b <= a:
        raise InputError(f"{what} {text!r} selects no frame (B must be greater than A)")
    if n is not None:
        if a >= n:
            raise InputError(f"{what} {text!r} starts after the last frame (there are {n})")
        if b > n:
            raise InputError(f"{what} {text!r} ends after the last frame (there are {n})")
    return a, b


@dataclass
class SelectedFrames:
    """Selected input frames: a lazy image stream, their count when known, stamps, K, a label."""

    name: str
    images: Callable[[], Iterator[np.ndarray]]
    count: int | None
    stamps: np.ndarray | None = None
    K: np.ndarray | None = None
    gt_poses: np.ndarray | None = None      # of the selected frames (KITTI / 7-Scenes)
    all_gt_poses: np.ndarray | None = None  # of every frame of the source (mean-odometry baseline)
    indices: list[int] | None = None        # positions in the source
    total: int | None = None                # frames in the source
    sevenscenes: SevenScenes | None = None
    camera_dir: str = ""


def _loader(paths: list[Path]) -> Callable[[], Iterator[np.ndarray]]:
    from sfm_ros.data.sources import read_image

    return lambda: (read_image(p) for p in paths)


def select_indices(n: int, frames: str | None, stride: int) -> list[int]:
    a, b = parse_frames(frames, n)
    return list(range(a, b, stride))


def select_frames(args, stride: int = 1) -> SelectedFrames:
    given = [k for k in ("images", "bag", "kitti", "sevenscenes") if getattr(args, k)]
    if len(given) > 1:
        raise InputError("give one input: " + ", ".join("--" + g for g in given) + " were given")
    if not given:
        raise InputError("no input: give --images DIR, --bag BAG [--topic T], --kitti SEQ_DIR or --sevenscenes DIR")
    if args.topic and not args.bag:
        raise InputError("--topic goes with --bag")
    if args.images:
        from sfm_ros.data.sources import SourceError, list_image_files, read_times

        try:
            files = list_image_files(args.images, args.pattern)
        except SourceError as exc:
            raise InputError(f"--images: {exc}") from None
        idx = select_indices(len(files), args.frames, stride)
        fps = getattr(args, "fps", 10.0)
        times = Path(args.images) / "times.txt"
        stamps = np.arange(len(files)) / fps
        if times.is_file():
            try:
                stamps = read_times(times, len(files))
            except SourceError as exc:
                raise InputError(f"--images: {exc}") from None
        return SelectedFrames(f"images {args.images}", _loader([files[i] for i in idx]), len(idx), stamps[idx],
                              indices=idx, total=len(files))
    if args.bag:
        from sfm_ros.data.bags import read_image_stream

        a, b = parse_frames(args.frames, None)
        topic = image_topic(args.bag, args.topic)
        stream = read_image_stream(args.bag, topic)  # checks the bag and topic now
        box: dict[str, list[float]] = {"stamps": []}

        def images() -> Iterator[np.ndarray]:
            for f in itertools.islice(stream, a, b, stride):
                box["stamps"].append(f.stamp)
                yield f.image
        fr = SelectedFrames(f"bag {args.bag} {topic}", images, None)
        fr.stamps = box["stamps"]  # filled while iterating
        return fr
    if args.kitti:
        from sfm_ros.data.sources import SourceError, read_kitti_odometry

        try:
            seq = read_kitti_odometry(args.kitti, camera=args.kitti_camera)
        except SourceError as exc:
            raise InputError(f"--kitti: {exc}") from None
        idx = select_indices(len(seq), args.frames, stride)
        gt = seq.poses[idx] if seq.poses is not None else None
        return SelectedFrames(f"KITTI {args.kitti} ({seq.image_paths[0].parent.name})",
                       _loader([seq.image_paths[i] for i in idx]), len(idx), seq.stamps[idx], seq.camera.K,
                       gt, seq.poses, idx, total=len(seq), camera_dir=seq.image_paths[0].parent.name)
    ss = read_sevenscenes(args.sevenscenes)
    idx = select_indices(len(ss), args.frames, stride)
    return SelectedFrames(f"7-Scenes {args.sevenscenes}", _loader([ss.color[i] for i in idx]), len(idx),
                   ss.stamps[idx], ss.K, None, None, idx, len(ss), ss)
