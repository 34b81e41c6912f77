"""What every command-line tool shares: the usage error, the parser that raises it, ``--set``
overrides, the one-line error report and the intrinsics flags (``--calib``, ``--fx`` ...).

Convention: bad command line or input is one line on stderr, ``PROG: error: ...``, and exit code
:data:`EXIT_BAD_INPUT` (2). Library errors (``BagError``, ``SourceError``, ``CameraError``,
``InputError``, ``CheckpointError`` ...) are ``ValueError`` subclasses with messages that already
name the input, so a tool reports them as they are (:func:`one_line`). Used by ``sfm_train``,
``sfm_eval`` and ``bench/``; ROS-free.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np

__all__ = ["EXIT_OK", "EXIT_BAD_INPUT", "UsageError", "Parser", "int_at_least", "check_rate", "set_override", "one_line", "report_error",
           "jsonable", "add_intrinsics_arguments"]

EXIT_OK, EXIT_BAD_INPUT = 0, 2


class UsageError(ValueError):
    """Bad command line or input: one line on stderr, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (``MESSAGE (see PROG --help)``) instead of printing
    the usage and exiting; ``--help`` still exits through ``SystemExit(0)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def int_at_least(low: int):
    """An argparse ``type``: the text as an integer >= ``low``, else the argument's error
    (``argument --threads: expected an integer >= 1, got '0'``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def check_rate(fps: float | None, flag: str = "--fps") -> None:
    """A frame rate flag's value, when given: a finite number > 0, else :class:`UsageError`."""
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"{flag} must be a frame rate > 0, got {fps:g}")


def set_override(opts: Any, text: str) -> None:
    """Apply ``group.name=value`` to :class:`sfm_ros.core.options.Options` ``opts``: the value is parsed as
    YAML, except that string options keep the text as written (so ``train.amp=off`` is ``"off"``,
    not YAML's ``False``). Raises ``ValueError`` for a malformed text, an unknown key or a bad value."""
    from sfm_ros.core.options import apply_overrides, parse_override

    key, value = parse_override(text)
    parts = key.split(".")
    if len(parts) == 2 and isinstance(getattr(getattr(opts, parts[0], None), parts[1], None), str) \
            and not isinstance(value, str):
        value = text.split("=", 1)[1].strip()
    apply_overrides(opts, {key: value})


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace runs folded), or its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def report_error(prog: str, exc: BaseException | str, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``PROG: error: MESSAGE`` (one line) on stderr and return ``code``."""
    text = exc if isinstance(exc, str) else one_line(exc)
    print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
    return code


def jsonable(x: Any) -> Any:
    """``x`` with numpy arrays and scalars turned into lists and Python numbers, dict keys into
    strings and non-finite floats into ``None`` (JSON has no NaN), for ``json.dumps``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def add_intrinsics_arguments(p: argparse.ArgumentParser, title: str,
                             calib_dest: str | None = "calib") -> argparse._ArgumentGroup:
    """The pinhole intrinsics flags in a group named ``title``: ``--calib YAML`` (stored as
    ``calib_dest``; None leaves it out, for a tool whose ``--calib`` means something else) and
    ``--fx [--fy --cx --cy]``, as :func:`sfm_ros.data.inputs.camera_from_args` reads them.
    Returns the group, for a tool's own flags beside them."""
    g = p.add_argument_group(title)
    if calib_dest is not None:
        g.add_argument("--calib", dest=calib_dest, metavar="YAML", help="camera_calibration / camera_info_manager YAML")
    g.add_argument("--fx", type=float, help="focal length x in pixels (at the input resolution)")
    g.add_argument("--fy", type=float, help="focal length y in pixels (default: --fx)")
    g.add_argument("--cx", type=float, help="principal point x (default: (width - 1) / 2)")
    g.add_argument("--cy", type=float, help="principal point y (default: (height - 1) / 2)")
    return g
