"""``sfm_bag``: inspect bags and make ROS 2 image bags from images, videos and KITTI sequences.

    sfm_bag info BAG [BAG ...] [--json]
    sfm_bag from-images DIR OUT   [--pattern '*.png'] [--fps 10] (--calib YAML | --fx F [--fy ...])
    sfm_bag from-video FILE OUT   [--fps F] (--calib YAML | --fx F ...)
    sfm_bag from-kitti SEQ_DIR OUT [--camera image_0|image_2] [--no-poses]

Writer options (all ``from-*``): ``--storage mcap|sqlite3`` (default mcap), ``--topic``,
``--info-topic``, ``--frame-id``, ``--encoding rgb8|bgr8|mono8``, ``--max-frames``,
``--overwrite``.

Exit codes: 0 ok, 2 usage or input error (one line on stderr, no traceback).

Adding a subcommand: write ``add_arguments(parser)`` and ``run(args) -> int`` functions and call
:func:`register_subcommand` (see the "Extension point" section at the end of this file); a
``from-*`` subcommand should call :func:`add_writer_arguments` and :func:`write_bag_from_args`.
"""
from __future__ import annotations

import argparse
import math
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.cli.common import EXIT_BAD_INPUT, Parser, UsageError, add_intrinsics_arguments, check_rate, report_error
from sfm_ros.data.inputs import camera_from_args

__all__ = [
    "main",
    "build_parser",
    "register_subcommand",
    "Subcommand",
    "UsageError",
    "add_writer_arguments",
    "add_calibration_arguments",
    "camera_from_args",
    "write_bag_from_args",
]

PROG = "sfm_bag"
#: Input times before this (2001-09-09) are relative, not epoch times: written as --start-time + t.
RELATIVE_BEFORE = 1e9
RELATIVE_START = 1_700_000_000.0


@dataclass
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_SUBCOMMANDS: dict[str, Subcommand] = {}


def register_subcommand(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                        run: Callable[[argparse.Namespace], int]) -> None:
    """Add (or replace) a subcommand of ``sfm_bag``; ``run`` returns the exit code and may raise
    ``ValueError`` subclasses (``BagError``, ``SourceError``, ...) for input errors (exit 2)."""
    _SUBCOMMANDS[name] = Subcommand(name, help, add_arguments, run)


# ----------------------------------------------------------------------------- shared options
def add_calibration_arguments(p: argparse.ArgumentParser, required_hint: str = "") -> None:
    add_intrinsics_arguments(p, "calibration" + (f" ({required_hint})" if required_hint else ""))


def add_writer_arguments(p: argparse.ArgumentParser, default_topic: str = "/camera/image_raw") -> None:
    g = p.add_argument_group("output bag")
    g.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="default: mcap")
    g.add_argument("--topic", default=default_topic, help=f"image topic (default: {default_topic})")
    g.add_argument("--info-topic", default=None,
                   help="CameraInfo topic (default: camera_info next to --topic)")
    g.add_argument("--frame-id", default="camera_optical_frame")
    g.add_argument("--encoding", choices=("rgb8", "bgr8", "mono8"), default=None,
                   help="default: mono8 for grey input, rgb8 for colour")
    g.add_argument("--max-frames", type=int, default=None, help="write at most N frames")
    g.add_argument("--start-time", type=float, default=RELATIVE_START, metavar="SEC",
                   help="stamp of the first frame when the input's times are relative (index / fps, "
                        "a times.txt from 0, the renderer): frames are stamped SEC + their time "
                        f"(default {RELATIVE_START:.0f}, 2023-11-14)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing output bag (only a folder holding nothing but a bag)")


def _default_info_topic(topic: str) -> str:
    ns = topic.rstrip("/").rsplit("/", 1)[0]
    return f"{ns}/camera_info"


def write_bag_from_args(args: argparse.Namespace, frames: Iterable[Any], camera: Any,
                        poses: np.ndarray | None = None, what: str = "") -> int:
    """Write ``frames`` with the writer options of ``args``; prints a one-line summary; returns 0."""
    from sfm_ros.data.bag_writer import write_image_bag

    start = getattr(args, "start_time", RELATIVE_START)
    n = write_image_bag(
        args.out, _absolute_stamps(frames, start), camera, start_time=start, topic=args.topic,
        info_topic=args.info_topic or _default_info_topic(args.topic), frame_id=args.frame_id,
        storage=args.storage, encoding=args.encoding, poses=poses, overwrite=args.overwrite)
    extra = f" + ground-truth odometry" if poses is not None else ""
    print(f"wrote {n} frames{(' from ' + what) if what else ''} to {args.out} ({args.storage}): "
          f"{args.topic} + {args.info_topic or _default_info_topic(args.topic)}{extra}")
    return 0


def _absolute_stamps(frames: Iterable[Any], start_time: float) -> Iterable[tuple[float, Any]]:
    """``(stamp, image)`` of Frame objects or ``(stamp, image)`` pairs; relative times (the first
    before :data:`RELATIVE_BEFORE`) become ``start_time + t``: a bag stamped from 0.0 looks like a
    driver that does not stamp, and a consumer such as sfm_node would treat its first frame as one."""
    offset = None
    for f in frames:
        if isinstance(f, np.ndarray):  # a bare image: write_image_bag stamps it from start_time
            yield f
            continue
        stamp, image = (f.stamp, f.image) if hasattr(f, "image") else f
        if offset is None:
            offset = start_time if stamp < RELATIVE_BEFORE else 0.0
        yield float(stamp) + offset, image


def _limited(frames: Iterable[Any], max_frames: int | None) -> Iterable[Any]:
    if max_frames is None:
        yield from frames
        return
    for i, f in enumerate(frames):
        if i >= max_frames:
            return
        yield f


def _peek(frames: Iterable[Any]):
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise UsageError("the input has no frames") from None

    def chain():
        yield first
        yield from it
    return first, chain()


def _check_max_frames(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames <= 0:
        raise UsageError("--max-frames must be > 0")
    _check_rate_and_start(args)


def _check_rate_and_start(args: argparse.Namespace) -> None:
    """A writer's ``--fps`` (when it has one) and ``--start-time``, before any frame is read or rendered."""
    check_rate(getattr(args, "fps", None))
    start = getattr(args, "start_time", RELATIVE_START)
    if not (math.isfinite(start) and start >= 0):
        raise UsageError(f"--start-time must be a finite time >= 0 s, got {start:g}")


# ----------------------------------------------------------------------------------- info
def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG", help="ROS 1 .bag, ROS 2 bag folder, .mcap or .db3")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_info(args: argparse.Namespace) -> int:
    from sfm_ros.data.bags import list_topics

    report = []
    for bag in args.bags:
        topics = list_topics(bag)
        starts = [t.start_s for t in topics if t.start_s is not None]
        ends = [t.start_s + (t.duration_s or 0.0) for t in topics if t.start_s is not None]
        report.append({"bag": bag, "start_s": min(starts) if starts else None,
                       "duration_s": max(ends) - min(starts) if starts else None, "topics": [
            {**{k: v for k, v in t.__dict__.items()}, "is_image": t.is_image} for t in topics]})
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for entry in report:
        topics = entry["topics"]
        when = ""
        if entry["start_s"] is not None:
            utc = datetime.fromtimestamp(entry["start_s"], timezone.utc).isoformat(timespec="milliseconds")
            when = (f"; start {entry['start_s']:.3f} ({utc.replace('+00:00', 'Z')}), "
                    f"duration {entry['duration_s']:.3f} s")
        print(f"bag: {entry['bag']}  ({len(topics)} topics, {sum(t['count'] for t in topics)} messages{when})")
        rows = [("topic", "type", "count", "rate", "encoding", "resolution", "frame_id", "camera_info")]
        for t in topics:
            res = f"{t['width']}x{t['height']}" if t["width"] else ""
            rate = f"{t['rate_hz']:.2f} Hz" if t["rate_hz"] else "-"
            cinfo = (t["camera_info_topic"] or "none") if t["is_image"] else ""
            rows.append((t["topic"], t["msgtype"], str(t["count"]), rate, t["encoding"] or "", res,
                         t["frame_id"] or "", cinfo))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if not any(t["is_image"] for t in topics):
            print("  (no image topics)")
    return 0


# ------------------------------------------------------------------------------ from-images
def _add_from_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder of images (natural sort order)")
    p.add_argument("out", metavar="OUT", help="output ROS 2 bag folder")
    p.add_argument("--pattern", default=None, help="glob, e.g. '*.png' (default: common image types)")
    p.add_argument("--fps", type=float, default=None,
                   help="stamps = index / fps when there is no times.txt (default 10)")
    add_calibration_arguments(p, "required")
    add_writer_arguments(p)


def _run_from_images(args: argparse.Namespace) -> int:
    from sfm_ros.data.sources import read_image_folder

    _check_max_frames(args)
    frames = read_image_folder(args.dir, args.pattern, fps=args.fps or 10.0, max_frames=args.max_frames)
    return _write_frames(args, frames, args.dir, one_kind=True)


def _write_frames(args: argparse.Namespace, frames: Iterable[Any], what: str, one_kind: bool = False) -> int:
    """Write ``frames`` as a bag with the camera the arguments give at the first frame's size
    (with ``one_kind``: every frame checked to be the first's kind of image)."""
    first, frames = _peek(frames)
    h, w = first.image.shape[:2]
    cam = camera_from_args(args, w, h)
    return write_bag_from_args(args, _one_kind(frames, first) if one_kind else frames, cam, what=what)


def _kind(image: np.ndarray) -> str:
    return f"{image.dtype} {image.shape[2] if image.ndim == 3 else 1}-channel"


def _one_kind(frames: Iterable[Any], first: Any) -> Iterator[Any]:
    """The frames of a folder, checked to be images of one kind (dtype and channels) as the first:
    a folder that mixes kinds (7-Scenes' ``*.color.jpg`` and 16-bit ``*.depth.png``) is an error
    naming the odd file and a ``--pattern`` that picks the first one's kind."""
    want = _kind(first.image)
    name = Path(first.source).name
    hint = "*" + name[name.index("."):] if "." in name else "*"
    for f in frames:
        got = _kind(f.image)
        if got != want:
            raise UsageError(
                f"{f.source} (frame {f.index}) is a {got} image but the first, {first.source}, is {want}: "
                f"the folder holds more than one kind of image; pick one with --pattern, e.g. "
                f"--pattern '{hint}'")
        yield f


# ------------------------------------------------------------------------------- from-video
def _add_from_video(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="video file (anything OpenCV reads)")
    p.add_argument("out", metavar="OUT", help="output ROS 2 bag folder")
    p.add_argument("--fps", type=float, default=None,
                   help="stamps = index / fps when the video has no usable times (default: its fps)")
    add_calibration_arguments(p, "required")
    add_writer_arguments(p)


def _run_from_video(args: argparse.Namespace) -> int:
    from sfm_ros.data.sources import read_video

    _check_max_frames(args)
    frames = read_video(args.file, max_frames=args.max_frames, fps=args.fps)
    return _write_frames(args, frames, args.file)


# ------------------------------------------------------------------------------- from-kitti
def _add_from_kitti(p: argparse.ArgumentParser) -> None:
    p.add_argument("seq_dir", metavar="SEQ_DIR", help="KITTI odometry sequence folder (image_0, calib.txt)")
    p.add_argument("out", metavar="OUT", help="output ROS 2 bag folder")
    p.add_argument("--camera", choices=("image_0", "image_1", "image_2", "image_3"), default=None,
                   help="default: image_0 if present, else image_2")
    p.add_argument("--fps", type=float, default=None, help="stamps when there is no times.txt (default 10)")
    p.add_argument("--no-poses", action="store_true",
                   help="do not write poses.txt as nav_msgs/Odometry on /ground_truth/odom")
    add_calibration_arguments(p, "optional, overrides calib.txt")
    add_writer_arguments(p)


def _run_from_kitti(args: argparse.Namespace) -> int:
    from sfm_ros.data.sources import read_kitti_odometry

    _check_max_frames(args)
    seq = read_kitti_odometry(args.seq_dir, args.camera, max_frames=args.max_frames, fps=args.fps or 10.0)
    cam = camera_from_args(args, seq.camera.width, seq.camera.height, fallback=seq.camera)
    poses = None if args.no_poses else seq.poses
    return write_bag_from_args(args, seq, cam, poses=poses, what=args.seq_dir)


register_subcommand("info", "list the topics of bags: types, counts, rates, image encodings, sizes, "
                    "CameraInfo", _add_info, _run_info)
register_subcommand("from-images", "make a ROS 2 image bag from a folder of images",
                    _add_from_images, _run_from_images)
register_subcommand("from-video", "make a ROS 2 image bag from a video file",
                    _add_from_video, _run_from_video)
register_subcommand("from-kitti", "make a ROS 2 image bag (+ CameraInfo, ground truth) from a KITTI "
                    "odometry sequence", _add_from_kitti, _run_from_kitti)

# =============================================================================================
# Extension point (coordinator): more subcommands register here, e.g.
#
#     def _add_from_synthetic(p):
#         p.add_argument("out", metavar="OUT")
#         add_writer_arguments(p)
#     def _run_from_synthetic(args):
#         frames, camera, poses = ...            # list of Frame / arrays, CameraModel, (N,4,4)
#         return write_bag_from_args(args, frames, camera, poses=poses, what="synthetic scene")
#     register_subcommand("from-synthetic", "...", _add_from_synthetic, _run_from_synthetic)
#
# Other modules may also call register_subcommand() before main() runs.
# =============================================================================================


def _add_from_synthetic(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="output bag")
    p.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--speed", type=float, default=6.0, help="m/s (default 6)")
    p.add_argument("--yaw-rate", type=float, default=None, metavar="RAD_S",
                   help="the street's mean yaw rate at --speed, rad/s, positive turning right (default: the "
                        "seed's street, 0.05-0.25 rad/s of either sign at 6 m/s; a drive of a kilometre needs a "
                        "gentle curve, e.g. 0.015)")
    p.add_argument("--stops", default="", metavar="START:DURATION,...",
                   help="stand still at these seconds for these seconds, braking and pulling away over 2 s "
                        "each (default: none)")
    p.add_argument("--hills", type=float, default=0.0, metavar="GRADE",
                   help="the road climbs and falls with grades up to GRADE, rise over run (e.g. 0.06; "
                        "default 0: flat)")
    p.add_argument("--camera-height", type=float, default=1.5, help="metres above the road (default 1.5)")
    p.add_argument("--no-poses", action="store_true", help="do not write ground-truth odometry")
    add_writer_arguments(p)


def _run_from_synthetic(args: argparse.Namespace) -> int:
    from sfm_ros.data.camera import CameraModel
    from sfm_ros.data.speed_profile import parse_stops
    from sfm_ros.data.synthetic import MAX_MEAN_CURVATURE, render_sequence
    from sfm_ros.data.terrain import MAX_GRADE

    if args.frames < 1:
        raise UsageError(f"from-synthetic: --frames must be >= 1, got {args.frames}")
    _check_rate_and_start(args)

    try:
        stops = parse_stops(args.stops)
    except ValueError as e:
        raise UsageError(f"from-synthetic: --stops: {e}") from None
    if not (math.isfinite(args.camera_height) and args.camera_height > 0):
        raise UsageError(f"from-synthetic: --camera-height must be a height > 0 m, got {args.camera_height:g}")
    if not (math.isfinite(args.hills) and 0 <= args.hills <= MAX_GRADE):
        raise UsageError(f"from-synthetic: --hills must be a grade (rise over run) in [0, {MAX_GRADE}], "
                         f"got {args.hills:g}")
    if args.yaw_rate is not None and math.isfinite(args.speed) and args.speed > 0:
        limit = MAX_MEAN_CURVATURE * args.speed
        if not (math.isfinite(args.yaw_rate) and abs(args.yaw_rate) <= limit):
            raise UsageError(f"from-synthetic: --yaw-rate must be within +-{limit:.3f} rad/s at --speed "
                             f"{args.speed:g} m/s (a street's turning radius of 15 m at least), "
                             f"got {args.yaw_rate:g}")
    try:
        seq = render_sequence(args.frames, args.height, args.width, seed=args.seed, fps=args.fps,
                              speed=args.speed, yaw_rate=args.yaw_rate, camera_height=args.camera_height,
                              stops=stops, hills=args.hills)
    except ValueError as e:
        hint = ""
        if "inside box" in str(e):  # a long drive on a tight street meets its own buildings
            where = "the seed's curvature" if args.yaw_rate is None else "this --yaw-rate"
            hint = (f"; at {where} a drive this long winds back into its own street: give a gentler "
                    "--yaw-rate (e.g. 0.015 rad/s)")
        raise UsageError(f"from-synthetic: {e}{hint}") from None
    K = seq.K
    camera = CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], args.width, args.height)
    frames = list(zip(seq.timestamps, seq.images))
    return write_bag_from_args(args, frames, camera, poses=None if args.no_poses else seq.poses,
                               what=f"the synthetic street (seed {args.seed})")


register_subcommand("from-synthetic", "render a procedural street drive (exact poses) into a bag",
                    _add_from_synthetic, _run_from_synthetic)


# ----------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Inspect bags and make ROS 2 image bags for sfm_ros.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for sc in _SUBCOMMANDS.values():
        sp = sub.add_parser(sc.name, help=sc.help, description=sc.help)
        sc.add_arguments(sp)
        sp.set_defaults(_run=sc.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sfm_bag``; returns the exit code (0 ok, 2 usage/input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if not getattr(args, "_run", None):
            raise UsageError(f"give a command: {', '.join(_SUBCOMMANDS)} (see {PROG} --help)")
        return int(args._run(args) or 0)
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_BAD_INPUT
    except (ValueError, OSError) as exc:  # UsageError, BagError, SourceError, CameraError, ...
        return report_error(PROG, exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
