"""Where a training process runs: torchrun's environment, its device and process-group backend, and
the autocast precision (``train.amp``).

Started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` in the
environment), each rank takes GPU ``LOCAL_RANK mod #GPUs`` and NCCL when every rank on the machine has
a GPU of its own, else gloo (which also reduces CUDA tensors). Without torchrun: rank 0 of 1.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch

from sfm_ros.core.device import cpu_has_bf16_instructions
from sfm_ros.core.options import Options

__all__ = ["distributed_env", "rank_device", "amp_dtype", "choose_amp"]


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: torch.device, world: int, local_rank: int) -> tuple[torch.device, str]:
    """``(device, backend)`` of this rank: in a distributed CUDA run (``world > 1``) GPU
    ``local_rank mod #GPUs``, made the current device, and ``"nccl"`` when the machine's ranks
    (``LOCAL_WORLD_SIZE``) do not outnumber its GPUs; ``"gloo"`` otherwise (NCCL needs a GPU of its
    own per rank). ``device`` is unchanged outside distributed CUDA runs."""
    backend = "gloo"
    if world > 1 and device.type == "cuda":
        n_gpu = torch.cuda.device_count()
        device = torch.device("cuda", local_rank % n_gpu)
        torch.cuda.set_device(device)
        if int(os.environ.get("LOCAL_WORLD_SIZE", world)) <= n_gpu:
            backend = "nccl"
    return device, backend


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full precision)."""
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs CUDA; use bf16 or off on the CPU")
        return torch.float16
    if mode != "auto":
        raise ValueError(f"train.amp must be auto, off, bf16 or fp16, got {mode!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None  # choose_amp measures bf16 on CPUs that have it (sfm_ros.core.precision)


def choose_amp(opts: Options, device: torch.device, *, is_main: bool, distributed: bool,
               log: Callable[[str], None]) -> torch.dtype | None:
    """:func:`amp_dtype`, except that ``train.amp=auto`` on a CPU with bf16 instructions measures
    bf16 against fp32 (:func:`sfm_ros.core.precision.calibrate_cpu_amp`) on rank 0 of a
    single-process run; distributed CPU runs stay fp32 (ranks measuring at once would time each
    other's contention)."""
    amp = amp_dtype(opts.train.amp, device)
    if opts.train.amp == "auto" and device.type == "cpu" and is_main and cpu_has_bf16_instructions():
        if distributed:
            log("precision fp32 (bf16 is measured in single-process runs only)")
        else:
            from sfm_ros.core.precision import calibrate_cpu_amp

            amp = calibrate_cpu_amp(opts, log=log)
    return amp
