"""Depth evaluation over a sequence (SfMLearner's ``eval_depth.py`` protocol, image by image with
:func:`sfm_ros.evaluation.metrics.evaluate_depth`): skipped images, the constant-depth baseline a model must
beat, the camera-height scale ratio, the nearly-constant-depth warning, the report, and the ground-truth
loaders (16-bit PNG, npy, KITTI LiDAR scans, 7-Scenes) and saved ``--pred-npy`` predictions.
``sfm_eval depth`` is the command line over it. ROS-free.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.data.camera import CameraError, kitti_lidar_calib
from sfm_ros.data.inputs import SelectedFrames, parse_frames
from sfm_ros.evaluation.metrics import DEPTH_METRIC_KEYS, aggregate, evaluate_depth, load_depth_npy, load_depth_png, project_lidar
from sfm_ros.data.sources import natural_key

__all__ = ["NEARLY_CONSTANT_SPREAD", "evaluate_depth_sequence", "format_depth_report", "ground_truth_depth",
           "list_files", "npy_predictions"]

#: median per-image std of log depth below which a model's depth counts as nearly constant
NEARLY_CONSTANT_SPREAD = 0.02


def evaluate_depth_sequence(preds: Iterable[tuple[np.ndarray, tuple[int, int] | None]],
                            gts: list[Callable[[tuple[int, int]], np.ndarray]], min_depth: float,
                            max_depth: float, median_scaling: bool = True, crop: str | None = None,
                            metric: bool = False) -> dict:
    """Metrics of every prediction against its ground truth, aggregated over the images.

    Args:
        preds: ``(depth (h, w), image (H, W) or None)`` per frame, in order; with ``metric`` a
            prediction without any finite value (no camera-height scale yet) is skipped.
        gts: one loader per frame, ``loader((H, W)) -> (H, W) depth in metres`` (0 = none); their
            counts must agree.
        metric: the predictions are metric (camera-height scale): also report the ratio of
            predicted to true depth (median and quartiles).
    Returns:
        ``metric_ratio``, ``metrics`` (the 7 of :data:`sfm_ros.evaluation.metrics.DEPTH_METRIC_KEYS`),
        ``baseline_constant`` (with median scaling), ``count``, ``skipped`` (indices without
        valid ground truth), ``scale_mean``/``scale_std``, ``valid_pixels_mean``,
        ``depth_spread``, ``warnings`` and ``per_image``. Raises ``ValueError`` when the counts
        differ or no image has valid ground truth.
    """
    results, skipped, const, ratios = [], [], [], []
    for i, ((pred, hw), gt_load) in enumerate(itertools.zip_longest(preds, gts, fillvalue=(None, None))):
        if pred is None or (isinstance(gt_load, tuple)):
            raise ValueError(f"the input has {'fewer' if pred is None else 'more'} frames than ground-truth maps")
        gt = gt_load(hw if hw is not None else pred.shape)
        if metric and not np.isfinite(pred).any():  # no ground plane found yet
            skipped.append(i)
            continue
        try:
            r = evaluate_depth(gt, pred, min_depth, max_depth, median_scaling=median_scaling,
                               crop=crop)
            if metric:
                ratios.append(1.0 / evaluate_depth(gt, pred, min_depth, max_depth, median_scaling=True,
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
            const.append(evaluate_depth(gt, np.ones_like(pred), min_depth, max_depth, median_scaling=True,
                                        crop=crop))
    if not results:
        raise ValueError(f"no image had valid ground-truth pixels in ({min_depth:g}, {max_depth:g}] m")
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
        "metric_ratio": ({"median": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)),
                          "p75": float(np.percentile(ratios, 75))} if ratios else None),
        "metrics": {k: agg[k] for k in DEPTH_METRIC_KEYS},
        "baseline_constant": {k: base[k] for k in DEPTH_METRIC_KEYS} if base else None,
        "count": len(results), "skipped": skipped,
        "scale_mean": float(scales.mean()), "scale_std": float(scales.std()),
        "valid_pixels_mean": agg["valid_pixels"], "depth_spread": spread, "warnings": warnings,
        "per_image": results,
    }


def format_depth_report(res: dict, prog: str = "sfm_eval") -> str:
    """The ``sfm_eval depth`` report: a Markdown table of the model (and the constant baseline), the
    scale and skipped images, the warnings."""
    s = res["settings"]
    head = (f"{prog} depth: {res['count']} images ({res['source']}); ground truth {res['ground_truth']}; "
            f"depth ({s['min_depth']:g}, {s['max_depth']:g}] m, crop {s['crop']}, "
            f"median scaling {'on' if s['median_scaling'] else 'off'}")
    keys = DEPTH_METRIC_KEYS
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


def list_files(directory: str | Path, pattern: str, what: str) -> list[Path]:
    """The ``pattern`` files of a folder in natural order; ``what`` names it in the errors."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{what} {d} is not a folder")
    files = sorted((f for f in d.glob(pattern) if f.is_file()), key=natural_key)
    if not files:
        raise ValueError(f"{what} {d} has no {pattern} files")
    return files



def npy_predictions(args: Any) -> tuple[Iterable[tuple[np.ndarray, None]], str, list[Callable]]:
    """``--pred-npy DIR``: ``(lazy (prediction, None) pairs, ground-truth description, ground-truth
    loaders)``, the ``*.npy`` files in natural order (``--frames A:B`` of them), one per ground-truth
    map."""
    given = [k for k in ("checkpoint", "images", "bag", "kitti", "sevenscenes") if getattr(args, k)]
    if given:
        raise ValueError("--pred-npy replaces the model: do not give " + ", ".join("--" + g for g in given))
    pred_files = list_files(args.pred_npy, "*.npy", "--pred-npy")
    if args.frames:
        a, b = parse_frames(args.frames, len(pred_files))
        pred_files = pred_files[a:b]
    gt_what, gts = ground_truth_depth(args, None)
    if len(gts) != len(pred_files):
        raise ValueError(f"{len(pred_files)} predictions in {args.pred_npy} but {len(gts)} ground-truth maps")
    return ((load_depth_npy(p), None) for p in pred_files), gt_what, gts

#: The calibration layouts ``--calib`` reads for ``--gt-lidar`` (for ``--help``).
LIDAR_CALIB_LAYOUTS = ("a KITTI odometry calib.txt (Tr, P0..P3); a KITTI object benchmark calib/ folder "
                       "(one NNNNNN.txt per scan: P0..P3, R0_rect, Tr_velo_to_cam) or one such file; a "
                       "KITTI raw date folder (calib_cam_to_cam.txt, calib_velo_to_cam.txt)")


def lidar_calib_path(args: Any) -> str:
    """``--calib``, else ``SEQ_DIR/calib.txt`` with ``--kitti``, else the object benchmark's
    ``calib/`` beside the ``--gt-lidar`` folder (``training/velodyne`` → ``training/calib``)."""
    if args.calib:
        return str(args.calib)
    if getattr(args, "kitti", None):
        return str(Path(args.kitti) / "calib.txt")
    sibling = Path(args.gt_lidar).parent / "calib"
    if sibling.is_dir():
        return str(sibling)
    raise ValueError(f"--gt-lidar needs --calib: {LIDAR_CALIB_LAYOUTS}")


def ground_truth_depth(args: Any, frames: SelectedFrames | None) -> tuple[str, list[Callable[[tuple[int, int]], np.ndarray]]]:
    """``(description, loaders)``: the depth ground truth of the selected ``frames`` (or, without
    frames, of ``args.frames``), one ``loader(image_hw) -> (H, W) metres`` per frame. ``args``: the
    ``sfm_eval depth`` flags (``gt_png``/``gt_scale``/``gt_invalid``, ``gt_npy``, ``gt_lidar`` with
    ``calib``/``lidar_camera``/``kitti``, ``frames``; 7-Scenes frames carry their own). Files and
    frames are matched in natural file order; the messages name the flags."""
    given = [k for k in ("gt_png", "gt_npy", "gt_lidar") if getattr(args, k)]
    if len(given) > 1:
        raise ValueError("give one ground truth: " + ", ".join("--" + g.replace("_", "-") for g in given))
    if not given:
        if frames is not None and frames.sevenscenes is not None:
            ss = frames.sevenscenes
            missing = [ss.depth[i] for i in frames.indices if not ss.depth[i].is_file()]
            if missing:
                raise ValueError(f"7-Scenes depth {missing[0]} does not exist")
            return ("7-Scenes depth PNG (mm, 65535 invalid; not registered to the colour camera)",
                    [lambda hw, p=ss.depth[i]: load_depth_png(p, 1000.0, 65535) for i in frames.indices])
        raise ValueError("no ground truth: give --gt-png DIR, --gt-npy DIR or --gt-lidar DIR (implicit with --sevenscenes)")
    if args.gt_png:
        files = list_files(args.gt_png, "*.png", "--gt-png")
        if not args.gt_scale > 0:
            raise ValueError(f"--gt-scale must be > 0, got {args.gt_scale}")
        what = f"PNG {args.gt_png} (raw / {args.gt_scale:g} m, {args.gt_invalid} invalid)"
        make = lambda p: (lambda hw: load_depth_png(p, args.gt_scale, args.gt_invalid))  # noqa: E731
    elif args.gt_npy:
        files = list_files(args.gt_npy, "*.npy", "--gt-npy")
        what = f"npy {args.gt_npy} (m)"
        make = lambda p: (lambda hw: load_depth_npy(p))  # noqa: E731
    else:
        files = list_files(args.gt_lidar, "*.bin", "--gt-lidar")
        if frames is None:
            raise ValueError("--gt-lidar needs the camera images (--images/--kitti/--bag with --checkpoint) "
                             "for the image size")
        calib = lidar_calib_path(args)
        cam = args.lidar_camera or ("P" + frames.camera_dir[-1] if frames.camera_dir else "P2")
        per_frame = Path(calib).is_dir() and not (Path(calib) / "calib_cam_to_cam.txt").exists()
        try:
            if per_frame:  # the object benchmark: calib/NNNNNN.txt beside velodyne/NNNNNN.bin
                missing = [f.stem for f in files if not (Path(calib) / f"{f.stem}.txt").is_file()]
                if missing:
                    raise CameraError(f"KITTI calibration folder {calib} lacks {missing[0]}.txt"
                                      f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''} (one "
                                      f"NNNNNN.txt per scan, as the object benchmark's calib/), and "
                                      f"calib_cam_to_cam.txt / calib_velo_to_cam.txt (a raw date folder)")
                calibs = {f.stem: kitti_lidar_calib(Path(calib) / f"{f.stem}.txt", cam) for f in files}
            else:
                calibs = dict.fromkeys([f.stem for f in files], kitti_lidar_calib(calib, cam))
        except CameraError as exc:
            raise ValueError(f"--calib: {exc}") from None
        what = f"LiDAR {args.gt_lidar} projected with {calib}{'/NNNNNN.txt' if per_frame else ''} ({cam})"

        def make(p):
            T, K = calibs[p.stem]

            def load(hw):
                pts = np.fromfile(p, dtype=np.float32)
                if pts.size % 4:
                    raise ValueError(f"{p}: not a KITTI Velodyne scan (float32 x y z r)")
                return project_lidar(pts.reshape(-1, 4), T, K, hw[0], hw[1])
            return load
    if frames is not None and frames.indices is not None:
        # One ground-truth file per source frame, in the same order: the same positions are selected.
        if len(files) != frames.total:
            raise ValueError(f"{what}: {len(files)} ground-truth files for {frames.total} input frames "
                             f"(expected one per frame, matched in natural file order)")
        files = [files[i] for i in frames.indices]
    elif args.frames:  # --pred-npy, or a bag (streamed): slice the files the same way
        a, b = parse_frames(args.frames, len(files))
        files = files[a:b]
    return what, [make(p) for p in files]
