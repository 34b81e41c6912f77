"""Frame sources other than bags: image folders, KITTI odometry sequences and video files.

Every source yields :class:`Frame` (the same type :mod:`sfm_ros.data.bags` yields): ``image`` as a
numpy array (RGB ``uint8`` ``(H, W, 3)`` for colour, ``(H, W)`` for grey, 16-bit PNGs stay
``uint16``), ``stamp`` in seconds, ``index`` (0-based position in the stream).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sfm_ros.data.camera import CameraError, CameraModel
from sfm_ros.data.pose_files import read_kitti

__all__ = [
    "Frame",
    "SourceError",
    "KittiSequence",
    "IMAGE_PATTERNS",
    "natural_key",
    "read_times",
    "read_image",
    "list_image_files",
    "read_image_folder",
    "read_kitti_odometry",
    "read_video",
]

#: Default file patterns of :func:`read_image_folder`.
IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.bmp", "*.tif", "*.tiff", "*.ppm", "*.pgm")


class SourceError(ValueError):
    """A frame source cannot be read (missing folder/file, no images, bad times file)."""


@dataclass
class Frame:
    """One image of a stream."""

    image: np.ndarray
    stamp: float                 # seconds (header stamp for bags, times.txt / index / fps otherwise)
    index: int = 0               # position in the stream (after skipping), 0-based
    frame_id: str = ""           # header.frame_id (bags)
    encoding: str = ""           # wire encoding / format the image came in ("rgb8", "png", ...)
    source: str = field(default="", repr=False)  # file or topic it came from


def natural_key(p: Path) -> list:
    """Sort key of a file name in natural order (``img2`` before ``img10``, case-insensitive)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file: RGB ``uint8`` for colour, ``(H, W)`` for grey (16-bit kept)."""
    p = Path(path)
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not p.is_file():
            raise SourceError(f"image file {p} does not exist")
        raise SourceError(f"cannot decode image file {p} (corrupt or not an image?)")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def list_image_files(directory: str | Path, pattern: str | None = None) -> list[Path]:
    """Image files of ``directory`` matching ``pattern`` (default: common image extensions),
    in natural order (``img2`` before ``img10``)."""
    d = Path(directory)
    if not d.is_dir():
        raise SourceError(f"image folder {d} does not exist" if not d.exists() else f"{d} is not a folder")
    pats = [pattern] if pattern else list(IMAGE_PATTERNS)
    files = sorted({p for pat in pats for p in d.glob(pat) if p.is_file()}, key=natural_key)
    if not files:
        raise SourceError(f"no image files matching {' / '.join(pats)} in {d}")
    return files


def read_times(path: str | Path, n: int) -> np.ndarray:
    """The first ``n`` stamps (seconds, float64) of a times file (KITTI ``times.txt``: one time a
    line, the first column; blank lines skipped); :class:`SourceError` when it is unreadable or
    holds fewer than ``n``."""
    path = Path(path)
    try:
        vals = [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    except (ValueError, IndexError):
        raise SourceError(f"{path}: every non-empty line must start with a time in seconds") from None
    if len(vals) < n:
        raise SourceError(f"{path} has {len(vals)} times but there are {n} images")
    return np.asarray(vals[:n], dtype=np.float64)


def read_image_folder(directory: str | Path, pattern: str | None = None, *, fps: float = 10.0,
                      times_file: str | Path | None = None, max_frames: int | None = None,
                      start_time: float = 0.0) -> Iterator[Frame]:
    """Frames from the images of a folder (natural sort order).

    Stamps: from ``times_file`` if given, else ``times.txt`` in the folder or its parent (KITTI
    layout) if present (one time in seconds a line, the first column), else
    ``start_time + index / fps``. The folder and its file list are checked before the first frame.
    """
    files = list_image_files(directory, pattern)
    if max_frames is not None:
        files = files[: max(0, int(max_frames))]
    if fps <= 0:
        raise SourceError(f"fps must be > 0, got {fps}")
    d = Path(directory)
    tpath = Path(times_file) if times_file else next(
        (p for p in (d / "times.txt", d.parent / "times.txt") if p.is_file()), None)
    if times_file and not tpath.is_file():
        raise SourceError(f"times file {tpath} does not exist")
    stamps = read_times(tpath, len(files)) if tpath else start_time + np.arange(len(files)) / fps
    return _iter_files(files, stamps)


def _iter_files(files: list[Path], stamps: np.ndarray) -> Iterator[Frame]:
    for i, (f, t) in enumerate(zip(files, stamps)):
        yield Frame(read_image(f), float(t), i, "", f.suffix.lstrip(".").lower(), str(f))


@dataclass
class KittiSequence:
    """A KITTI odometry sequence: camera, frame files, stamps and (optional) ground-truth poses.

    Iterating yields :class:`Frame`. ``poses``: ``(N, 4, 4)`` camera-to-world from the sequence's
    ``poses.txt`` (KITTI's 3x4 rows) when that file is present, else ``None``.
    """

    seq_dir: Path
    camera: CameraModel
    image_paths: list[Path]
    stamps: np.ndarray
    poses: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_paths)

    def __iter__(self) -> Iterator[Frame]:
        return _iter_files(self.image_paths, self.stamps)


def read_kitti_odometry(seq_dir: str | Path, camera: str | None = None,
                        max_frames: int | None = None, fps: float = 10.0) -> KittiSequence:
    """A KITTI odometry sequence folder (``image_0``/``image_2``, ``calib.txt``, optional
    ``times.txt`` and ``poses.txt``).

    ``camera``: ``"image_0"`` (left grey, P0) or ``"image_2"`` (left colour, P2); default the
    first present of ``image_0``, ``image_2``. Stamps from ``times.txt`` else ``index / fps``
    (KITTI is 10 Hz).
    """
    d = Path(seq_dir)
    if not d.is_dir():
        raise SourceError(f"KITTI sequence folder {d} does not exist")
    names = [camera] if camera else ["image_0", "image_2"]
    img_dir = next((d / n for n in names if (d / n).is_dir()), None)
    if img_dir is None:
        raise SourceError(f"{d} has no {' or '.join(names)} folder (not a KITTI odometry sequence?)")
    m = re.fullmatch(r"image_(\d)", img_dir.name)
    if not m:
        raise SourceError(f"camera must be image_0..image_3, got {img_dir.name!r}")
    calib = d / "calib.txt"
    if not calib.is_file():
        raise SourceError(f"{d} has no calib.txt")
    files = list_image_files(img_dir, "*.png")
    n_all = len(files)
    if max_frames is not None:
        if int(max_frames) < 1:
            raise SourceError(f"max_frames must be >= 1, got {max_frames}")
        files = files[: int(max_frames)]
    first = read_image(files[0]) if files else None
    h, w = first.shape[:2] if first is not None else (0, 0)
    try:
        cam = CameraModel.from_kitti_calib(calib, f"P{m.group(1)}", width=w, height=h)
    except CameraError as exc:
        raise SourceError(str(exc)) from None
    times = d / "times.txt"
    stamps = read_times(times, len(files)) if times.is_file() else np.arange(len(files)) / fps
    poses = None
    if (d / "poses.txt").is_file():
        try:
            poses = read_kitti(d / "poses.txt")
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if len(poses) < n_all:
            raise SourceError(f"{d / 'poses.txt'} has {len(poses)} poses but there are {n_all} images")
        poses = poses[: len(files)]
    return KittiSequence(d, cam, files, stamps, poses)


def read_video(path: str | Path, *, max_frames: int | None = None,
               fps: float | None = None) -> Iterator[Frame]:
    """Frames of a video file (``cv2.VideoCapture``), RGB ``uint8``.

    Stamps from ``CAP_PROP_POS_MSEC`` (the presentation time of the frame just read); when the
    backend reports no usable times (zero or not increasing) they are ``index / fps`` with ``fps``
    given or else the container's ``CAP_PROP_FPS``. The file is opened before the first frame.
    """
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"video file {p} does not exist")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open video file {p} (unsupported format or corrupt)")
    container_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    rate = float(fps or (container_fps if container_fps > 0 else 0.0) or 30.0)
    return _iter_video(cap, p, rate, max_frames)


def _iter_video(cap, p: Path, rate: float, max_frames: int | None) -> Iterator[Frame]:
    try:
        i = 0
        last = -1.0
        use_index = False
        while max_frames is None or i < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                if i == 0:
                    raise SourceError(f"video file {p} has no readable frames")
                break
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = msec / 1000.0
            if use_index or (i > 0 and t <= last):
                use_index = True
                t = i / rate
            last = t
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else bgr
            yield Frame(img, float(t), i, "", "video", str(p))
            i += 1
    finally:
        cap.release()
