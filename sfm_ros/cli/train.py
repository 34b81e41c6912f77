"""``sfm_train``: train SfMLearner offline from bags, image folders, KITTI, videos or the renderer.

    sfm_train --bag run1.bag --bag run2_mcap/ [--topic /cam/image_raw] --out runs/exp1
    sfm_train --kitti /data/kitti/sequences/00 --kitti /data/kitti/sequences/01 --config paper --out runs/kitti
    sfm_train --images frames/ --fx 718.9 --cx 607.2 --cy 185.2 --out runs/folder
    sfm_train --synthetic 4 --config default --max-steps 200 --out runs/smoke
    sfm_train --resume --out runs/exp1             # continue runs/exp1/last.pt on the inputs stored in it
    sfm_train --init models/sfm_default.pt --bag robot.bag --out runs/ft   # fine-tune the shipped model
    torchrun --nproc_per_node 2 -m sfm_ros.cli.train --kitti ... --out runs/ddp

Inputs (any number, mixed; every input is one sequence): ``--bag`` (ROS 1 ``.bag``, ROS 2 bag
folder, ``.mcap`` or ``.db3``) with ``--topic`` (optional when the bag has exactly one image
topic), ``--images DIR``, ``--kitti SEQ_DIR``, ``--video FILE``, ``--synthetic N`` (N rendered
street sequences of ``--synthetic-frames`` frames).

Intrinsics: bags use their CameraInfo (the ``camera_info`` topic next to the image topic, or
``--camera-info-topic``); otherwise, and for folders and videos, ``--calib YAML`` or ``--fx [--fy
--cx --cy]``; KITTI uses ``calib.txt``; the renderer knows its own. Distorted cameras
(``plumb_bob``, ``rational_polynomial``, ``equidistant``) are rectified first
(:class:`sfm_ros.data.rectify.Rectifier`, ``--rectify-alpha``).

Configuration: ``--config paper|default|FILE.yaml`` (default: ``default``; with ``--resume`` and
no ``--config``: the options saved in the checkpoint), then ``--set group.name=value`` overrides,
then the convenience flags (``--epochs``, ``--lr``, ...), which win. ``config/train.yaml`` spells
the paper's settings out. The options used are saved in every checkpoint.

Pipeline: frames → :func:`sfm_ros.data.datasets.prepare_sequence` (resize to the training size with the
intrinsics adjusted, grey → 3 channels, static frames dropped with ``data.static_threshold``,
optional ``--cache-dir``) → :func:`sfm_ros.data.datasets.split_sequence` (the last
``data.val_fraction`` of each sequence validates) → :class:`sfm_ros.training.trainer.Trainer`.

Budget: the run ends at ``--epochs``, ``--max-steps`` or ``--max-minutes``, whichever comes first
(0 = no limit). A budget you give is the budget: with only ``--max-minutes`` and/or ``--max-steps``
the preset's 20 epochs do not apply (nor, on ``--resume``, the saved budgets); with none given, the
preset's (``--config``'s, or the checkpoint's) apply. The last lines name the budget that ended the
run and the file to use. One progress bar covers the whole run (on a terminal; otherwise, and
with ``--no-progress``, a plain line every ``train.log_every`` steps or 30 s: step, loss, validation,
steps/s, ETA). ``--resume`` of a finished run says which saved budget stopped it; give a larger one.
``--init CKPT`` starts a new run from CKPT's weights only (the shipped model, a run's ``model.pt``, or
an adapted checkpoint of :mod:`sfm_ros.training.adapt`): its architecture and input size, and with no
``--config`` its options; a fresh optimiser, step 0.

Output (``--out DIR``): ``model.pt``, the weights to use (evaluation, the node, ``--init``): their
moving average over the last 10 % of the run (``train.average_sigma_rel``; on unseen frames better
depth than the last weights, BENCHMARKS.md); ``last.pt``, the last weights with the training
state (``--resume``); both atomic writes; TensorBoard logs in ``DIR/tb``. An existing ``DIR/last.pt`` is never replaced by a new run unless ``--resume`` (continue
it) or ``--overwrite`` is given.

Exit codes: 0 done; 1 training failed (the loss or its gradient stayed non-finite, an update made
the weights non-finite, a checkpoint could not be written: the line says which checkpoints this run
wrote, the last good ones; none is ever written from non-finite weights); 2 bad command line or
input (one line on stderr naming the input and what was expected; nothing written), including
unusable intrinsics and an ``--out`` that cannot be written (checked before any input is decoded);
130 after Ctrl-C (the first Ctrl-C finishes the current step and writes ``last.pt``; ``--resume``
continues exactly from it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros.cli.common import (Parser, UsageError, add_intrinsics_arguments, check_rate, int_at_least, one_line,
                                set_override)

# This module parses the command line, calls the library and prints: a run's set-up (the checkpoint
# rules, the automatic size, stride and augmentation, the decoding) is sfm_ros.training.run_setup,
# its folder sfm_ros.training.run_folder, its budget sfm_ros.training.budget.

__all__ = ["main", "build_parser", "UsageError", "build_options", "explicit_keys_given"]

PROG = "sfm_train"
EXIT_OK, EXIT_TRAINING_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", "").strip(),
                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("inputs (one or more; each is one sequence)")
    g.add_argument("--bag", action="append", default=[], metavar="PATH",
                   help="ROS 1 .bag, ROS 2 bag folder, .mcap or .db3 (repeatable)")
    g.add_argument("--topic", help="image topic of the bags (default: the bag's only image topic)")
    g.add_argument("--camera-info-topic", metavar="TOPIC",
                   help="CameraInfo topic (default: camera_info next to the image topic)")
    g.add_argument("--images", action="append", default=[], metavar="DIR", help="image folder (repeatable)")
    g.add_argument("--pattern", help="file pattern of --images (default: common image extensions)")
    g.add_argument("--fps", type=float, help="frame rate for the stamps of --images/--video without times")
    g.add_argument("--kitti", action="append", default=[], metavar="SEQ_DIR",
                   help="KITTI odometry sequence folder (image_0|image_2 + calib.txt) (repeatable)")
    g.add_argument("--kitti-camera", choices=("image_0", "image_1", "image_2", "image_3"),
                   help="KITTI camera (default: image_0, else image_2)")
    g.add_argument("--video", action="append", default=[], metavar="FILE", help="video file (repeatable)")
    g.add_argument("--synthetic", type=int, default=0, metavar="N", help="N rendered street sequences")
    g.add_argument("--synthetic-frames", type=int_at_least(1), default=60, metavar="F",
                   help="frames per synthetic sequence (default: 60)")
    g.add_argument("--max-frames", type=int_at_least(1), metavar="N", help="use at most N frames of every input")

    g = add_intrinsics_arguments(p, "intrinsics (when the input carries none)")
    g.add_argument("--rectify-alpha", type=float, default=0.0,
                   help="distorted cameras: 0 keeps only valid pixels, 1 keeps all (default: 0)")

    g = p.add_argument_group("configuration")
    g.add_argument("--config", help="paper | default | FILE.yaml (default: default, or the "
                                    "checkpoint's options with --resume)")
    g.add_argument("--set", action="append", default=[], metavar="GROUP.NAME=VALUE",
                   help="override one option, e.g. --set loss.smooth_weight=0.1 (repeatable)")
    for flag, key, typ in _CONVENIENCE:
        g.add_argument(flag, type=typ, default=None, help=f"= --set {key}=...")

    g = p.add_argument_group("output and run control")
    g.add_argument("--out", required=True, metavar="DIR", help="model.pt (the weights to use), last.pt (for --resume) and tb/ logs")
    g.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue from CKPT (default with no value: OUT/last.pt); without inputs, the "
                        "inputs stored in CKPT")
    g.add_argument("--init", metavar="CKPT",
                   help="start from CKPT's weights only (fine-tuning: e.g. models/sfm_default.pt or an "
                        "adapted checkpoint); architecture and size from CKPT, fresh optimiser and counters")
    g.add_argument("--overwrite", action="store_true", help="start afresh even if OUT/last.pt exists")
    g.add_argument("--cache-dir", metavar="DIR", help="cache of decoded, resized frames (= data.cache_dir)")
    g.add_argument("--ckpt-every", type=int_at_least(0), default=1000, metavar="STEPS",
                   help="write last.pt and model.pt every STEPS steps (0: not by steps; default: 1000)")
    g.add_argument("--save-minutes", type=float, default=2.0, metavar="MIN",
                   help="also at an epoch's end once MIN minutes have passed since the last write "
                        "(and at the first epoch's end; 0: every epoch; default: 2); the run's end "
                        "and Ctrl-C always write")
    g.add_argument("--threads", type=int_at_least(1), metavar="N", help="torch CPU threads per process")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a plain line every train.log_every steps or 30 s instead "
                        "(also without a terminal)")
    g.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")
    return p


#: (flag, option key, type) of the convenience flags; they are applied after --set.
_CONVENIENCE: list[tuple[str, str, Any]] = [
    ("--epochs", "train.epochs", int),
    ("--batch-size", "train.batch_size", int),
    ("--lr", "train.lr", float),
    ("--max-steps", "train.max_steps", int),
    ("--max-minutes", "train.max_minutes", float),
    ("--device", "train.device", str),
    ("--amp", "train.amp", str),
    ("--workers", "train.num_workers", int),
    ("--seed", "train.seed", int),
    ("--height", "model.height", int),
    ("--width", "model.width", int),
    ("--seq-len", "model.seq_len", int),
    ("--width-mult", "model.width_mult", float),
    ("--stride", "data.stride", int),
    ("--static-threshold", "data.static_threshold", float),
    ("--cache-max-gb", "data.cache_max_gb", float),
    ("--val-fraction", "data.val_fraction", float),
]


# ------------------------------------------------------------------------------------ options
def build_options(args: argparse.Namespace, resume_options: dict | None = None):
    """Options from ``--config`` (or the checkpoint's options), ``--set`` and the flags."""
    from sfm_ros.core.options import Options, load_options

    if args.config is None and resume_options is not None:
        opts = Options.from_dict(resume_options)
    else:
        opts = load_options(args.config or "default")
    for text in args.set:
        try:
            set_override(opts, text)
        except ValueError as exc:
            raise UsageError(f"--set {text}: {exc}") from None
    for flag, key, _ in _CONVENIENCE:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            try:
                set_override(opts, f"{key}={value}")
            except ValueError as exc:
                raise UsageError(f"{flag} {value}: {exc}") from None
    if args.cache_dir:
        opts.data.cache_dir = args.cache_dir
    if opts.data.stride < 1:
        raise UsageError(f"data.stride must be >= 1, got {opts.data.stride}")
    return opts


def explicit_keys_given(args: argparse.Namespace) -> set[str]:
    """The keys set on the command line itself (``--set`` and the convenience flags)."""
    keys = {t.split("=", 1)[0].strip() for t in args.set}
    return keys | {key for flag, key, _ in _CONVENIENCE
                   if getattr(args, flag.lstrip("-").replace("-", "_")) is not None}


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from sfm_ros.training.distributed import distributed_env

    rank = distributed_env()[0]

    def log(msg: str) -> None:
        if rank == 0:
            print(msg, flush=True)

    def fail(msg: str, code: int = EXIT_BAD_INPUT) -> int:
        kind = "" if code == EXIT_INTERRUPTED else "error: "
        print(f"{PROG}: {kind}{msg}", file=sys.stderr, flush=True)
        return code

    try:
        return _main(argv, rank, log, fail)
    except KeyboardInterrupt:
        return fail("interrupted before training started; no checkpoint written", EXIT_INTERRUPTED)


def _main(argv, rank: int, log, fail) -> int:
    from sfm_ros.core.checkpoint import CheckpointError
    from sfm_ros.training.errors import SetupError
    from sfm_ros.training.run_folder import claim
    from sfm_ros.training.run_inputs import INPUT_FIELDS
    from sfm_ros.training.run_setup import set_up_run

    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        check_rate(args.fps)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        run = set_up_run(Path(args.out), args, lambda saved: build_options(args, saved),
                         given=explicit_keys_given(args), config=args.config, resume=args.resume, init=args.init,
                         overwrite=args.overwrite, input_defaults={n: parser.get_default(n) for n in INPUT_FIELDS},
                         is_main=rank == 0, log=log)
    except (ValueError, CheckpointError, OSError) as exc:  # SetupError, BagError, SourceError, CameraError ...
        return fail(one_line(exc))

    opts, out = run.opts, run.out
    n_train = sum(len(s) for s in run.train)
    n_val = sum(len(s) for s in run.val)
    log(f"training on {n_train} frames in {len(run.train)} sequence(s), validating on {n_val}; "
        f"{opts.model.height}x{opts.model.width}, seq_len {opts.model.seq_len}, "
        f"batch {opts.train.batch_size}, lr {opts.train.lr:g}; writing to {out}")
    lock = None
    if rank == 0:
        try:
            lock = claim(out, new_run=run.resume is None and not args.overwrite)
        except SetupError as exc:
            return fail(str(exc))
    try:
        return _train(args, run, rank, log, fail)
    finally:
        if lock is not None:
            lock.release()


def _train(args, run, rank: int, log, fail) -> int:
    from sfm_ros.core.checkpoint import CheckpointError
    from sfm_ros.training.budget import budget_text, extend_hint
    from sfm_ros.training.run_folder import use_line
    from sfm_ros.training.run_inputs import inputs_record
    from sfm_ros.training.trainer import Trainer, TrainingError, TrainingInterrupted

    opts, resume, init = run.opts, run.resume, run.init
    finished = None  # the budget a resumed run had already reached
    try:
        trainer = Trainer(opts, run.train, run.val or None, run.out, resume=resume, progress=not args.no_progress,
                          tensorboard=not args.no_tensorboard, ckpt_every=args.ckpt_every,
                          save_minutes=args.save_minutes, log=log, init=init,
                          checkpoint_extra={"inputs": inputs_record(args)})
    except (ValueError, CheckpointError) as exc:
        return fail(one_line(exc))
    try:
        if resume:
            log(f"resuming {resume} at step {trainer.step} (epoch {trainer.epoch + 1}, "
                f"step {trainer.step_in_epoch} of {trainer.steps_per_epoch})")
            finished = trainer.budget_reached()
            if finished:
                log(f"nothing to train: {resume} is a finished run, the budget saved in it stopped it "
                    f"({finished}); to continue, give a larger budget, e.g. "
                    f"{extend_hint(opts.train, trainer.step, trainer.epoch)}")
        elif init:
            log(f"starting from the weights of {init} (fresh optimiser, step 0)")
        summary = trainer.fit()
    except TrainingInterrupted as exc:
        return fail(str(exc), EXIT_INTERRUPTED)
    except TrainingError as exc:
        return fail(f"training failed: {exc}", EXIT_TRAINING_ERROR)
    finally:
        trainer.close()
    val = summary.get("last_val")
    val_text = f", validation loss {val:.4f}" if val is not None and np.isfinite(val) else ""
    if summary.get("skipped_steps"):
        val_text += f", {summary['skipped_steps']} step(s) skipped (non-finite loss or gradient)"
    ended = summary.get("ended_by")
    ended_text = f"ended by {budget_text(ended)}" if ended else "ended"
    if summary.get("save_writes"):
        val_text += f", {summary['save_writes']} checkpoint file(s) written in {summary['save_seconds']:.1f} s"
    if summary.get("depth_note"):  # before the last two lines: what ended the run, which file to use
        log(summary["depth_note"])
    log(f"done: step {summary['steps']}, {ended_text}, {summary['epochs']} epoch(s) complete, "
        f"{summary['minutes']:.1f} min{val_text}")
    if rank == 0:
        choice = summary.get("model_choice")
        if choice is None and finished:  # a finished run resumed: what its end chose
            from sfm_ros.training.weights_choice import stored_choice

            choice = stored_choice(run.out / "model.pt")
        log(use_line(run.out, opts.train.average_sigma_rel, choice))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
