"""The ground truth of pose evaluation (``sfm_eval pose``) and its matching to the evaluated frames:
where it comes from (:func:`ground_truth_trajectory`: TUM / KITTI files, a bag's odometry topic, the
poses KITTI and 7-Scenes carry), stamp association, the poses of a trajectory file or of a model's
frames paired with theirs (:func:`file_prediction`, :func:`frames_truth`), and the ground truth of
the mean-odometry baseline. The scoring itself: :mod:`sfm_ros.evaluation.pose_eval`. ROS-free.

A prediction is a trajectory file (``--pred-tum`` / ``--pred-kitti``) or a recorded
``nav_msgs/Odometry`` topic of a bag (``--pred-topic`` with ``--bag``: what ``sfm_node`` published on
``/odom``, recorded by ``sfm_record``). Stamped predictions and ground truths are paired by stamp
(:func:`match_stamps`: mutual nearest stamps within ``--max-dt``); a selected ground-truth pose
without a prediction (the node publishes none while its first window fills) is left out and
counted in a note. Frames: poses are compared as the camera's optical frame; a trajectory of the
robot's ``base_link`` (the node's ``/odom``, ``--pred-frame base``; ``--gt-frame base``) is turned into
the camera's by the node's mount (``--camera-xyz``, ``--camera-rpy``: ``T_w_cam = T_w_base · T_base_cam``).

The functions read the ``sfm_eval pose`` flags from ``args``; bad input raises ``ValueError`` with a
one-line message naming the flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.inputs import parse_frames, select_indices

__all__ = ["ground_truth_trajectory", "associate_stamps", "match_stamps", "base_to_camera", "file_prediction",
           "frames_truth", "mean_odometry_segments", "mean_odometry_truth"]


def base_to_camera(poses: np.ndarray, args: Any) -> np.ndarray:
    """``T_w_base`` (N, 4, 4) of the robot's ``base_link`` → ``T_w_cam`` of its camera's optical frame,
    by the node's mount ``--camera-xyz`` / ``--camera-rpy`` (its ``camera_xyz`` / ``camera_rpy``
    parameters; default: the node's forward camera at base_link's origin)."""
    from sfm_ros.runtime.odometry import OPTICAL_RPY, camera_extrinsic

    xyz = getattr(args, "camera_xyz", None) or (0.0, 0.0, 0.0)
    rpy = getattr(args, "camera_rpy", None) or OPTICAL_RPY
    return np.asarray(poses, dtype=np.float64) @ camera_extrinsic(xyz, rpy)


def _mount_text(args: Any) -> str:
    from sfm_ros.runtime.odometry import OPTICAL_RPY

    xyz = getattr(args, "camera_xyz", None) or (0.0, 0.0, 0.0)
    rpy = getattr(args, "camera_rpy", None) or OPTICAL_RPY
    return f"camera_xyz [{', '.join(f'{v:g}' for v in xyz)}], camera_rpy [{', '.join(f'{v:.4g}' for v in rpy)}]"


def _gt_stamps(args: Any, n: int, stamps: np.ndarray | None, what: str) -> np.ndarray | None:
    """Stamps for a ground truth without any (``--gt-kitti``, ``--kitti``): ``--gt-times FILE`` (one
    time a line, KITTI's times.txt) or ``i / --fps``, plus ``--gt-start SEC``; None when neither
    flag is given."""
    times, start = getattr(args, "gt_times", None), getattr(args, "gt_start", None)
    if times is None and start is None:
        return stamps
    if stamps is not None:
        raise ValueError(f"--gt-times/--gt-start give stamps to a ground truth without any; {what} has its own")
    if times is not None:
        try:
            t = np.loadtxt(times, dtype=np.float64, ndmin=1)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--gt-times {times}: {exc}") from None
        if t.ndim != 1 or len(t) != n:
            raise ValueError(f"--gt-times {times} has {t.size} times for the {n} poses of {what}")
    else:
        t = np.arange(n) / args.fps
    return t + (start or 0.0)


def ground_truth_trajectory(args: Any, frames=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(poses (N, 4, 4) T_w_c, their stamps or None, description)``: every ground-truth pose of
    the source, from ``args`` (the ``sfm_eval pose`` flags: ``gt_tum`` | ``gt_kitti`` files, else
    the poses ``frames`` (:class:`sfm_ros.data.inputs.SelectedFrames`) carry, else ``kitti`` /
    ``sevenscenes``; ``gt_topic`` of ``gt_bag`` or ``bag``), in the camera's optical frame
    (``gt_frame`` ``base``: turned into it, :func:`base_to_camera`), stamped by ``gt_times`` /
    ``gt_start`` when the source has no stamps. The messages name the flags."""
    poses, stamps, what = _ground_truth(args, frames)
    if getattr(args, "gt_frame", None) == "base":
        poses = base_to_camera(poses, args)
        what += f" (base_link, turned into the camera's optical frame by {_mount_text(args)})"
    return poses, _gt_stamps(args, len(poses), stamps, what), what


def _ground_truth(args: Any, frames=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    from sfm_ros.data.pose_files import read_kitti, read_tum

    gt_topic = getattr(args, "gt_topic", None)
    gt_bag = getattr(args, "gt_bag", None)
    if sum(bool(x) for x in (args.gt_tum, args.gt_kitti, gt_topic)) > 1:
        raise ValueError("give one of --gt-tum, --gt-kitti and --gt-topic")
    if gt_bag and not gt_topic:
        raise ValueError(f"--gt-bag {gt_bag} goes with --gt-topic (the odometry topic of that bag)")
    if gt_topic:
        bag = gt_bag or args.bag
        if not bag:
            raise ValueError(f"--gt-topic {gt_topic} goes with --bag (an odometry topic of that bag) or --gt-bag")
        from sfm_ros.data.bags import read_odometry

        try:
            stamps, poses = read_odometry(bag, gt_topic)
        except ValueError as exc:
            raise ValueError(f"--gt-topic: {exc}") from None
        if len(poses) < 2:
            raise ValueError(f"--gt-topic {gt_topic} in bag {bag} has {len(poses)} poses; expected one "
                             f"per frame (nav_msgs/Odometry, as sfm_bag from-kitti writes)")
        return poses, stamps, f"bag {bag} {gt_topic} (nav_msgs/Odometry, matched by stamp)"
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


def _nearest(ref: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into ``ref`` of the nearest stamp to every ``query`` stamp (the earlier one on a tie)."""
    ref = np.asarray(ref, dtype=np.float64)
    order = np.argsort(ref, kind="stable")
    d = ref[order]
    pos = np.clip(np.searchsorted(d, query), 1, max(len(d) - 1, 1))
    left = np.clip(pos - 1, 0, len(d) - 1)
    right = np.clip(pos, 0, len(d) - 1)
    return order[np.where(np.abs(d[left] - query) <= np.abs(d[right] - query), left, right)]


def associate_stamps(src_stamps: np.ndarray, dst_stamps: np.ndarray, max_dt: float, what: str) -> np.ndarray:
    """Index in ``dst`` of the nearest stamp for every ``src`` stamp; all must be within ``max_dt``."""
    src, dst = np.asarray(src_stamps, dtype=np.float64), np.asarray(dst_stamps, dtype=np.float64)
    pick = _nearest(dst, src)
    dt = np.abs(dst[pick] - src)
    bad = int((dt > max_dt).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {len(src)} stamps have no ground-truth pose within "
                         f"--max-dt {max_dt:g} s (largest gap {dt.max():.3f} s)")
    return pick


def match_stamps(gt_stamps: np.ndarray, pred_stamps: np.ndarray, max_dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(gt index, prediction index)`` of mutually nearest stamps at most ``max_dt`` apart,
    in ground-truth order: a ground-truth pose without a prediction that near (or whose nearest
    prediction is nearer another ground-truth pose: a denser ground truth) is left out, and each
    prediction is used at most once."""
    g, p = np.asarray(gt_stamps, dtype=np.float64), np.asarray(pred_stamps, dtype=np.float64)
    if len(g) == 0 or len(p) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    p_of_g = _nearest(p, g)
    g_of_p = _nearest(g, p)
    ok = (np.abs(p[p_of_g] - g) <= max_dt) & (g_of_p[p_of_g] == np.arange(len(g)))
    return np.flatnonzero(ok), p_of_g[ok]


def _span(stamps: np.ndarray) -> str:
    return f"{len(stamps)} stamps, {float(np.min(stamps)):.3f} to {float(np.max(stamps)):.3f} s"


def _read_prediction(args: Any) -> tuple[np.ndarray | None, np.ndarray, str, str]:
    """``(stamps or None, poses, flag text, description)`` of ``--pred-topic`` / ``--pred-tum`` /
    ``--pred-kitti``, in the camera's optical frame."""
    from sfm_ros.data.pose_files import read_kitti, read_tum

    topic = getattr(args, "pred_topic", None)
    given = [f for f, v in (("--pred-topic", topic), ("--pred-tum", args.pred_tum), ("--pred-kitti", args.pred_kitti))
             if v]
    if len(given) > 1:
        raise ValueError(f"give one of --pred-topic, --pred-tum and --pred-kitti, not {' and '.join(given)}")
    if topic:
        if args.checkpoint or args.images:
            raise ValueError("--pred-topic replaces the model: do not give --checkpoint/--images")
        if not args.bag:
            raise ValueError(f"--pred-topic {topic} goes with --bag BAG (the bag that recorded it)")
        from sfm_ros.data.bags import read_odometry

        try:
            stamps, poses = read_odometry(args.bag, topic)
        except ValueError as exc:
            raise ValueError(f"--pred-topic: {exc}") from None
        flag, what = f"--pred-topic {topic}", f"bag {args.bag} {topic} (nav_msgs/Odometry, {len(poses)} poses)"
        frame = getattr(args, "pred_frame", None) or "base"
    else:
        path = args.pred_tum or args.pred_kitti
        if args.checkpoint or args.images or (args.bag and not args.gt_topic):
            raise ValueError("--pred-tum/--pred-kitti replace the model: do not give --checkpoint/--images/--bag "
                             "(--bag only with --gt-topic)")
        if not Path(path).is_file():
            raise ValueError(f"prediction {path} does not exist")
        try:
            stamps, poses = read_tum(path) if args.pred_tum else (None, read_kitti(path))
        except (ValueError, OSError) as exc:
            raise ValueError(f"prediction {path}: {exc}") from None
        flag, what = path, path
        frame = getattr(args, "pred_frame", None) or "camera"
    if frame == "base":
        poses = base_to_camera(poses, args)
        what += f" (base_link, turned into the camera's optical frame by {_mount_text(args)})"
    return stamps, poses, flag, what


def file_prediction(args: Any, stride: int) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray, str, str, list[str]]:
    """``--pred-topic`` (a recorded ``nav_msgs/Odometry`` topic of ``--bag``) / ``--pred-tum`` /
    ``--pred-kitti``: ``(predicted poses of the selected frames, every ground-truth pose, the
    selected indices into them, the selected frames' stamps, description of the ground truth,
    description of the prediction, notes)``. ``--frames`` / ``--stride`` select ground-truth poses;
    when both sides have stamps they are paired by stamp (:func:`match_stamps`: selected poses
    without a prediction within ``--max-dt`` are left out, noted), otherwise by position (a
    topic's stamps are required)."""
    p_stamps, p_poses, flag, pred_what = _read_prediction(args)
    all_gt, g_stamps, gt_what = ground_truth_trajectory(args, None)
    sel = select_indices(len(all_gt), args.frames, stride)
    notes: list[str] = []
    if p_stamps is not None and g_stamps is not None:
        g_sel = np.asarray(g_stamps, dtype=np.float64)[sel]
        gi, pick = match_stamps(g_sel, p_stamps, args.max_dt)
        if len(gi) < 2:
            raise ValueError(f"{flag}: no stamps overlapping the ground truth's within --max-dt {args.max_dt:g} s: "
                             f"{len(gi)} pair(s) (prediction {_span(p_stamps)}; ground truth {_span(g_sel)})")
        if len(gi) < len(sel):
            notes.append(f"{len(sel) - len(gi)} of the {len(sel)} selected ground-truth poses have no predicted pose "
                         f"within --max-dt {args.max_dt:g} s (left out); {len(p_stamps) - len(pick)} of the "
                         f"{len(p_stamps)} predicted poses are paired with none")
        sel = [sel[i] for i in gi]
        traj = p_poses[pick]
    elif p_stamps is not None and getattr(args, "pred_topic", None):
        raise ValueError(f"{flag}: the ground truth {gt_what} has no stamps to match the topic's by: give "
                         f"--gt-times FILE (one time a line) or --gt-start SEC (stamps SEC + i / --fps)")
    elif len(p_poses) == len(all_gt):
        traj = p_poses[sel]
    elif len(p_poses) == len(sel):
        traj = p_poses
    else:
        raise ValueError(f"{flag} has {len(p_poses)} poses: expected {len(all_gt)} (the whole ground "
                         f"truth) or {len(sel)} (the selected frames); TUM files on both sides are "
                         f"matched by stamp")
    stamps = np.asarray(g_stamps)[sel] if g_stamps is not None else np.asarray(sel) / args.fps
    return traj, all_gt, sel, stamps, gt_what, pred_what, notes


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
