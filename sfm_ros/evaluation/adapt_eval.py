"""``sfm_eval depth --adapt``: online adaptation measured prequentially, next to the frozen model.

The frames are run in order through the node's adaptation (:func:`prequential_depths`):
each frame's depth is predicted with the weights *before* anything containing that frame was learnt,
then the frame's window is learnt from. The same frames are also predicted by the frozen starting
weights, and both are scored by :func:`sfm_ros.evaluation.depth_eval.evaluate_depth_sequence` with the same
ground truth; the report adds the mean of each metric per block of frames (``--adapt-block``).
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from sfm_ros.training.adapt import Adapter, AdaptOptions, prequential
from sfm_ros.evaluation.depth_eval import evaluate_depth_sequence
from sfm_ros.evaluation.metrics import DEPTH_METRIC_KEYS


def _prequential_inputs(estimator, images, K: np.ndarray, stride: int, steps_per_frame: int,
                       opts: AdaptOptions | None, started_from: str):
    """The node's adaptation over camera images in order: yields ``(image, x, model)`` per image, ``x``
    the network input and ``model`` the accepted weights before anything holding that image was
    learnt; returns the :class:`Adapter`. ``K``: the images' intrinsics (scaled here)."""
    from sfm_ros.runtime.inference import to_rgb8

    if estimator.backend != "torch":
        raise ValueError(f"--adapt runs the networks in PyTorch; got backend {estimator.backend}")
    adapter = Adapter(estimator.model, estimator.options, opts, started_from=started_from)
    state: dict = {"K": None}

    def network_frames():
        for img in images:
            x = estimator.preprocess(img)
            if state["K"] is None:
                state["K"] = estimator.scale_intrinsics(K, img.shape[:2])
            state["img"], state["x"] = img, x
            yield to_rgb8(x)

    frames = network_frames()
    first = next(frames, None)
    if first is None:
        return adapter

    def chained():
        yield first
        yield from frames

    for _, model in prequential(adapter, chained(), state["K"], stride, steps_per_frame):
        yield state["img"], state["x"], model
    return adapter


def _with_weights(estimator, model, fn):
    """``fn()`` with ``estimator`` running ``model`` (then its own weights again)."""
    own = estimator.model
    estimator.model = model
    try:
        return fn()
    finally:
        estimator.model = own


def prequential_depths(estimator, images, K: np.ndarray, stride: int = 1, steps_per_frame: int = 1,
                       opts: AdaptOptions | None = None, started_from: str = ""):
    """``sfm_eval depth --adapt``: yields ``(image, adapted depth, frozen depth)`` per image (network
    units, network size; see :func:`_prequential_inputs`); returns the :class:`Adapter`."""
    gen = _prequential_inputs(estimator, images, K, stride, steps_per_frame, opts, started_from)
    while True:  # the estimator's own weights stay the starting (frozen) ones: the adapter learns a copy
        try:
            img, x, model = next(gen)
        except StopIteration as stop:
            return stop.value
        adapted = _with_weights(estimator, model, lambda: estimator.depth(x))
        yield img, adapted[0, 0].float().cpu().numpy(), estimator.depth(x)[0, 0].float().cpu().numpy()


def prequential_snippets(estimator, images, K: np.ndarray, stride: int = 1, steps_per_frame: int = 1,
                         opts: AdaptOptions | None = None, started_from: str = ""):
    """``sfm_eval pose --adapt``: yields ``(adapted snippet, frozen snippet)`` for every window of
    ``seq_len`` consecutive images (:func:`sfm_ros.evaluation.trajectory.snippet_from_network` form),
    the adapted one predicted with the weights of the moment its *oldest* image arrived, i.e. before
    any window holding one of its images was learnt; returns the adapter."""
    from sfm_ros.evaluation.trajectory import snippet_from_network

    L = estimator.seq_len
    recent: deque = deque(maxlen=L)  # (network input, the weights before it was learnt)
    gen = _prequential_inputs(estimator, images, K, stride, steps_per_frame, opts, started_from)
    while True:
        try:
            _, x, model = next(gen)
        except StopIteration as stop:
            return stop.value
        recent.append((x, model))
        if len(recent) == L:
            window = [f for f, _ in recent]
            oldest = recent[0][1]
            adapted = _with_weights(estimator, oldest, lambda: estimator.poses(window))[0].double().cpu().numpy()
            frozen = estimator.poses(window)[0].double().cpu().numpy()
            yield snippet_from_network(adapted, L // 2), snippet_from_network(frozen, L // 2)


def evaluate_pose_adaptation(estimator, images, K: np.ndarray, gt_poses: np.ndarray, stride: int = 1,
                             steps_per_frame: int = 1, block: int = 50, opts: AdaptOptions | None = None,
                             started_from: str = "", save: str | Path | None = None) -> dict:
    """Snippet ATE (``seq_len`` frames, the paper's formula) of the adapted and the frozen weights over
    the frames in order, overall and per block of windows (by the window's first frame)."""
    from sfm_ros.evaluation.trajectory import snippet_ate

    if block < 1:
        raise ValueError(f"--adapt-block must be >= 1, got {block}")
    holder: dict = {}

    def run():
        holder["adapter"] = yield from prequential_snippets(estimator, images, K, stride, steps_per_frame, opts,
                                                            started_from)
    pairs = list(run())
    L = estimator.seq_len
    if len(pairs) < 1 or len(gt_poses) != len(pairs) + L - 1:
        raise ValueError(f"{len(gt_poses)} ground-truth poses for {len(pairs) + L - 1} frames")
    res = {name: snippet_ate(gt_poses, np.asarray([p[k] for p in pairs]), snippet_len=L)
           for k, name in enumerate(("adapted", "frozen"))}
    blocks = []
    for start in range(0, len(pairs), block):
        a = res["adapted"]["per_snippet"][start:start + block]
        f = res["frozen"]["per_snippet"][start:start + block]
        blocks.append({"first": start, "last": start + len(a) - 1, "count": len(a),
                       "adapted": float(np.mean(a)), "frozen": float(np.mean(f))})
    adapter = holder.get("adapter")
    saved, save_error = _save(adapter, save)
    return {"command": "pose", "adapt": True, "snippet_len": L, "blocks": blocks,
            "adapted": {k: res["adapted"][k] for k in ("mean", "std", "median", "count")},
            "frozen": {k: res["frozen"][k] for k in ("mean", "std", "median", "count")},
            "adaptation": None if adapter is None else adapter.stats(),
            "adapt_settings": {"stride": stride, "steps_per_frame": steps_per_frame, "block": block,
                               "saved": saved, "save_error": save_error}}


def format_pose_adaptation(res: dict, prog: str = "sfm_eval") -> str:
    s, a = res["adapt_settings"], res.get("adaptation") or {}
    lines = [f"{prog} pose --adapt: snippet ATE ({res['snippet_len']} frames) of {res['adapted']['count']} windows, "
             f"prequential (each window scored with the weights of the moment its oldest frame arrived; adaptation "
             f"window stride {s['stride']}, {s['steps_per_frame']} step(s) a frame): {a.get('steps', 0)} steps, "
             f"{a.get('accepted_updates', 0)} updates accepted, {a.get('rejected_updates', 0)} rejected{_changed(a)}",
             "", "| windows | snippet ATE adapted | snippet ATE frozen |", "|---|---:|---:|"]
    for b in res["blocks"]:
        lines.append(f"| {b['first']}-{b['last']} | {b['adapted']:.4f} | {b['frozen']:.4f} |")
    lines.append(f"| all | {res['adapted']['mean']:.4f} | {res['frozen']['mean']:.4f} |")
    if s.get("saved"):
        lines.append(f"adapted weights written to {s['saved']}")
    if s.get("save_error"):
        lines.append(f"adapted weights NOT saved: {s['save_error']}")
    return "\n".join(lines)


def evaluate_adaptation(estimator, images, K: np.ndarray, gts: list[Callable], min_depth: float, max_depth: float,
                        crop: str | None, stride: int = 1, steps_per_frame: int = 1, block: int = 50,
                        opts: AdaptOptions | None = None, started_from: str = "",
                        save: str | Path | None = None) -> dict:
    """Adapted and frozen depth metrics over the frames in order (see the module doc).

    Returns the adapted run's :func:`evaluate_depth_sequence` result, plus ``frozen`` (the frozen
    model's), ``blocks`` (per block: first and last frame index, adapted and frozen metric means)
    and ``adaptation`` (the adapter's counters); with ``save`` the adapted weights are written there.
    """
    if block < 1:
        raise ValueError(f"--adapt-block must be >= 1, got {block}")
    frozen: list = []
    holder: dict = {}

    def adapted():
        gen = prequential_depths(estimator, images, K, stride, steps_per_frame, opts, started_from)
        while True:
            try:
                img, d_adapted, d_frozen = next(gen)
            except StopIteration as stop:
                holder["adapter"] = stop.value
                return
            frozen.append((d_frozen, img.shape[:2]))
            yield d_adapted, img.shape[:2]

    res = evaluate_depth_sequence(adapted(), gts, min_depth, max_depth, True, crop)
    res_frozen = evaluate_depth_sequence(iter(frozen), gts, min_depth, max_depth, True, crop)
    by_index = {r["index"]: r for r in res_frozen["per_image"]}
    blocks = []
    rows = [r for r in res["per_image"] if r["index"] in by_index]
    for start in range(0, len(frozen), block):
        sel = [r for r in rows if start <= r["index"] < start + block]
        if sel:
            blocks.append({"first": start, "last": min(start + block, len(frozen)) - 1, "count": len(sel),
                           "adapted": {k: float(np.mean([r[k] for r in sel])) for k in DEPTH_METRIC_KEYS},
                           "frozen": {k: float(np.mean([by_index[r["index"]][k] for r in sel])) for k in DEPTH_METRIC_KEYS}})
    adapter = holder.get("adapter")
    saved, save_error = _save(adapter, save)
    res.update(frozen={k: res_frozen["metrics"][k] for k in DEPTH_METRIC_KEYS}, blocks=blocks,
               adaptation=None if adapter is None else adapter.stats(),
               adapt_settings={"stride": stride, "steps_per_frame": steps_per_frame, "block": block,
                               "saved": saved, "save_error": save_error})
    return res


def _save(adapter: Adapter | None, path: str | Path | None) -> tuple[str | None, str | None]:
    """Write the adapted weights to ``path``: ``(path written, None)`` or ``(None, why not)``; a
    failed write (a full disk) never loses the evaluation's figures."""
    if not path or adapter is None:
        return None, None
    try:
        adapter.save(path)
    except OSError as exc:
        return None, f"could not write {path} ({exc.strerror or exc})"
    return str(path), None


def _changed(stats: dict) -> str:
    """``"; options changed: lr=0.0001, ..."`` for the adapter's non-default options, else ``""``."""
    changed = AdaptOptions(**stats["options"]).changed() if stats.get("options") else {}
    return "; options changed: " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else ""


def format_adaptation(res: dict) -> str:
    """The per-block table of ``sfm_eval depth --adapt`` (abs rel and δ<1.25, adapted vs frozen)."""
    s = res["adapt_settings"]
    a = res.get("adaptation") or {}
    lines = ["", f"adaptation (prequential: each frame scored before it is learnt; window stride {s['stride']}, "
                 f"{s['steps_per_frame']} step(s) a frame): {a.get('steps', 0)} steps, "
                 f"{a.get('accepted_updates', 0)} updates accepted, {a.get('rejected_updates', 0)} rejected, "
                 f"{a.get('windows_static', 0)} static windows refused{_changed(a)}",
             "", "| frames | abs rel adapted | abs rel frozen | δ<1.25 adapted | δ<1.25 frozen |",
             "|---|---:|---:|---:|---:|"]
    for b in res["blocks"]:
        lines.append(f"| {b['first']}-{b['last']} | {b['adapted']['abs_rel']:.4f} | {b['frozen']['abs_rel']:.4f} | "
                     f"{b['adapted']['a1']:.4f} | {b['frozen']['a1']:.4f} |")
    lines.append(f"| all | {res['metrics']['abs_rel']:.4f} | {res['frozen']['abs_rel']:.4f} | "
                 f"{res['metrics']['a1']:.4f} | {res['frozen']['a1']:.4f} |")
    if s.get("saved"):
        lines.append(f"adapted weights written to {s['saved']}")
    if s.get("save_error"):
        lines.append(f"adapted weights NOT saved: {s['save_error']}")
    return "\n".join(lines)
