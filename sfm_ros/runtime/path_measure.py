"""Measuring one inference path against another on the running machine: their time (depth + pose,
alternating rounds) and how much their outputs differ, and the rules ``precision auto`` decides
by (:func:`sfm_ros.runtime.model_loading.choose_cpu_path` at start, :func:`int8_verdict` on the
camera's first frames). The estimators are duck-typed (``depth``, ``poses``, ``seq_len``,
``precision``, ``backend``): this module imports none. ROS-free.
"""
from __future__ import annotations

__all__ = ["MIN_GAIN", "BF16_DEPTH_TOL", "BF16_POSE_TOL", "INT8_DEPTH_TOL", "INT8_POSE_TOL", "time_ms", "output_change",
           "int8_verdict"]

#: bf16 must beat fp32 by this fraction of its time to be chosen (timing noise is a few per cent)
MIN_GAIN = 0.08
#: bf16 counts as "equal output" within these: depth's median relative change after median
#: scaling, and the largest change of a pose vector element (fp32 pose vectors are ~0.01-1)
BF16_DEPTH_TOL = 0.01
BF16_POSE_TOL = 0.005
#: int8 counts as "equal output" within these: its rounding is coarser than bf16's (the shipped
#: model's int8 graphs change KITTI depth by 0.97 % and pose elements by up to 0.015 at equal
#: snippet ATE, segment drift and 7-Scenes abs rel: BENCHMARKS.md, "int8 and bf16 on the CPU")
INT8_DEPTH_TOL = 0.02
INT8_POSE_TOL = 0.03


def time_ms(estimators: list, x, runs: int) -> list[float]:
    """Median ms of one depth + one pose forward (batch 1) of each estimator, after two warm-up
    calls, timed in alternating rounds (load that comes and goes hits them alike)."""
    import time

    import numpy as np

    window = [x] * estimators[0].seq_len
    for e in estimators:
        for _ in range(2):
            e.depth(x)
            e.poses(window, flip=False)
    t: list[list[float]] = [[] for _ in estimators]
    for _ in range(runs):
        for i, e in enumerate(estimators):
            t0 = time.perf_counter()
            e.depth(x)
            e.poses(window, flip=False)
            t[i].append(time.perf_counter() - t0)
    return [1000.0 * float(np.median(v)) for v in t]


def output_change(ref, other, frames) -> tuple[float, float]:
    """``(depth, pose)`` change of estimator ``other`` against ``ref`` on preprocessed consecutive
    ``frames`` (at least one window): depth's median relative change after median scaling (of each
    window's middle frame, the mean over windows), the largest change of a pose matrix element."""
    import numpy as np

    from sfm_ros.runtime.export import median_scaled_deviation

    n = ref.seq_len
    depths, pose = [], 0.0
    for i in range(len(frames) - n + 1):
        window = frames[i:i + n]
        a, b = ref.depth(window[n // 2]), other.depth(window[n // 2])
        depths.append(float(np.median(median_scaled_deviation(b.numpy(), a.numpy()))))
        pa, pb = ref.poses(window, flip=False), other.poses(window, flip=False)
        pose = max(pose, float((pa[..., :3, 3] - pb[..., :3, 3]).abs().max()),
                   float((pa[..., :3, :3] - pb[..., :3, :3]).abs().max()))
    depth = float(np.mean(depths)) if depths else float("inf")
    return depth, pose if np.isfinite(pose) else float("inf")


def int8_verdict(live, twin, frames, runs: int = 9) -> tuple[bool, str]:
    """``(switch, why)``: whether ``twin`` (the :meth:`~sfm_ros.runtime.inference.Estimator.int8_twin`
    of the ``live`` estimator) should serve instead: :data:`MIN_GAIN` faster (depth + pose, timed in
    alternating rounds on ``frames[0]``) with output equal within :data:`INT8_DEPTH_TOL` /
    :data:`INT8_POSE_TOL` on ``frames`` (preprocessed camera frames it was not calibrated on);
    ``why``: the figures, for the log and diagnostics."""
    depth, pose = output_change(live, twin, frames)
    t_live, t8 = time_ms([live, twin], frames[0], runs)
    equal = depth <= INT8_DEPTH_TOL and pose <= INT8_POSE_TOL
    why = (f"{live.backend} {live.precision} {t_live:.1f} ms, onnxruntime int8 {t8:.1f} ms depth + pose; int8 "
           f"changes depth {100 * depth:.2f} %, poses by {pose:.2g}")
    if t8 < (1.0 - MIN_GAIN) * t_live and equal:
        return True, why
    return False, why + ("" if equal else ": int8 output not equal")
