"""Checkpoints: atomic writes, data-only loading, architecture checks.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only, never code.

=================  ==========================================================================
key                value
=================  ==========================================================================
``format``         ``"sfm_ros/1"``
``options``        the full :class:`sfm_ros.core.options.Options` as a dict (the config used)
``depth_net``      depth network ``state_dict``
``pose_net``       pose network ``state_dict``
``step``/``epoch`` training progress (optional)
``optimizer``      optimiser ``state_dict`` (optional, for ``--resume``)
``rng``            RNG states (optional, for an exact ``--resume``)
``scaler``         fp16 ``GradScaler`` state (only when training with ``train.amp=fp16``)
``extra``          anything else (validation loss, metrics, git revision ...)
=================  ==========================================================================

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over the
target: a crash or a kill in the middle of a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import errno
import os
import pickle
import time
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import Options

FORMAT = "sfm_ros/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, corrupt, or from another architecture)."""


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (temporary file + fsync + rename).

    A failed write (a full disk, an I/O error) raises :class:`OSError`, also where torch reports it
    as a ``RuntimeError`` (its zip writer: ``unexpected pos``); the temporary file is removed and
    the previous ``path`` is intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as exc:  # torch's zip writer reports a failed write this way
                first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                raise OSError(errno.EIO, f"writing failed ({first}); the disk may be full") from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temp_files(path: str | Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove the temporary files a killed :func:`atomic_torch_save` of ``path`` left behind
    (``.NAME.*.tmp`` beside it, untouched for ``min_age_s``: a save in progress is younger; ``NAME``
    may be a glob pattern); returns those removed."""
    path = Path(path)
    removed = []
    now = time.time()
    for f in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - f.stat().st_mtime >= min_age_s:
                f.unlink()
                removed.append(f)
        except OSError:
            pass
    return removed


def save_checkpoint(path: str | Path, model: SfMModel, options: Options, **fields: Any) -> None:
    """Save the model (unwrapped from DDP if needed), its options and any extra fields atomically."""
    model = getattr(model, "module", model)
    save_weights(path, options, model.depth_net.state_dict(), model.pose_net.state_dict(), **fields)


def save_weights(path: str | Path, options: Options, depth_net: dict, pose_net: dict, **fields: Any) -> None:
    """Save the two networks' ``state_dict`` s (e.g. averaged weights), the options and any extra
    fields atomically, as a checkpoint every tool loads."""
    state = {
        "format": FORMAT,
        "options": options.to_dict(),
        "depth_net": {k: v.detach().cpu() for k, v in depth_net.items()},
        "pose_net": {k: v.detach().cpu() for k, v in pose_net.items()},
    }
    state.update(fields)
    atomic_torch_save(state, path)


def split_model_state(state: dict) -> tuple[dict, dict]:
    """An :class:`SfMModel` ``state_dict`` as ``(depth_net, pose_net)`` state dicts."""
    depth = {k[len("depth_net."):]: v for k, v in state.items() if k.startswith("depth_net.")}
    pose = {k[len("pose_net."):]: v for k, v in state.items() if k.startswith("pose_net.")}
    return depth, pose


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``), with clear errors."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; expected a checkpoint file (.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: the error says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated zip, pickle with code, random bytes ...
        what = _what_is_wrong(path, exc)
        # torch's own text only where it adds to ours (a refused pickle, a zip it cannot read): for an
        # empty, truncated or foreign file it advises weights_only=False, which would not help
        why = f" ({_load_error_text(exc)})" if what.startswith(("holds pickled", "is corrupt")) else ""
        raise CheckpointError(f"checkpoint {path} {what}; expected an sfm_ros checkpoint{why}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format {fmt!r}; expected {FORMAT!r}")
    for key in ("options", "depth_net", "pose_net"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return state


def _what_is_wrong(path: Path, exc: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, in a few words (for the one-line error)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return "is empty (0 bytes)"
    is_zip = zipfile.is_zipfile(path)
    if head == b"PK\x03\x04" and not is_zip:
        return f"is truncated ({size} bytes: a zip archive without its end)"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower() \
            and (is_zip or head[:1] == b"\x80"):
        return "holds pickled Python objects, which data-only loading (weights_only=True) refuses"
    if not is_zip:
        return f"is not a PyTorch checkpoint ({size} bytes, neither a zip archive nor a pickle)"
    return "is corrupt"


def _load_error_text(exc: BaseException) -> str:
    """torch's explanation on one line, in whole sentences: its first line (for a refused pickle
    that includes the safety warning) and the unpickler's reason."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    marker = "WeightsUnpickler error:"
    for i, ln in enumerate(lines[1:], 1):
        if marker in ln:
            reason = ln.split(marker, 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            text += f" {marker} {reason}"
            break
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # torch sets a warning in bold for terminals
    return f"{type(exc).__name__}: {text}"


#: The model options that make a checkpoint's weights another architecture when they differ.
ARCHITECTURE_KEYS = ("depth_arch", "width_mult", "pose_arch", "seq_len")


def check_architecture(path: str | Path, saved: Options, requested: Options, prefix: str | None = None) -> None:
    """The one architecture check: raise :class:`CheckpointError` ``PREFIX another architecture
    (key: checkpoint A vs requested B; ...)`` when any of :data:`ARCHITECTURE_KEYS` differs between
    the checkpoint's options ``saved`` and ``requested`` (default prefix: ``cannot resume from
    PATH: it is``)."""
    diff = [f"{k}: checkpoint {getattr(saved.model, k)!r} vs requested {getattr(requested.model, k)!r}"
            for k in ARCHITECTURE_KEYS if getattr(saved.model, k) != getattr(requested.model, k)]
    if diff:
        head = prefix if prefix is not None else f"cannot resume from {path}: it is"
        raise CheckpointError(f"{head} another architecture ({'; '.join(diff)})")


def check_resumable(path: str | Path, state: dict, requested: Options) -> Options:
    """A checkpoint (as :func:`read_checkpoint` returns it) that training can continue with
    ``requested``: valid options, the same architecture (:func:`check_architecture`) and an
    optimiser state; returns the checkpoint's options, else raises :class:`CheckpointError`."""
    try:
        saved = Options.from_dict(state["options"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has invalid options: {exc}") from None
    check_architecture(path, saved, requested)
    if "optimizer" not in state:
        raise CheckpointError(f"cannot resume from {path}: it holds no optimiser state (not a training checkpoint)")
    return saved


def load_model(path: str | Path, device: str | torch.device = "cpu",
               expect: Options | None = None) -> tuple[SfMModel, Options, dict]:
    """Build the model a checkpoint describes and load its weights.

    Args:
        expect: when given, the checkpoint's model options must match these (architecture,
            sequence length); otherwise a :class:`CheckpointError` names the difference.
    Returns:
        ``(model in eval mode on device, options, the raw checkpoint dict)``.
    """
    state = read_checkpoint(path)
    try:
        options = Options.from_dict(state["options"])
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} has invalid options: {exc}") from None
    if expect is not None:
        check_architecture(path, options, expect, f"checkpoint {path} is")
    model = SfMModel(options.model, output_exp=True)
    load_weights(model, state, path)
    return model.to(device).eval(), options, state


def load_weights(model: SfMModel, state: dict, path: str | Path = "<checkpoint>") -> None:
    """Load both networks' weights strictly, turning mismatches into a clear error."""
    model = getattr(model, "module", model)
    for name in ("depth_net", "pose_net"):
        net = getattr(model, name)
        try:
            missing, unexpected = net.load_state_dict(state[name], strict=False)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path}: {name} weights do not fit this architecture "
                                  f"({str(exc).splitlines()[1][:200] if len(str(exc).splitlines()) > 1 else exc})") from None
        # The explainability head may legitimately be absent from either side.
        missing = [k for k in missing if not k.startswith(("upconvs", "mask_heads")) or name != "pose_net"]
        unexpected = [k for k in unexpected if not k.startswith(("upconvs", "mask_heads")) or name != "pose_net"]
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {path}: {name} weights do not fit this architecture "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
