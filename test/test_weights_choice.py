"""Which weights ``model.pt`` holds at a run's end (:mod:`sfm_ros.training.weights_choice`): the
depth network's weight average or last weights, by the held-out windows' geometric depth error,
and the pose network's average."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sfm_ros.core.checkpoint import read_checkpoint
from sfm_ros.core.options import load_options
from sfm_ros.data.datasets import WindowDataset, prepare_sequence
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training import weights_choice as wc
from sfm_ros.training.run_folder import use_line
from sfm_ros.training.trainer import Trainer

H, W = 128, 416


@pytest.fixture(scope="module")
def seqs():
    s = render_sequence(24, H, W, seed=5)
    seq = prepare_sequence(zip(s.images, s.timestamps), s.K, (H, W), name="synthetic")
    return seq


def test_held_out_items_are_spread_windows_with_their_two_view_geometry(seqs):
    seq = seqs
    ds = WindowDataset([seq], 3, 1)
    items = wc.held_out_items([seq], ds.items, max_windows=5)
    assert len(items) == 5
    window, K, prior_T, prior_w = items[0]
    assert window.shape == (3, H, W, 3) and window.dtype == np.uint8 and K.shape == (3, 3)
    assert prior_T.shape == (2, 4, 4) and prior_w.shape == (2, 2)
    np.testing.assert_array_equal(items[0][0], seq.frames[ds.items[0][1]])    # the first window ...
    np.testing.assert_array_equal(items[-1][0], seq.frames[ds.items[-1][1]])  # ... and the last
    assert wc.held_out_items([seq], []) == []


@pytest.mark.parametrize("scores, expected", [
    ({"average": 0.02, "last": 0.01}, "last"),
    ({"average": 0.01, "last": 0.02}, "average"),
    ({"average": 0.01, "last": 0.01}, "average"),            # a tie keeps the first (the average)
    ({"average": math.nan, "last": math.nan}, "average"),    # nothing to judge by: the first
    ({"average": math.nan, "last": 0.01}, "last"),
])
def test_the_lower_held_out_error_wins(monkeypatch, scores, expected):
    models = {name: torch.nn.Linear(1, 1) for name in scores}
    by_model = {id(m): scores[name] for name, m in models.items()}
    monkeypatch.setattr(wc, "geometric_depth_error", lambda model, items, device: by_model[id(model)])
    name, got = wc.choose_weights(models, [object()], torch.device("cpu"))
    assert name == expected and got == scores
    assert wc.choose_weights(models, [], torch.device("cpu"))[0] == "average"  # no window: no score
    with pytest.raises(ValueError, match="no candidate"):
        wc.choose_weights({}, [], torch.device("cpu"))


def _opts():
    o = load_options("default", ["model.height=128", "model.width=416", "model.width_mult=0.25",
                                 "train.batch_size=2", "train.log_every=1", "train.image_every=0",
                                 "train.device=cpu", "train.max_steps=6", "train.epochs=0"])
    o.train.amp = "off"
    return o


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("winner", ["last", "average"])
def test_the_run_hands_over_the_weights_that_explain_the_held_out_windows(tmp_path, monkeypatch, seqs, winner):
    seq = seqs
    train = type(seq)(seq.frames[:18], seq.K, seq.stamps[:18], "train")
    val = type(seq)(seq.frames[18:], seq.K, seq.stamps[18:], "val")
    real = wc.geometric_depth_error
    seen = {}

    def fake(model, items, device):  # the real score runs; the chosen one is made the lower
        seen[id(model)] = real(model, items, device)
        return 0.0 if (model is trainer.model) == (winner == "last") else 1.0

    monkeypatch.setattr(wc, "geometric_depth_error", fake)
    trainer = Trainer(_opts(), [train], [val], tmp_path, progress=False, tensorboard=False)
    assert trainer.model.training
    summary = trainer.fit()
    trainer.close()
    assert trainer.model.training  # scoring put it in eval mode and back
    choice = summary["model_choice"]
    assert choice["weights"] == winner and choice["windows"] == 4 and choice["step"] == 6
    assert all(math.isfinite(v) for v in seen.values()) and len(seen) == 2
    model, last = read_checkpoint(tmp_path / "model.pt"), read_checkpoint(tmp_path / "last.pt")
    assert model["extra"]["model_choice"]["weights"] == winner
    same = all(torch.equal(v, last["depth_net"][k]) for k, v in model["depth_net"].items())
    assert same == (winner == "last")
    # the pose network is the average's whichever depth won (no label-free score ranks pose networks)
    averaged = trainer.average.averaged_state()
    assert all(torch.equal(v, averaged["pose_net." + k]) for k, v in model["pose_net"].items())
    assert not all(torch.equal(v, last["pose_net"][k]) for k, v in model["pose_net"].items())
    assert wc.stored_choice(tmp_path / "model.pt") == choice  # what a finished run resumed says
    line = use_line(tmp_path, 0.1, choice)
    assert line.startswith(f"use {tmp_path / 'model.pt'}: the "
                           f"{'depth network' if winner == 'last' else 'weights averaged'}")
    assert ("with the pose network averaged" in line) == (winner == "last")
    assert "the 4 held-out windows" in line and "explain" in line


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_without_held_out_windows_model_pt_is_the_average_and_says_so(tmp_path, monkeypatch, seqs):
    def never(*a, **k):
        raise AssertionError("nothing to score: no held-out windows")

    monkeypatch.setattr(wc, "geometric_depth_error", never)
    trainer = Trainer(_opts(), [seqs], None, tmp_path, progress=False, tensorboard=False)
    summary = trainer.fit()
    trainer.close()
    assert summary["model_choice"] is None and trainer.held_out == []
    model, last = read_checkpoint(tmp_path / "model.pt"), read_checkpoint(tmp_path / "last.pt")
    assert "model_choice" not in model["extra"] and model["extra"]["weights"].startswith("power-function moving average")
    assert not all(torch.equal(v, last["depth_net"][k]) for k, v in model["depth_net"].items())
    assert wc.stored_choice(tmp_path / "model.pt") is None and wc.stored_choice(tmp_path / "none.pt") is None
    assert "not compared with the last weights (no held-out windows, or the run was interrupted)" in use_line(tmp_path, 0.1)
    assert "the last weights (train.average_sigma_rel=0)" in use_line(tmp_path, 0.0)
    assert use_line(tmp_path / "nothing", 0.1).startswith("no checkpoint in")


def test_a_failed_scoring_keeps_the_average(monkeypatch):
    """Scoring that fails (out of memory, a warp error) costs the choice, not the run's model.pt."""
    from sfm_ros.training.run_checkpoints import RunCheckpoints

    class Run(RunCheckpoints):
        def __init__(self):
            self.model, self.held_out, self.device, self.step = torch.nn.Linear(2, 2), [object()], "cpu", 7
            self.average = type("A", (), {"averaged_state": lambda s: self.model.state_dict()})()
            self.logged = []
            self.log = self.logged.append

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory\nmore")

    monkeypatch.setattr(wc, "geometric_depth_error", boom)
    run = Run()
    assert run._choose_weights() == "average"
    assert run.model.training and run.model_choice["weights"] == "average" and run.model_choice["step"] == 7
    assert run.logged == ["model.pt: the held-out windows could not be scored (CUDA out of memory): the weight average"]
