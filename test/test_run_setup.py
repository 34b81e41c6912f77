"""sfm_ros.training.run_setup and run_inputs: what the user set wins, the size and stride are
chosen where left open, ``--resume`` / ``--init`` keep the checkpoint's choices, a budget given is
the budget; the set-up as a library call, without a command line."""
from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sfm_ros.cli import train as train_cli
from sfm_ros.core.options import load_options, preset
from sfm_ros.data.inputs import InputOptions
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.budget import apply_given_budget
from sfm_ros.training.errors import SetupError
from sfm_ros.training.run_inputs import load_inputs
from sfm_ros.training.run_setup import (budget_keys_given, chooses_augmentation, explicit_keys,
                                        keep_resumed_choices, set_up_run)


def _parse(argv):
    """sfm_train's namespace and options for ``argv``."""
    args = train_cli.build_parser().parse_args([str(a) for a in argv])
    return args, train_cli.build_options(args)


def _explicit(args) -> set[str]:
    return explicit_keys(train_cli.explicit_keys_given(args), args.config, resume=args.resume is not None,
                         init=bool(args.init))


def test_size_and_stride_are_chosen_and_logged_unless_set(tmp_path):
    """Nothing set: the input size follows the camera's aspect ratio near the paper's pixel count,
    the stride the measured parallax (a 4x slower camera: each rendered frame recorded 4 times);
    what the user sets wins and is not measured."""
    d = tmp_path / "frames"
    d.mkdir()
    seq = render_sequence(12, 96, 320, seed=5)
    for i, im in enumerate(np.repeat(seq.images, 4, axis=0)):
        cv2.imwrite(str(d / f"{i:04d}.png"), im[:, :, ::-1])
    base = ["--images", str(d), "--fx", str(seq.K[0, 0]), "--cx", str(seq.K[0, 2]), "--cy", str(seq.K[1, 2]),
            "--out", str(tmp_path / "o")]
    args, opts = _parse(base)
    logs: list[str] = []
    (s,) = load_inputs(args, opts, log=logs.append, explicit=_explicit(args))
    assert (opts.model.height, opts.model.width) == (128, 416) == s.frames.shape[1:3]  # 320x96: 3.33
    assert 3 <= opts.data.stride <= 5
    text = "\n".join(logs)
    assert "input size 128x416 (chosen" in text and f"frame stride {opts.data.stride} (chosen" in text
    args, opts = _parse(base + ["--height", "32", "--width", "96", "--set", "data.stride=2"])
    logs.clear()
    load_inputs(args, opts, log=logs.append, explicit=_explicit(args))
    assert (opts.model.height, opts.model.width, opts.data.stride) == (32, 96, 2)
    assert not any("chosen" in m for m in logs)


def test_the_automatic_stride_fits_the_shortest_input(tmp_path):
    seq = render_sequence(12, 96, 320, seed=5)
    dirs = []
    for name, frames in (("slow", np.repeat(seq.images, 4, axis=0)), ("short", seq.images[:5])):
        d = tmp_path / name
        d.mkdir()
        for i, im in enumerate(frames):
            cv2.imwrite(str(d / f"{i:04d}.png"), im[:, :, ::-1])
        dirs += ["--images", str(d)]
    args, opts = _parse(dirs + ["--fx", str(seq.K[0, 0]), "--cx", str(seq.K[0, 2]), "--cy", str(seq.K[1, 2]),
                                "--height", "32", "--width", "96", "--out", str(tmp_path / "o")])
    logs: list[str] = []
    seqs = load_inputs(args, opts, log=logs.append, explicit=_explicit(args))
    assert len(seqs) == 2 and opts.data.stride == 2  # the slow input alone would take 3-5
    assert any("the shortest input has 5 frames" in m for m in logs), logs


def test_resume_with_a_config_keeps_the_checkpoint_size_and_stride():
    saved = preset("default").to_dict()
    saved["model"].update(height=192, width=256, width_mult=0.5)  # the width as a time budget halves it
    saved["data"]["stride"] = 7
    saved["data"]["augment"] = False  # e.g. chosen automatically
    opts = preset("paper")
    keep_resumed_choices(opts, saved, {"data.stride"})
    assert (opts.model.height, opts.model.width, opts.data.stride) == (192, 256, 1)  # stride was given
    assert opts.model.width_mult == 0.5  # the paper preset's 1.0 would not load the checkpoint
    assert opts.data.augment is False  # paper's own is True: the checkpoint's choice is kept
    args = train_cli.build_parser().parse_args(["--synthetic", "1", "--out", "o", "--resume", "o/last.pt"])
    assert not chooses_augmentation(args.config, resume=True) and "data.augment" in _explicit(args)


def test_budget_rule_on_resume_and_with_a_config_file(tmp_path):
    """A budget on the command line replaces every saved or file budget; with none on the command
    line, a --config file that names budgets defines them; with none given, the preset's apply."""
    def given(argv):
        args = train_cli.build_parser().parse_args([*argv, "--out", str(tmp_path)])
        return budget_keys_given(train_cli.explicit_keys_given(args), args.config)

    saved = load_options("default")
    saved.train.epochs, saved.train.max_minutes = 0, 12.0  # a resumed run's saved budget ...
    saved.train.max_steps = 20000  # ... with this command line's --max-steps applied (build_options)
    line = apply_given_budget(saved, given(["--resume", "--max-steps", "20000"]))
    assert (saved.train.epochs, saved.train.max_steps, saved.train.max_minutes) == (0, 20000, 0.0)
    assert "train.max_minutes=12" in line
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: default\ntrain:\n  epochs: 20\n  max_steps: 0\n  max_minutes: 0.0\n")
    assert given(["--config", str(cfg), "--max-minutes", "5"]) == {"train.max_minutes"}
    assert given(["--config", str(cfg)]) == {"train.epochs"}  # a file's 0 (no limit) is not a budget given
    opts = load_options("default")
    assert apply_given_budget(opts, given([])) is None and opts.train.epochs == 20


def test_a_run_is_set_up_without_a_command_line(tmp_path):
    """set_up_run takes plain attributes for the inputs and a callable for the options: the budget
    given is the budget, the augmentation is chosen for a small training set, and a second new run
    into a folder holding a last.pt, or --init with --resume, is refused before any input is decoded."""
    inputs = SimpleNamespace(bag=[], images=[], kitti=[], video=[],
                             **asdict(InputOptions(synthetic=1, synthetic_frames=10)))
    opts = preset("default")
    opts.model.height, opts.model.width, opts.train.max_steps = 32, 96, 2
    logs: list[str] = []
    run = set_up_run(tmp_path / "o", inputs, lambda saved: opts, log=logs.append,
                     given={"model.height", "model.width", "train.max_steps"})
    assert run.opts is opts and run.out == tmp_path / "o" and run.resume is None and run.init is None
    assert len(run.train) == 1 and run.train[0].frames.shape[1:3] == (32, 96)
    assert logs[0].startswith("budget: --max-steps 2") and opts.train.epochs == 0
    assert opts.data.augment is True and any(m.startswith("augmentation on (chosen") for m in logs), logs
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "last.pt").write_bytes(b"")
    logs.clear()
    with pytest.raises(SetupError, match="last.pt exists: pass --resume"):
        set_up_run(tmp_path / "o", inputs, lambda saved: opts, log=logs.append)
    with pytest.raises(SetupError, match="--init and --resume exclude each other"):
        set_up_run(tmp_path / "p", inputs, lambda saved: opts, resume="", init="x.pt", log=logs.append)
    assert not logs


def test_auto_turn_turns_the_camera_for_a_recording_that_turns_little():
    """The rule: turn while the recording's rms yaw is below the source turns' own rms (1.5 / √3 =
    0.87°); with fewer than TURN_MIN_PAIRS pairs measured the turns stay; the reason names the figures."""
    from sfm_ros.data.autoconfig import TURN_MIN_PAIRS, auto_turn

    turn, why = auto_turn(np.full(40, 0.11), 1.5)
    assert turn and "0.11 deg rms" in why and "40 frame pairs, below the source turns' 0.87 deg" in why
    turn, why = auto_turn(np.r_[np.full(20, 1.5), np.full(20, -1.5)], 1.5)
    assert not turn and "1.50 deg rms" in why and "not below" in why
    turn, why = auto_turn(np.full(TURN_MIN_PAIRS - 1, 3.0), 1.5)
    assert turn and f"{TURN_MIN_PAIRS - 1} frame pairs, fewer than {TURN_MIN_PAIRS}" in why


@pytest.mark.parametrize("yaw_rate, turns", [(0.0, True), (0.2, False)])
def test_the_default_turns_are_chosen_by_the_training_frames_own_rotation(tmp_path, yaw_rate, turns):
    """A straight rendered street (its yaw between frames ~0.1°) keeps the default preset's turns; a
    winding one (0.2 rad/s at 10 Hz: 1.5° rms a frame pair) gets the shifted crop. The measured rms
    yaw is the true one's within a factor of 2 (±0.1°: the two-view rotations of a rendered street
    in a turn are poor, measured 2.6° against 1.5°); the reason is logged; a forced augmentation
    still has its turns chosen, a user's turns are kept as set."""
    from sfm_ros.core.se3 import matrix_to_axis_angle
    from sfm_ros.data.datasets import prepare_sequence, window_indices
    from sfm_ros.training.priors import window_rotations

    s = render_sequence(24, 128, 416, seed=0, yaw_rate=yaw_rate)
    seq = prepare_sequence(zip(s.images, s.timestamps), s.K, (128, 416), name="street")
    items = [(0, w) for w in window_indices(len(seq), 3, 1)]
    rv = window_rotations([seq], items, 3, max_windows=len(items))
    true = np.array([np.degrees(matrix_to_axis_angle((np.linalg.inv(s.poses[j]) @ s.poses[w[1]])[:3, :3]))
                     for _, w in items for j in (w[0], w[2])])
    rms = lambda yaw: float(np.sqrt(np.mean(yaw ** 2)))  # noqa: E731
    assert len(rv) >= 0.8 * len(true)
    assert rms(true[:, 1]) / 2 - 0.1 < rms(rv[:, 1]) < 2 * rms(true[:, 1]) + 0.1, (rms(rv[:, 1]), rms(true[:, 1]))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(s.images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    inputs = SimpleNamespace(bag=[], images=[str(folder)], kitti=[], video=[],
                             **asdict(InputOptions(pattern="*.png", fx=s.K[0, 0], fy=s.K[1, 1], cx=s.K[0, 2],
                                                   cy=s.K[1, 2])))
    fixed = {"model.height", "model.width", "data.stride"}
    for n, given in enumerate((fixed, fixed | {"data.augment"}, fixed | {"data.turn_deg"})):
        opts = preset("default")
        opts.model.height, opts.model.width, opts.data.stride, opts.data.augment = 128, 416, 1, True
        logs: list[str] = []
        set_up_run(tmp_path / f"o{n}", inputs, lambda saved, o=opts: o, log=logs.append, given=given)
        line = [m for m in logs if m.startswith("augmentation")]
        if "data.turn_deg" in given:
            assert (opts.data.turn_deg, opts.data.turn_step_deg) == (5.0, 1.5) and "rms in yaw" not in line[0]
            continue
        assert (opts.data.turn_deg > 0) is turns and (opts.data.turn_step_deg > 0) is turns
        assert len(line) == 1 and "rms in yaw" in line[0], logs
        assert ("the camera not turned" in line[0]) is (not turns)
        assert line[0].startswith("augmentation: " if "data.augment" in given else "augmentation on (chosen")


def test_the_turns_are_not_measured_without_augmentation_and_resume_keeps_them(tmp_path, monkeypatch):
    """No augmentation (chosen off, or set off), a user's ``data.turn_pose_only`` or a preset without
    source turns: the frames' rotation is not measured and the turns stay as they are; ``--resume
    --config`` keeps the run's turns (RESUMED_CHOICES)."""
    from sfm_ros.training import priors
    from sfm_ros.training.run_setup import choose_turns

    def boom(*a, **kw):
        raise AssertionError("measured")
    monkeypatch.setattr(priors, "window_rotations", boom)
    inputs = SimpleNamespace(bag=[], images=[], kitti=[], video=[],
                             **asdict(InputOptions(synthetic=1, synthetic_frames=10)))
    for n, (given, augment) in enumerate((({"data.augment"}, False), ({"data.turn_pose_only"}, True))):
        opts = preset("default")
        opts.model.height, opts.model.width, opts.data.augment = 32, 96, augment
        opts.data.turn_pose_only = "data.turn_pose_only" in given
        set_up_run(tmp_path / f"o{n}", inputs, lambda saved, o=opts: o, log=lambda m: None,
                   given={"model.height", "model.width", *given})
        assert (opts.data.turn_deg, opts.data.turn_step_deg, opts.data.augment) == (5.0, 1.5, augment)
    opts = preset("default")
    opts.data.turn_step_deg = 0.0
    assert choose_turns(opts, [], [], set()) == "" and opts.data.turn_deg == 5.0
    opts = preset("default")
    keep_resumed_choices(opts, {"data": {"turn_deg": 0.0, "turn_step_deg": 0.0}}, set())
    assert (opts.data.turn_deg, opts.data.turn_step_deg) == (0.0, 0.0)
