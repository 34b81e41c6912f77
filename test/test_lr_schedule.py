"""sfm_ros.training.lr_schedule: the learning rate over a run's budget, and the trainer's use of it
(the rate each optimiser step took, a resume that goes on where the schedule was)."""
from __future__ import annotations

import pytest

from sfm_ros.data.datasets import prepare_sequence
from sfm_ros.core.options import load_options
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.budget import check_budget
from sfm_ros.training.errors import SetupError
from sfm_ros.training.lr_schedule import budget_progress, lr_factor
from sfm_ros.training.trainer import Trainer

H, W = 32, 96


def test_progress_is_the_larger_share_of_the_budgets():
    assert budget_progress(0, 0, 0.0, 0.0) == 0.0
    assert budget_progress(5, 10, 0.0, 0.0) == 0.5
    assert budget_progress(5, 10, 0.75 * 60, 1.0) == 0.75  # the clock ahead of the steps
    assert budget_progress(9, 10, 0.10 * 60, 1.0) == 0.9   # the steps ahead of the clock
    assert budget_progress(3, 0, 30.0, 2.0) == 0.25        # only a time budget
    assert budget_progress(50, 10, 0.0, 0.0) == 1.0        # past the end: clipped


def test_factor_is_constant_then_linear_to_zero():
    assert [lr_factor(p, 0.0) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]  # the paper's constant rate
    assert [lr_factor(p, 0.5) for p in (0.0, 0.5, 0.75, 1.0)] == [1.0, 1.0, 0.5, 0.0]
    assert lr_factor(0.0, 1.0) == 1.0 and lr_factor(0.25, 1.0) == pytest.approx(0.75)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="train.lr_tail must be in"):
            lr_factor(0.5, bad)


def test_check_budget_names_a_bad_tail():
    o = load_options("default", ["train.lr_tail=1.5"])
    with pytest.raises(SetupError, match=r"train.lr_tail must be in \[0, 1\].*got 1.5"):
        check_budget(o)


class _Rates(Trainer):
    """Records the learning rate each optimiser step took."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rates: list[float] = []

    def train_step(self, batch):
        logs = super().train_step(batch)
        self.rates.append(self.optimizer.param_groups[0]["lr"])
        return logs


@pytest.fixture(scope="module")
def seqs():
    s = render_sequence(9, H, W, seed=3)
    return [prepare_sequence(zip(s.images, s.timestamps), s.K, (H, W), name="synthetic")]


def _opts(*extra: str):
    return load_options("default", ["model.height=32", "model.width=96", "model.width_mult=0.25",
                                    "train.batch_size=2", "train.image_every=0", "train.device=cpu",
                                    "train.amp=off", "train.epochs=0", *extra])


def _rates(opts, seqs, out, resume=None) -> list[float]:
    """The learning rate of every step of one ``fit()`` (a new run, or ``resume`` of one)."""
    tr = _Rates(opts, seqs, None, out, resume=resume, progress=False, tensorboard=False)
    try:
        tr.fit()
    finally:
        tr.close()
    return tr.rates


@pytest.mark.usefixtures("one_torch_thread")
def test_trainer_steps_at_the_scheduled_rate_and_a_resume_goes_on(seqs, tmp_path):
    o = _opts("train.max_steps=8", "train.lr_tail=0.5")
    lr = o.train.lr
    expected = [lr * f for f in (1, 1, 1, 1, 1, 0.75, 0.5, 0.25)]  # step k is taken at progress k/8
    assert _rates(o, seqs, tmp_path / "a") == pytest.approx(expected, rel=1e-6)
    # stopped after 6 steps, then resumed: the last two steps take the rates of the whole run's schedule
    o6 = o.copy()
    o6.train.max_steps = 6
    first = _rates(o6, seqs, tmp_path / "b")
    resumed = _rates(o, seqs, tmp_path / "b", resume=tmp_path / "b" / "last.pt")
    assert first == pytest.approx([lr * f for f in (1, 1, 1, 1, 2 / 3, 1 / 3)], rel=1e-6)  # its own 6-step budget
    assert resumed == pytest.approx(expected[6:], rel=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resume_with_another_rate_takes_it(seqs, tmp_path):
    """The optimiser's saved rate does not override the options' ``train.lr`` on ``--resume``."""
    first = _rates(_opts("train.max_steps=2"), seqs, tmp_path)
    resumed = _rates(_opts("train.max_steps=4", "train.lr=5e-5"), seqs, tmp_path, resume=tmp_path / "last.pt")
    assert first == pytest.approx([2e-4, 2e-4]) and resumed == pytest.approx([5e-5, 5e-5])


def test_fade_factor_falls_linearly_to_zero_at_its_share_and_refuses_bad_shares():
    """1 at the start, linear to 0 at ``until``, 0 after; ``until`` 1 fades over the whole budget;
    a share outside (0, 1] is refused with the option's name (also by the options' check)."""
    from sfm_ros.core.options import load_options
    from sfm_ros.training.lr_schedule import fade_factor

    assert fade_factor(0.0, 0.5) == 1.0
    assert fade_factor(0.25, 0.5) == pytest.approx(0.5)
    assert fade_factor(0.5, 0.5) == 0.0 and fade_factor(0.9, 0.5) == 0.0
    assert fade_factor(0.75, 1.0) == pytest.approx(0.25)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="loss.sparse_depth_until"):
            fade_factor(0.1, bad)
        with pytest.raises(ValueError, match="loss.sparse_depth_until"):
            load_options("default", [f"loss.sparse_depth_until={bad}"])
    with pytest.raises(ValueError, match="loss.sparse_depth_weight"):
        load_options("default", ["loss.sparse_depth_weight=-1"])
