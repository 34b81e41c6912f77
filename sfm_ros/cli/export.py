"""``sfm_export``: a checkpoint's depth and pose networks as TorchScript and ONNX, for deployment.

Usage::

    sfm_export CHECKPOINT --out DIR [--format torchscript,onnx] [--height H --width W] [--opset 17] [--overwrite]
    sfm_export CHECKPOINT --out DIR --int8 --calib FRAMES_DIR [--calib-frames 100]

``--int8 --calib DIR`` also writes ``depth.int8.onnx`` and ``pose.int8.onnx``
(:mod:`sfm_ros.runtime.quantize`): static int8 quantisation calibrated on the first 70 % of up to
``--calib-frames`` consecutive frames of ``DIR`` (images in natural file order: your own camera's
frames, e.g. ``sfm_bag`` extracts or a dataset folder), checked against fp32 on the other 30 %; the
change in depth and poses and the one-thread times are printed and kept in ``model.json``.

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

from sfm_ros.cli.common import Parser, UsageError, report_error
from sfm_ros.runtime.export import DEFAULT_OPSET, FORMATS, check_out_dir, export_model

__all__ = ["main", "build_parser"]


def _formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise argparse.ArgumentTypeError(f"unknown format(s) {bad or text!r}; choose from {','.join(FORMATS)}")
    return fmts


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sfm_export", description="Export an sfm_ros checkpoint's depth and pose "
                                "networks as TorchScript and ONNX (see the module doc for the interface).")
    p.add_argument("checkpoint", help="sfm_ros checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (created; an existing non-empty one needs --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the exported files in an existing --out")
    p.add_argument("--format", type=_formats, default=FORMATS, help="comma-separated: torchscript,onnx (default both)")
    p.add_argument("--height", type=int, default=None, help="input height (default: the checkpoint's)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the checkpoint's)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true", help="skip checking the exported files against PyTorch")
    p.add_argument("--int8", action="store_true", help="also write int8 ONNX graphs (needs --calib)")
    p.add_argument("--calib", default=None, help="folder of consecutive camera frames to calibrate int8 on")
    p.add_argument("--calib-frames", type=int, default=100,
                   help="the first N frames of --calib (natural file order) are used (default 100)")
    return p


def _calibration_frames(checkpoint: str, folder: str, n: int, height: int, width: int) -> list:
    """The first ``n`` images of ``folder`` (natural order), preprocessed at the export size."""
    from sfm_ros.data.sources import natural_key, read_image
    from sfm_ros.runtime.inference import Estimator

    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"--calib {folder} is not a folder; expected a folder of camera frames (png/jpg)")
    files = sorted((p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")),
                   key=natural_key)[:n]
    if len(files) < 8:
        raise ValueError(f"--calib {folder} holds {len(files)} image(s); expected at least 8 consecutive frames")
    est = Estimator(checkpoint, device="cpu", backend="torch")
    est.height, est.width = height, width
    return [est.preprocess(read_image(f)) for f in files]


def main(argv: list[str] | None = None) -> int:
    from sfm_ros.core.checkpoint import CheckpointError, load_model

    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return report_error("sfm_export", exc)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        if args.opset < 17:
            raise ValueError(f"--opset must be >= 17, got {args.opset}")
        for name in ("height", "width"):
            v = getattr(args, name)
            if v is not None and v < 16:
                raise ValueError(f"--{name} must be >= 16, got {v}")
        if args.int8 and not args.calib:
            raise ValueError("--int8 needs --calib FRAMES_DIR (consecutive frames of your camera)")
        if args.calib and not args.int8:
            raise ValueError("--calib is only used with --int8")
        if args.calib_frames < 8:
            raise ValueError(f"--calib-frames must be >= 8, got {args.calib_frames}")
        if args.int8 and "onnx" not in args.format:
            raise ValueError("--int8 writes ONNX graphs: include onnx in --format")
        check_out_dir(args.out, args.overwrite)
        model, options, _ = load_model(args.checkpoint, "cpu")
    except (CheckpointError, ValueError, OSError) as exc:
        return report_error("sfm_export", exc)
    h = args.height or options.model.height
    w = args.width or options.model.width
    frames = None
    if args.int8:
        try:
            frames = _calibration_frames(args.checkpoint, args.calib, args.calib_frames, h, w)
        except (ValueError, OSError) as exc:
            print(f"sfm_export: error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
    try:
        meta = export_model(model, args.out, args.format, h, w, args.opset, verify=not args.no_verify,
                            info={"checkpoint": str(Path(args.checkpoint).resolve())})
        if frames is not None:
            import json

            from sfm_ros.runtime.quantize import write_int8

            meta["int8"] = write_int8(args.out, model, h, w, frames)
            meta["files"].update(depth_int8="depth.int8.onnx", pose_int8="pose.int8.onnx")
            (Path(args.out) / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    except Exception as exc:  # exporter / checker / runtime failure: one clear line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"sfm_export: error: export failed ({type(exc).__name__}: {msg[:300]})", file=sys.stderr)
        return 1
    files = ", ".join(meta["files"].values())
    checks = "; ".join(f"{k}: depth rel {v['depth_max_rel_diff']:.1e}, pose abs {v['pose_max_abs_diff']:.1e}"
                       for k, v in meta["check"].items() if isinstance(v, dict))
    print(f"sfm_export: wrote {files}, model.json to {args.out} ({h}x{w}, seq_len {meta['seq_len']})"
          + (f"; checked {checks}" if checks else ""))
    if "int8" in meta:
        q, c = meta["int8"]["one_thread_ms"], meta["int8"]["check"]
        print(f"sfm_export: int8 calibrated on {meta['int8']['calibration_frames']} frames of {args.calib}, checked "
              f"on the next {meta['int8']['checked_frames']}: depth changes {100 * c['depth_median_rel_diff']:.2f} % "
              f"(median after median scaling; p95 pixel {100 * c['depth_rel_diff_p95']:.2f} %), pose vectors by "
              f"at most {c['pose_max_abs_diff']:.2g}; one thread: depth {q['depth_ms_fp32']:.1f} -> "
              f"{q['depth_ms_int8']:.1f} ms, pose {q['pose_ms_fp32']:.1f} -> {q['pose_ms_int8']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
