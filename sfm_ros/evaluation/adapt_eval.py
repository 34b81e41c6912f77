"""``sfm_eval depth --adapt``: online adaptation measured prequentially, next to the frozen model.

The frames are run in order through the node's adaptation (:func:`prequential_depths`):
each frame's depth is predicted with the weights *before* anything containing that frame was learnt,
then the frame's window is learnt from. The same frames are also predicted by the frozen starting
weights, and both are scored by :func:`sfm_ros.evaluation.depth_eval.evaluate_depth_sequence` with the same
ground truth; the report adds the mean of each metric per block of frames (``--adapt-block``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sfm_ros.training.adapt import Adapter, AdaptOptions, prequential
from sfm_ros.evaluation.depth_eval import evaluate_depth_sequence
from sfm_ros.evaluation.metrics import DEPTH_METRIC_KEYS


def prequential_depths(estimator, images, K: np.ndarray, stride: int = 1, steps_per_frame: int = 1,
                       opts: AdaptOptions | None = None, started_from: str = ""):
    """``sfm_eval depth --adapt``: the node's adaptation over camera images in order, prequentially.

    Yields ``(image, adapted depth, frozen depth)`` per image (network units, at the network size):
    the adapted depth comes from the weights before any window holding that image was learnt; the
    frozen depth from the estimator's starting weights. ``K``: the camera intrinsics of the images
    (scaled here to the network size). Returns the :class:`Adapter` (``StopIteration.value``).
    """

    frozen = copy.deepcopy(estimator.model).eval()
    adapter = Adapter(estimator.model, estimator.options, opts, started_from=started_from)
    state = {"K": None}

    def network_frames():
        for img in images:
            x = estimator.preprocess(img)
            if state["K"] is None:
                state["K"] = estimator.scale_intrinsics(K, img.shape[:2])
            state["img"], state["x"] = img, x
            yield (x[0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)

    frames = network_frames()
    first = next(frames, None)
    if first is None:
        return adapter

    def chained():
        yield first
        yield from frames

    for _, model in prequential(adapter, chained(), state["K"], stride, steps_per_frame):
        x = state["x"]
        with torch.no_grad():
            d_adapted = (1.0 / model.predict_disp(x)[0].float())[0, 0].cpu().numpy()
            d_frozen = (1.0 / frozen.predict_disp(x)[0].float())[0, 0].cpu().numpy()
        yield state["img"], d_adapted, d_frozen
    return adapter


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
    if save and adapter is not None:
        adapter.save(save)
    res.update(frozen={k: res_frozen["metrics"][k] for k in DEPTH_METRIC_KEYS}, blocks=blocks,
               adaptation=None if adapter is None else adapter.stats(),
               adapt_settings={"stride": stride, "steps_per_frame": steps_per_frame, "block": block,
                               "saved": str(save) if save and adapter is not None else None})
    return res


def format_adaptation(res: dict) -> str:
    """The per-block table of ``sfm_eval depth --adapt`` (abs rel and δ<1.25, adapted vs frozen)."""
    s = res["adapt_settings"]
    a = res.get("adaptation") or {}
    lines = ["", f"adaptation (prequential: each frame scored before it is learnt; window stride {s['stride']}, "
                 f"{s['steps_per_frame']} step(s) a frame): {a.get('steps', 0)} steps, "
                 f"{a.get('accepted_updates', 0)} updates accepted, {a.get('rejected_updates', 0)} rejected, "
                 f"{a.get('windows_static', 0)} static windows refused",
             "", "| frames | abs rel adapted | abs rel frozen | δ<1.25 adapted | δ<1.25 frozen |",
             "|---|---:|---:|---:|---:|"]
    for b in res["blocks"]:
        lines.append(f"| {b['first']}-{b['last']} | {b['adapted']['abs_rel']:.4f} | {b['frozen']['abs_rel']:.4f} | "
                     f"{b['adapted']['a1']:.4f} | {b['frozen']['a1']:.4f} |")
    lines.append(f"| all | {res['metrics']['abs_rel']:.4f} | {res['frozen']['abs_rel']:.4f} | "
                 f"{res['metrics']['a1']:.4f} | {res['frozen']['a1']:.4f} |")
    if s.get("saved"):
        lines.append(f"adapted weights written to {s['saved']}")
    return "\n".join(lines)
