"""The runs behind ``sfm_eval``: a checkpoint's inference over the selected frames (or saved
predictions), scored against the ground truth, as one result dict per command.

:func:`run_depth` and :func:`run_pose` take the ``argparse`` namespace of ``sfm_eval depth`` /
``sfm_eval pose`` (the flags are documented there) and return what the command prints and writes
as JSON; the loops over frames, the node's camera-height scale (:func:`ground_scale`) and the
online-adaptation runs live here, the scoring in :mod:`sfm_ros.evaluation.depth_eval`,
:mod:`sfm_ros.evaluation.pose_eval` and :mod:`sfm_ros.evaluation.adapt_eval`. Bad input raises
``ValueError`` (a checkpoint that cannot be loaded too) with a one-line message naming the flags.
ROS-free.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sfm_ros.data.inputs import SelectedFrames
from sfm_ros.evaluation.depth_eval import evaluate_depth_sequence, ground_truth_depth, npy_predictions
from sfm_ros.evaluation.frames import select_eval_frames
from sfm_ros.evaluation.pose_eval import (evaluate_pose_methods, metric_scale_summary, model_pose_method,
                                          node_scale, path_lengths, write_trajectory_pair)
from sfm_ros.evaluation.pose_truth import file_prediction, frames_truth, ground_truth_trajectory, mean_odometry_truth

__all__ = ["load_estimator", "check_camera_height", "ground_scale", "adapt_options", "run_depth", "run_pose",
           "drift_settings", "run_pose_adapt"]


def load_estimator(args: Any):
    """The :class:`sfm_ros.runtime.inference.Estimator` of ``--checkpoint`` on ``--device`` (with
    ``--pose-flip`` where the command has it)."""
    from sfm_ros.core.checkpoint import CheckpointError
    from sfm_ros.runtime.inference import Estimator

    if not args.checkpoint:
        raise ValueError("give --checkpoint CKPT (the model to evaluate)")
    try:
        return Estimator(args.checkpoint, device=args.device, pose_flip=getattr(args, "pose_flip", False))
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None


def check_camera_height(args: Any) -> list[str]:
    """``["--camera-height H"]`` (what needs the intrinsics) when ``--camera-height`` is given and
    > 0, ``[]`` when it is not given; ``ValueError`` otherwise."""
    if args.camera_height is None:
        return []
    if not args.camera_height > 0:
        raise ValueError(f"--camera-height must be > 0 m, got {args.camera_height}")
    return [f"--camera-height {args.camera_height:g}"]


def ground_scale(args: Any, frames: SelectedFrames):
    """The node's ``camera_height`` scale for ``--camera-height`` (a forward camera), or None."""
    if not check_camera_height(args):
        return None
    if frames.K is None:
        raise ValueError(f"--camera-height {args.camera_height:g} needs the camera intrinsics: {frames.name} "
                         f"carries none (give --fx [--fy --cx --cy])")
    from sfm_ros.runtime.ground_scale import GroundScale
    from sfm_ros.runtime.odometry import camera_extrinsic

    return GroundScale(args.camera_height, camera_extrinsic())


def adapt_options(args: Any):
    """:class:`sfm_ros.training.adapt.AdaptOptions` with every ``--adapt-set NAME=VALUE`` applied."""
    from sfm_ros.training.adapt import AdaptOptions

    opts = AdaptOptions()
    for text in args.adapt_set:
        try:
            opts.override(text)
        except ValueError as e:
            raise ValueError(f"--adapt-set: {e}") from None
    return opts


# ------------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------------
def run_depth(args: Any) -> dict:
    """``sfm_eval depth``: the model's (or ``--pred-npy``'s) depth of every selected frame against
    its ground truth; with ``--adapt`` the prequential adaptation run beside the frozen model."""
    max_depth = args.max_depth if args.max_depth is not None else (10.0 if args.sevenscenes else 80.0)
    if not 0 <= args.min_depth < max_depth:
        raise ValueError(f"need 0 <= --min-depth < --max-depth, got {args.min_depth:g}, {max_depth:g}")
    crop = None if args.crop == "none" else args.crop
    if args.pred_npy:
        preds, gt_what, gts = npy_predictions(args)
        source = f"predictions {args.pred_npy}"
        model = None
    else:
        needs = check_camera_height(args) + (["--adapt"] if args.adapt else [])
        est = load_estimator(args)
        frames, _ = select_eval_frames(args, needs=needs, raw_images=True)
        gt_what, gts = ground_truth_depth(args, frames)
        if frames.count is not None and frames.count != len(gts):
            raise ValueError(f"{frames.count} frames but {len(gts)} ground-truth maps")
        save = Path(args.save_npy) if args.save_npy else None
        if save:
            save.mkdir(parents=True, exist_ok=True)

        if args.adapt:
            if args.camera_height is not None or save:
                raise ValueError("--adapt scores with median scaling: do not give --camera-height or --save-npy")
            from sfm_ros.evaluation.adapt_eval import evaluate_adaptation

            res = evaluate_adaptation(est, frames.images(), frames.K, gts, args.min_depth, max_depth, crop,
                                      args.adapt_stride, args.adapt_steps, args.adapt_block,
                                      opts=adapt_options(args), started_from=args.checkpoint,
                                      save=args.adapt_save)
            return {"command": "depth", "source": f"{args.checkpoint} on {frames.name}, adapting",
                    "ground_truth": gt_what, "model": None,
                    "settings": {"min_depth": args.min_depth, "max_depth": max_depth, "crop": args.crop,
                                 "median_scaling": True, "frames": args.frames, "camera_height": None}, **res}
        ground = ground_scale(args, frames)

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


# ------------------------------------------------------------------------------------------------
# pose
# ------------------------------------------------------------------------------------------------
def run_pose(args: Any) -> dict:
    """``sfm_eval pose``: the model's (or a trajectory file's) motion over the selected frames,
    scored with the baselines (:func:`sfm_ros.evaluation.pose_eval.evaluate_pose_methods`); with
    ``--adapt`` the prequential adaptation run (:func:`run_pose_adapt`)."""
    if args.snippet < 2:
        raise ValueError(f"--snippet must be >= 2, got {args.snippet}")
    if args.delta < 1:
        raise ValueError(f"--delta must be >= 1, got {args.delta}")
    stride = args.stride if args.stride is not None else (10 if args.sevenscenes else 1)
    if stride < 1:
        raise ValueError(f"--stride must be >= 1, got {stride}")
    pred_topic = getattr(args, "pred_topic", None)
    metric = None
    methods: dict[str, dict] = {}
    notes: list[str] = []
    model_info = None
    if args.pred_tum or args.pred_kitti or pred_topic:
        traj, all_gt, sel, stamps, gt_what, source, pred_notes = file_prediction(args, stride)
        notes += pred_notes
        gt = all_gt[sel]
        methods["prediction"] = {"traj": traj}
    else:
        from sfm_ros.runtime.motion import EPIPOLAR_MODES, REFINE_MODES, Refiner

        if getattr(args, "pred_frame", None):
            raise ValueError(f"--pred-frame {args.pred_frame} says which frame a prediction's poses are of: it goes "
                             "with --pred-topic, --pred-tum or --pred-kitti (a --checkpoint run predicts the "
                             "camera's poses itself)")
        if args.refine not in REFINE_MODES:
            raise ValueError(f"--refine must be one of {', '.join(REFINE_MODES)}, got {args.refine!r}")
        refiner = Refiner(args.refine, ground_tilt=getattr(args, "ground_tilt", True),
                          rotation_window=getattr(args, "rotation_window", True))
        needs = ([f"--refine {args.refine}"] if args.refine != "none" else []) + check_camera_height(args)
        est = load_estimator(args)
        frames, notes = select_eval_frames(args, stride, needs)  # with intrinsics where needed
        if args.adapt:
            return run_pose_adapt(args, est, frames)
        ground = ground_scale(args, frames)
        images, views, raw_hw = [], [], None
        for im in frames.images():
            raw_hw = raw_hw or im.shape[:2]
            images.append(est.preprocess(im))
            if args.refine != "none":
                views.append(refiner.view(im, frames.K))
        all_gt, sel, gt_what = frames_truth(args, frames, len(images), stride)
        gt = all_gt[sel]
        if len(images) < max(args.snippet, est.seq_len):
            raise ValueError(f"{len(images)} frames selected: need at least {max(args.snippet, est.seq_len)} "
                             f"(--snippet {args.snippet}, model seq_len {est.seq_len})")
        m, model_notes, metric = model_pose_method(est, images, args.snippet, refiner, views, ground,
                                                   frames.K, raw_hw)
        notes += model_notes
        if ground is not None and refiner.ground_tilt and refiner.mode in EPIPOLAR_MODES:
            notes.append(f"the camera's tilt to the ground: {refiner.tilt.tilt_deg:.2f} deg at the end, from "
                         f"{len(refiner.tilt.measurements)} chords' directions of travel (the node's ground_tilt; "
                         "--no-ground-tilt: the mount's down)")
        if refiner.mode in EPIPOLAR_MODES:
            notes.append("each rotation also measured against the frames 2, 4 and 8 steps back, those that agree "
                         "averaged (the node's rotation_window; --no-rotation-window: each step's own)"
                         if refiner.rotation_window else
                         "--no-rotation-window: each step's own rotation (the node's rotation_window false)")
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
    drift = drift_settings(args, gt)
    results = evaluate_pose_methods(gt, methods, args.snippet, args.delta, train_gt,
                                    (tuple(drift["lengths"]), drift["step"]))
    metric_scale = metric_scale_summary(gt, metric, args.camera_height) if metric is not None else None
    written = []
    traj = next(iter(methods.values()))["traj"]
    for out, fmt in ((args.tum, "tum"), (args.kitti_out, "kitti")):
        if out:
            written += write_trajectory_pair(out, fmt, stamps, traj, gt)
    plot = None
    if getattr(args, "plot", None):
        from sfm_ros.evaluation.plot import plot_trajectories

        plot = plot_trajectories(args.plot, gt, traj, f"{source}\nagainst {gt_what}", getattr(args, "gt_frame", None)
                                 or "camera", as_published=bool(pred_topic) or metric is not None)
    settings = {"refine_pose": getattr(args, "refine", "none"), "pose_flip": bool(getattr(args, "pose_flip", False))}
    return {
        "command": "pose", "source": source, "ground_truth": gt_what, "model": model_info,
        "frames": args.frames, "stride": stride, "count": len(gt), "snippet": args.snippet,
        "delta": args.delta, "mean_odometry_from": train_what, "notes": notes,
        "methods": results, "segment_drift": drift, "metric_scale": metric_scale, "written": written,
        "node_scale": node_scale(results, gt, traj, settings, frames=args.frames) if metric is None else None,
        "path_lengths": path_lengths(gt, traj), "plot": plot,
    }


def drift_settings(args: Any, gt: np.ndarray) -> dict:
    """The segment drift's ``lengths`` (``--drift-lengths``, else chosen to fit the ground-truth
    path: :func:`sfm_ros.evaluation.segment_drift.choose_lengths`), start ``step``
    (``--drift-step``) and the ``path_length``."""
    from sfm_ros.evaluation.segment_drift import choose_lengths, path_distances

    step = getattr(args, "drift_step", 1)
    if step < 1:
        raise ValueError(f"--drift-step must be >= 1, got {step}")
    path = float(path_distances(gt)[-1])
    text = getattr(args, "drift_lengths", None)
    if text is None:
        return {"lengths": list(choose_lengths(path)), "step": step, "path_length": path}
    try:
        lengths = [float(x) for x in text.split(",")]
    except ValueError:
        lengths = []
    if not lengths or not all(np.isfinite(L) and L > 0 for L in lengths):
        raise ValueError(f"--drift-lengths {text!r} must be metres > 0 separated by commas, e.g. 10,20,40")
    return {"lengths": lengths, "step": step, "path_length": path}


def run_pose_adapt(args: Any, est, frames: SelectedFrames) -> dict:
    """``sfm_eval pose --adapt``: the network's snippets scored prequentially while it adapts
    (:func:`sfm_ros.evaluation.adapt_eval.evaluate_pose_adaptation`); KITTI or 7-Scenes frames."""
    if frames.sevenscenes is None and frames.gt_poses is None:
        raise ValueError("pose --adapt needs --kitti or --sevenscenes (their ground truth, frame by frame)")
    if args.refine != "none" or args.camera_height is not None:
        raise ValueError("pose --adapt scores the network's snippets: do not give --refine or --camera-height")
    from sfm_ros.evaluation.adapt_eval import evaluate_pose_adaptation

    all_gt, _, _ = ground_truth_trajectory(args, frames)
    res = evaluate_pose_adaptation(est, frames.images(), frames.K, all_gt[frames.indices], args.adapt_stride,
                                   args.adapt_steps, args.adapt_block, opts=adapt_options(args),
                                   started_from=args.checkpoint, save=args.adapt_save)
    return res | {"source": f"{args.checkpoint} on {frames.name}, adapting"}
