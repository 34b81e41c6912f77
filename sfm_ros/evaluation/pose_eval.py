"""Pose evaluation beyond the trajectory metrics (:mod:`sfm_ros.evaluation.trajectory`): frame-to-frame
increments from the pose network's windows, the node's refinement and camera-height scale over a
sequence, and every method's snippet ATE / ATE / RPE beside the zero-motion and mean-odometry
baselines (the ground truth they are scored against: :mod:`sfm_ros.evaluation.pose_truth`).
``sfm_eval pose`` is the command line over these. ROS-free.

Conventions: poses are 4x4 camera-to-world ``T_w_c``; an increment ``i`` is ``T_{c_i}_{c_i+1}``
(the motion from frame ``i`` to ``i + 1``); a network window's snippet holds its poses relative to
its first frame (:func:`sfm_ros.evaluation.trajectory.snippet_from_network`). Bad input raises ``ValueError``
with a one-line message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["average_increments", "network_snippets", "network_increments", "refine_increments",
           "ground_scales", "ground_scaled_increments", "pose_metrics", "evaluate_pose_methods", "metric_scale_summary",
           "model_pose_method", "METHOD_LABELS", "format_pose_report", "gt_twin", "write_trajectory_pair",
           "path_length", "path_lengths", "node_defaults", "node_scale"]


def average_increments(estimates: list[list[np.ndarray]]) -> np.ndarray:
    """Average several estimates of each increment: mean translation, mean axis-angle rotation."""
    from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose, matrix_to_axis_angle

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
    from sfm_ros.evaluation.trajectory import snippet_from_network

    L = est.seq_len
    if len(images) < L:
        raise ValueError(f"{len(images)} frames: the model needs at least seq_len={L}")
    half = L // 2
    out = []
    for start in range(len(images) - L + 1):
        T = est.poses(images[start:start + L])[0].double().cpu().numpy()  # (L-1, 4, 4) T_s_t
        out.append(snippet_from_network(T, half))
    return np.asarray(out)


def ground_scales(gs, depths: list, K_net: np.ndarray) -> tuple[np.ndarray, str]:
    """The node's ``camera_height`` scale (a :class:`sfm_ros.runtime.ground_scale.GroundScale`) over the
    frames' predicted depths in order, per increment: increment ``i`` gets the scale after frame
    ``i + 1``, as in the node. Increments before the first ground plane take the first scale found
    (the node uses 1 there). Returns the (N-1,) scales (m per network unit) and a note."""
    scales = [gs.update(d, K_net) for d in depths]
    found = [x for x in scales[1:] if x is not None]
    if not found:
        raise ValueError(f"--camera-height: no ground plane was found in the lower image of any frame ({len(depths)} "
                         f"frames; {_plane_test()}; parked cars or kerbs filling it fail it, as in KITTI 00 frames "
                         f"111-146): give a range that reaches open road, or leave out --camera-height")
    first = found[0]
    s = np.array([first if x is None else x for x in scales[1:]])
    note = (f"ground planes accepted {gs.accepted}, rejected {gs.rejected}, none found {gs.failed}; "
            f"scale median {np.median(s):.4g} m/unit, spread {gs.spread:.3f}")
    return s, note


def _plane_test() -> str:
    """The node's ground-plane test in words, from :func:`sfm_ros.runtime.ground_scale.fit_ground_plane`'s defaults."""
    import inspect

    from sfm_ros.runtime.ground_scale import fit_ground_plane

    d = {k: v.default for k, v in inspect.signature(fit_ground_plane).parameters.items()}
    return (f"the node's test: a plane within {d['max_tilt_deg']:g} deg of level through at least "
            f"{100 * d['min_inlier_fraction']:g} % of the points of the lower {100 * d['region']:g} % of the image, "
            f"within {100 * d['tolerance']:g} % of its distance")


def ground_scaled_increments(gs, depths: list, increments: np.ndarray, K_net: np.ndarray,
                             scales: tuple[np.ndarray, str] | None = None) -> dict:
    """The increments times the node's ``camera_height`` scale (:func:`ground_scales`, or its output
    ``scales`` when already computed). Returns ``rel`` (metric increments), ``scales``,
    ``step_lengths`` (m) and a ``note``."""
    s, note = ground_scales(gs, depths, K_net) if scales is None else scales
    rel = np.array(increments, dtype=np.float64)
    rel[:, :3, 3] *= s[:, None]
    return {"rel": rel, "scales": s, "step_lengths": np.linalg.norm(rel[:, :3, 3], axis=1), "note": note}


def refine_increments(refiner, views: list, depths: list, increments: np.ndarray,
                      scales=None, ground=None) -> tuple[np.ndarray, dict[str, int]]:
    """The node's refinement (:class:`sfm_ros.runtime.motion.Refiner`) applied to every network increment
    of a sequence: ``views`` the refiner's views of the frames, ``depths[i]`` the predicted depth
    of frame ``i`` that sets the scale of increment ``i``, ``scales[i]`` the metric scale increment
    ``i`` will be multiplied by (as the node passes it; default 1), ``ground`` the camera's
    ``(down, height)`` with ``camera_height`` (:meth:`sfm_ros.runtime.motion.Refiner.refine`). Returns
    the refined increments and how many increments each source made."""
    from sfm_ros.runtime.motion import refine_sequence

    rel, results = refine_sequence(refiner, views, depths, increments, scales, ground)
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


def _aligned(fn, *a, **kw) -> tuple[dict | None, str]:
    """Run an aligned metric with Sim(3); a trajectory that never moves falls back to SE(3)."""
    try:
        return fn(*a, align="sim3", **kw), "sim3"
    except ValueError as exc:
        if "coincide" not in str(exc):
            raise
        return fn(*a, align="se3", **kw), "se3"


def pose_metrics(gt: np.ndarray, traj: np.ndarray | None, snippet: int, delta: int,
                snippets: np.ndarray | None = None, rel: np.ndarray | None = None,
                drift: tuple[tuple[float, ...], int] | None = None) -> dict:
    """Snippet ATE, ATE and RPE of one method; with ``drift = (lengths, step)`` also its segment
    drift (:func:`sfm_ros.evaluation.segment_drift.drift_report`, None when no length is given)."""
    from sfm_ros.evaluation.segment_drift import drift_report
    from sfm_ros.evaluation.trajectory import ate, rpe, snippet_ate

    if snippets is not None:
        sn = snippet_ate(gt, snippets, snippet)
    elif rel is not None:
        sn = snippet_ate(gt, rel, snippet, est_is_relative=True)
    else:
        sn = snippet_ate(gt, traj, snippet, est_is_relative=False)
    out: dict[str, Any] = {"snippet_ate": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in sn.items()}}
    a, align = _aligned(ate, gt, traj)
    out["ate"] = dict(a, align=align)
    if len(gt) > delta:
        r, align = _aligned(rpe, gt, traj, delta=delta)
        out["rpe"] = dict(r, align=align)
    if drift is not None:
        out["segment_drift"] = drift_report(gt, traj, drift[0], drift[1]) if drift[0] else None
    return out


def evaluate_pose_methods(gt: np.ndarray, methods: dict[str, dict], snippet: int, delta: int,
                          train_gt: list[np.ndarray] | None,
                          drift: tuple[tuple[float, ...], int] | None = None) -> dict:
    """Metrics of every method plus the zero-motion and (when ``train_gt``) mean-odometry baselines.

    ``methods``: name → ``{"traj": (N,4,4), optional "snippets": (M,L,4,4) or "rel": (N-1,4,4)}``;
    ``drift``: ``(segment lengths, start step)`` of the segment drift (:func:`pose_metrics`)."""
    from sfm_ros.evaluation.trajectory import mean_odometry_poses, zero_motion_poses

    n = len(gt)
    if n < snippet:
        raise ValueError(f"{n} frames selected: need at least --snippet {snippet}")
    out = {}
    for name, m in methods.items():
        out[name] = pose_metrics(gt, m["traj"], snippet, delta, m.get("snippets"), m.get("rel"), drift)
    out["zero_motion"] = pose_metrics(gt, zero_motion_poses(n), snippet, delta, drift=drift)
    if train_gt:
        out["mean_odometry"] = pose_metrics(gt, mean_odometry_poses(train_gt, n), snippet, delta, drift=drift)
    return out


def metric_scale_summary(gt: np.ndarray, metric: dict, camera_height: float) -> dict:
    """How well the camera-height scale (:func:`ground_scaled_increments` output ``metric``) gives
    metric motion: the ratio of predicted to true step length over the moving steps (> 1 mm;
    median and quartiles), the SE(3)-aligned ATE of the unscaled-aligned trajectory and the median
    scale."""
    from sfm_ros.evaluation.trajectory import ate, chain, relative_poses

    steps_true = np.linalg.norm(relative_poses(gt)[:, :3, 3], axis=1)
    ratio = metric["step_lengths"] / np.maximum(steps_true, 1e-9)
    moving = steps_true > 1e-3
    return {
        "camera_height": camera_height,
        "step_ratio_median": float(np.median(ratio[moving])) if moving.any() else float("nan"),
        "step_ratio_p25": float(np.percentile(ratio[moving], 25)) if moving.any() else float("nan"),
        "step_ratio_p75": float(np.percentile(ratio[moving], 75)) if moving.any() else float("nan"),
        "ate_se3": ate(gt, chain(metric["rel"]), align="se3"),
        "scale_median": float(np.median(metric["scales"])),
    }


def model_pose_method(est, images: list, snippet: int, refiner=None, views: list | None = None, ground=None,
                      K: np.ndarray | None = None, raw_hw: tuple[int, int] | None = None) -> tuple[dict, list[str], dict | None]:
    """The model's pose "method" for :func:`evaluate_pose_methods` over preprocessed ``images``.

    The pose network runs on every window (:func:`network_snippets`); the averaged increments
    (:func:`network_increments`) are refined by ``refiner`` (a :class:`sfm_ros.runtime.motion.Refiner`
    not in mode ``none``, over its ``views`` of the frames) and metric-scaled by ``ground`` (a
    :class:`sfm_ros.runtime.ground_scale.GroundScale`, with the raw intrinsics ``K`` of ``raw_hw`` images),
    then chained. With ``seq_len == snippet`` and no refinement the snippet ATE uses one network
    prediction per snippet (SfMLearner's protocol), else snippets chained from the increments.
    Returns ``(method, notes, metric)``: ``metric`` is :func:`ground_scaled_increments`' output or
    None."""
    from sfm_ros.evaluation.trajectory import chain

    notes: list[str] = []
    metric = None
    refine = refiner is not None and refiner.mode != "none"
    snips = network_snippets(est, images)
    rel = network_increments(snips)
    refined = None
    depths = ([est.depth(im)[0, 0].float().cpu().numpy() for im in images]
              if refine or ground is not None else None)
    scales = None
    if ground is not None:  # first: the refinement's length filter runs in the metric units, as in the node
        scales = ground_scales(ground, depths, est.scale_intrinsics(K, raw_hw))
    if refine:
        rel, refined = refine_increments(refiner, views, depths[:-1], rel, None if scales is None else scales[0],
                                         None if ground is None else (ground.down, ground.camera_height))
        notes.append(f"--refine {refiner.mode}: " + ", ".join(f"{v} increments {k}" for k, v in
                                                             sorted(refined.items())))
    if ground is not None:
        metric = ground_scaled_increments(ground, depths, rel, None, scales)
        notes.append(f"--camera-height {ground.camera_height:g}: {metric['note']}")
        rel = metric["rel"]  # what the node publishes: each increment times its frame's scale
    traj = chain(rel)
    m: dict[str, Any] = {"traj": traj}
    if est.seq_len == snippet and refined is None:
        m["snippets"] = snips
        notes.append(f"snippet ATE: one pose-network prediction per {snippet}-frame snippet "
                     f"(model seq_len {est.seq_len}, target in the middle; SfMLearner's protocol)")
    else:
        m["rel"] = rel
        why = f"model seq_len {est.seq_len} != snippet {snippet}" if est.seq_len != snippet else "refined motion"
        notes.append(f"snippet ATE: {why}: snippets chained "
                     f"from frame-to-frame increments (each averaged over the windows that contain it)")
    return m, notes, metric


def gt_twin(path: Path) -> Path:
    """``OUT.txt`` → ``OUT.gt.txt`` (``.txt`` when ``OUT`` has no suffix)."""
    return path.with_name(path.stem + ".gt" + (path.suffix or ".txt"))


def write_trajectory_pair(out: str | Path, fmt: str, stamps, traj: np.ndarray, gt: np.ndarray) -> list[str]:
    """Write ``traj`` to ``out`` and the ground truth of the same frames to its :func:`gt_twin`, as
    TUM (``fmt="tum"``, with ``stamps``) or KITTI files; returns both paths."""
    from sfm_ros.data.pose_files import write_kitti, write_tum

    p = Path(out)
    if p.exists() and p.is_dir():
        raise ValueError(f"{out} is a folder; expected a file name")
    g = gt_twin(p)
    if fmt == "tum":
        write_tum(p, stamps, traj)
        write_tum(g, stamps, gt)
    else:
        write_kitti(p, traj)
        write_kitti(g, gt)
    return [str(p), str(g)]


def path_length(poses: np.ndarray) -> float:
    """The length of the path through the positions of ``poses`` (N, 4, 4): the sum of the steps."""
    t = np.asarray(poses, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(np.diff(t, axis=0), axis=1).sum())


def path_lengths(gt: np.ndarray, traj: np.ndarray) -> dict:
    """``ground_truth`` and ``prediction`` path lengths (:func:`path_length`) and their ``ratio``
    (ground truth / prediction; NaN for a prediction that never moves)."""
    g, p = path_length(gt), path_length(traj)
    return {"ground_truth": g, "prediction": p, "ratio": g / p if p > 1e-12 else float("nan")}


def piece_ratios(gt: np.ndarray, traj: np.ndarray) -> dict | None:
    """The path-length ratio (ground truth / prediction) over consecutive pieces of the path:
    ``length`` (m of ground-truth path; the largest of 1, 2, 5 x 10^k up to a third of the path),
    ``frames`` ``[start, end]`` (inclusive) of each whole piece (the rest at the end is left out) and
    their ``ratios``; None for a path shorter than 3 pieces of 1 cm or with fewer than 2 pieces."""
    sg = np.linalg.norm(np.diff(np.asarray(gt, dtype=np.float64)[:, :3, 3], axis=0), axis=1)
    sp = np.linalg.norm(np.diff(np.asarray(traj, dtype=np.float64)[:, :3, 3], axis=0), axis=1)
    third = sg.sum() / 3.0
    if not third >= 0.01:
        return None
    k = 10.0 ** np.floor(np.log10(third))
    length = max(m * k for m in (1.0, 2.0, 5.0) if m * k <= third)
    frames, ratios, start, acc = [], [], 0, 0.0
    for i, step in enumerate(sg):
        acc += step
        if acc >= length:
            pred = float(sp[start:i + 1].sum())
            frames.append([start, i + 1])
            ratios.append(float(acc / pred) if pred > 1e-12 else float("nan"))
            start, acc = i + 1, 0.0
    if len(ratios) < 2:
        return None
    return {"length": float(length), "frames": frames, "ratios": ratios}


def node_defaults() -> dict:
    """The node's defaults that change the units of its motion: ``refine_pose`` and ``pose_flip``
    (:class:`sfm_ros.runtime.pipeline.Settings`)."""
    from sfm_ros.runtime.pipeline import Settings

    return {"refine_pose": Settings.refine_pose, "pose_flip": bool(Settings.pose_flip)}


def _settings_text(s: dict) -> str:
    return f"refine_pose {s['refine_pose']}, pose_flip {str(bool(s['pose_flip'])).lower()}"


def node_scale(results: dict, gt: np.ndarray, traj: np.ndarray, settings: dict, method: str = "model",
               frames: str | None = None) -> dict | None:
    """The value of the node's ``scale`` parameter (metres per network unit, when the ground truth
    is metric) that makes the path the node publishes on ``/odom`` as long as the ground truth's:
    ground-truth path length / the length of ``traj`` (``method``'s trajectory in network units, run
    with ``settings``, ``{"refine_pose": ..., "pose_flip": ...}``). None when ``method`` is absent
    or its trajectory never moves.

    A path-length ratio, not the Sim(3) alignment's scale: the node multiplies every step by
    ``scale``, so its path is ``scale`` times this one; the least-squares (Umeyama) scale of the
    positions also answers to the path's shape: larger where the prediction bends more than the
    truth (its ends are closer together), smaller where it bends less (KITTI 00 0:160, shipped
    model, network alone, which under-turns at the corner: Sim(3) 33.6, path ratio 36.2, the node's
    own /odom 36.3 m of true path per unit published). ``settings`` matter: the refiner's lengths are the predicted depth's units (its
    length filter), not the pose network's, so a scale holds for one ``refine_pose`` /
    ``pose_flip`` (``applies_to``); ``warning`` says when they are not the node's defaults
    (:func:`node_defaults`). The Sim(3) scale stays as ``sim3_scale``. ``pieces``: the same ratio
    over consecutive pieces of the path (:func:`piece_ratios`): how much the depth's scale, which
    sets the refined lengths, changes from scene to scene."""
    a = results.get(method, {}).get("ate")
    if not a:
        return None
    lengths = path_lengths(gt, traj)
    if not np.isfinite(lengths["ratio"]):
        return None
    defaults = node_defaults()
    settings = {"refine_pose": settings["refine_pose"], "pose_flip": bool(settings["pose_flip"])}
    same = settings == defaults
    warning = None if same else (
        f"this run is not the node's defaults ({_settings_text(settings)} here; the node's {_settings_text(defaults)}): "
        f"the scale holds for a node run with {_settings_text(settings)}; for the node's defaults rerun with "
        f"--pose-flip --refine {defaults['refine_pose']}")
    sim3 = float(a["scale"]) if a.get("align") == "sim3" and np.isfinite(a.get("scale", np.nan)) else None
    return {"scale": lengths["ratio"], "method": method,
            "from": f"the ratio of path lengths: ground truth {lengths['ground_truth']:.4g} m / prediction "
                    f"{lengths['prediction']:.4g} network units" + (f" over frames {frames}" if frames else ""),
            "gt_path": lengths["ground_truth"], "pred_path": lengths["prediction"], "sim3_scale": sim3,
            "settings": settings, "applies_to": f"the node with {_settings_text(settings)}",
            "node_defaults": same, "warning": warning, "pieces": piece_ratios(gt, traj)}


METHOD_LABELS = {"model": "model", "prediction": "prediction", "zero_motion": "zero motion",
                  "mean_odometry": "mean odometry"}


def format_pose_report(res: dict, prog: str = "sfm_eval") -> str:
    """The ``sfm_eval pose`` report: a Markdown table of every method, the metric scale, the notes."""
    lines = [f"{prog} pose: {res['count']} frames (stride {res['stride']}) of {res['source']}; "
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
        lines.append(f"| {METHOD_LABELS.get(name, name)} | {s['mean']:.4f} ± {s['std']:.4f} | "
                     f"{a['rmse']:.4f}{al} | {rp} |")
    lines.append("")
    lines += _drift_lines(res)
    ms = res.get("metric_scale")
    if ms:
        lines.append(f"metric scale from camera height {ms['camera_height']:g} m (no scale alignment): predicted / "
                     f"true step length median {ms['step_ratio_median']:.3f} (quartiles {ms['step_ratio_p25']:.3f}-"
                     f"{ms['step_ratio_p75']:.3f}); ATE RMSE {ms['ate_se3']['rmse']:.4f} m (se3)")
        lines.append("")
    ns = res.get("node_scale")
    if ns:
        sim3 = "" if ns.get("sim3_scale") is None else f"; the Sim(3) alignment's scale: {ns['sim3_scale']:.6g}"
        lines.append(f"scale for {ns.get('applies_to', 'the node')}: {ns['scale']:.6g} m per network unit "
                     f"({ns['from']}{sim3}; metres if the ground truth is): "
                     f"sfm_node --ros-args -p scale:={ns['scale']:.6g}")
        pc = ns.get("pieces")
        if pc:
            r = np.asarray(pc["ratios"], dtype=np.float64)
            lines.append(f"  over consecutive {pc['length']:g} m pieces of the path the ratio is {np.nanmin(r):.4g} to "
                         f"{np.nanmax(r):.4g} ({len(r)} pieces; the predicted depth's scale changes with the scene: "
                         f"evaluate the robot's own kind of path, the longer the better)")
        if ns.get("warning"):
            lines.append(f"warning: {ns['warning']}")
        lines.append("")
    pl = res.get("path_lengths")
    if pl and res.get("model") is None and np.isfinite(pl["ratio"]):
        lines.append(f"path length: prediction {pl['prediction']:.4g}, ground truth {pl['ground_truth']:.4g} m; "
                     f"ratio {pl['ratio']:.4g} (a node that published this prediction matches the ground truth's "
                     f"path length with its scale times {pl['ratio']:.4g})")
        lines.append("")
    lines += [f"- {n}" for n in res["notes"]]
    lines.append("- ATE/RPE after Sim(3) alignment (se3 where the trajectory never moves); "
                 "snippet ATE as SfMLearner's compute_ate (sqrt(sum err^2) / L)")
    for w in res["written"]:
        lines.append(f"- wrote {w}")
    if res.get("plot"):
        lines.append(f"- plotted {res['plot']['path']} ({res['plot']['view']})")
    return "\n".join(lines)


def _drift_lines(res: dict) -> list[str]:
    """The segment-drift table of :func:`format_pose_report` (nothing when it was not computed)."""
    sd = res.get("segment_drift")
    if not sd:
        return []
    if not sd["lengths"]:
        return [f"segment drift: none (the ground-truth path is {sd['path_length']:.4g} m long; no segment "
                f"length fits)", ""]
    lines = [f"segment drift (KITTI devkit definition): segments of {', '.join(f'{L:g}' for L in sd['lengths'])} m "
             f"of the {sd['path_length']:.4g} m ground-truth path, one from every {sd['step']} frame(s) "
             f"(the devkit: 100-800 m, every 10th frame)", "",
             "| method | t_err % | r_err °/100 m | t_err % (one global scale) | r_err °/100 m (one global scale) "
             "| global scale | segments |", "|---|---:|---:|---:|---:|---:|---:|"]

    def cells(d: dict | None) -> str:
        return f"{d['t_err_pct']:.2f} | {d['r_err_deg_per_100m']:.3f}" if d else "n/a | n/a"
    for name, m in res["methods"].items():
        d = m.get("segment_drift")
        if d and d["as_published"]:
            scale = "n/a" if d["scale"] is None else f"{d['scale']:.4g}"
            lines.append(f"| {METHOD_LABELS.get(name, name)} | {cells(d['as_published'])} | "
                         f"{cells(d['global_scale'])} | {scale} | {d['as_published']['segments']} |")
    lines += ["", "as published: the trajectory as predicted (metric with --camera-height or a metric prediction, "
              "else in network units); one global scale: every predicted position times the whole trajectory's "
              "Sim(3) scale (the rotation error does not change); segments end at the first frame beyond the "
              "length", ""]
    return lines
