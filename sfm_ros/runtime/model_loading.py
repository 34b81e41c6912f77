"""The node's model: the shipped checkpoint's path (:func:`default_checkpoint`) and the estimator
loaded, size-checked and warmed up (:func:`load_estimator`). ROS-free."""
from __future__ import annotations

from pathlib import Path

from sfm_ros.runtime.diagnostics import Log

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

    from sfm_ros.runtime.inference import Estimator, auto_backend

    ckpt = checkpoint or str(default_checkpoint())
    if not Path(ckpt).is_file():
        what = "the default model" if not checkpoint else "checkpoint"
        raise FileNotFoundError(f"{what} {ckpt} does not exist (set the 'checkpoint' parameter)")
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    h, w = height, width
    if backend == "auto":
        backend = auto_backend(device, precision, size_override=bool(h or w))
    e = Estimator(ckpt, device=device, precision=precision, backend=backend, threads=max(0, num_threads))
    if (h or w) and (h, w) != (e.height, e.width):
        if h < 16 or w < 16:
            raise ValueError(f"height/width override must both be >= 16, got {h}x{w}")
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
