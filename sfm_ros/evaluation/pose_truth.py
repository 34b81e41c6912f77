"""The ground truth of pose evaluation (``sfm_eval pose``) and its matching to the evaluated frames:
where it comes from (:func:`ground_truth_trajectory`: TUM / KITTI files, a bag's odometry topic, the
poses KITTI and 7-Scenes carry), stamp association, the poses of a trajectory file or of a model's
frames paired with theirs (:func:`file_prediction`, :func:`frames_truth`), and the ground truth of
the mean-odometry baseline. The scoring itself: :mod:`sfm_ros.evaluation.pose_eval`. ROS-free.

The functions read the ``sfm_eval pose`` flags from ``args``; bad input raises ``ValueError`` with a
one-line message naming the flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.inputs import parse_frames, select_indices

__all__ = ["ground_truth_trajectory", "associate_stamps", "file_prediction", "frames_truth",
           "mean_odometry_segments", "mean_odometry_truth"]


def ground_truth_trajectory(args: Any, frames=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(poses (N, 4, 4) T_w_c, their stamps or None, description)``: every ground-truth pose of
    the source, from ``args`` (the ``sfm_eval pose`` flags: ``gt_tum`` | ``gt_kitti`` files, else
    the poses ``frames`` (:class:`sfm_ros.data.inputs.SelectedFrames`) carry, else ``kitti`` /
    ``sevenscenes``). The messages name the flags."""
    from sfm_ros.data.pose_files import read_kitti, read_tum

    gt_topic = getattr(args, "gt_topic", None)
    if sum(bool(x) for x in (args.gt_tum, args.gt_kitti, gt_topic)) > 1:
        raise ValueError("give one of --gt-tum, --gt-kitti and --gt-topic")
    if gt_topic:
        if not args.bag:
            raise ValueError(f"--gt-topic {gt_topic} goes with --bag (an odometry topic of that bag)")
        from sfm_ros.data.bags import read_odometry

        stamps, poses = read_odometry(args.bag, gt_topic)
        if len(poses) < 2:
            raise ValueError(f"--gt-topic {gt_topic} in bag {args.bag} has {len(poses)} poses; expected one "
                             f"per frame (nav_msgs/Odometry, as sfm_bag from-kitti writes)")
        return poses, stamps, f"bag {args.bag} {gt_topic} (nav_msgs/Odometry, matched by stamp)"
    if args.gt_tum or args.gt_kitti:
        path = args.gt_tum or args.gt_kitti
        if not Path(path).is_file():
            raise ValueError(f"ground truth {path} does not exist")
        try:
            if args.gt_tum:
                stamps, poses = read_tum(path)
            else:
                poses = read_kitti(path)
                stamps = None
        except (ValueError, OSError) as exc:
            raise ValueError(f"ground truth {path}: {exc}") from None
        return poses, stamps, f"{path}"
    if frames is not None and frames.all_gt_poses is not None:
        return frames.all_gt_poses, None, f"{frames.name} poses.txt"
    if frames is not None and frames.sevenscenes is not None:
        ss = frames.sevenscenes
        return ss.poses(), ss.stamps, f"{frames.name} frame-*.pose.txt"
    if args.kitti:
        from sfm_ros.data.sources import SourceError, read_kitti_odometry

        try:
            seq = read_kitti_odometry(args.kitti, camera=args.kitti_camera)
        except SourceError as exc:
            raise ValueError(f"--kitti: {exc}") from None
        if seq.poses is None:
            raise ValueError(f"--kitti {args.kitti} has no poses.txt")
        return seq.poses, None, f"KITTI {args.kitti} poses.txt"
    if args.sevenscenes:
        from sfm_ros.data.sevenscenes import read_sevenscenes

        ss = read_sevenscenes(args.sevenscenes)
        return ss.poses(), ss.stamps, f"7-Scenes {args.sevenscenes}"
    raise ValueError("no ground truth: give --kitti, --sevenscenes, --gt-kitti FILE or --gt-tum FILE")


def associate_stamps(src_stamps: np.ndarray, dst_stamps: np.ndarray, max_dt: float, what: str) -> np.ndarray:
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
        raise ValueError(f"{what}: {bad} of {len(src_stamps)} stamps have no ground-truth pose within "
                         f"--max-dt {max_dt:g} s (largest gap {dt.max():.3f} s)")
    return order[pick]


def file_prediction(args: Any, stride: int) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray, str]:
    """``--pred-tum`` / ``--pred-kitti``: ``(predicted poses of the selected frames, every
    ground-truth pose, the selected indices into them, the selected frames' stamps, description of
    the ground truth)``. TUM files on both sides are matched by stamp, otherwise by position."""
    from sfm_ros.data.pose_files import read_kitti, read_tum

    pred_file = args.pred_tum or args.pred_kitti
    if args.checkpoint or args.images or (args.bag and not args.gt_topic):
        raise ValueError("--pred-tum/--pred-kitti replace the model: do not give --checkpoint/--images/--bag "
                         "(--bag only with --gt-topic)")
    if not Path(pred_file).is_file():
        raise ValueError(f"prediction {pred_file} does not exist")
    try:
        p_stamps, p_poses = read_tum(pred_file) if args.pred_tum else (None, read_kitti(pred_file))
    except (ValueError, OSError) as exc:
        raise ValueError(f"prediction {pred_file}: {exc}") from None
    all_gt, g_stamps, gt_what = ground_truth_trajectory(args, None)
    sel = select_indices(len(all_gt), args.frames, stride)
    if p_stamps is not None and g_stamps is not None:
        pick = associate_stamps(np.asarray(g_stamps)[sel], p_stamps, args.max_dt, pred_file)
        traj = p_poses[pick]
    elif len(p_poses) == len(all_gt):
        traj = p_poses[sel]
    elif len(p_poses) == len(sel):
        traj = p_poses
    else:
        raise ValueError(f"{pred_file} has {len(p_poses)} poses: expected {len(all_gt)} (the whole ground "
                         f"truth) or {len(sel)} (the selected frames); TUM files on both sides are "
                         f"matched by stamp")
    stamps = np.asarray(g_stamps)[sel] if g_stamps is not None else np.asarray(sel) / args.fps
    return traj, all_gt, sel, stamps, gt_what


def frames_truth(args: Any, frames, n_frames: int, stride: int) -> tuple[np.ndarray, list[int], str]:
    """The ground truth of the ``n_frames`` frames a model was run on (``frames``:
    :class:`sfm_ros.data.inputs.SelectedFrames`): ``(ground-truth poses, the indices of those frames
    into them, description)``; KITTI and 7-Scenes carry theirs, other inputs are matched by stamp
    (``--max-dt``) when the ground truth has stamps, else by position. One pose per frame, or
    ``ValueError``."""
    if frames.sevenscenes is not None or frames.gt_poses is not None:
        if args.gt_tum or args.gt_kitti or args.gt_topic:
            raise ValueError("--kitti/--sevenscenes carry their ground truth: drop --gt-tum/--gt-kitti/--gt-topic")
        all_gt, _, gt_what = ground_truth_trajectory(args, frames)
        sel = frames.indices
    else:
        all_gt, g_stamps, gt_what = ground_truth_trajectory(args, frames)
        f_stamps = np.asarray(frames.stamps, dtype=np.float64)
        if g_stamps is not None:
            pick = associate_stamps(f_stamps, g_stamps, args.max_dt, frames.name)
            all_gt, sel = all_gt[pick], list(range(len(pick)))
        else:
            if frames.indices is None:  # a bag: positions as streamed
                if len(all_gt) < n_frames:
                    raise ValueError(f"{gt_what} has {len(all_gt)} poses for {n_frames} frames")
                a, _ = parse_frames(args.frames, None)
                sel = list(range(a, a + stride * n_frames, stride))
            else:
                sel = frames.indices
            if max(sel) >= len(all_gt):
                raise ValueError(f"{gt_what} has {len(all_gt)} poses but frame {max(sel)} is evaluated")
    if n_frames != len(sel):
        raise ValueError(f"{n_frames} frames but {len(sel)} ground-truth poses")
    return all_gt, sel, gt_what


def mean_odometry_segments(all_gt: np.ndarray, sel: list[int], stride: int) -> tuple[list[np.ndarray], str]:
    """The ground-truth segments of the mean-odometry baseline when no training range is given:
    the frames before and after the evaluated ones ``sel`` (same stride, each of >= 2 frames), else
    the evaluated frames themselves. Returns ``(segments, description)``."""
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


def mean_odometry_truth(args: Any, all_gt: np.ndarray, sel: list[int], stride: int) -> tuple[list[np.ndarray], str]:
    """The ground truth of the mean-odometry baseline: ``--train-frames`` or the frames outside ``sel``."""
    if args.train_frames:
        a, b = parse_frames(args.train_frames, len(all_gt), "--train-frames")
        idx = list(range(a, b, stride))
        if len(idx) < 2:
            raise ValueError(f"--train-frames {args.train_frames} selects fewer than 2 frames (stride {stride})")
        return [all_gt[idx]], f"frames {a}:{b}"
    return mean_odometry_segments(all_gt, sel, stride)
