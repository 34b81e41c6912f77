"""int8 quantisation in a process of its own, at the lowest CPU priority: what the node runs while
frames keep arriving (:func:`sfm_ros.runtime.quantize.int8_graphs_isolated`).

Quantising in the node's own process held the interpreter lock for seconds (the ONNX export traces
the networks in Python; the quantiser rewrites the graphs in Python), and the node dropped 6-9 of
``make demo``'s frames while it ran (BENCHMARKS.md, "int8 and bf16 on the CPU"). Here the export,
the calibration and the quantisation run in a child process niced to 19 (PyTorch on one thread;
ONNX Runtime's calibration sessions take their default threads, at that priority). On Linux the
child is ended when the thread that started it ends (the node shutting down).

    python -m sfm_ros.runtime.quantize_worker DIR

``DIR`` holds ``model.pt`` (the weights to quantise, a checkpoint) and ``frames.npy`` ((N, 3, h, w)
float32 in [0, 1], consecutive preprocessed frames); the worker writes ``depth.int8.onnx`` and
``pose.int8.onnx`` there and exits 0, or prints one line to stderr and exits 1.
"""
from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m sfm_ros.runtime.quantize_worker DIR", file=sys.stderr)
        return 2
    from pathlib import Path

    work = Path(argv[0])
    try:  # the imports too: a broken install is one line for the parent's log, not a traceback
        import numpy as np
        import torch

        torch.set_num_threads(1)
        from sfm_ros.core.checkpoint import load_model
        from sfm_ros.runtime.quantize import INT8_FILES, int8_graphs

        model, options, _ = load_model(work / "model.pt", "cpu")
        frames = np.load(work / "frames.npy")
        tensors = [torch.from_numpy(np.ascontiguousarray(f[None])) for f in frames]
        d8, p8 = int8_graphs(model, options.model.height, options.model.width, tensors)[2:]
        for name, graph in zip(INT8_FILES, (d8, p8)):
            tmp = work / (name + ".tmp")
            tmp.write_bytes(graph)
            tmp.replace(work / name)
    except Exception as exc:  # one line for the parent's log
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"int8 quantisation failed: {type(exc).__name__}: {first[:300]}", file=sys.stderr)
        return 1
    return 0


def _lowest_priority() -> None:
    """Nice 19, and (Linux) SIGTERM when the parent thread ends: a node that shuts down mid-way does
    not leave its quantisation running."""
    try:
        os.nice(19)
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


if __name__ == "__main__":
    _lowest_priority()  # before the heavy imports in main(): the node's frames come first
    sys.exit(main())
