"""``sfm_export``: a checkpoint's depth and pose networks as TorchScript and ONNX, for deployment.

Usage::

    sfm_export CHECKPOINT --out DIR [--format torchscript,onnx] [--height H --width W] [--opset 17] [--overwrite]

The files written into ``DIR`` and their interface: :mod:`sfm_ros.runtime.export` (the ONNX axes ``batch``,
``height`` and ``width`` are dynamic; ``model.json`` states the shapes, the export and training
sizes). An existing non-empty ``DIR`` is refused unless ``--overwrite`` (which replaces the export's
files in it, removing those of an earlier export that this one does not write). Exit status: 0 on
success, 2 for a missing or corrupt checkpoint, an existing ``--out`` or bad arguments, 1 when
exporting or checking fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sfm_ros.runtime.export import DEFAULT_OPSET, FORMATS, check_out_dir, export_model

__all__ = ["main", "build_parser"]


def _formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise argparse.ArgumentTypeError(f"unknown format(s) {bad or text!r}; choose from {','.join(FORMATS)}")
    return fmts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sfm_export", description="Export an sfm_ros checkpoint's depth and pose "
                                "networks as TorchScript and ONNX (see the module doc for the interface).")
    p.add_argument("checkpoint", help="sfm_ros checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (created; an existing non-empty one needs --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the exported files in an existing --out")
    p.add_argument("--format", type=_formats, default=FORMATS, help="comma-separated: torchscript,onnx (default both)")
    p.add_argument("--height", type=int, default=None, help="input height (default: the checkpoint's)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the checkpoint's)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true", help="skip checking the exported files against PyTorch")
    return p


def main(argv: list[str] | None = None) -> int:
    from sfm_ros.core.checkpoint import CheckpointError, load_model

    args = build_parser().parse_args(argv)
    try:
        if args.opset < 17:
            raise ValueError(f"--opset must be >= 17, got {args.opset}")
        for name in ("height", "width"):
            v = getattr(args, name)
            if v is not None and v < 16:
                raise ValueError(f"--{name} must be >= 16, got {v}")
        check_out_dir(args.out, args.overwrite)
        model, options, _ = load_model(args.checkpoint, "cpu")
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"sfm_export: error: {exc}", file=sys.stderr)
        return 2
    h = args.height or options.model.height
    w = args.width or options.model.width
    try:
        meta = export_model(model, args.out, args.format, h, w, args.opset, verify=not args.no_verify,
                            info={"checkpoint": str(Path(args.checkpoint).resolve())})
    except Exception as exc:  # exporter / checker / runtime failure: one clear line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"sfm_export: error: export failed ({type(exc).__name__}: {msg[:300]})", file=sys.stderr)
        return 1
    files = ", ".join(meta["files"].values())
    checks = "; ".join(f"{k}: depth rel {v['depth_max_rel_diff']:.1e}, pose abs {v['pose_max_abs_diff']:.1e}"
                       for k, v in meta["check"].items() if isinstance(v, dict))
    print(f"sfm_export: wrote {files}, model.json to {args.out} ({h}x{w}, seq_len {meta['seq_len']})"
          + (f"; checked {checks}" if checks else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
