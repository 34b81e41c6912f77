"""A training run's inputs: decoded into sequences at the training size (:func:`load_inputs`, which
chooses the input size and frame stride the user left open), and stored in every checkpoint
(:func:`inputs_record`) so that ``sfm_train --resume --out DIR`` needs none (:func:`restore_inputs`).

The inputs are read from an object with the attributes :data:`INPUT_FIELDS`: the source lists
``bag``, ``images``, ``kitti``, ``video`` and ``synthetic``, and how they are read
(:class:`sfm_ros.data.inputs.InputOptions`); ``sfm_train`` passes its ``argparse`` namespace, whose
flags the messages name. ROS-free.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sfm_ros.training.errors import SetupError

__all__ = ["INPUT_FIELDS", "PATH_FIELDS", "load_inputs", "has_inputs", "inputs_record", "restore_inputs",
           "describe_inputs"]

#: The fields that say what a run trained on (stored under a checkpoint's ``extra["inputs"]``).
INPUT_FIELDS = ("bag", "topic", "camera_info_topic", "images", "pattern", "fps", "kitti", "kitti_camera",
                "video", "synthetic", "synthetic_frames", "max_frames", "calib", "fx", "fy", "cx", "cy",
                "rectify_alpha")
#: Those of them that are paths (stored absolute, so that a resume works from any folder).
PATH_FIELDS = ("bag", "images", "kitti", "video", "calib")


def load_inputs(inputs: Any, opts, log=print, explicit: set[str] | None = None) -> list:
    """Decode every input into a :class:`sfm_ros.data.datasets.Sequence` at the training size.

    With ``explicit`` (the keys the user set, :func:`sfm_ros.training.run_setup.explicit_keys`), the
    input size follows the first camera's aspect ratio (and, with a time budget on a CPU, the steps
    it buys there, which may also take the half-width DispNet: :mod:`sfm_ros.training.size_budget`)
    and the frame stride the measured motion,
    unless set (:mod:`sfm_ros.data.autoconfig`); ``opts`` is updated and each choice logged with its
    reason. Raises :class:`SetupError` for no input or an input shorter than one window."""
    from sfm_ros.data import inputs as sources
    from sfm_ros.data.autoconfig import auto_size, auto_stride
    from sfm_ros.data.datasets import prepare_sequence
    from sfm_ros.training.size_budget import budget_size, narrows, sizes_time

    makers = ([(sources.bag_input, p) for p in inputs.bag] + [(sources.folder_input, p) for p in inputs.images]
              + [(sources.kitti_input, p) for p in inputs.kitti] + [(sources.video_input, p) for p in inputs.video])
    if not makers and not inputs.synthetic:
        raise SetupError("no input: give --bag, --images, --kitti, --video or --synthetic")
    auto = explicit is not None
    seqs = []
    pending = [lambda m=m, p=p: m(p, inputs) for m, p in makers]
    if inputs.synthetic:
        pending += [lambda s=s: s for s in sources.synthetic_inputs(inputs, opts)]
    for make in pending:
        t0 = time.monotonic()
        inp = make()
        if auto and not seqs and inp.image_hw is not None and \
                not {"model.height", "model.width"} & explicit:
            cam_w, cam_h = inp.image_hw[1], inp.image_hw[0]
            h, w = opts.model.height, opts.model.width = auto_size(cam_w, cam_h)
            why = f"the {cam_w}x{cam_h} camera's aspect ratio at about the paper's 128x416 pixels"
            net = ""
            if sizes_time(opts) is None:
                wm = opts.model.width_mult
                (bh, bw), bwm, budget = budget_size(cam_w, cam_h, opts, narrow=narrows(opts, explicit))
                if bwm != wm:
                    why += ", then the half-width DispNet for the time budget"
                    net = f", DispNet x{bwm:g}"
                if (bh, bw) != (h, w):
                    why += ", then fewer pixels for the time budget"
                h, w = opts.model.height, opts.model.width = bh, bw
                opts.model.width_mult = bwm
                why += f"; {budget}"
            choose = "--height/--width" + (", --width-mult" if net else "")
            log(f"input size {h}x{w}{net} (chosen: {why}; {choose} to choose)")
        counter = sources.FrameCounter(inp.frames)
        seq = prepare_sequence(counter, inp.K, (opts.model.height, opts.model.width), name=inp.name,
                               static_threshold=opts.data.static_threshold,
                               cache_dir=opts.data.cache_dir or None, cache_key=inp.cache_key,
                               cache_max_bytes=int(opts.data.cache_max_gb * 1e9))
        dt = time.monotonic() - t0
        src = f"{counter.n} frames decoded" if counter.n else "from the cache"
        log(f"{inp.name}: {len(seq)} frames ({src}, {dt:.1f} s; {', '.join(inp.notes)})")
        seqs.append(seq)
    if auto and "data.stride" not in explicit:
        opts.data.stride = auto_stride(seqs, opts.model.seq_len, opts.data.stride, log)
    need = (opts.model.seq_len - 1) * opts.data.stride + 1
    for seq in seqs:
        if len(seq) < need:
            dropped = f" after static-frame removal (data.static_threshold={opts.data.static_threshold:g})" \
                if opts.data.static_threshold > 0 else ""
            raise SetupError(f"{seq.name}: {len(seq)} frames{dropped}: fewer frames than one window: "
                             f"expected at least {need} (model.seq_len={opts.model.seq_len}, "
                             f"data.stride={opts.data.stride})")
    return seqs


def has_inputs(inputs: Any) -> bool:
    """Whether any input is named."""
    return bool(inputs.bag or inputs.images or inputs.kitti or inputs.video or inputs.synthetic)


def inputs_record(inputs: Any) -> dict:
    """The inputs of this run as stored in its checkpoints: :data:`INPUT_FIELDS`, paths absolute."""
    rec = {}
    for name in INPUT_FIELDS:
        value = getattr(inputs, name)
        if name in PATH_FIELDS and value:
            value = [str(Path(v).resolve()) for v in value] if isinstance(value, list) else str(Path(value).resolve())
        rec[name] = list(value) if isinstance(value, list) else value
    return rec


def restore_inputs(inputs: Any, record: dict | None, source: Path, defaults: dict) -> None:
    """Fill ``inputs`` with the inputs stored in checkpoint ``source`` (``--resume`` without inputs):
    every field of :data:`INPUT_FIELDS` still at its default (``defaults``: field -> value when not
    given) takes the stored value.

    Raises :class:`SetupError` when the checkpoint stores none (not written by ``sfm_train``, or
    written by one that did not store its inputs)."""
    if not isinstance(record, dict) or not any(record.get(k) for k in ("bag", "images", "kitti", "video",
                                                                       "synthetic")):
        raise SetupError(f"no input: give --bag, --images, --kitti, --video or --synthetic (checkpoint "
                         f"{source} stores no inputs to reuse)")
    for name in INPUT_FIELDS:
        if name in record and getattr(inputs, name) == defaults.get(name):
            setattr(inputs, name, record[name])


def describe_inputs(inputs: Any) -> str:
    """``--bag /data/a.bag --synthetic 2`` for a log line."""
    parts = []
    for name in ("bag", "images", "kitti", "video"):
        parts += [f"--{name} {v}" for v in getattr(inputs, name)]
    if inputs.synthetic:
        parts.append(f"--synthetic {inputs.synthetic}")
    return " ".join(parts)
