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
writes, matched to the frames by stamp), or a trajectory file ``--pred-tum`` / ``--pred-kitti`` with
the ground truth from ``--gt-tum``/``--gt-kitti``/``--gt-topic``/``--kitti``/``--sevenscenes``.
``--frames A:B`` and ``--stride S`` (default 1; 10 for ``--sevenscenes``, a 30 Hz hand-held camera)
select the frames ``A, A+S, ...`` below ``B``.

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
* **Baselines** through the same code: zero motion (identity poses) and mean odometry (the mean
  ground-truth increment of ``--train-frames A:B``, same stride, applied at every step; default: the
  ground-truth frames outside the evaluated range). Sim(3) alignment is undefined for a trajectory
  that never moves: the zero-motion ATE/RPE use an SE(3) alignment (marked ``se3``).

The model's Sim(3) alignment scale is printed as the ready value of the node's ``scale`` parameter
(metres per network unit, when the ground truth is metric; not with ``--camera-height``, whose
trajectory is already scaled).

``--tum OUT`` / ``--kitti-out OUT`` write the chained trajectory (and the ground truth of the same
frames as ``OUT`` with ``.gt`` before the suffix) so ``evo_ape tum OUT.gt.txt OUT.txt -as`` reads them.

Both: ``--json OUT`` writes every number; ``--device auto|cpu|cuda``. Exit codes: 0 done, 1 the
figures are printed but ``--adapt-save`` could not be written (a full disk; its folder is checked
before the evaluation starts), 2 bad command line or input (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from sfm_ros.cli.common import EXIT_BAD_INPUT, EXIT_OK, Parser, UsageError, jsonable, report_error

#: ``--adapt-save`` could not be written (a full disk): the figures were printed all the same
EXIT_SAVE_FAILED = 1
from sfm_ros.evaluation.depth_eval import (LIDAR_CALIB_LAYOUTS, evaluate_depth_sequence, format_depth_report,
                                           ground_truth_depth, npy_predictions)
from sfm_ros.data.inputs import SelectedFrames, select_frames
from sfm_ros.evaluation.pose_eval import (evaluate_pose_methods, format_pose_report, metric_scale_summary,
                                          model_pose_method, node_scale, write_trajectory_pair)
from sfm_ros.evaluation.pose_truth import file_prediction, frames_truth, ground_truth_trajectory, mean_odometry_truth

__all__ = ["main", "build_parser", "run", "format_depth", "format_pose"]

PROG = "sfm_eval"


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
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
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
    _adapt_arguments(d)

    q = sub.add_parser("pose", help="snippet ATE, whole-trajectory ATE/RPE and baselines",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(q)
    q.add_argument("--pred-tum", metavar="FILE", help="predicted trajectory, TUM format")
    q.add_argument("--pred-kitti", metavar="FILE", help="predicted trajectory, KITTI format")
    q.add_argument("--gt-tum", metavar="FILE", help="ground-truth trajectory, TUM format")
    q.add_argument("--gt-kitti", metavar="FILE", help="ground-truth trajectory, KITTI format (poses.txt)")
    q.add_argument("--gt-topic", metavar="TOPIC", help="with --bag: ground truth from the bag's nav_msgs/Odometry "
                   "TOPIC (e.g. /ground_truth/odom from sfm_bag from-kitti), matched by stamp")
    q.add_argument("--fps", type=float, default=10.0, help="stamps of frames/poses without times (default 10)")
    q.add_argument("--max-dt", type=float, default=0.02, help="stamp association tolerance in s (default 0.02)")
    q.add_argument("--stride", type=int, default=None, help="frame step (default 1; 10 with --sevenscenes)")
    q.add_argument("--snippet", type=int, default=5, help="snippet length of the snippet ATE (default 5)")
    q.add_argument("--delta", type=int, default=1, help="RPE frame delta (default 1)")
    q.add_argument("--camera-height", type=float, metavar="M",
                   help="metric scale as the node's camera_height does (ground plane in the predicted depth, "
                        "forward camera): also reports the trajectory with no scale alignment and the "
                        "ratio of predicted to true step length")
    q.add_argument("--pose-flip", action="store_true",
                   help="average the pose network's motion with the mirrored window's (the node's pose_flip, "
                        "on there by default; off here so that the network alone is measured)")
    q.add_argument("--refine", default="none", metavar="MODE",
                   help="refine each frame-to-frame motion with the node's refiner (refine_pose): none | "
                        "epipolar | photometric | epipolar+photometric (default none; needs intrinsics: "
                        "--kitti and --sevenscenes carry them). The "
                        "network motion it starts from is the windows' average here, the newest window's "
                        "in the node; it only matters where the refiner keeps the network's translation")
    q.add_argument("--train-frames", metavar="A:B",
                   help="ground-truth frames of the mean-odometry baseline (default: outside --frames)")
    q.add_argument("--tum", metavar="OUT", help="write the predicted trajectory (TUM) and OUT's .gt twin")
    q.add_argument("--kitti-out", metavar="OUT", help="write the predicted trajectory (KITTI) and OUT's .gt twin")
    _adapt_arguments(q)
    return p


def _estimator(args):
    from sfm_ros.core.checkpoint import CheckpointError
    from sfm_ros.runtime.inference import Estimator

    if not args.checkpoint:
        raise UsageError("give --checkpoint CKPT (the model to evaluate)")
    try:
        return Estimator(args.checkpoint, device=args.device, pose_flip=getattr(args, "pose_flip", False))
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------------
def _run_depth(args) -> dict:
    max_depth = args.max_depth if args.max_depth is not None else (10.0 if args.sevenscenes else 80.0)
    if not 0 <= args.min_depth < max_depth:
        raise UsageError(f"need 0 <= --min-depth < --max-depth, got {args.min_depth:g}, {max_depth:g}")
    crop = None if args.crop == "none" else args.crop
    if args.pred_npy:
        preds, gt_what, gts = npy_predictions(args)
        source = f"predictions {args.pred_npy}"
        model = None
    else:
        est = _estimator(args)
        frames = select_frames(args)
        gt_what, gts = ground_truth_depth(args, frames)
        if frames.count is not None and frames.count != len(gts):
            raise UsageError(f"{frames.count} frames but {len(gts)} ground-truth maps")
        save = Path(args.save_npy) if args.save_npy else None
        if save:
            save.mkdir(parents=True, exist_ok=True)

        if args.adapt:
            if args.camera_height is not None or save:
                raise UsageError("--adapt scores with median scaling: do not give --camera-height or --save-npy")
            from sfm_ros.evaluation.adapt_eval import evaluate_adaptation

            res = evaluate_adaptation(est, frames.images(), frames.K, gts, args.min_depth, max_depth, crop,
                                      args.adapt_stride, args.adapt_steps, args.adapt_block,
                                      opts=_adapt_options(args), started_from=args.checkpoint,
                                      save=args.adapt_save)
            return {"command": "depth", "source": f"{args.checkpoint} on {frames.name}, adapting",
                    "ground_truth": gt_what, "model": None,
                    "settings": {"min_depth": args.min_depth, "max_depth": max_depth, "crop": args.crop,
                                 "median_scaling": True, "frames": args.frames, "camera_height": None}, **res}
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
    res = evaluate_depth_sequence(preds, gts, args.min_depth, max_depth, median_scaling, crop, metric)
    return {
        "command": "depth", "source": source, "ground_truth": gt_what, "model": model,
        "settings": {"min_depth": args.min_depth, "max_depth": max_depth, "crop": args.crop,
                     "median_scaling": median_scaling, "frames": args.frames,
                     "camera_height": getattr(args, "camera_height", None) if metric else None},
        **res,
    }


def format_depth(res: dict) -> str:
    if "blocks" in res:
        from sfm_ros.evaluation.adapt_eval import format_adaptation

        return format_depth_report(res, PROG) + "\n" + format_adaptation(res)
    return format_depth_report(res, PROG)


# ------------------------------------------------------------------------------------------------
# pose
# ------------------------------------------------------------------------------------------------
def _ground_scale(args, frames: SelectedFrames):
    """The node's ``camera_height`` scale for ``--camera-height`` (a forward camera), or None."""
    if args.camera_height is None:
        return None
    if not args.camera_height > 0 or frames.K is None:
        raise UsageError(f"--camera-height must be > 0 m and needs intrinsics (--kitti or --sevenscenes), "
                         f"got {args.camera_height} on {frames.name}")
    from sfm_ros.runtime.ground_scale import GroundScale
    from sfm_ros.runtime.odometry import camera_extrinsic

    return GroundScale(args.camera_height, camera_extrinsic())


def _run_pose(args) -> dict:
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
        traj, all_gt, sel, stamps, gt_what = file_prediction(args, stride)
        gt = all_gt[sel]
        methods["prediction"] = {"traj": traj}
        source = pred_file
    else:
        from sfm_ros.runtime.motion import REFINE_MODES, Refiner

        if args.refine not in REFINE_MODES:
            raise UsageError(f"--refine must be one of {', '.join(REFINE_MODES)}, got {args.refine!r}")
        refiner = Refiner(args.refine)
        est = _estimator(args)
        frames = select_frames(args, stride)
        if args.refine != "none" and frames.K is None:
            raise UsageError(f"--refine {args.refine} needs the camera intrinsics: {frames.name} carries none "
                             "(use --kitti or --sevenscenes)")
        if args.adapt:
            return _run_pose_adapt(args, est, frames)
        ground = _ground_scale(args, frames)
        images, views, raw_hw = [], [], None
        for im in frames.images():
            raw_hw = raw_hw or im.shape[:2]
            images.append(est.preprocess(im))
            if args.refine != "none":
                views.append(refiner.view(im, frames.K))
        all_gt, sel, gt_what = frames_truth(args, frames, len(images), stride)
        gt = all_gt[sel]
        if len(images) < max(args.snippet, est.seq_len):
            raise UsageError(f"{len(images)} frames selected: need at least {max(args.snippet, est.seq_len)} "
                             f"(--snippet {args.snippet}, model seq_len {est.seq_len})")
        m, model_notes, metric = model_pose_method(est, images, args.snippet, refiner, views, ground,
                                                   frames.K, raw_hw)
        notes += model_notes
        if est.pose_flip:
            notes.append("--pose-flip: each window's motion averaged with the mirrored window's (the node's pose_flip)")
        methods["model"] = m
        source = f"{args.checkpoint} on {frames.name}"
        model_info = {"seq_len": est.seq_len, "size": [est.height, est.width], "device": str(est.device)}
        stamps = np.asarray(frames.stamps, dtype=np.float64) if frames.stamps is not None and \
            len(frames.stamps) == len(gt) else np.arange(len(gt)) / args.fps
    train_gt, train_what = mean_odometry_truth(args, all_gt, sel, stride)
    if args.train_frames is None:
        notes.append(f"mean odometry from {train_what}")
    results = evaluate_pose_methods(gt, methods, args.snippet, args.delta, train_gt)
    metric_scale = metric_scale_summary(gt, metric, args.camera_height) if metric is not None else None
    written = []
    traj = next(iter(methods.values()))["traj"]
    for out, fmt in ((args.tum, "tum"), (args.kitti_out, "kitti")):
        if out:
            written += write_trajectory_pair(out, fmt, stamps, traj, gt)
    return {
        "command": "pose", "source": source, "ground_truth": gt_what, "model": model_info,
        "frames": args.frames, "stride": stride, "count": len(gt), "snippet": args.snippet,
        "delta": args.delta, "mean_odometry_from": train_what, "notes": notes,
        "methods": results, "metric_scale": metric_scale, "written": written,
        "node_scale": node_scale(results) if metric is None else None,
    }


def _adapt_options(args):
    from sfm_ros.training.adapt import AdaptOptions

    opts = AdaptOptions()
    for text in args.adapt_set:
        try:
            opts.override(text)
        except ValueError as e:
            raise UsageError(f"--adapt-set: {e}") from None
    return opts


def _run_pose_adapt(args, est, frames) -> dict:
    if frames.sevenscenes is None and frames.gt_poses is None:
        raise UsageError("pose --adapt needs --kitti or --sevenscenes (their ground truth, frame by frame)")
    if args.refine != "none" or args.camera_height is not None:
        raise UsageError("pose --adapt scores the network's snippets: do not give --refine or --camera-height")
    from sfm_ros.evaluation.adapt_eval import evaluate_pose_adaptation

    all_gt, _, _ = ground_truth_trajectory(args, frames)
    res = evaluate_pose_adaptation(est, frames.images(), frames.K, all_gt[frames.indices], args.adapt_stride,
                                   args.adapt_steps, args.adapt_block, opts=_adapt_options(args),
                                   started_from=args.checkpoint, save=args.adapt_save)
    return res | {"source": f"{args.checkpoint} on {frames.name}, adapting"}


def format_pose(res: dict) -> str:
    if res.get("adapt"):
        from sfm_ros.evaluation.adapt_eval import format_pose_adaptation

        return format_pose_adaptation(res, PROG)
    return format_pose_report(res, PROG)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def run(argv: list[str] | None = None) -> dict:
    """Parse and run; returns the result dict (raises :class:`UsageError` on bad input). The JSON
    target of ``--json`` is under the key ``"json_out"``."""
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.json and Path(args.json).is_dir():
        raise UsageError(f"--json {args.json} is a folder; expected a file name")
    if getattr(args, "adapt_save", None):  # checked before the evaluation, not after it
        from sfm_ros.cli.train_run import check_writable
        from sfm_ros.core.checkpoint import remove_stale_temp_files

        save = Path(args.adapt_save)
        if save.is_dir():
            raise UsageError(f"--adapt-save {save} is a folder; expected a checkpoint file name")
        check_writable(save.parent, flag="--adapt-save", name=str(save))
        remove_stale_temp_files(save)
        _check_free_space(save, Path(args.checkpoint) if args.checkpoint else None)
    res = _run_depth(args) if args.command == "depth" else _run_pose(args)
    res["json_out"] = args.json
    return res


def _check_free_space(save: Path, like: Path | None) -> None:
    """``--adapt-save``'s disk must hold a checkpoint the size of ``like`` (the evaluated one) twice
    over (the new file is written beside the old one, then renamed)."""
    import shutil

    if like is None or not like.is_file():
        return
    from sfm_ros.cli.train_run import nearest_existing

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
    except (CheckpointError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        # UsageError, InputError, SourceError, BagError, CameraError, metric input checks
        return report_error(PROG, exc, EXIT_BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
