"""sfm_train's budget, progress, resume and fine-tuning, run end to end: invalid budgets are
refused, the "done" line names only files that exist, one progress display over the whole run,
``--resume`` of a finished run says why nothing happens, ``--resume`` without inputs reuses the
stored ones, ``--init`` starts from a checkpoint's weights only (an adapted checkpoint too)."""
from __future__ import annotations

import math

import pytest
import torch

from sfm_ros.cli import train as train_cli
from sfm_ros.core.checkpoint import read_checkpoint
from sfm_ros.training.progress import RunProgress, format_duration

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

TINY = ["--height", "32", "--width", "96", "--width-mult", "0.25", "--batch-size", "2", "--max-steps", "2",
        "--workers", "0", "--device", "cpu", "--amp", "off", "--no-progress", "--no-tensorboard",
        "--config", "paper"]
SYN = ["--synthetic", "1", "--synthetic-frames", "10"]


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = train_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sfm_train: error: "), err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


# ------------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("flags,needle", [
    (["--max-steps", "-5"], "train.max_steps (--max-steps) must be >= 0 (0 = no limit), got -5"),
    (["--epochs", "0", "--max-steps", "0"], "no budget: train.epochs, train.max_steps and train.max_minutes are all 0"),
    (["--max-minutes", "-1"], "train.max_minutes (--max-minutes) must be a finite number >= 0"),
    (["--max-minutes", "nan"], "got nan"),
    (["--set", "train.epochs=-1"], "train.epochs (--epochs) must be >= 0 (0 = no limit), got -1"),
])
def test_invalid_budgets_are_refused(tmp_path, capsys, flags, needle):
    out = tmp_path / "o"
    rc, stdout, err = _run([*SYN, "--out", out, *TINY, *flags], capsys)
    _one_line_error(rc, err, needle)
    assert "done" not in stdout and not (out / "last.pt").exists()


def test_done_names_only_checkpoints_that_exist(tmp_path, capsys, monkeypatch):
    from sfm_ros.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self: {"steps": 0, "epochs": 0, "last_val": None,
                                                      "minutes": 0.0, "history": [], "skipped_steps": 0})
    rc, stdout, err = _run([*SYN, "--out", tmp_path / "o", *TINY], capsys)
    assert rc == 0, err
    assert f"no checkpoint in {tmp_path / 'o'}" in stdout and "last.pt" not in stdout


# ----------------------------------------------------------------------------------- progress
def test_plain_progress_lines_without_a_terminal(tmp_path, capsys):
    rc, stdout, err = _run([*SYN, "--out", tmp_path / "o", *TINY, "--max-steps", "3",
                            "--set", "train.log_every=2"], capsys)
    assert rc == 0, err
    lines = [ln for ln in stdout.splitlines() if ln.startswith("step ") and " steps (" in ln]
    # the first step, then every log_every steps: one line per due step over the whole run
    assert [ln.split("/")[0] for ln in lines] == ["step 1", "step 2"], stdout
    assert all("/3 steps" in ln and "loss " in ln and "steps/s" in ln and "ETA " in ln and "(step budget)" in ln
               for ln in lines), lines
    assert "epoch 1/" not in stdout + err


def test_one_bar_over_the_whole_run_on_a_terminal(tmp_path, capsys, monkeypatch):
    """With a terminal: one bar counting the run's steps across epochs (not one bar per epoch)."""
    from sfm_ros.training import progress
    from sfm_ros.training import trainer

    monkeypatch.setattr(trainer, "_is_tty", lambda stream: True)
    monkeypatch.setattr(progress, "BAR_SECONDS", 0.0)  # redraw at every step
    argv = [a for a in TINY if a != "--no-progress"]
    rc, stdout, err = _run([*SYN, "--out", tmp_path / "o", *argv, "--max-steps", "0", "--epochs", "2",
                            "--batch-size", "4", "--val-fraction", "0"], capsys)
    assert rc == 0, err
    assert "epoch 1/2" not in err and "epoch 2/2" not in err
    total = read_checkpoint(tmp_path / "o" / "last.pt")["step"]
    assert total >= 2 and f"{total}/{total} steps (100 %)" in err, err
    assert f"1/{total} steps" in err and f"{total - 1}/{total} steps" in err  # the same bar across epochs
    assert not any(ln.startswith("step ") and " steps (" in ln for ln in stdout.splitlines())


def test_run_progress_eta_budget_validation_and_seconds():
    now = [0.0]
    lines: list[str] = []
    p = RunProgress(100, max_minutes=1.0, start_step=0, log=lines.append, every_steps=50, every_seconds=10,
                    clock=lambda: now[0])
    now[0] = 1.0
    p.update(1, 0.5)  # the first step always
    now[0] = 5.0
    p.update(2, 0.4)  # not due
    p.set_validation(0.25, step=2)
    now[0] = 12.0
    p.update(3, 0.3)  # 10 s since the last line
    assert len(lines) == 2, lines
    assert "validation 0.2500 (step 2)," in lines[1]  # computed when files are written: its step shown
    # 1 step/s: 99 s for the steps left, 59 s of the minute left
    assert lines[0].startswith("step 1/100 steps (2 %)") and "ETA 0:00:59 (time budget)" in lines[0]
    # 3 steps in 12 s: 388 s for the steps left, 48 s of the minute left: the time budget ends it
    assert "validation 0.2500" in lines[1] and "0.25 steps/s" in lines[1]
    assert "ETA 0:00:48 (time budget)" in lines[1] and "(20 %)" in lines[1]
    assert format_duration(math.inf) == "?" and format_duration(3725) == "1:02:05"
    q = RunProgress(10, max_minutes=10.0, log=lines.append, clock=lambda: now[0])
    now[0] += 2.0
    q.update(1, 0.5)  # 0.5 steps/s: 18 s for the steps left, well within the time budget
    assert "1/10 steps (10 %)" in lines[-1] and "ETA 0:00:18 (step budget)" in lines[-1]
    # the bar: redraws at most every BAR_SECONDS, the skipped last update drawn at close
    import io

    import tqdm as tqdm_module

    buf = io.StringIO()
    bar = RunProgress(10, clock=lambda: now[0], bar=False)
    bar._bar = tqdm_module.tqdm(total=1000, file=buf, bar_format="{percentage:3.0f}%|{bar}| {desc}")
    bar.update(1, 0.5)
    bar.update(2, 0.4)  # within BAR_SECONDS: not drawn now
    assert "2/10 steps" not in buf.getvalue() and "1/10 steps" in buf.getvalue()
    bar.close()
    assert "2/10 steps (20 %)" in buf.getvalue()
    with pytest.raises(ValueError, match="a run needs a step or a time budget"):
        RunProgress(0)
    with pytest.raises(ValueError, match="total_steps must be >= 0"):
        RunProgress(-1)
    # a time budget alone: no step total, the fraction and the ETA follow the clock
    t = RunProgress(0, max_minutes=1.0, clock=lambda: now[0])
    now[0] += 30.0
    assert t.status(5, 0.5).startswith("5 (50 %)") and "(time budget)" in t.status(5, 0.5)


# ------------------------------------------------------------------------------- resume, init
def test_resume_of_a_finished_run_reuses_the_stored_inputs_and_says_how_to_extend(tmp_path, capsys):
    out = tmp_path / "o"
    rc, _, err = _run([*SYN, "--out", out, *TINY], capsys)
    assert rc == 0, err
    stored = read_checkpoint(out / "last.pt")["extra"]["inputs"]
    assert stored["synthetic"] == 1 and stored["synthetic_frames"] == 10
    before = (out / "last.pt").read_bytes()

    rc, stdout, err = _run(["--resume", "--out", out, "--no-progress", "--no-tensorboard"], capsys)
    assert rc == 0, err
    assert f"inputs from {out / 'last.pt'}: --synthetic 1" in stdout
    assert "nothing to train" in stdout and "train.max_steps=2 reached at step 2" in stdout
    assert "--max-steps 4 with --resume" in stdout
    assert (out / "last.pt").read_bytes() == before

    rc, stdout, err = _run(["--resume", "--out", out, "--max-steps", "3", "--no-progress", "--no-tensorboard"],
                           capsys)
    assert rc == 0, err
    assert "nothing to train" not in stdout and read_checkpoint(out / "last.pt")["step"] == 3


def test_resume_without_inputs_of_a_checkpoint_that_stores_none(tmp_path, capsys):
    out = tmp_path / "o"
    rc, _, err = _run([*SYN, "--out", out, *TINY], capsys)
    assert rc == 0, err
    state = read_checkpoint(out / "last.pt")
    del state["extra"]["inputs"]
    torch.save(state, out / "last.pt")
    rc, _, err = _run(["--resume", "--out", out], capsys)
    _one_line_error(rc, err, "no input", f"checkpoint {out / 'last.pt'} stores no inputs")


def _adapted_checkpoint(path):
    """A checkpoint written by sfm_ros.training.adapt (no optimiser, no step): 32x96, width_mult 0.25."""
    from sfm_ros.training.adapt import Adapter, AdaptOptions
    from sfm_ros.core.model import SfMModel
    from sfm_ros.core.options import apply_overrides, preset

    opts = preset("paper")
    apply_overrides(opts, {"model.height": 32, "model.width": 96, "model.width_mult": 0.25})
    torch.manual_seed(123)
    model = SfMModel(opts.model, output_exp=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # weights no fresh initialisation gives
    Adapter(model, opts, AdaptOptions(), started_from="test").save(path)
    return read_checkpoint(path)


def test_init_starts_from_an_adapted_checkpoints_weights(tmp_path, capsys):
    src = _adapted_checkpoint(tmp_path / "adapted.pt")
    assert "optimizer" not in src
    out = tmp_path / "ft"
    # no size or architecture given: the checkpoint's; --lr 0 keeps the weights as loaded
    argv = [a for a in TINY if a not in ("--height", "32", "--width", "96", "--width-mult", "0.25")]
    rc, stdout, err = _run([*SYN, "--out", out, *argv, "--init", tmp_path / "adapted.pt", "--lr", "0"], capsys)
    assert rc == 0, err
    assert f"starting from the weights of {tmp_path / 'adapted.pt'}" in stdout
    state = read_checkpoint(out / "last.pt")
    assert state["step"] == 2 and state["extra"]["init_from"] == str(tmp_path / "adapted.pt")
    assert state["options"]["model"]["width_mult"] == 0.25 and state["options"]["model"]["height"] == 32
    for k, v in src["depth_net"].items():
        assert torch.equal(v, state["depth_net"][k]), k


def test_init_refusals(tmp_path, capsys):
    _adapted_checkpoint(tmp_path / "adapted.pt")
    rc, _, err = _run([*SYN, "--out", tmp_path / "a", *TINY, "--width-mult", "0.5", "--init",
                       tmp_path / "adapted.pt"], capsys)
    _one_line_error(rc, err, "--init", "another architecture", "width_mult: checkpoint 0.25 vs requested 0.5")
    rc, _, err = _run([*SYN, "--out", tmp_path / "b", *TINY, "--init", tmp_path / "adapted.pt", "--resume"],
                      capsys)
    _one_line_error(rc, err, "--init and --resume exclude each other")
    rc, _, err = _run([*SYN, "--out", tmp_path / "d", *TINY, "--resume", tmp_path / "adapted.pt"], capsys)
    _one_line_error(rc, err, "holds no optimiser state", f"to start a new run from its weights: --init {tmp_path / 'adapted.pt'}")
    rc, _, err = _run([*SYN, "--out", tmp_path / "c", *TINY, "--init", tmp_path / "missing.pt"], capsys)
    _one_line_error(rc, err, f"checkpoint {tmp_path / 'missing.pt'} does not exist")
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "last.pt").exists()


def test_readme_robot_recipe_trains_the_shipped_architecture():
    """The README's robot recipe parses and trains the half-width DispNet of models/sfm_default.pt
    (the architecture that runs live on a CPU); its fine-tuning line uses --init."""
    import shlex
    from pathlib import Path

    from sfm_ros.core.checkpoint import read_checkpoint as read

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    recipe = text.split("## Using it on a robot", 1)[1].split("```", 2)[1]
    lines = [ln.split("#", 1)[0].strip() for ln in recipe.splitlines() if ln.startswith("sfm_train ")]
    assert lines, recipe
    args = train_cli.build_parser().parse_args(shlex.split(lines[0])[1:])
    opts = train_cli.build_options(args)
    shipped = Path(__file__).resolve().parents[1] / "models" / "sfm_default.pt"
    assert opts.model.width_mult == 0.5 and opts.model.depth_arch == "dispnet"
    if shipped.is_file():
        assert read(shipped)["options"]["model"]["width_mult"] == opts.model.width_mult
    assert "--init models/sfm_default.pt" in recipe and "Model size" in text


def test_init_from_the_shipped_model(tmp_path, capsys):
    """models/README calls the shipped model a starting point for fine-tuning: --init takes it
    (architecture and 128x416 size from it; --lr 0 keeps its weights)."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "models" / "sfm_default.pt"
    if not shipped.is_file():
        pytest.skip("models/sfm_default.pt absent")
    out = tmp_path / "ft"
    rc, stdout, err = _run(["--init", shipped, "--synthetic", "1", "--synthetic-frames", "6", "--max-steps", "1",
                            "--batch-size", "1", "--workers", "0", "--device", "cpu", "--amp", "off", "--lr", "0",
                            "--no-progress", "--no-tensorboard", "--val-fraction", "0", "--ckpt-every", "0",
                            "--out", out], capsys)
    assert rc == 0, err
    src, state = read_checkpoint(shipped), read_checkpoint(out / "last.pt")
    assert state["options"]["model"]["width_mult"] == 0.5 and state["options"]["model"]["width"] == 416
    for k, v in src["depth_net"].items():
        assert torch.equal(v, state["depth_net"][k]), k


# --------------------------------------------- a given budget is the budget; the file to use
def test_a_given_step_budget_is_not_cut_short_by_the_default_epochs(tmp_path, capsys):
    """10 frames make 4 steps an epoch: the preset's 20 epochs would end the run at step 80; with
    only --max-steps 90 given, the run lasts 90 steps and its last lines say what ended it and
    which file to use. An explicit --epochs still ends it."""
    out = tmp_path / "o"
    rc, stdout, err = _run([*SYN, "--out", out, *TINY, "--max-steps", "90"], capsys)
    assert rc == 0, err
    assert "budget: --max-steps 90 (not limited by the default train.epochs=20" in stdout
    assert read_checkpoint(out / "last.pt")["step"] == 90
    lines = stdout.strip().splitlines()
    assert lines[-2].startswith("done: step 90, ended by --max-steps 90 (train.max_steps), 22 epoch(s)"), lines[-2]
    assert lines[-1].startswith(f"use {out / 'model.pt'}: the weights averaged over the last 10 % of the run")
    rc, stdout, err = _run([*SYN, "--out", tmp_path / "e", *TINY, "--max-steps", "90", "--epochs", "2"], capsys)
    assert rc == 0, err
    assert read_checkpoint(tmp_path / "e" / "last.pt")["step"] == 8
    assert "ended by --epochs 2 (train.epochs)" in stdout


def test_model_pt_is_the_weight_average_and_every_tool_takes_it(tmp_path, capsys):
    """model.pt holds the weights' moving average (no optimiser: --resume refuses it, --init and
    load_model take it); with train.average_sigma_rel=0 it is the last weights."""
    from sfm_ros.core.checkpoint import load_model

    out = tmp_path / "o"
    rc, _, err = _run([*SYN, "--out", out, *TINY, "--max-steps", "6"], capsys)
    assert rc == 0, err
    model, last = read_checkpoint(out / "model.pt"), read_checkpoint(out / "last.pt")
    assert "optimizer" not in model and model["step"] == 6 and "moving average" in model["extra"]["weights"]
    assert last["average"]["steps"] == 6
    diff = [not torch.equal(model["depth_net"][k], last["depth_net"][k]) for k in last["depth_net"]]
    assert any(diff)  # the average, not the last weights
    for k, v in last["average"]["average"].items():
        net, name = k.split(".", 1)
        assert torch.equal(model[net][name], v)
    load_model(out / "model.pt")
    rc, _, err = _run(["--resume", str(out / "model.pt"), "--out", out, "--no-progress"], capsys)
    assert rc == 2 and "holds no optimiser state" in err and f"--init {out / 'model.pt'}" in err
    rc, _, err = _run([*SYN, "--out", tmp_path / "ft", *TINY, "--init", out / "model.pt"], capsys)
    assert rc == 0, err

    rc, _, err = _run([*SYN, "--out", tmp_path / "raw", *TINY, "--set", "train.average_sigma_rel=0"], capsys)
    assert rc == 0, err
    model, last = read_checkpoint(tmp_path / "raw" / "model.pt"), read_checkpoint(tmp_path / "raw" / "last.pt")
    assert all(torch.equal(model["depth_net"][k], v) for k, v in last["depth_net"].items())
    assert "average" not in last


def test_snapshots_do_not_change_training(tmp_path, capsys):
    """train.snapshot_every writes the raw weights every N steps and leaves the run as it was."""
    rc, _, err = _run([*SYN, "--out", tmp_path / "a", *TINY, "--max-steps", "4"], capsys)
    assert rc == 0, err
    rc, _, err = _run([*SYN, "--out", tmp_path / "b", *TINY, "--max-steps", "4",
                       "--set", "train.snapshot_every=2"], capsys)
    assert rc == 0, err
    a, b = read_checkpoint(tmp_path / "a" / "last.pt"), read_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["depth_net"][k], v) for k, v in b["depth_net"].items())
    snaps = sorted(p.name for p in (tmp_path / "b" / "snapshots").iterdir())
    assert snaps == ["step_000002.pt", "step_000004.pt"]
    s4 = read_checkpoint(tmp_path / "b" / "snapshots" / "step_000004.pt")
    assert all(torch.equal(s4["pose_net"][k], v) for k, v in b["pose_net"].items())


def test_a_run_that_ends_before_the_depth_takes_shape_says_so(tmp_path, capsys, monkeypatch):
    """A 6-step run checked every 2 steps, its depth read as unshaped (the threshold raised past
    this tiny network's spread; the threshold itself: test_monitor.py), ends with the note before
    the last two lines; the command it names continues the run (the budget that ended it: the steps
    here, although a time budget was given too); a time budget that ended a run is named as such."""
    from types import SimpleNamespace
    from pathlib import Path

    from sfm_ros.core.options import preset
    from sfm_ros.training import monitor
    from sfm_ros.training.trainer import Trainer

    monkeypatch.setattr(monitor, "SHAPED_SPREAD", 10.0)
    out = tmp_path / "o"
    argv = [*SYN, "--out", out, *TINY, "--max-steps", "6", "--max-minutes", "30", "--set", "train.log_every=2"]
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert lines[-3].startswith("note: the depth still varies little across each image at the end"), lines[-3:]
    hint = f"run the same command (without --init) with --resume {out / 'last.pt'} --max-steps 1006"
    assert lines[-3].endswith(f"to train it longer, {hint}"), lines[-3]
    assert lines[-2].startswith("done: step 6, ended by --max-steps 6") and lines[-1].startswith("use ")
    rc, stdout, err = _run([*argv, "--resume", out / "last.pt", "--max-steps", "8"], capsys)  # as the note says
    assert rc == 0, err
    assert "resuming" in stdout and read_checkpoint(out / "last.pt")["step"] == 8
    opts = preset("default")
    opts.train.max_minutes = 12
    more = Trainer._more_hint(SimpleNamespace(opts=opts, out_dir=Path("runs/x"), epoch=14), "train.max_minutes=12")
    assert more == "run the same command (without --init) with --resume runs/x/last.pt: it trains another --max-minutes 12"
