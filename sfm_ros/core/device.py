"""Device policy: which torch device ``auto`` means, and whether bf16 pays on this CPU.

Used by inference (:class:`sfm_ros.runtime.inference.Estimator`), the trainer and the benchmarks; ROS-free.
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["resolve_device", "forked_rng", "cpu_model", "cpu_isa", "cpu_description", "cpu_has_bf16_instructions",
           "cpu_supports_bf16"]

#: the instruction-set flags that change which precision and kernels are fastest, widest first
ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda:N`` is checked to exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def forked_rng(device: torch.device):
    """A context in which ``torch.manual_seed`` and random draws leave the caller's random streams
    as they were: the CPU's and, for a CUDA ``device``, that GPU's (``torch.manual_seed`` reseeds
    every GPU; the other GPUs' streams are not drawn from on this device's work)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index], device_type="cuda")
    return torch.random.fork_rng(devices=[])


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    for line in _cpu_flags().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or "unknown cpu"


def cpu_isa() -> list[str]:
    """Which of :data:`ISA_FLAGS` this CPU has. Virtual machines of one model name differ here
    (this project's "AMD EPYC" machines: AVX2 only on some, AVX512-BF16 on others)."""
    for line in _cpu_flags().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [f for f in ISA_FLAGS if f in flags]
    return []


def cpu_description() -> str:
    """``"<model name> [isa,...]"``: what a cached measurement or a benchmark's figure is tied to."""
    return f"{cpu_model()} [{','.join(cpu_isa()) or 'no avx2'}]"


def cpu_has_bf16_instructions() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX-BF16): bf16 can be measured."""
    isa = cpu_isa()
    return "avx512_bf16" in isa or "amx_bf16" in isa


def cpu_supports_bf16() -> bool:
    """True on CPUs with AMX-BF16 tile units, where bf16 autocast pays.

    AVX512-BF16 alone does not: on this project's 2-core Xeon (AVX512-BF16, no AMX) bf16 autocast
    made inference 1.4-1.6x slower for every network (BENCHMARKS.md) and a DispNet training step
    ~10 % slower (the losses, which run in fp32, dominate the step). ``auto`` therefore picks bf16
    only with AMX; ``bf16`` can still be asked for explicitly.
    """
    return "amx_bf16" in cpu_isa()
