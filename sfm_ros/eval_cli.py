"""``sfm_eval``: evaluate SfMLearner depth and ego-motion against ground truth (Zhou et al. 2017).

    sfm_eval depth --checkpoint CKPT --sevenscenes DATA/sevenscenes_redkitchen --frames 400:500
    sfm_eval depth --checkpoint CKPT --images DIR --gt-png GT_DIR [--gt-scale 1000 --gt-invalid 65535]
    sfm_eval depth --checkpoint CKPT --kitti SEQ_DIR --gt-lidar VELO_DIR [--calib calib.txt] --crop garg
    sfm_eval depth --pred-npy PRED_DIR --gt-npy GT_DIR --json metrics.json
    sfm_eval pose --checkpoint CKPT --kitti SEQ_DIR --frames 120:160 --train-frames 0:120 [--snippet 5]
    sfm_eval pose --checkpoint CKPT --sevenscenes DIR --stride 10 --tum pred.txt
    sfm_eval pose --pred-tum pred.txt --gt-tum gt.txt          # or --pred-kitti / --gt-kitti

depth
-----
Prediction: a checkpoint run on ``--images DIR`` | ``--bag BAG --topic T`` | ``--kitti SEQ_DIR``
(``image_0``/``image_2``) | ``--sevenscenes DIR`` (``frame-*.color.jpg``), or saved predictions
``--pred-npy DIR`` (``*.npy``, any units). Ground truth: ``--gt-png DIR`` (16-bit, ``raw /
--gt-scale`` metres, ``--gt-invalid`` and 0 = no depth), ``--gt-npy DIR`` (metres), ``--gt-lidar DIR``
(KITTI ``*.bin`` Velodyne scans projected with :func:`sfm_ros.metrics.project_lidar`; ``--calib`` is
a KITTI odometry ``calib.txt`` (``Tr`` + ``P0..P3``) or a KITTI raw date folder with
``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``), implicit for ``--sevenscenes``
(``frame-*.depth.png``, mm, 65535 invalid). Frames and ground-truth files are matched in natural
file order (``--frames A:B`` selects the same positions of both); their counts must agree.
Protocol (:func:`sfm_ros.metrics.evaluate_depth`, SfMLearner's ``eval_depth.py``): prediction
resized bilinearly to the ground-truth size, valid pixels ``min_depth < gt <= max_depth`` (and the
crop), per-image median scaling (``--no-median-scaling`` for metric models), clamp, the 7 metrics
averaged over images. ``--max-depth`` defaults to 80 m (the paper's KITTI cap; 50 is the other
usual one) and to 10 m with ``--sevenscenes``. Note for 7-Scenes: its depth camera is not
registered to the colour camera (edges ~10 px apart at 640x480), which inflates errors at depth
discontinuities for every method alike. With median scaling the output also holds the baseline
a model must beat: one constant depth for every pixel, median-scaled the same way
(``baseline_constant``).

pose
----
Prediction: a checkpoint run on ``--kitti SEQ_DIR`` (ground truth ``poses.txt``) |
``--sevenscenes DIR`` (``frame-*.pose.txt``) | ``--images DIR`` / ``--bag BAG --topic T`` (ground
truth from ``--gt-kitti FILE`` or ``--gt-tum FILE``), or a trajectory file ``--pred-tum`` /
``--pred-kitti`` with the ground truth from ``--gt-tum``/``--gt-kitti``/``--kitti``/``--sevenscenes``.
``--frames A:B`` and ``--stride S`` (default 1; 10 for ``--sevenscenes``, a 30 Hz hand-held camera)
select the frames ``A, A+S, ...`` below ``B``.

* **Snippet ATE** (the paper's Table 3, :func:`sfm_ros.trajectory.snippet_ate`): every window of
  ``--snippet L`` consecutive (selected) frames, stride 1, prediction scaled per snippet, mean ± std.
  With a checkpoint whose ``seq_len == L`` every snippet is *one* pose-network prediction with the
  target in the middle (SfMLearner's protocol, :func:`sfm_ros.trajectory.snippet_from_network`).
  Otherwise (e.g. a seq_len-3 model and 5-frame snippets) the snippet is built by chaining
  consecutive frame-to-frame increments: every window the network sees gives an estimate of each
  increment ``T_{c_i}_{c_i+1}`` inside it (a seq_len-3 window centred on ``t`` gives ``i = t-1``
  and ``i = t``, so interior increments are estimated twice); the estimates of an increment are
  averaged (mean translation, mean axis-angle rotation) and the snippet is the product of its
  ``L - 1`` increments.
* **Whole trajectory**: the averaged increments chained from the first selected frame; ATE after a
  Sim(3) Umeyama alignment and RPE over ``--delta`` frames (as ``evo_ape -as`` / ``evo_rpe -as``).
* **Baselines** through the same code: zero motion (identity poses) and mean odometry (the mean
  ground-truth increment of ``--train-frames A:B``, same stride, applied at every step; default: the
  ground-truth frames outside the evaluated range). Sim(3) alignment is undefined for a trajectory
  that never moves: the zero-motion ATE/RPE use an SE(3) alignment (marked ``se3``).

``--tum OUT`` / ``--kitti-out OUT`` write the chained trajectory (and the ground truth of the same
frames as ``OUT`` with ``.gt`` before the suffix) so ``evo_ape tum OUT.gt.txt OUT.txt -as`` reads them.

Both: ``--json OUT`` writes every number; ``--device auto|cpu|cuda``. Exit codes: 0 done, 2 bad
command line or input (one line on stderr).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["main", "build_parser", "UsageError", "parse_frames", "read_sevenscenes", "SevenScenes",
           "network_increments", "network_snippets", "refine_increments", "ground_scaled_increments",
           "average_increments", "evaluate_pose_methods",
           "kitti_lidar_calib"]

PROG = "sfm_eval"
EXIT_OK, EXIT_BAD_INPUT = 0, 2
SEVENSCENES_FPS = 30.0
SEVENSCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


class UsageError(ValueError):
    """Bad command line or input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="CKPT", help="sfm_ros checkpoint to evaluate")
    p.add_argument("--images", metavar="DIR", help="image folder (natural file order)")
    p.add_argument("--pattern", help="file pattern of --images (default: common image extensions)")
    p.add_argument("--bag", metavar="BAG", help="ROS 1/2 bag (.bag, bag folder, .mcap, .db3)")
    p.add_argument("--topic", help="image topic of --bag")
    p.add_argument("--kitti", metavar="SEQ_DIR", help="KITTI odometry sequence folder")
    p.add_argument("--kitti-camera", choices=("image_0", "image_1", "image_2", "image_3"),
                   help="KITTI camera folder (default: image_0, else image_2)")
    p.add_argument("--sevenscenes", metavar="DIR", help="7-Scenes sequence folder (frame-*.color.jpg ...)")
    p.add_argument("--frames", metavar="A:B", help="evaluate frames A (inclusive) to B (exclusive)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0].strip(),
                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{depth,pose}", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser("depth", help="single-image depth metrics (abs_rel ... a3)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--pred-npy", metavar="DIR", help="saved predictions (*.npy, any units) instead of a checkpoint")
    d.add_argument("--gt-png", metavar="DIR", help="16-bit depth PNGs")
    d.add_argument("--gt-scale", type=float, default=1000.0, help="raw PNG units per metre (default 1000: mm)")
    d.add_argument("--gt-invalid", type=int, default=65535, help="raw PNG value meaning no depth (default 65535)")
    d.add_argument("--gt-npy", metavar="DIR", help="depth maps in metres (*.npy)")
    d.add_argument("--gt-lidar", metavar="DIR", help="KITTI Velodyne scans (*.bin, float32 x y z r)")
    d.add_argument("--calib", metavar="PATH", help="for --gt-lidar: KITTI odometry calib.txt or a KITTI "
                   "raw date folder (default: SEQ_DIR/calib.txt with --kitti)")
    d.add_argument("--lidar-camera", choices=("P0", "P1", "P2", "P3"),
                   help="projection of the image camera (default: P0 for image_0, P2 otherwise)")
    d.add_argument("--min-depth", type=float, default=1e-3, help="metres (default 1e-3)")
    d.add_argument("--max-depth", type=float, default=None,
                   help="metres (default 80, the paper's; 10 with --sevenscenes)")
    d.add_argument("--no-median-scaling", action="store_true", help="metric models: no per-image median scaling")
    d.add_argument("--camera-height", type=float, metavar="M",
                   help="scale each prediction as the node's camera_height does (ground plane in the predicted "
                        "depth, frames in order, forward camera) instead of median scaling; also reports the "
                        "ratio of predicted to true depth")
    d.add_argument("--crop", choices=("none", "eigen", "garg"), default="none",
                   help="evaluation crop (default none; the paper uses garg on KITTI)")
    d.add_argument("--save-npy", metavar="DIR", help="also save the predictions (network units) as .npy")

    q = sub.add_parser("pose", help="snippet ATE, whole-trajectory ATE/RPE and baselines",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(q)
    q.add_argument("--pred-tum", metavar="FILE", help="predicted trajectory, TUM format")
    q.add_argument("--pred-kitti", metavar="FILE", help="predicted trajectory, KITTI format")
    q.add_argument("--gt-tum", metavar="FILE", help="ground-truth trajectory, TUM format")
    q.add_argument("--gt-kitti", metavar="FILE", help="ground-truth trajectory, KITTI format (poses.txt)")
    q.add_argument("--fps", type=float, default=10.0, help="stamps of frames/poses without times (default 10)")
    q.add_argument("--max-dt", type=float, default=0.02, help="stamp association tolerance in s (default 0.02)")
    q.add_argument("--stride", type=int, default=None, help="frame step (default 1; 10 with --sevenscenes)")
    q.add_argument("--snippet", type=int, default=5, help="snippet length of the snippet ATE (default 5)")
    q.add_argument("--delta", type=int, default=1, help="RPE frame delta (default 1)")
    q.add_argument("--camera-height", type=float, metavar="M",
                   help="metric scale as the node's camera_height does (ground plane in the predicted depth, "
                        "forward camera): also reports the trajectory with no scale alignment and the "
                        "ratio of predicted to true step length")
    q.add_argument("--refine", default="none", metavar="MODE",
                   help="refine each frame-to-frame motion with the node's refiner (refine_pose): none | "
                        "epipolar (default none; needs intrinsics: --kitti and --sevenscenes carry them). The "
                        "network motion it starts from is the windows' average here, the newest window's "
                        "in the node; it only matters where the refiner keeps the network's translation")
    q.add_argument("--train-frames", metavar="A:B",
                   help="ground-truth frames of the mean-odometry baseline (default: outside --frames)")
    q.add_argument("--tum", metavar="OUT", help="write the predicted trajectory (TUM) and OUT's .gt twin")
    q.add_argument("--kitti-out", metavar="OUT", help="write the predicted trajectory (KITTI) and OUT's .gt twin")
    return p


def parse_frames(text: str | None, n: int | None = None, what: str = "--frames") -> tuple[int, int | None]:
    """``"A:B"`` (either side optional) → ``(A, B)``; checked against ``n`` frames when given."""
    if text is None:
        return 0, n
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise UsageError(f"{what} {text!r} must look like A:B (frame indices, B exclusive), e.g. 0:100")
    a = int(m.group(1)) if m.group(1) else 0
    b = int(m.group(2)) if m.group(2) else n
    if b is not None and b <= a:
        raise UsageError(f"{what} {text!r} selects no frame (B must be greater than A)")
    if n is not None:
        if a >= n:
            raise UsageError(f"{what} {text!r} starts after the last frame (there are {n})")
        if b > n:
            raise UsageError(f"{what} {text!r} ends after the last frame (there are {n})")
    return a, b


def _files(directory: str, pattern: str, what: str) -> list[Path]:
    from sfm_ros.sources import natural_key

    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"{what} {d} is not a folder")
    files = sorted((f for f in d.glob(pattern) if f.is_file()), key=natural_key)
    if not files:
        raise UsageError(f"{what} {d} has no {pattern} files")
    return files


# ------------------------------------------------------------------------------------------------
# 7-Scenes
# ------------------------------------------------------------------------------------------------
@dataclass
class SevenScenes:
    """A 7-Scenes sequence folder: colour frames, depth PNGs (mm, 65535 invalid), camera-to-world poses."""

    root: Path
    color: list[Path]
    depth: list[Path]
    pose_files: list[Path]
    K: np.ndarray = field(default_factory=lambda: SEVENSCENES_K.copy())

    def __len__(self) -> int:
        return len(self.color)

    @property
    def stamps(self) -> np.ndarray:
        return np.arange(len(self.color)) / SEVENSCENES_FPS

    def poses(self, indices=None) -> np.ndarray:
        idx = range(len(self)) if indices is None else indices
        out = []
        for i in idx:
            try:
                T = np.loadtxt(self.pose_files[i], dtype=np.float64)
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read pose {self.pose_files[i]}: {exc}") from None
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise UsageError(f"{self.pose_files[i]}: expected a finite 4x4 matrix, got shape {T.shape}")
            out.append(T)
        return np.asarray(out)


def read_sevenscenes(root: str | Path) -> SevenScenes:
    """Index a 7-Scenes folder (``frame-NNNNNN.color.png|jpg``, ``.depth.png``, ``.pose.txt``)."""
    from sfm_ros.sources import natural_key

    d = Path(root)
    if not d.is_dir():
        raise UsageError(f"7-Scenes folder {d} does not exist")
    color = sorted(list(d.glob("frame-*.color.jpg")) + list(d.glob("frame-*.color.png")), key=natural_key)
    if not color:
        raise UsageError(f"{d} has no frame-*.color.jpg/png files (not a 7-Scenes sequence?)")
    stems = [c.name.split(".color.")[0] for c in color]
    depth = [d / f"{s}.depth.png" for s in stems]
    poses = [d / f"{s}.pose.txt" for s in stems]
    K = SEVENSCENES_K.copy()
    intr = d / "camera-intrinsics.txt"
    if intr.is_file():
        try:
            K = np.loadtxt(intr, dtype=np.float64).reshape(3, 3)
        except ValueError:
            pass
    return SevenScenes(d, color, depth, poses, K)


# ------------------------------------------------------------------------------------------------
# KITTI LiDAR calibration
# ------------------------------------------------------------------------------------------------
def _read_calib_rows(path: Path) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            rows[key.strip()] = np.array([float(x) for x in rest.split()])
        except ValueError:
            continue
    return rows


def _offset_from_P(P: np.ndarray) -> np.ndarray:
    """``P = K [I | b]`` → the 4x4 ``[I | b]`` (rectified reference camera → this camera)."""
    K = P[:, :3]
    T = np.eye(4)
    T[:3, 3] = np.linalg.solve(K, P[:, 3])
    return T


def kitti_lidar_calib(calib: str | Path, camera: str = "P0") -> tuple[np.ndarray, np.ndarray]:
    """``(T_cam_lidar 4x4, K 3x3)`` of a KITTI camera from an odometry ``calib.txt`` (``Tr``, ``P0..P3``)
    or a raw date folder (``calib_velo_to_cam.txt`` R, T; ``calib_cam_to_cam.txt`` R_rect_00,
    P_rect_0N), as the devkit: ``P_velo2im = P_rect @ R_rect @ [R | T]``."""
    p = Path(calib)
    if p.is_dir():
        c2c, v2c = p / "calib_cam_to_cam.txt", p / "calib_velo_to_cam.txt"
        if not (c2c.is_file() and v2c.is_file()):
            raise UsageError(f"--calib folder {p} lacks calib_cam_to_cam.txt / calib_velo_to_cam.txt")
        cc, vc = _read_calib_rows(c2c), _read_calib_rows(v2c)
        key = f"P_rect_0{camera[1]}"
        if key not in cc or "R_rect_00" not in cc or "R" not in vc or "T" not in vc:
            raise UsageError(f"--calib {p}: need {key}, R_rect_00 (cam_to_cam) and R, T (velo_to_cam)")
        P = cc[key].reshape(3, 4)
        R_rect = np.eye(4)
        R_rect[:3, :3] = cc["R_rect_00"].reshape(3, 3)
        velo = np.eye(4)
        velo[:3, :3] = vc["R"].reshape(3, 3)
        velo[:3, 3] = vc["T"].reshape(3)
        return _offset_from_P(P) @ R_rect @ velo, P[:, :3].copy()
    if not p.is_file():
        raise UsageError(f"--calib {p} does not exist")
    rows = _read_calib_rows(p)
    if camera not in rows or rows[camera].size != 12:
        raise UsageError(f"--calib {p} has no 12-number '{camera}:' line")
    if "Tr" not in rows or rows["Tr"].size != 12:
        raise UsageError(f"--calib {p} has no 'Tr:' line (Velodyne to camera 0)")
    P = rows[camera].reshape(3, 4)
    Tr = np.eye(4)
    Tr[:3, :4] = rows["Tr"].reshape(3, 4)
    return _offset_from_P(P) @ Tr, P[:, :3].copy()


# ------------------------------------------------------------------------------------------------
# Frame inputs
# ------------------------------------------------------------------------------------------------
@dataclass
class _Frames:
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


def _load(paths: list[Path]) -> Callable[[], Iterator[np.ndarray]]:
    from sfm_ros.sources import read_image

    return lambda: (read_image(p) for p in paths)


def _select(n: int, frames: str | None, stride: int) -> list[int]:
    a, b = parse_frames(frames, n)
    return list(range(a, b, stride))


def _frame_input(args, stride: int = 1) -> _Frames:
    given = [k for k in ("images", "bag", "kitti", "sevenscenes") if getattr(args, k)]
    if len(given) > 1:
        raise UsageError("give one input: " + ", ".join("--" + g for g in given) + " were given")
    if not given:
        raise UsageError("no input: give --images DIR, --bag BAG --topic T, --kitti SEQ_DIR or --sevenscenes DIR")
    if args.topic and not args.bag:
        raise UsageError("--topic goes with --bag")
    if args.images:
        from sfm_ros.sources import SourceError, list_image_files, read_times

        try:
            files = list_image_files(args.images, args.pattern)
        except SourceError as exc:
            raise UsageError(f"--images: {exc}") from None
        idx = _select(len(files), args.frames, stride)
        fps = getattr(args, "fps", 10.0)
        times = Path(args.images) / "times.txt"
        stamps = np.arange(len(files)) / fps
        if times.is_file():
            try:
                stamps = read_times(times, len(files))
            except SourceError as exc:
                raise UsageError(f"--images: {exc}") from None
        return _Frames(f"images {args.images}", _load([files[i] for i in idx]), len(idx), stamps[idx],
                       indices=idx, total=len(files))
    if args.bag:
        if not args.topic:
            raise UsageError("--bag needs --topic (the image topic)")
        from sfm_ros.bags import read_image_stream

        a, b = parse_frames(args.frames, None)
        stream = read_image_stream(args.bag, args.topic)  # checks the bag and topic now
        box: dict[str, list[float]] = {"stamps": []}

        def images() -> Iterator[np.ndarray]:
            for f in itertools.islice(stream, a, b, stride):
                box["stamps"].append(f.stamp)
                yield f.image
        fr = _Frames(f"bag {args.bag} {args.topic}", images, None)
        fr.stamps = box["stamps"]  # filled while iterating
        return fr
    if args.kitti:
        from sfm_ros.sources import SourceError, read_kitti_odometry

        try:
            seq = read_kitti_odometry(args.kitti, camera=args.kitti_camera)
        except SourceError as exc:
            raise UsageError(f"--kitti: {exc}") from None
        idx = _select(len(seq), args.frames, stride)
        gt = seq.poses[idx] if seq.poses is not None else None
        return _Frames(f"KITTI {args.kitti} ({seq.image_paths[0].parent.name})",
                       _load([seq.image_paths[i] for i in idx]), len(idx), seq.stamps[idx], seq.camera.K,
                       gt, seq.poses, idx, total=len(seq), camera_dir=seq.image_paths[0].parent.name)
    ss = read_sevenscenes(args.sevenscenes)
    idx = _select(len(ss), args.frames, stride)
    return _Frames(f"7-Scenes {args.sevenscenes}", _load([ss.color[i] for i in idx]), len(idx),
                   ss.stamps[idx], ss.K, None, None, idx, len(ss), ss)


def _estimator(args):
    from sfm_ros.checkpoint import CheckpointError
    from sfm_ros.inference import Estimator

    if not args.checkpoint:
        raise UsageError("give --checkpoint CKPT (the model to evaluate)")
    try:
        return Estimator(args.checkpoint, device=args.device)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------------
def _gt_depth_loaders(args, frames: _Frames | None) -> tuple[str, list[Callable[[tuple[int, int]], np.ndarray]]]:
    """Ground-truth loaders of the selected frames: ``loader(image_hw) -> (H, W) metres``."""
    from sfm_ros.metrics import load_depth_npy, load_depth_png, project_lidar

    given = [k for k in ("gt_png", "gt_npy", "gt_lidar") if getattr(args, k)]
    if len(given) > 1:
        raise UsageError("give one ground truth: " + ", ".join("--" + g.replace("_", "-") for g in given))
    if not given:
        if frames is not None and frames.sevenscenes is not None:
            ss = frames.sevenscenes
            missing = [ss.depth[i] for i in frames.indices if not ss.depth[i].is_file()]
            if missing:
                raise UsageError(f"7-Scenes depth {missing[0]} does not exist")
            return ("7-Scenes depth PNG (mm, 65535 invalid; not registered to the colour camera)",
                    [lambda hw, p=ss.depth[i]: load_depth_png(p, 1000.0, 65535) for i in frames.indices])
        raise UsageError("no ground truth: give --gt-png DIR, --gt-npy DIR or --gt-lidar DIR (implicit with --sevenscenes)")
    if args.gt_png:
        files = _files(args.gt_png, "*.png", "--gt-png")
        if not args.gt_scale > 0:
            raise UsageError(f"--gt-scale must be > 0, got {args.gt_scale}")
        what = f"PNG {args.gt_png} (raw / {args.gt_scale:g} m, {args.gt_invalid} invalid)"
        make = lambda p: (lambda hw: load_depth_png(p, args.gt_scale, args.gt_invalid))  # noqa: E731
    elif args.gt_npy:
        files = _files(args.gt_npy, "*.npy", "--gt-npy")
        what = f"npy {args.gt_npy} (m)"
        make = lambda p: (lambda hw: load_depth_npy(p))  # noqa: E731
    else:
        files = _files(args.gt_lidar, "*.bin", "--gt-lidar")
        if frames is None:
            raise UsageError("--gt-lidar needs the camera images (--images/--kitti/--bag with --checkpoint) "
                             "for the image size")
        calib = args.calib or (str(Path(args.kitti) / "calib.txt") if args.kitti else None)
        if not calib:
            raise UsageError("--gt-lidar needs --calib (KITTI calib.txt or a KITTI raw date folder)")
        cam = args.lidar_camera or ("P" + frames.camera_dir[-1] if frames.camera_dir else "P2")
        T, K = kitti_lidar_calib(calib, cam)
        what = f"LiDAR {args.gt_lidar} projected with {calib} ({cam})"

        def make(p):
            def load(hw):
                pts = np.fromfile(p, dtype=np.float32)
                if pts.size % 4:
                    raise UsageError(f"{p}: not a KITTI Velodyne scan (float32 x y z r)")
                return project_lidar(pts.reshape(-1, 4), T, K, hw[0], hw[1])
            return load
    if frames is not None and frames.indices is not None:
        # One ground-truth file per source frame, in the same order: the same positions are selected.
        if len(files) != frames.total:
            raise UsageError(f"{what}: {len(files)} ground-truth files for {frames.total} input frames "
                             f"(expected one per frame, matched in natural file order)")
        files = [files[i] for i in frames.indices]
    elif args.frames:  # --pred-npy, or a bag (streamed): slice the files the same way
        a, b = parse_frames(args.frames, len(files))
        files = files[a:b]
    return what, [make(p) for p in files]


def _run_depth(args) -> dict:
    from sfm_ros.metrics import DEPTH_METRIC_KEYS, aggregate, evaluate_depth

    max_depth = args.max_depth if args.max_depth is not None else (10.0 if args.sevenscenes else 80.0)
    if not 0 <= args.min_depth < max_depth:
        raise UsageError(f"need 0 <= --min-depth < --max-depth, got {args.min_depth:g}, {max_depth:g}")
    crop = None if args.crop == "none" else args.crop
    if args.pred_npy:
        given = [k for k in ("checkpoint", "images", "bag", "kitti", "sevenscenes") if getattr(args, k)]
        if given:
            raise UsageError("--pred-npy replaces the model: do not give " + ", ".join("--" + g for g in given))
        pred_files = _files(args.pred_npy, "*.npy", "--pred-npy")
        if args.frames:
            a, b = parse_frames(args.frames, len(pred_files))
            pred_files = pred_files[a:b]
        gt_what, gts = _gt_depth_loaders(args, None)
        if len(gts) != len(pred_files):
            raise UsageError(f"{len(pred_files)} predictions in {args.pred_npy} but {len(gts)} ground-truth maps")
        from sfm_ros.metrics import load_depth_npy

        preds = ((load_depth_npy(p), None) for p in pred_files)
        source = f"predictions {args.pred_npy}"
        model = None
    else:
        est = _estimator(args)
        frames = _frame_input(args)
        gt_what, gts = _gt_depth_loaders(args, frames)
        if frames.count is not None and frames.count != len(gts):
            raise UsageError(f"{frames.count} frames but {len(gts)} ground-truth maps")
        save = Path(args.save_npy) if args.save_npy else None
        if save:
            save.mkdir(parents=True, exist_ok=True)

        ground = _ground_scale(args, frames)

        def run() -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
            for i, img in enumerate(frames.images()):
                d = est.depth(est.preprocess(img))[0, 0].float().cpu().numpy()
                if save:
                    np.save(save / f"{i:06d}.npy", d)
                if ground is not None:
                    s = ground.update(d, est.scale_intrinsics(frames.K, img.shape[:2]))
                    d = d * (np.nan if s is None else s)  # no scale yet: the frame is skipped
                yield d, img.shape[:2]
        preds = run()
        source = f"{args.checkpoint} on {frames.name}"
        model = {"seq_len": est.seq_len, "size": [est.height, est.width], "device": str(est.device)}
    metric = getattr(args, "camera_height", None) is not None and not args.pred_npy
    median_scaling = not (args.no_median_scaling or metric)
    results, skipped, const, ratios = [], [], [], []
    n = 0
    for i, ((pred, hw), gt_load) in enumerate(itertools.zip_longest(preds, gts, fillvalue=(None, None))):
        if pred is None or (isinstance(gt_load, tuple)):
            raise UsageError(f"the input has {'fewer' if pred is None else 'more'} frames than ground-truth maps")
        n += 1
        gt = gt_load(hw if hw is not None else pred.shape)
        if metric and not np.isfinite(pred).any():  # no ground plane found yet
            skipped.append(i)
            continue
        try:
            r = evaluate_depth(gt, pred, args.min_depth, max_depth, median_scaling=median_scaling,
                               crop=crop)
            if metric:
                ratios.append(1.0 / evaluate_depth(gt, pred, args.min_depth, max_depth, median_scaling=True,
                                                   crop=crop)["scale"])
        except ValueError as exc:
            if "no valid ground-truth pixels" in str(exc):
                skipped.append(i)
                continue
            raise
        r["index"] = i
        finite = pred[np.isfinite(pred) & (pred > 0)]
        r["spread"] = float(np.log(finite).std()) if finite.size else 0.0
        results.append(r)
        if median_scaling:  # the floor a model must beat: one constant depth, median-scaled
            const.append(evaluate_depth(gt, np.ones_like(pred), args.min_depth, max_depth, median_scaling=True,
                                        crop=crop))
    if not results:
        raise UsageError(f"no image had valid ground-truth pixels in ({args.min_depth:g}, {max_depth:g}] m")
    agg = aggregate(results)
    base = aggregate(const) if const else None
    scales = np.array([r["scale"] for r in results])
    spread = float(np.median([r["spread"] for r in results]))
    warnings = []
    if spread < NEARLY_CONSTANT_SPREAD:
        warnings.append(f"the predicted depth is nearly constant (median spread of log depth {spread:.3f} "
                        f"< {NEARLY_CONSTANT_SPREAD}): the model learnt no layout; compare with the "
                        f"constant-depth baseline, and see the trainer's warnings")
    return {
        "command": "depth", "source": source, "ground_truth": gt_what, "model": model,
        "settings": {"min_depth": args.min_depth, "max_depth": max_depth, "crop": args.crop,
                     "median_scaling": median_scaling, "frames": args.frames,
                     "camera_height": getattr(args, "camera_height", None) if metric else None},
        "metric_ratio": ({"median": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)),
                          "p75": float(np.percentile(ratios, 75))} if ratios else None),
        "metrics": {k: agg[k] for k in DEPTH_METRIC_KEYS},
        "baseline_constant": {k: base[k] for k in DEPTH_METRIC_KEYS} if base else None,
        "count": len(results), "skipped": skipped,
        "scale_mean": float(scales.mean()), "scale_std": float(scales.std()),
        "valid_pixels_mean": agg["valid_pixels"], "depth_spread": spread, "warnings": warnings,
        "per_image": results,
    }


#: median per-image std of log depth below which a model's depth counts as nearly constant
NEARLY_CONSTANT_SPREAD = 0.02


def format_depth(res: dict) -> str:
    s = res["settings"]
    head = (f"{PROG} depth: {res['count']} images ({res['source']}); ground truth {res['ground_truth']}; "
            f"depth ({s['min_depth']:g}, {s['max_depth']:g}] m, crop {s['crop']}, "
            f"median scaling {'on' if s['median_scaling'] else 'off'}")
    from sfm_ros.metrics import DEPTH_METRIC_KEYS as keys

    lines = [head, "", "| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys),
             "| model | " + " | ".join(f"{res['metrics'][k]:.4f}" for k in keys) + " |"]
    if res.get("baseline_constant"):
        lines.append("| constant depth (baseline) | " + " | ".join(f"{res['baseline_constant'][k]:.4f}" for k in keys) + " |")
    lines.append("")
    tail = f"scale gt/pred {res['scale_mean']:.4g} ± {res['scale_std']:.2g}"
    if res.get("metric_ratio"):
        m = res["metric_ratio"]
        tail = (f"scale from camera height {s['camera_height']:g} m (no median scaling): predicted / true depth "
                f"median {m['median']:.3f} (quartiles {m['p25']:.3f}-{m['p75']:.3f})")
    if res["skipped"]:
        why = "valid ground truth or (before the first) ground plane" if res.get("metric_ratio") else "valid ground truth"
        tail += f"; {len(res['skipped'])} image(s) without {why} skipped"
    lines.append(tail)
    lines += [f"warning: {w}" for w in res.get("warnings", [])]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# pose
# ------------------------------------------------------------------------------------------------
def average_increments(estimates: list[list[np.ndarray]]) -> np.ndarray:
    """Average several estimates of each increment: mean translation, mean axis-angle rotation."""
    from sfm_ros.se3 import axis_angle_to_matrix, make_pose, matrix_to_axis_angle

    out = []
    for i, ests in enumerate(estimates):
        if not ests:
            raise ValueError(f"increment {i} has no estimate")
        E = np.asarray(ests)
        r = matrix_to_axis_angle(E[:, :3, :3]).mean(axis=0)
        out.append(make_pose(axis_angle_to_matrix(r), E[:, :3, 3].mean(axis=0)))
    return np.asarray(out)


def network_snippets(est, images: list) -> np.ndarray:
    """One pose-network prediction per window of ``seq_len`` consecutive frames (target in the
    middle), each as the window's poses relative to its first frame: (N - seq_len + 1, seq_len, 4, 4)."""
    from sfm_ros.trajectory import snippet_from_network

    L = est.seq_len
    if len(images) < L:
        raise UsageError(f"{len(images)} frames: the model needs at least seq_len={L}")
    half = L // 2
    out = []
    for start in range(len(images) - L + 1):
        T = est.poses(images[start:start + L])[0].double().cpu().numpy()  # (L-1, 4, 4) T_s_t
        out.append(snippet_from_network(T, half))
    return np.asarray(out)


def _ground_scale(args, frames: _Frames):
    """The node's ``camera_height`` scale for ``--camera-height`` (a forward camera), or None."""
    if args.camera_height is None:
        return None
    if not args.camera_height > 0 or frames.K is None:
        raise UsageError(f"--camera-height must be > 0 m and needs intrinsics (--kitti or --sevenscenes), "
                         f"got {args.camera_height} on {frames.name}")
    from sfm_ros.ground_scale import GroundScale
    from sfm_ros.odometry import camera_extrinsic

    return GroundScale(args.camera_height, camera_extrinsic())


def ground_scaled_increments(gs, depths: list, increments: np.ndarray, K_net: np.ndarray) -> dict:
    """The node's ``camera_height`` scale (a :class:`sfm_ros.ground_scale.GroundScale`) over the
    frames' predicted depths in order: increment ``i`` gets the scale after frame ``i + 1``, as in the
    node. Increments before the first ground plane take the first scale found (the node uses 1
    there). Returns ``rel`` (metric increments), ``scales``, ``step_lengths`` (m) and a ``note``."""
    scales = [gs.update(d, K_net) for d in depths]
    found = [x for x in scales[1:] if x is not None]
    if not found:
        raise UsageError("--camera-height: no ground plane was found in the lower image of any frame")
    first = found[0]
    s = np.array([first if x is None else x for x in scales[1:]])
    rel = np.array(increments, dtype=np.float64)
    rel[:, :3, 3] *= s[:, None]
    note = (f"ground planes accepted {gs.accepted}, rejected {gs.rejected}, none found {gs.failed}; "
            f"scale median {np.median(s):.4g} m/unit, spread {gs.spread:.3f}")
    return {"rel": rel, "scales": s, "step_lengths": np.linalg.norm(rel[:, :3, 3], axis=1), "note": note}


def refine_increments(refiner, views: list, depths: list,
                      increments: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """The node's refinement (:class:`sfm_ros.refine.Refiner`) applied to every network increment
    of a sequence: ``views`` the refiner's views of the frames, ``depths[i]`` the predicted depth
    of frame ``i`` that sets the scale of increment ``i``. Returns the refined increments and how
    many increments each source made."""
    from sfm_ros.refine import refine_sequence

    rel, results = refine_sequence(refiner, views, depths, increments)
    counts: dict[str, int] = {}
    for r in results:
        key = r.used + (f" ({r.why})" if r.why else "")
        counts[key] = counts.get(key, 0) + 1
    return rel, counts


def network_increments(snippets: np.ndarray) -> np.ndarray:
    """Frame-to-frame increments (N-1, 4, 4) from per-window predictions (M, L, 4, 4): every window
    starting at ``k`` estimates the increments ``k .. k+L-2``; the estimates are averaged."""
    M, L = snippets.shape[:2]
    n = M + L - 1
    estimates: list[list[np.ndarray]] = [[] for _ in range(n - 1)]
    for k in range(M):
        S = snippets[k]
        for j in range(L - 1):
            estimates[k + j].append(np.linalg.inv(S[j]) @ S[j + 1])
    return average_increments(estimates)


def _safe(fn, *a, **kw) -> tuple[dict | None, str]:
    """Run an aligned metric with Sim(3); a trajectory that never moves falls back to SE(3)."""
    try:
        return fn(*a, align="sim3", **kw), "sim3"
    except ValueError as exc:
        if "coincide" not in str(exc):
            raise
        return fn(*a, align="se3", **kw), "se3"


def _metrics_of(gt: np.ndarray, traj: np.ndarray | None, snippet: int, delta: int,
                snippets: np.ndarray | None = None, rel: np.ndarray | None = None) -> dict:
    from sfm_ros.trajectory import ate, rpe, snippet_ate

    if snippets is not None:
        sn = snippet_ate(gt, snippets, snippet)
    elif rel is not None:
        sn = snippet_ate(gt, rel, snippet, est_is_relative=True)
    else:
        sn = snippet_ate(gt, traj, snippet, est_is_relative=False)
    out: dict[str, Any] = {"snippet_ate": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in sn.items()}}
    a, align = _safe(ate, gt, traj)
    out["ate"] = dict(a, align=align)
    if len(gt) > delta:
        r, align = _safe(rpe, gt, traj, delta=delta)
        out["rpe"] = dict(r, align=align)
    return out


def evaluate_pose_methods(gt: np.ndarray, methods: dict[str, dict], snippet: int, delta: int,
                          train_gt: list[np.ndarray] | None) -> dict:
    """Metrics of every method plus the zero-motion and (when ``train_gt``) mean-odometry baselines.

    ``methods``: name → ``{"traj": (N,4,4), optional "snippets": (M,L,4,4) or "rel": (N-1,4,4)}``."""
    from sfm_ros.trajectory import mean_odometry_poses, zero_motion_poses

    n = len(gt)
    if n < snippet:
        raise UsageError(f"{n} frames selected: need at least --snippet {snippet}")
    out = {}
    for name, m in methods.items():
        out[name] = _metrics_of(gt, m["traj"], snippet, delta, m.get("snippets"), m.get("rel"))
    out["zero_motion"] = _metrics_of(gt, zero_motion_poses(n), snippet, delta)
    if train_gt:
        out["mean_odometry"] = _metrics_of(gt, mean_odometry_poses(train_gt, n), snippet, delta)
    return out


def _gt_trajectory(args, frames: _Frames | None, stride: int):
    """(gt poses of the selected frames, their stamps or None, all gt poses, selected indices, label)."""
    from sfm_ros.trajectory import read_kitti, read_tum

    if args.gt_tum and args.gt_kitti:
        raise UsageError("give one of --gt-tum and --gt-kitti")
    if args.gt_tum or args.gt_kitti:
        path = args.gt_tum or args.gt_kitti
        if not Path(path).is_file():
            raise UsageError(f"ground truth {path} does not exist")
        try:
            if args.gt_tum:
                stamps, poses = read_tum(path)
            else:
                poses = read_kitti(path)
                stamps = None
        except (ValueError, OSError) as exc:
            raise UsageError(f"ground truth {path}: {exc}") from None
        return poses, stamps, f"{path}"
    if frames is not None and frames.all_gt_poses is not None:
        return frames.all_gt_poses, None, f"{frames.name} poses.txt"
    if frames is not None and frames.sevenscenes is not None:
        ss = frames.sevenscenes
        return ss.poses(), ss.stamps, f"{frames.name} frame-*.pose.txt"
    if args.kitti:
        from sfm_ros.sources import SourceError, read_kitti_odometry

        try:
            seq = read_kitti_odometry(args.kitti, camera=args.kitti_camera)
        except SourceError as exc:
            raise UsageError(f"--kitti: {exc}") from None
        if seq.poses is None:
            raise UsageError(f"--kitti {args.kitti} has no poses.txt")
        return seq.poses, None, f"KITTI {args.kitti} poses.txt"
    if args.sevenscenes:
        ss = read_sevenscenes(args.sevenscenes)
        return ss.poses(), ss.stamps, f"7-Scenes {args.sevenscenes}"
    raise UsageError("no ground truth: give --kitti, --sevenscenes, --gt-kitti FILE or --gt-tum FILE")


def _associate(src_stamps: np.ndarray, dst_stamps: np.ndarray, max_dt: float, what: str) -> np.ndarray:
    """Index in ``dst`` of the nearest stamp for every ``src`` stamp; all must be within ``max_dt``."""
    order = np.argsort(dst_stamps)
    d = dst_stamps[order]
    pos = np.clip(np.searchsorted(d, src_stamps), 1, max(len(d) - 1, 1))
    left = np.clip(pos - 1, 0, len(d) - 1)
    right = np.clip(pos, 0, len(d) - 1)
    pick = np.where(np.abs(d[left] - src_stamps) <= np.abs(d[right] - src_stamps), left, right)
    dt = np.abs(d[pick] - src_stamps)
    bad = int((dt > max_dt).sum())
    if bad:
        raise UsageError(f"{what}: {bad} of {len(src_stamps)} stamps have no ground-truth pose within "
                         f"--max-dt {max_dt:g} s (largest gap {dt.max():.3f} s)")
    return order[pick]


def _mean_odometry_train(args, all_gt: np.ndarray, sel: list[int], stride: int) -> tuple[list[np.ndarray], str]:
    if args.train_frames:
        a, b = parse_frames(args.train_frames, len(all_gt), "--train-frames")
        idx = list(range(a, b, stride))
        if len(idx) < 2:
            raise UsageError(f"--train-frames {args.train_frames} selects fewer than 2 frames (stride {stride})")
        return [all_gt[idx]], f"frames {a}:{b}"
    lo, hi = min(sel), max(sel)
    parts, names = [], []
    before = list(range(lo % stride, lo, stride))
    after = list(range(hi + stride, len(all_gt), stride))
    for idx, name in ((before, f"0:{lo}"), (after, f"{hi + 1}:{len(all_gt)}")):
        if len(idx) >= 2:
            parts.append(all_gt[idx])
            names.append(name)
    if not parts:
        return [all_gt[sel]], "the evaluated frames themselves (optimistic: no other ground truth)"
    return parts, "frames " + " and ".join(names) + " (outside the evaluated range)"


def _run_pose(args) -> dict:
    from sfm_ros.trajectory import chain, read_kitti, read_tum

    if args.snippet < 2:
        raise UsageError(f"--snippet must be >= 2, got {args.snippet}")
    if args.delta < 1:
        raise UsageError(f"--delta must be >= 1, got {args.delta}")
    stride = args.stride if args.stride is not None else (10 if args.sevenscenes else 1)
    if stride < 1:
        raise UsageError(f"--stride must be >= 1, got {stride}")
    if args.pred_tum and args.pred_kitti:
        raise UsageError("give one of --pred-tum and --pred-kitti")
    pred_file = args.pred_tum or args.pred_kitti
    metric = None
    methods: dict[str, dict] = {}
    notes: list[str] = []
    model_info = None
    if pred_file:
        if args.checkpoint or args.images or args.bag:
            raise UsageError("--pred-tum/--pred-kitti replace the model: do not give --checkpoint/--images/--bag")
        if not Path(pred_file).is_file():
            raise UsageError(f"prediction {pred_file} does not exist")
        try:
            p_stamps, p_poses = read_tum(pred_file) if args.pred_tum else (None, read_kitti(pred_file))
        except (ValueError, OSError) as exc:
            raise UsageError(f"prediction {pred_file}: {exc}") from None
        all_gt, g_stamps, gt_what = _gt_trajectory(args, None, stride)
        sel = _select(len(all_gt), args.frames, stride)
        gt = all_gt[sel]
        if p_stamps is not None and g_stamps is not None:
            pick = _associate(np.asarray(g_stamps)[sel], p_stamps, args.max_dt, pred_file)
            traj = p_poses[pick]
        elif len(p_poses) == len(all_gt):
            traj = p_poses[sel]
        elif len(p_poses) == len(sel):
            traj = p_poses
        else:
            raise UsageError(f"{pred_file} has {len(p_poses)} poses: expected {len(all_gt)} (the whole ground "
                             f"truth) or {len(sel)} (the selected frames); TUM files on both sides are "
                             f"matched by stamp")
        methods["prediction"] = {"traj": traj}
        source = pred_file
        stamps = np.asarray(g_stamps)[sel] if g_stamps is not None else np.asarray(sel) / args.fps
    else:
        from sfm_ros.refine import REFINE_MODES, Refiner

        if args.refine not in REFINE_MODES:
            raise UsageError(f"--refine must be one of {', '.join(REFINE_MODES)}, got {args.refine!r}")
        refiner = Refiner(args.refine)
        est = _estimator(args)
        frames = _frame_input(args, stride)
        if args.refine != "none" and frames.K is None:
            raise UsageError(f"--refine {args.refine} needs the camera intrinsics: {frames.name} carries none "
                             "(use --kitti or --sevenscenes)")
        ground = _ground_scale(args, frames)
        images, views, raw_hw = [], [], None
        for im in frames.images():
            raw_hw = raw_hw or im.shape[:2]
            images.append(est.preprocess(im))
            if args.refine != "none":
                views.append(refiner.view(im, frames.K))
        if frames.sevenscenes is not None or frames.gt_poses is not None:
            if args.gt_tum or args.gt_kitti:
                raise UsageError("--kitti/--sevenscenes carry their ground truth: drop --gt-tum/--gt-kitti")
            all_gt, _, gt_what = _gt_trajectory(args, frames, stride)
            sel = frames.indices
        else:
            all_gt, g_stamps, gt_what = _gt_trajectory(args, frames, stride)
            f_stamps = np.asarray(frames.stamps, dtype=np.float64)
            if g_stamps is not None:
                pick = _associate(f_stamps, g_stamps, args.max_dt, frames.name)
                all_gt, sel = all_gt[pick], list(range(len(pick)))
            else:
                if frames.indices is None:  # a bag: positions as streamed
                    if len(all_gt) < len(images):
                        raise UsageError(f"{gt_what} has {len(all_gt)} poses for {len(images)} frames")
                    a, _ = parse_frames(args.frames, None)
                    sel = list(range(a, a + stride * len(images), stride))
                else:
                    sel = frames.indices
                if max(sel) >= len(all_gt):
                    raise UsageError(f"{gt_what} has {len(all_gt)} poses but frame {max(sel)} is evaluated")
        gt = all_gt[sel]
        if len(images) != len(gt):
            raise UsageError(f"{len(images)} frames but {len(gt)} ground-truth poses")
        if len(images) < max(args.snippet, est.seq_len):
            raise UsageError(f"{len(images)} frames selected: need at least {max(args.snippet, est.seq_len)} "
                             f"(--snippet {args.snippet}, model seq_len {est.seq_len})")
        snips = network_snippets(est, images)
        rel = network_increments(snips)
        refined = None
        depths = ([est.depth(im)[0, 0].float().cpu().numpy() for im in images]
                  if args.refine != "none" or ground is not None else None)
        if args.refine != "none":
            rel, refined = refine_increments(refiner, views, depths[:-1], rel)
            notes.append(f"--refine {args.refine}: " + ", ".join(f"{v} increments {k}" for k, v in
                                                                 sorted(refined.items())))
        if ground is not None:
            metric = ground_scaled_increments(ground, depths, rel, est.scale_intrinsics(frames.K, raw_hw))
            notes.append(f"--camera-height {args.camera_height:g}: {metric['note']}")
        traj = chain(rel)
        m: dict[str, Any] = {"traj": traj}
        if est.seq_len == args.snippet and refined is None:
            m["snippets"] = snips
            notes.append(f"snippet ATE: one pose-network prediction per {args.snippet}-frame snippet "
                         f"(model seq_len {est.seq_len}, target in the middle; SfMLearner's protocol)")
        else:
            m["rel"] = rel
            notes.append(f"snippet ATE: model seq_len {est.seq_len} != snippet {args.snippet}: snippets chained "
                         f"from frame-to-frame increments (each averaged over the windows that contain it)")
        methods["model"] = m
        source = f"{args.checkpoint} on {frames.name}"
        model_info = {"seq_len": est.seq_len, "size": [est.height, est.width], "device": str(est.device)}
        stamps = np.asarray(frames.stamps, dtype=np.float64) if frames.stamps is not None and \
            len(frames.stamps) == len(gt) else np.arange(len(gt)) / args.fps
    train_gt, train_what = _mean_odometry_train(args, all_gt, sel, stride)
    if args.train_frames is None:
        notes.append(f"mean odometry from {train_what}")
    results = evaluate_pose_methods(gt, methods, args.snippet, args.delta, train_gt)
    metric_scale = None
    if metric is not None:
        from sfm_ros.trajectory import ate as _ate, relative_poses

        steps_true = np.linalg.norm(relative_poses(gt)[:, :3, 3], axis=1)
        ratio = metric["step_lengths"] / np.maximum(steps_true, 1e-9)
        moving = steps_true > 1e-3
        metric_scale = {
            "camera_height": args.camera_height,
            "step_ratio_median": float(np.median(ratio[moving])) if moving.any() else float("nan"),
            "step_ratio_p25": float(np.percentile(ratio[moving], 25)) if moving.any() else float("nan"),
            "step_ratio_p75": float(np.percentile(ratio[moving], 75)) if moving.any() else float("nan"),
            "ate_se3": _ate(gt, chain(metric["rel"]), align="se3"),
            "scale_median": float(np.median(metric["scales"])),
        }
    written = []
    traj = next(iter(methods.values()))["traj"]
    for out, fmt in ((args.tum, "tum"), (args.kitti_out, "kitti")):
        if out:
            written += _write_traj(out, fmt, stamps, traj, gt)
    return {
        "command": "pose", "source": source, "ground_truth": gt_what, "model": model_info,
        "frames": args.frames, "stride": stride, "count": len(gt), "snippet": args.snippet,
        "delta": args.delta, "mean_odometry_from": train_what, "notes": notes,
        "methods": results, "metric_scale": metric_scale, "written": written,
    }


def _gt_twin(path: Path) -> Path:
    return path.with_name(path.stem + ".gt" + (path.suffix or ".txt"))


def _write_traj(out: str, fmt: str, stamps, traj, gt) -> list[str]:
    from sfm_ros.trajectory import write_kitti, write_tum

    p = Path(out)
    if p.exists() and p.is_dir():
        raise UsageError(f"{out} is a folder; expected a file name")
    g = _gt_twin(p)
    if fmt == "tum":
        write_tum(p, stamps, traj)
        write_tum(g, stamps, gt)
    else:
        write_kitti(p, traj)
        write_kitti(g, gt)
    return [str(p), str(g)]


_METHOD_LABELS = {"model": "model", "prediction": "prediction", "zero_motion": "zero motion",
                  "mean_odometry": "mean odometry"}


def format_pose(res: dict) -> str:
    lines = [f"{PROG} pose: {res['count']} frames (stride {res['stride']}) of {res['source']}; "
             f"ground truth {res['ground_truth']}", ""]
    lines.append(f"| method | snippet ATE ({res['snippet']} frames) mean ± std | ATE RMSE (m) | "
                 f"RPE trans RMSE (m, delta {res['delta']}) | RPE rot RMSE (deg) |")
    lines.append("|---|---:|---:|---:|---:|")
    for name, m in res["methods"].items():
        s = m["snippet_ate"]
        a = m["ate"]
        r = m.get("rpe")
        al = "" if a["align"] == "sim3" else f" ({a['align']})"
        rp = f"{r['trans_rmse']:.4f}{'' if r['align'] == 'sim3' else ' (' + r['align'] + ')'} | " \
             f"{r['rot_rmse_deg']:.3f}" if r else "n/a | n/a"
        lines.append(f"| {_METHOD_LABELS.get(name, name)} | {s['mean']:.4f} ± {s['std']:.4f} | "
                     f"{a['rmse']:.4f}{al} | {rp} |")
    lines.append("")
    ms = res.get("metric_scale")
    if ms:
        lines.append(f"metric scale from camera height {ms['camera_height']:g} m (no scale alignment): predicted / "
                     f"true step length median {ms['step_ratio_median']:.3f} (quartiles {ms['step_ratio_p25']:.3f}-"
                     f"{ms['step_ratio_p75']:.3f}); ATE RMSE {ms['ate_se3']['rmse']:.4f} m (se3)")
        lines.append("")
    lines += [f"- {n}" for n in res["notes"]]
    lines.append("- ATE/RPE after Sim(3) alignment (se3 where the trajectory never moves); "
                 "snippet ATE as SfMLearner's compute_ate (sqrt(sum err^2) / L)")
    for w in res["written"]:
        lines.append(f"- wrote {w}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def run(argv: list[str] | None = None) -> dict:
    """Parse and run; returns the result dict (raises :class:`UsageError` on bad input). The JSON
    target of ``--json`` is under the key ``"json_out"``."""
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.json and Path(args.json).is_dir():
        raise UsageError(f"--json {args.json} is a folder; expected a file name")
    res = _run_depth(args) if args.command == "depth" else _run_pose(args)
    res["json_out"] = args.json
    return res


def main(argv: list[str] | None = None) -> int:
    from sfm_ros.checkpoint import CheckpointError

    try:
        try:
            res = run(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        print(format_depth(res) if res["command"] == "depth" else format_pose(res), flush=True)
        out = res.pop("json_out", None)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(_jsonable(res), indent=1) + "\n")
        return EXIT_OK
    except (UsageError, CheckpointError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # SourceError, BagError, CameraError, metric input checks
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
