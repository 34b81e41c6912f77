"""Choosing the CPU training precision by measurement on the running machine.

bf16 autocast pays on some CPUs and costs on others with the same instruction flags: on a 2-core
AMD EPYC (AVX512-BF16, no AMX) it made a 128x416 training step of the paper's networks 1.6x
faster, on a 2-core Intel Xeon with the same flags ~10 % slower. So ``train.amp=auto`` on a CPU
with bf16 instructions times a few training steps of the actual networks, size and losses in both
precisions (a few seconds) and keeps bf16 only when it is clearly faster (by
:data:`MIN_GAIN`). The answer is cached per CPU model and instruction set
(:func:`sfm_ros.core.device.cpu_description`), torch version, thread count and
configuration in ``$SFM_ROS_CACHE`` (default ``~/.cache/sfm_ros``)/``amp_calibration.json``, so
later runs start at once. Without bf16 instructions it is fp32 without measuring.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from sfm_ros.core.device import cpu_description

__all__ = ["MIN_GAIN", "cache_path", "calibration_key", "calibrate_cpu_amp", "cpu_step_seconds"]

#: bf16 must make a step at least this much faster (fraction of the fp32 step time)
MIN_GAIN = 0.08


def cache_path() -> Path:
    return Path(os.environ.get("SFM_ROS_CACHE", Path.home() / ".cache" / "sfm_ros")) / "amp_calibration.json"


def calibration_key(opts) -> str:
    m, lo = opts.model, opts.loss
    parts = [cpu_description(), torch.__version__, f"threads={torch.get_num_threads()}", m.depth_arch,
             f"w{m.width_mult:g}", m.pose_arch, f"{m.height}x{m.width}", f"seq{m.seq_len}",
             f"b{opts.train.batch_size}", lo.photometric, lo.reduce_sources, f"am{int(lo.automask)}",
             f"fr{int(lo.full_res)}", f"s{lo.num_scales}", f"exp{int(lo.exp_weight > 0)}",
             f"geo{int(lo.needs_source_depth)}"]
    return "|".join(parts)


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(data: dict) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".amp.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the measurement next time


def _time_steps(opts, dtype, steps: int) -> float:
    """Median seconds of a training step (forward with autocast ``dtype``, losses, backward, Adam)."""
    from sfm_ros.core.losses import compute_losses
    from sfm_ros.core.model import SfMModel
    from sfm_ros.core.optim import adam

    m = opts.model
    model = SfMModel(m, output_exp=opts.loss.exp_weight > 0)
    model.train()
    optim = adam(model.parameters(), lr=1e-5)
    b, n = opts.train.batch_size, m.seq_len - 1
    smooth = torch.nn.functional.avg_pool2d(torch.rand(b * (n + 1), 3, m.height, m.width), 5, 1, 2)
    target, sources = smooth[:b], [smooth[b * (i + 1):b * (i + 2)] for i in range(n)]
    K = torch.tensor([[0.9 * m.width, 0, m.width / 2], [0, 0.9 * m.width, m.height / 2], [0, 0, 1.0]]).expand(b, 3, 3)
    source_depth = opts.loss.needs_source_depth
    times = []
    for i in range(steps + 1):  # the first step warms up (allocations, kernel choice)
        t0 = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
        with ctx:
            out = model(target, sources, source_depth=source_depth)
        loss = compute_losses(target, dict(zip(model.offsets, sources)), K, out, opts.loss)[0]["loss"]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def calibrate_cpu_amp(opts, steps: int = 3, log=None) -> torch.dtype | None:
    """bf16 when measured clearly faster than fp32 for these options on this CPU, else None.

    Cached (see the module doc); the RNG state is left as it was."""
    key = calibration_key(opts)
    cache = _read_cache()
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("choice") in ("bf16", "fp32"):
        if log:
            log(f"precision {hit['choice']} (measured on this CPU before: fp32 {hit['fp32_ms']:.0f} ms, "
                f"bf16 {hit['bf16_ms']:.0f} ms a step; cache {cache_path()})")
        return torch.bfloat16 if hit["choice"] == "bf16" else None
    with torch.random.fork_rng(devices=[]):  # the caller's random stream goes on as if not timed
        t32 = _time_steps(opts, None, steps)
        t16 = _time_steps(opts, torch.bfloat16, steps)
    choice = "bf16" if t16 < (1 - MIN_GAIN) * t32 else "fp32"
    cache[key] = {"choice": choice, "fp32_ms": 1000 * t32, "bf16_ms": 1000 * t16,
                  "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_cache(cache)
    if log:
        log(f"precision {choice} (measured now: fp32 {1000 * t32:.0f} ms, bf16 {1000 * t16:.0f} ms a step; "
            f"bf16 must be {100 * MIN_GAIN:.0f} % faster; --amp off|bf16 to choose)")
    return torch.bfloat16 if choice == "bf16" else None


def cpu_step_seconds(opts, steps: int = 3) -> tuple[float, str]:
    """``(seconds, precision)``: how long a training step of ``opts`` (networks, size, batch, losses)
    takes on this CPU in the precision the trainer will use there: ``train.amp=auto`` on a CPU with
    bf16 instructions is :func:`calibrate_cpu_amp`'s choice (measured once, cached), ``bf16`` is
    bf16, anything else fp32 (measured now, a few steps). The RNG state is left as it was."""
    from sfm_ros.core.device import cpu_has_bf16_instructions

    dtype = torch.bfloat16 if opts.train.amp == "bf16" else None
    if opts.train.amp == "auto" and cpu_has_bf16_instructions():
        dtype = calibrate_cpu_amp(opts, steps)
        hit = _read_cache().get(calibration_key(opts))
        name = "bf16" if dtype is not None else "fp32"
        if isinstance(hit, dict) and isinstance(hit.get(f"{name}_ms"), (int, float)):
            return hit[f"{name}_ms"] / 1000.0, name
    with torch.random.fork_rng(devices=[]):
        seconds = _time_steps(opts, dtype, steps)
    return seconds, "bf16" if dtype is not None else "fp32"
