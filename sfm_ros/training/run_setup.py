"""How a training run is set up, from what the user asked to what :class:`sfm_ros.training.trainer.Trainer`
takes: :func:`set_up_run` checks the run folder, reads the checkpoint of ``--resume`` / ``--init``,
settles the options, the budget and the inputs, decodes them and splits off the validation frames.

What the user chose wins; the rest is chosen here or kept from the checkpoint:

* ``--resume CKPT`` continues a run: its options (unless ``--config``), its inputs (unless inputs
  are given), and with ``--config`` still its input size, depth network width, stride and
  augmentation (:func:`keep_resumed_choices`), which were perhaps chosen automatically.
* ``--init CKPT`` starts a new run from CKPT's weights: its architecture and input size
  (:func:`keep_init_architecture`), and its options unless ``--config``; the augmentation is
  chosen again for the new data.
* Otherwise the input size follows the first camera's aspect ratio, the stride the measured
  motion (:func:`sfm_ros.training.run_inputs.load_inputs`) and, with the default preset, the
  augmentation the training set's size (:func:`chooses_augmentation`) and its turns of the camera
  the training frames' own rotation (:func:`choose_turns`); the keys the user set
  (:func:`explicit_keys`) are left alone.
* A budget given is the whole budget (:func:`budget_keys_given`,
  :func:`sfm_ros.training.budget.apply_given_budget`).

Errors are :class:`~sfm_ros.training.errors.SetupError` (and the checkpoint's and inputs' own
``ValueError`` / ``CheckpointError`` / ``OSError``), raised before any step. ROS-free.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfm_ros.core.options import Options
from sfm_ros.training.budget import BUDGET_KEYS, apply_given_budget, check_budget
from sfm_ros.training.errors import SetupError
from sfm_ros.training.run_folder import check_writable, refuse_previous_run
from sfm_ros.training.run_inputs import describe_inputs, has_inputs, load_inputs, restore_inputs

__all__ = ["RunSetup", "set_up_run", "resume_path", "config_file", "budget_keys_given", "explicit_keys",
           "choose_turns", "chooses_augmentation", "keep_resumed_choices", "keep_init_architecture"]


@dataclass
class RunSetup:
    """A run ready to train: its options, training and validation sequences, folder, and the
    checkpoint it resumes or starts from (None for neither)."""

    opts: Options
    train: list
    val: list
    out: Path
    resume: Path | None = None
    init: Path | None = None


def set_up_run(out: Path, inputs: Any, build_options: Callable[[dict | None], Options], *,
               given: set[str] = frozenset(), config: str | None = None, resume: str | None = None,
               init: str | None = None, overwrite: bool = False, input_defaults: dict | None = None,
               is_main: bool = True, log=print) -> RunSetup:
    """Everything before the first step, in this order: the run folder (an ``out`` that is a file,
    one that cannot be written, another run's ``last.pt`` are refused), the checkpoint, the options,
    the budget, the inputs (decoded), the split, the augmentation.

    ``inputs``: the input fields (:mod:`sfm_ros.training.run_inputs`; filled from the checkpoint on
    ``--resume`` without inputs where they are at ``input_defaults``). ``build_options(saved)``:
    the options from ``config`` (or, given ``saved``, from the checkpoint's), then the user's
    overrides. ``given``: the option keys the user set on the command line. ``resume``: a
    checkpoint, ``""`` for ``out/last.pt``. ``is_main``: this process writes (rank 0)."""
    from sfm_ros.core.checkpoint import check_architecture, check_resumable, read_checkpoint
    from sfm_ros.data.datasets import split_sequences

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SetupError(f"--out {out} exists and is not a folder")
    if init is not None and resume is not None:
        raise SetupError("--init and --resume exclude each other: --resume continues a run, --init starts "
                         "a new one from a checkpoint's weights")
    if is_main:
        check_writable(out)
    resume_ckpt = resume_path(resume, out)
    if resume_ckpt is None and not overwrite:
        refuse_previous_run(out)
    init_ckpt = Path(init) if init is not None else None
    source = resume_ckpt or init_ckpt
    state = read_checkpoint(source) if source else None
    opts = build_options(state["options"] if state and config is None else None)
    if resume_ckpt and config is not None:
        keep_resumed_choices(opts, state["options"], given)
    if init_ckpt and config is not None:
        keep_init_architecture(opts, state["options"], given)
    if init_ckpt:
        check_architecture(init_ckpt, Options.from_dict(state["options"]), opts,
                           f"--init {init_ckpt}: cannot start from it with these options, it is")
    if resume_ckpt and "optimizer" not in state:
        raise SetupError(f"cannot resume from {resume_ckpt}: it holds no optimiser state (not a training "
                         f"checkpoint); to start a new run from its weights: --init {resume_ckpt}")
    if resume_ckpt:
        check_resumable(resume_ckpt, state, opts)
    budget_line = apply_given_budget(opts, budget_keys_given(given, config))
    check_budget(opts)
    if budget_line:
        log(budget_line)
    if resume_ckpt and not has_inputs(inputs):
        restore_inputs(inputs, (state.get("extra") or {}).get("inputs"), resume_ckpt, input_defaults or {})
        log(f"inputs from {resume_ckpt}: {describe_inputs(inputs)}")
    del state  # the checkpoint's tensors are not kept while the inputs are decoded
    explicit = explicit_keys(given, config, resume=resume is not None, init=bool(init))
    seqs = load_inputs(inputs, opts, log, explicit=explicit)
    train, val = split_sequences(seqs, opts.data.val_fraction, opts.model.seq_len, opts.data.stride, log)
    if chooses_augmentation(config, resume=resume is not None):
        from sfm_ros.data.autoconfig import augmentation_text, augments, auto_augment
        from sfm_ros.data.datasets import window_indices

        items = [(si, w) for si, s in enumerate(train) for w in window_indices(len(s), opts.model.seq_len,
                                                                                opts.data.stride)]
        given_augment = "data.augment" in explicit
        augment = opts.data.augment if given_augment else augments(len(items))
        why = choose_turns(opts, train, items, explicit) if augment else ""
        what = augmentation_text(opts.data.turn_deg, opts.data.turn_step_deg, opts.data.turn_pose_only) + why
        if not given_augment:
            opts.data.augment = auto_augment(len(items), log, what)
        elif why:
            log(f"augmentation: {what}")
    return RunSetup(opts, train, val, out, resume_ckpt, init_ckpt)


def resume_path(resume: str | None, out: Path) -> Path | None:
    """The checkpoint ``--resume`` names (``""``: ``out/last.pt``); None without ``--resume``.
    Raises :class:`SetupError` when it does not exist."""
    if resume is None:
        return None
    path = Path(resume) if resume else out / "last.pt"
    if not path.is_file():
        raise SetupError(f"--resume: checkpoint {path} does not exist")
    return path


def config_file(config: str | None) -> dict | None:
    """The mapping a YAML ``--config`` file holds; None for a preset, no ``--config`` or a file
    that does not hold a mapping (the options loader refuses those)."""
    from sfm_ros.core.options import PRESETS
    from sfm_ros.core.yaml_io import read_yaml

    if not config or config in PRESETS or not Path(config).is_file():
        return None
    data = read_yaml(config, f"config file {config}", SetupError) or {}
    return data if isinstance(data, dict) else None


def budget_keys_given(given: set[str], config: str | None) -> set[str]:
    """The budget options the user gave: those among ``given`` (the command line's), else those in
    a YAML ``config`` file (the most specific source that names a budget defines the whole budget)."""
    from sfm_ros.core.options import flatten

    on_line = given & set(BUDGET_KEYS)
    if on_line:
        return on_line
    data = config_file(config)  # a file's 0 (no limit) is not a budget given
    return {k for k, v in flatten(data).items() if k in BUDGET_KEYS and v} if data is not None else set()


def explicit_keys(given: set[str], config: str | None, resume: bool = False, init: bool = False) -> set[str]:
    """The option keys the user chose (``given`` on the command line, those of a YAML ``config``, or
    the size and stride when resuming): :func:`~sfm_ros.training.run_inputs.load_inputs` chooses
    the others where it can."""
    from sfm_ros.core.options import flatten

    if resume:  # the checkpoint's choices (see keep_resumed_choices)
        return set(RESUMED_CHOICES)
    keys = set(given)
    if init:  # the checkpoint's input size (see keep_init_architecture)
        keys |= {"model.height", "model.width"}
    data = config_file(config)
    if data is not None:
        keys |= set(flatten({k: v for k, v in data.items() if k != "preset"}))
    return keys


def choose_turns(opts: Options, train: list, items: list, explicit: set[str]) -> str:
    """The ``default`` preset's turns of the camera in augmentation kept or set to 0 by the training
    frames' own rotation (:func:`sfm_ros.data.autoconfig.auto_turn`, measured on up to 48 windows
    by :func:`sfm_ros.training.priors.window_rotations`, ~0.5-0.8 s); left alone when the user set
    ``data.turn_deg``, ``data.turn_step_deg`` or ``data.turn_pose_only``, or when there is no source
    turn (``data.turn_step_deg`` 0: also a ``--init`` from a run whose turns were set to 0 here,
    whose options it starts from). Returns the reason for the augmentation's log line ("" for none)."""
    from sfm_ros.data.autoconfig import auto_turn
    from sfm_ros.training.priors import window_rotations

    d = opts.data
    if {"data.turn_deg", "data.turn_step_deg", "data.turn_pose_only"} & explicit or d.turn_step_deg <= 0:
        return ""
    turns = f"--set data.turn_deg={d.turn_deg:g} --set data.turn_step_deg={d.turn_step_deg:g}"
    turn, why = auto_turn(window_rotations(train, items, opts.model.seq_len)[:, 1], d.turn_step_deg)
    if turn:
        return f" (chosen: {why}; --set data.turn_deg=0 --set data.turn_step_deg=0 for the shifted crop)"
    d.turn_deg = d.turn_step_deg = 0.0
    return f", the camera not turned (chosen: {why}; {turns} to turn it)"


def chooses_augmentation(config: str | None, resume: bool = False) -> bool:
    """Whether ``data.augment`` is chosen from the training set's size (when it is not set): with
    the default preset (named, or the base of a YAML ``config``) and for a ``--init`` fine-tune
    without ``config`` (new data); never on ``--resume`` (the checkpoint's choice)."""
    from sfm_ros.core.options import PRESETS

    if resume:
        return False
    if config is None:
        return True
    if config in PRESETS:
        return config == "default"
    data = config_file(config)
    return data is not None and data.get("preset", "default") == "default"


#: what ``--resume`` keeps from the checkpoint even with ``--config`` (:func:`keep_resumed_choices`)
RESUMED_CHOICES = ("model.height", "model.width", "model.width_mult", "data.stride", "data.augment",
                   "data.turn_deg", "data.turn_step_deg")


def keep_resumed_choices(opts: Options, saved: dict, given: set[str]) -> None:
    """``--resume --config X``: the input size, the depth network's width (the time budget may have
    halved it), stride and augmentation (with its turns) stay the checkpoint's (``saved``: its options; maybe chosen
    automatically) unless in ``given``."""
    for key in RESUMED_CHOICES:
        group, name = key.split(".")
        if key not in given and name in saved.get(group, {}):
            setattr(getattr(opts, group), name, saved[group][name])


def keep_init_architecture(opts: Options, saved: dict, given: set[str]) -> None:
    """``--init CKPT --config X``: the architecture and input size stay CKPT's (``saved``: its
    options) unless in ``given`` (a differing architecture set there is then refused by the
    architecture check)."""
    from sfm_ros.core.checkpoint import ARCHITECTURE_KEYS

    for key in [f"model.{k}" for k in ARCHITECTURE_KEYS] + ["model.height", "model.width"]:
        group, name = key.split(".")
        if key not in given and name in saved.get(group, {}):
            setattr(getattr(opts, group), name, saved[group][name])
