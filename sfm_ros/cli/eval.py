"""``sfm_eval``: evaluate SfMLearner depth and ego-motion against ground truth (Zhou et al. 2017).

    sfm_eval depth --checkpoint CKPT --sevenscenes DATA/sevenscenes_redkitchen --frames 400:500
    sfm_eval depth --checkpoint CKPT --images DIR --gt-png GT_DIR [--gt-scale 1000 --gt-invalid 65535]
    sfm_eval depth --checkpoint CKPT --kitti SEQ_DIR --gt-lidar VELO_DIR [--calib calib.txt] --crop garg
    sfm_eval depth --pred-npy PRED_DIR --gt-npy GT_DIR --json metrics.json
    sfm_eval pose --checkpoint CKPT --kitti SEQ_DIR --frames 120:160 --train-frames 0:120 [--snippet 5]
    sfm_eval pose --checkpoint CKPT --sevenscenes DIR --stride 10 --tum pred.txt
    sfm_eval pose --pred-tum pred.txt --gt-tum gt.txt          # or --pred-kitti / --gt-kitti
    sfm_eval pose --bag recorded/ --pred-topic /odom --gt-topic /ground_truth/odom --plot odom.png

depth
-----
Prediction: a checkpoint run on ``--images DIR`` | ``--bag BAG [--topic T]`` (default: the bag's
only image topic) | ``--kitti SEQ_DIR``
(``image_0``/``image_2``) | ``--sevenscenes DIR`` (``frame-*.color.jpg``), or saved predictions
``--pred-npy DIR`` (``*.npy``, any units). Ground truth: ``--gt-png DIR`` (16-bit, ``raw /
--gt-scale`` metres, ``--gt-invalid`` and 0 = no depth), ``--gt-npy DIR`` (metres), ``--gt-lidar DIR``
(KITTI ``*.bin`` Velodyne scans projected with :func:`sfm_ros.evaluation.metrics.project_lidar`; ``--calib`` is
a KITTI odometry ``calib.txt`` (``Tr`` + ``P0..P3``), a KITTI object benchmark ``calib/`` folder
(``NNNNNN.txt`` per scan, matched by name: ``P0..P3``, ``R0_rect``, ``Tr_velo_to_cam``) or one such
file, or a KITTI raw date folder with ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``; default
``SEQ_DIR/calib.txt`` with ``--kitti``, else ``calib/`` beside the scans' folder), implicit for ``--sevenscenes``
(``frame-*.depth.png``, mm, 65535 invalid). Frames and ground-truth files are matched in natural
file order (``--frames A:B`` selects the same positions of both); their counts must agree.
Protocol (:func:`sfm_ros.evaluation.metrics.evaluate_depth`, SfMLearner's ``eval_depth.py``): prediction
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
``--sevenscenes DIR`` (``frame-*.pose.txt``) | ``--images DIR`` / ``--bag BAG [--topic T]`` (ground
truth from ``--gt-kitti FILE``, ``--gt-tum FILE`` or, with ``--bag``, ``--gt-topic TOPIC``: a
``nav_msgs/Odometry`` topic of the bag, e.g. ``/ground_truth/odom`` that ``sfm_bag from-kitti``
writes, or of another bag ``--gt-bag``, matched to the frames by stamp), or a trajectory file
``--pred-tum`` / ``--pred-kitti``, or what the node published: ``--pred-topic TOPIC`` of ``--bag BAG``
(a ``nav_msgs/Odometry`` topic such as ``/odom`` recorded by ``sfm_record``), with the ground truth from
``--gt-tum``/``--gt-kitti``/``--gt-topic``/``--kitti``/``--sevenscenes``. Stamped predictions and
ground truths are paired by stamp (mutually nearest, within ``--max-dt``); a ground-truth pose without
a prediction (the node publishes none while its first window fills) is left out and counted in the
notes, no pair at all is an error; a stampless ground truth (``--gt-kitti``, ``--kitti``) gets stamps
from ``--gt-times FILE`` (KITTI's ``times.txt``) or ``i / --fps``, plus ``--gt-start SEC`` (a bag of
``sfm_bag from-kitti`` starts at 1700000000). The node's ``/odom`` is the pose of ``base_link``:
``--pred-frame base`` (the default for ``--pred-topic``) turns it into the camera's optical frame,
which the ground truths of KITTI, 7-Scenes and ``sfm_bag from-kitti`` are in, by the node's mount
``--camera-xyz`` / ``--camera-rpy`` (its ``camera_xyz`` / ``camera_rpy``; default a forward camera at
base_link's origin); ``--gt-frame base`` does the same for a ground truth of ``base_link``.
``--frames A:B`` and ``--stride S`` (default 1; 10 for ``--sevenscenes``, a 30 Hz hand-held camera)
select the frames ``A, A+S, ...`` below ``B`` (with a prediction file or topic: of the ground truth).

* **Snippet ATE** (the paper's Table 3, :func:`sfm_ros.evaluation.trajectory.snippet_ate`): every window of
  ``--snippet L`` consecutive (selected) frames, stride 1, prediction scaled per snippet, mean ± std.
  With a checkpoint whose ``seq_len == L`` every snippet is *one* pose-network prediction with the
  target in the middle (SfMLearner's protocol, :func:`sfm_ros.evaluation.trajectory.snippet_from_network`).
  Otherwise (e.g. a seq_len-3 model and 5-frame snippets) the snippet is built by chaining
  consecutive frame-to-frame increments: every window the network sees gives an estimate of each
  increment ``T_{c_i}_{c_i+1}`` inside it (a seq_len-3 window centred on ``t`` gives ``i = t-1``
  and ``i = t``, so interior increments are estimated twice); the estimates of an increment are
  averaged (mean translation, mean axis-angle rotation) and the snippet is the product of its
  ``L - 1`` increments.
* **Whole trajectory**: the averaged increments chained from the first selected frame; ATE after a
  Sim(3) Umeyama alignment and RPE over ``--delta`` frames (as ``evo_ape -as`` / ``evo_rpe -as``).
* **Segment drift** (the KITTI odometry benchmark's figure, :mod:`sfm_ros.evaluation.segment_drift`):
  for segments starting at every ``--drift-step`` frame (default 1; the devkit steps 10) and each
  length ``L`` of ``--drift-lengths`` (default: chosen to fit the ground-truth path and printed,
  10, 20, 40, 80 ... m below its length; the devkit's 100..800 m beyond 800 m), the segment ends at
  the first frame whose ground-truth path distance exceeds ``L``; the error of the segment's
  predicted relative pose against the true one gives ``t_err`` = its translation / ``L`` (%) and
  ``r_err`` = its rotation angle / ``L`` (degrees per 100 m), averaged over all segments. Reported
  as published (the trajectory as predicted: metric with ``--camera-height``) and after one global
  scale (the whole trajectory's Sim(3) scale). evo (``--tum`` files) remains a cross-check.
* **Baselines** through the same code: zero motion (identity poses) and mean odometry (the mean
  ground-truth increment of ``--train-frames A:B``, same stride, applied at every step; default: the
  ground-truth frames outside the evaluated range). Sim(3) alignment is undefined for a trajectory
  that never moves: the zero-motion ATE/RPE use an SE(3) alignment (marked ``se3``).

**The node's scale** (``node_scale`` in the JSON; not with ``--camera-height``, whose trajectory is
already scaled): the value of the node's ``scale`` parameter (metres per network unit, when the
ground truth is metric) that makes the path the node publishes on ``/odom`` as long as the ground
truth's: ground-truth path length / the model's path length in network units over the evaluated
frames (``scale``, ``gt_path``, ``pred_path``; the Sim(3) alignment's scale, which earlier versions
printed and which also answers to the path's shape, e.g. smaller where the prediction turns less
than the truth, is ``sim3_scale``). The node multiplies both its depth
and its motion by ``scale``; with ``refine_pose`` the motion's lengths come from the refiner (the
predicted depth's units through its length filter), not from the pose network, so the number holds
for the refinement and pose flip it was run with (``settings``, ``applies_to``): the node's defaults
are ``refine_pose epipolar``, ``pose_flip true``, i.e. ``--pose-flip --refine epipolar`` here; other
settings print a warning (``warning``). It also depends on the frames (the depth's scale changes
from scene to scene: KITTI 00 0:160 33.3, 120:160 26.9 with the shipped model): evaluate the kind of
driving the robot does, the longer the better. A prediction file or topic prints its path-length
ratio instead (``path_lengths``: a node that published it was off by that factor).

``--plot OUT`` draws the prediction (Sim(3)-aligned; a recorded topic or ``--camera-height`` run also
SE(3)-aligned, its scale as published) over the ground truth from above: x-z of a camera-frame ground
truth, x-y of a ``--gt-frame base`` one (:mod:`sfm_ros.evaluation.plot`).

``--tum OUT`` / ``--kitti-out OUT`` write the chained trajectory (and the ground truth of the same
frames as ``OUT`` with ``.gt`` before the suffix) so ``evo_ape tum OUT.gt.txt OUT.txt -as`` reads them.

Intrinsics, for ``--refine``, ``--camera-height`` and ``--adapt``: KITTI's ``calib.txt``, 7-Scenes'
own; for ``--bag`` and ``--images`` as ``sfm_train`` reads them: the bag's CameraInfo (the
``camera_info`` topic next to the image topic), else ``--fx [--fy --cx --cy]`` (pixels of the
input images) or, for ``pose``, ``--calib YAML``; a distorted camera's frames are rectified (not for
``depth``, whose ground truth is of the raw images). The report names where they came from.

Both: ``--json OUT`` writes every number; ``--device auto|cpu|cuda``. Exit codes: 0 done, 1 the
figures are printed but ``--adapt-save`` could not be written (a full disk; its folder is checked
before the evaluation starts), 2 bad command line or input (one line on stderr). The runs
(inference over the frames, scoring) are :mod:`sfm_ros.evaluation.runs`; this module parses,
calls it and prints.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sfm_ros.cli.common import (EXIT_BAD_INPUT, EXIT_OK, Parser, UsageError, add_intrinsics_arguments, check_rate,
                                int_at_least, jsonable, report_error)
from sfm_ros.evaluation.depth_eval import LIDAR_CALIB_LAYOUTS, format_depth_report
from sfm_ros.evaluation.pose_eval import format_pose_report
from sfm_ros.evaluation.runs import run_depth, run_pose

__all__ = ["main", "build_parser", "run", "format_depth", "format_pose"]

PROG = "sfm_eval"

#: ``--adapt-save`` could not be written (a full disk): the figures were printed all the same
EXIT_SAVE_FAILED = 1


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="CKPT", help="sfm_ros checkpoint to evaluate")
    p.add_argument("--images", metavar="DIR", help="image folder (natural file order)")
    p.add_argument("--pattern", help="file pattern of --images (default: common image extensions)")
    p.add_argument("--bag", metavar="BAG", help="ROS 1/2 bag (.bag, bag folder, .mcap, .db3)")
    p.add_argument("--topic", help="image topic of --bag (default: the bag's only image topic)")
    p.add_argument("--kitti", metavar="SEQ_DIR", help="KITTI odometry sequence folder")
    p.add_argument("--kitti-camera", choices=("image_0", "image_1", "image_2", "image_3"),
                   help="KITTI camera folder (default: image_0, else image_2)")
    p.add_argument("--sevenscenes", metavar="DIR", help="7-Scenes sequence folder (frame-*.color.jpg ...)")
    p.add_argument("--frames", metavar="A:B", help="evaluate frames A (inclusive) to B (exclusive)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--threads", type=int_at_least(1), metavar="N", help="torch CPU threads")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")


def _adapt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapt", action="store_true",
                   help="run the node's online adaptation over the frames in order, prequentially (each frame is "
                        "scored before it is learnt), and report it per block next to the frozen model")
    p.add_argument("--adapt-steps", type=int, default=1, metavar="N", help="--adapt: steps per frame (default 1)")
    p.add_argument("--adapt-stride", type=int, default=1, metavar="S",
                   help="--adapt: frames between a learnt window's frames (default 1)")
    p.add_argument("--adapt-block", type=int, default=50, metavar="N", help="--adapt: frames per report block (default 50)")
    p.add_argument("--adapt-save", metavar="CKPT", help="--adapt: write the adapted weights (an ordinary checkpoint)")
    p.add_argument("--adapt-set", action="append", default=[], metavar="NAME=VALUE",
                   help="--adapt: change one adaptation option (sfm_ros.training.adapt.AdaptOptions: lr, max_drift, "
                        "anchor_weight, batch_size, loss_preset, ...); repeatable")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0].strip(),
                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{depth,pose}", parser_class=Parser)
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
    d.add_argument("--calib", metavar="PATH", help=f"for --gt-lidar: {LIDAR_CALIB_LAYOUTS} (default: "
                   f"SEQ_DIR/calib.txt with --kitti, else a calib/ folder beside the --gt-lidar folder)")
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
    add_intrinsics_arguments(d, "intrinsics of --images / --bag (a bag's CameraInfo comes first; --calib above "
                                "is the LiDAR's)", calib_dest=None)
    _adapt_arguments(d)

    q = sub.add_parser("pose", help="snippet ATE, whole-trajectory ATE/RPE and baselines",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(q)
    q.add_argument("--pred-tum", metavar="FILE", help="predicted trajectory, TUM format")
    q.add_argument("--pred-kitti", metavar="FILE", help="predicted trajectory, KITTI format")
    q.add_argument("--gt-tum", metavar="FILE", help="ground-truth trajectory, TUM format")
    q.add_argument("--gt-kitti", metavar="FILE", help="ground-truth trajectory, KITTI format (poses.txt)")
    q.add_argument("--gt-topic", metavar="TOPIC", help="ground truth from a nav_msgs/Odometry TOPIC of --gt-bag, "
                   "else of --bag (e.g. /ground_truth/odom from sfm_bag from-kitti), matched by stamp")
    q.add_argument("--gt-bag", metavar="BAG", help="the bag of --gt-topic when it is not --bag")
    q.add_argument("--pred-topic", metavar="TOPIC",
                   help="predicted trajectory from a nav_msgs/Odometry TOPIC of --bag (e.g. the node's /odom "
                        "recorded by sfm_record; in base_link: see --pred-frame), matched by stamp")
    q.add_argument("--pred-frame", choices=("camera", "base"),
                   help="the prediction's poses are of the camera's optical frame or of the robot's base_link "
                        "(turned into the camera's by --camera-xyz/--camera-rpy); default base for --pred-topic "
                        "(the node's /odom), camera for files")
    q.add_argument("--gt-frame", choices=("camera", "base"), default="camera",
                   help="the ground truth's poses are of the camera's optical frame (default: KITTI, 7-Scenes, "
                        "sfm_bag from-kitti) or of base_link")
    q.add_argument("--camera-xyz", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="for base_link poses: the node's camera_xyz (base_link → optical frame, m; default 0 0 0)")
    q.add_argument("--camera-rpy", type=float, nargs=3, metavar=("R", "P", "Y"),
                   help="for base_link poses: the node's camera_rpy (rad; default -pi/2 0 -pi/2, a forward camera)")
    q.add_argument("--gt-times", metavar="FILE", help="stamps of a ground truth without any (--gt-kitti, "
                   "--kitti): one time a line, e.g. KITTI's times.txt (plus --gt-start)")
    q.add_argument("--gt-start", type=float, metavar="SEC",
                   help="stamp of a stampless ground truth's first pose: SEC + i / --fps (or SEC + --gt-times); "
                        "sfm_bag from-kitti's bags start at 1700000000")
    q.add_argument("--fps", type=float, default=10.0, help="stamps of frames/poses without times (default 10)")
    q.add_argument("--max-dt", type=float, default=0.02, help="stamp association tolerance in s (default 0.02)")
    q.add_argument("--stride", type=int, default=None, help="frame step (default 1; 10 with --sevenscenes)")
    q.add_argument("--snippet", type=int, default=5, help="snippet length of the snippet ATE (default 5)")
    q.add_argument("--delta", type=int, default=1, help="RPE frame delta (default 1)")
    q.add_argument("--drift-lengths", metavar="L,L,...",
                   help="segment lengths of the segment drift in metres (default: chosen to fit the path, "
                        "e.g. 10,20,40 on a 52 m one; the devkit's 100..800 beyond 800 m)")
    q.add_argument("--drift-step", type=int, default=1, metavar="N",
                   help="segment drift: a segment starts at every N-th frame (default 1; the devkit's is 10)")
    q.add_argument("--camera-height", type=float, metavar="M",
                   help="metric scale as the node's camera_height does (ground plane in the predicted depth, "
                        "forward camera): also reports the trajectory with no scale alignment and the "
                        "ratio of predicted to true step length")
    q.add_argument("--no-ground-tilt", dest="ground_tilt", action="store_false",
                   help="with --camera-height and --refine epipolar: the mount's nominal down, as the node's "
                        "ground_tilt false (default: the camera's tilt to the ground measured from its "
                        "direction of travel, as the node does)")
    q.add_argument("--no-rotation-window", dest="rotation_window", action="store_false",
                   help="with --refine epipolar: each step's own rotation, as the node's rotation_window false "
                        "(default: each rotation also measured against the frames 2, 4 and 8 steps back, as the "
                        "node does)")
    q.add_argument("--pose-flip", action="store_true",
                   help="average the pose network's motion with the mirrored window's (the node's pose_flip, "
                        "on there by default; off here so that the network alone is measured)")
    q.add_argument("--refine", default="none", metavar="MODE",
                   help="refine each frame-to-frame motion with the node's refiner (refine_pose): none | "
                        "epipolar | photometric | epipolar+photometric (default none; needs intrinsics: "
                        "--kitti, --sevenscenes and a bag's CameraInfo carry them, else --fx or --calib). The "
                        "network motion it starts from is the windows' average here, the newest window's "
                        "in the node; it only matters where the refiner keeps the network's translation")
    q.add_argument("--train-frames", metavar="A:B",
                   help="ground-truth frames of the mean-odometry baseline (default: outside --frames)")
    q.add_argument("--tum", metavar="OUT", help="write the predicted trajectory (TUM) and OUT's .gt twin")
    q.add_argument("--kitti-out", metavar="OUT", help="write the predicted trajectory (KITTI) and OUT's .gt twin")
    q.add_argument("--plot", metavar="OUT", help="plot the trajectories from above (x-z of a camera-frame ground "
                   "truth, x-y of a base_link one) to OUT (.png, .svg, .pdf)")
    add_intrinsics_arguments(q, "intrinsics of --images / --bag (a bag's CameraInfo comes first)",
                             calib_dest="camera_calib")
    _adapt_arguments(q)
    return p


# ------------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------------
def format_depth(res: dict) -> str:
    """The ``sfm_eval depth`` report of :func:`sfm_ros.evaluation.runs.run_depth`'s result."""
    if "blocks" in res:
        from sfm_ros.evaluation.adapt_eval import format_adaptation

        return format_depth_report(res, PROG) + "\n" + format_adaptation(res)
    return format_depth_report(res, PROG)


def format_pose(res: dict) -> str:
    """The ``sfm_eval pose`` report of :func:`sfm_ros.evaluation.runs.run_pose`'s result."""
    if res.get("adapt"):
        from sfm_ros.evaluation.adapt_eval import format_pose_adaptation

        return format_pose_adaptation(res, PROG)
    return format_pose_report(res, PROG)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def run(argv: list[str] | None = None) -> dict:
    """Parse and run; returns the result dict (raises ``ValueError``, :class:`UsageError` among them,
    on bad input). The JSON target of ``--json`` is under the key ``"json_out"``."""
    args = build_parser().parse_args(argv)
    check_rate(getattr(args, "fps", None))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    for flag, attr, folder in (("--json", "json", False), ("--save-npy", "save_npy", True),
                               ("--tum", "tum", False), ("--kitti-out", "kitti_out", False)):
        if getattr(args, attr, None):  # checked before the evaluation, so that its figures are not lost
            _check_output(Path(getattr(args, attr)), flag, folder)
    if getattr(args, "plot", None):  # checked before the evaluation
        from sfm_ros.evaluation.plot import check_plot_path

        try:
            check_plot_path(args.plot)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "adapt_save", None):  # checked before the evaluation, not after it
        from sfm_ros.training.run_folder import check_writable
        from sfm_ros.core.checkpoint import remove_stale_temp_files

        save = Path(args.adapt_save)
        if save.is_dir():
            raise UsageError(f"--adapt-save {save} is a folder; expected a checkpoint file name")
        check_writable(save.parent, flag="--adapt-save", name=str(save))
        remove_stale_temp_files(save)
        _check_free_space(save, Path(args.checkpoint) if args.checkpoint else None)
    res = run_depth(args) if args.command == "depth" else run_pose(args)
    res["json_out"] = args.json
    return res


def _check_output(path: Path, flag: str, folder: bool) -> None:
    """``flag``'s output ``path`` (a folder when ``folder``, else a file) can be made: not a file
    where a folder goes nor a folder where a file goes, and no file where one of its parent folders
    would be (UsageError)."""
    from sfm_ros.training.run_folder import nearest_existing

    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; expected a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; expected a file name")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file; expected a folder there")


def _check_free_space(save: Path, like: Path | None) -> None:
    """``--adapt-save``'s disk must hold a checkpoint the size of ``like`` (the evaluated one) twice
    over (the new file is written beside the old one, then renamed)."""
    import shutil

    if like is None or not like.is_file():
        return
    from sfm_ros.training.run_folder import nearest_existing

    probe = nearest_existing(save.parent)
    need, free = 2 * like.stat().st_size, shutil.disk_usage(probe).free
    if free < need:
        raise UsageError(f"--adapt-save {save}: {free / 1e6:.0f} MB free on its disk; expected at least "
                         f"{need / 1e6:.0f} MB (twice the size of {like})")


def main(argv: list[str] | None = None) -> int:
    from sfm_ros.core.checkpoint import CheckpointError

    try:
        try:
            res = run(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        print(format_depth(res) if res["command"] == "depth" else format_pose(res), flush=True)
        out = res.pop("json_out", None)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(jsonable(res), indent=1) + "\n")
        save_error = (res.get("adapt_settings") or {}).get("save_error")
        if save_error:  # the figures are printed (and in --json); the file is not there
            print(f"{PROG}: error: --adapt-save: {save_error}", file=sys.stderr, flush=True)
            return EXIT_SAVE_FAILED
        return EXIT_OK
    except (CheckpointError, OSError, ValueError) as exc:
        # UsageError, InputError, SourceError, BagError, CameraError, metric input checks
        return report_error(PROG, exc, EXIT_BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
