"""The node's model: the shipped checkpoint's path (:func:`default_checkpoint`), the estimator
loaded, size-checked and warmed up (:func:`load_estimator`), and on a CPU with ``precision auto``
the fastest inference path at equal output, measured on the running machine: fp32 or bf16 at
start (:func:`choose_cpu_path`), int8 once the camera's first frames can calibrate it
(:func:`sfm_ros.runtime.path_measure.int8_verdict`, run by
:class:`sfm_ros.runtime.quantize.DeferredCalibration`). ROS-free."""
from __future__ import annotations

from pathlib import Path

from sfm_ros.runtime.diagnostics import Log
from sfm_ros.runtime.path_measure import BF16_DEPTH_TOL, BF16_POSE_TOL, MIN_GAIN, time_ms, output_change

DEFAULT_MODEL = "sfm_default.pt"
def default_checkpoint() -> Path:
    """``share/sfm_ros/models/sfm_default.pt`` if the package is installed, else the source tree's."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("sfm_ros")) / "models" / DEFAULT_MODEL)
    except Exception:  # PackageNotFoundError, or ament_index not importable
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[-1]


def load_estimator(checkpoint: str = "", device: str = "auto", precision: str = "fp32", backend: str = "auto",
                   num_threads: int = 0, height: int = 0, width: int = 0, log: Log | None = None):
    """``(estimator, checkpoint path)``: the node's :class:`~sfm_ros.runtime.inference.Estimator`, warmed up
    (the first calls allocate: this keeps the first frame's latency representative); ``checkpoint``
    ``""`` = :func:`default_checkpoint`;
    ``height``/``width`` > 0 override the checkpoint's input size (torch backend only, warned).
    Raises FileNotFoundError / ValueError (one line) / CheckpointError."""
    import torch

    from sfm_ros.runtime.inference import BACKENDS, Estimator, auto_backend

    ckpt = checkpoint or str(default_checkpoint())
    if not Path(ckpt).exists():  # a folder or a bad file: read_checkpoint names what is wrong with it
        what = "the default model" if not checkpoint else "checkpoint"
        raise FileNotFoundError(f"{what} {ckpt} does not exist (set the 'checkpoint' parameter)")
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be one of auto, {', '.join(BACKENDS)}, got {backend!r}")
    if num_threads > 0:  # every CPU pool the frame uses: the networks' and OpenCV's (corners, warps)
        import cv2

        torch.set_num_threads(num_threads)
        cv2.setNumThreads(num_threads)
    h, w = height, width
    if h or w:  # a 0 side is the checkpoint's; the checkpoint's own size is no override (auto stays measured)
        from sfm_ros.core.checkpoint import read_checkpoint

        model = read_checkpoint(ckpt)["options"].get("model", {})
        ch, cw = int(model.get("height", 0)), int(model.get("width", 0))
        h, w = h or ch, w or cw
        if (h, w) == (ch, cw):
            h = w = 0
    e, why = None, None
    measured = False  # precision auto measured the CPU's paths: int8 is measured on the camera's frames later
    if precision == "auto":
        from sfm_ros.core.device import resolve_device

        if resolve_device(device).type == "cpu" and backend in ("auto", "torch") and not (h or w):
            measured = True
            backend, precision, why, e = choose_cpu_path(ckpt, threads=max(0, num_threads), backend=backend)
        elif resolve_device(device).type == "cpu":  # not measured (a backend or a size given): fp32
            precision = "fp32"
    if backend == "auto":
        backend = auto_backend(device, precision, size_override=bool(h or w))
    if e is None:
        e = Estimator(ckpt, device=device, precision=precision, backend=backend, threads=max(0, num_threads))
    if why is not None and log is not None:  # said once the checkpoint has loaded (a bad one is the one line)
        log.info(f"precision auto: {why}")
    import importlib.util

    e.int8_candidate = measured and importlib.util.find_spec("onnxruntime") is not None
    if (h or w) and (h, w) != (e.height, e.width):
        if h < 16 or w < 16:
            raise ValueError(f"height/width override must be >= 16, got {h}x{w} (height x width; a 0 is the "
                             f"checkpoint's {e.height}x{e.width})")
        if backend != "torch":
            raise ValueError(f"a height/width override needs backend 'torch' (the {backend} graphs "
                             f"are exported at the checkpoint's {e.height}x{e.width})")
        if log is not None:
            log.warning(f"network input {h}x{w} overrides the checkpoint's {e.height}x{e.width}: the networks "
                        "are fully convolutional, but depth and motion were trained at the checkpoint's size")
        e.height, e.width = h, w
    x = torch.zeros(1, 3, e.height, e.width, device=e.device)
    e.depth(x)
    e.poses([x] * e.seq_len)
    e.poses([x] * e.seq_len, flip=True)  # the batch of two of pose_flip
    return e, ckpt


def choose_cpu_path(checkpoint: str, threads: int = 0, runs: int = 9, backend: str = "auto") -> tuple:
    """``(backend, precision, why, estimator)`` for ``precision auto`` on the CPU: fp32 (ONNX Runtime
    with ``backend`` auto when installed, else PyTorch) against PyTorch bf16 autocast on CPUs with
    bf16 instructions, both timed on the checkpoint's networks at its size (medians of ``runs``
    depth + pose calls in alternating rounds, a few seconds in all); bf16 only when it is
    :data:`MIN_GAIN` faster and its output equal within :data:`BF16_DEPTH_TOL` /
    :data:`BF16_POSE_TOL` on rendered street frames. ``estimator``: the chosen one, built for the
    measurement (None when nothing was measured). CPUs differ: the same flags made bf16 faster on
    one machine and slower on another (:mod:`sfm_ros.core.precision`)."""
    import importlib.util

    from sfm_ros.core.device import cpu_has_bf16_instructions
    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.runtime.inference import Estimator

    fp32_backend = "onnxruntime" if backend == "auto" and importlib.util.find_spec("onnxruntime") else "torch"
    if not cpu_has_bf16_instructions():
        return fp32_backend, "fp32", f"{fp32_backend} fp32 (no bf16 instructions)", None
    e32 = Estimator(checkpoint, device="cpu", precision="fp32", backend=fp32_backend, threads=threads)
    seq = render_sequence(num_frames=e32.seq_len, height=e32.height, width=e32.width, seed=7)
    frames = [e32.preprocess(im) for im in seq.images]
    try:
        e16 = Estimator(checkpoint, device="cpu", precision="bf16", backend="torch")
        depth, pose = output_change(e32, e16, frames)
        t32, t16 = time_ms([e32, e16], frames[0], runs)
    except Exception as exc:  # an operation bf16 autocast cannot run: fp32 it is
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return fp32_backend, "fp32", f"{fp32_backend} fp32 (bf16 failed: {first[:120]})", e32
    equal = depth <= BF16_DEPTH_TOL and pose <= BF16_POSE_TOL
    measured = (f"{fp32_backend} fp32 {t32:.1f} ms, torch bf16 {t16:.1f} ms depth + pose; bf16 changes depth "
                f"{100 * depth:.2f} %, poses by {pose:.2g}")
    if t16 < (1.0 - MIN_GAIN) * t32 and equal:
        return "torch", "bf16", f"torch bf16 ({measured})", e16
    return (fp32_backend, "fp32", f"{fp32_backend} fp32 ({measured}{'' if equal else ': bf16 output not equal'})",
            e32)
