"""sfm_ros.training.trainer: exact resume, Ctrl-C, non-finite losses, atomic checkpoints under SIGKILL, DDP.

Everything is tiny (32x96 frames, width_mult 0.25, a few steps) and runs with one torch thread.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_ddp_worker
from sfm_ros.core.checkpoint import atomic_torch_save, read_checkpoint
from sfm_ros.data.datasets import prepare_sequence
from sfm_ros.core.options import load_options
from sfm_ros.core.se3 import matrix_to_axis_angle
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.trainer import MAX_BAD_STEPS, Trainer, TrainingError, TrainingInterrupted

REPO = Path(__file__).resolve().parents[1]
H, W = 32, 96


pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def seqs():
    s = render_sequence(9, H, W, seed=3)
    return [prepare_sequence(zip(s.images, s.timestamps), s.K, (H, W), name="synthetic")]


def _opts(**train):
    # The "default" preset: its auto-mask draws tie-break noise from the torch RNG, so an exact
    # resume needs the RNG state restored at the right moment, not just the data order.
    o = load_options("default", ["model.height=32", "model.width=96", "model.width_mult=0.25",
                                 "train.batch_size=2", "train.log_every=1", "train.image_every=0",
                                 "train.device=cpu", "train.epochs=2"])
    o.train.amp = "off"
    for k, v in train.items():
        setattr(o.train, k, v)
    return o


class Recorder(Trainer):
    """Records (step about to be taken, target indices of the batch, loss) for every step."""

    def __init__(self, *a, interrupt_at: int | None = None, **kw):
        super().__init__(*a, **kw)
        self.seen: list[tuple[int, list[int], float]] = []
        self.interrupt_at = interrupt_at

    def train_step(self, batch):
        if self.interrupt_at is not None and self.step + 1 == self.interrupt_at:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C in the middle of this step
        logs = super().train_step(batch)
        self.seen.append((self.step + 1, batch["index"].tolist(), logs["loss"]))
        return logs


def _run(seqs, out, resume=None, interrupt_at=None, **train):
    tr = Recorder(_opts(**train), seqs, None, out, resume=resume, progress=False, tensorboard=False,
                  interrupt_at=interrupt_at)
    try:
        tr.fit()
    finally:
        tr.close()
    return tr


# 7 windows, batch 2 -> 3 steps an epoch; 5 steps in all.
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", ["mid_epoch", "epoch_boundary", "sigint"])
@pytest.mark.usefixtures("sigint_default")
def test_resume_is_exact(seqs, tmp_path, workers, stop):
    full = _run(seqs, tmp_path / "full", num_workers=workers, max_steps=5)
    assert [s for s, _, _ in full.seen] == [1, 2, 3, 4, 5]
    assert full.steps_per_epoch == 3

    out = tmp_path / "part"
    if stop == "sigint":
        k = 2
        with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
            _run(seqs, out, interrupt_at=2, num_workers=workers, max_steps=5)
        state = read_checkpoint(out / "last.pt")
        assert state["extra"]["interrupted"] is True
    else:
        k = 2 if stop == "mid_epoch" else 3
        _run(seqs, out, num_workers=workers, max_steps=k)
        state = read_checkpoint(out / "last.pt")
    assert state["step"] == k

    resumed = _run(seqs, out, resume=out / "last.pt", num_workers=workers, max_steps=5)
    # It continues at the same step, with the same next batch and bit-identical losses.
    assert resumed.seen == full.seen[k:]
    assert [h for h in resumed.history if "loss" in h] == [h for h in full.history if "loss" in h]
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    # ... and the weight average (model.pt) continues exactly too.
    for k, v in full.average.averaged_state().items():
        assert torch.equal(v, resumed.average.averaged_state()[k])


def test_resume_of_a_finished_run_takes_no_step(seqs, tmp_path):
    _run(seqs, tmp_path, num_workers=0, max_steps=2)
    again = _run(seqs, tmp_path, resume=tmp_path / "last.pt", num_workers=0, max_steps=2)
    assert again.seen == [] and again.step == 2


def test_non_finite_loss_raises_training_error_without_checkpoints(seqs, tmp_path):
    class NaNTrainer(Trainer):
        def _forward(self, batch, model, keep_images=False):
            outputs, losses, images = super()._forward(batch, model, keep_images)
            losses["loss"] = losses["loss"] * float("nan")
            return outputs, losses, images

    tr = NaNTrainer(_opts(num_workers=0, epochs=10), seqs, None, tmp_path, progress=False, tensorboard=False,
                    save_minutes=0)  # every epoch's end writes
    init = [p.detach().clone() for p in tr.model.parameters()]
    with pytest.raises(TrainingError, match="non-finite for 10 steps"):
        tr.fit()
    # No optimiser step was taken; skipped batches still advance through the epochs (3 batches
    # an epoch: 10 skips = 3 epochs + 1 batch), and the epoch-end checkpoints hold the untouched
    # initial weights, never non-finite ones.
    assert tr.step == 0 and (tr.epoch, tr.step_in_epoch) == (3, 1)
    assert all(torch.equal(a, b) for a, b in zip(init, tr.model.parameters()))
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 0 and state["epoch"] == 3
    assert all(torch.isfinite(v).all() for v in state["depth_net"].values())


def test_epoch_ends_write_once_the_save_interval_has_passed(seqs, tmp_path, monkeypatch):
    """``save_minutes``: the first epoch's end writes, later ones only once the interval has passed
    (a clock moved on by hand), the run's end always; 0 writes at every epoch's end. Each write
    is model.pt + last.pt, counted in save_writes; bad intervals are refused."""
    import sfm_ros.training.trainer as trainer_mod

    now = [1000.0]
    real = time.monotonic
    monkeypatch.setattr(trainer_mod.time, "monotonic", lambda: now[0])

    class Clocked(Trainer):
        def train_step(self, batch):
            now[0] += 20.0  # 20 s a step, 3 steps an epoch: an epoch is a minute
            return super().train_step(batch)

    steps = []

    class Watch(Clocked):
        def save_run(self, final=False, **extra):
            steps.append((self.step, final))
            super().save_run(final=final, **extra)

    tr = Watch(_opts(num_workers=0, epochs=5), seqs, None, tmp_path / "a", progress=False, tensorboard=False,
               ckpt_every=0, save_minutes=2.0)
    summary = tr.fit()
    # epochs end at steps 3, 6, 9, 12, 15 (minutes 1-5): the first writes, then every second epoch, the last
    assert steps == [(3, False), (9, False), (15, True)]
    assert summary["save_writes"] == 6 and summary["save_seconds"] >= 0
    assert read_checkpoint(tmp_path / "a" / "last.pt")["step"] == 15
    steps.clear()
    Watch(_opts(num_workers=0, epochs=3), seqs, None, tmp_path / "b", progress=False, tensorboard=False,
          ckpt_every=0, save_minutes=0).fit()
    assert steps == [(3, False), (6, False), (9, True)]
    monkeypatch.setattr(trainer_mod.time, "monotonic", real)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="save_minutes"):
            Trainer(_opts(), seqs, None, tmp_path / "c", progress=False, tensorboard=False, save_minutes=bad)


def _finite(path: Path) -> bool:
    state = read_checkpoint(path)
    tensors = [*state["depth_net"].values(), *state["pose_net"].values()]
    tensors += [v for st in state.get("optimizer", {"state": {}})["state"].values() for v in st.values()
                if torch.is_tensor(v)]  # model.pt holds no optimiser
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("factor, scaler", [
    (float("inf"), False),
    (1e30, False),   # finite, but Adam's square of it overflows float32
    (1e30, True),    # the fp16 path's loss scaler (a CPU one here: CUDA's on a GPU) skips only non-finite ones
])
def test_a_non_finite_gradient_skips_its_step_and_training_goes_on(seqs, tmp_path, factor, scaler):
    """A finite loss whose gradient is not finite or overflows ``GRAD_LIMIT``: that step is skipped
    and counted, with the fp16 path's loss scaler too; the weights stay finite, training goes on,
    and every checkpoint is finite."""
    class InfGradOnce(Trainer):
        def train_step(self, batch):
            if self.step == 1 and not self.skipped_steps:  # the second step's gradient overflows
                p = next(self.model.depth_net.parameters())
                h = p.register_hook(lambda g: (h.remove(), g * factor)[1])
            return super().train_step(batch)

    logs: list[str] = []
    tr = InfGradOnce(_opts(num_workers=0, max_steps=3), seqs, None, tmp_path, progress=False,
                     tensorboard=False, log=logs.append)
    if scaler:
        tr.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == 3 and summary["skipped_steps"] == 1
    assert any("step 2: non-finite gradient: optimiser step skipped" in m for m in logs), logs
    assert all(torch.isfinite(q).all() for q in tr.model.parameters())
    assert _finite(tmp_path / "last.pt") and _finite(tmp_path / "model.pt")


def test_the_loss_scaler_skips_non_finite_gradients_itself(seqs, tmp_path):
    """fp16: a non-finite gradient means the loss scale is too high, which the scaler handles (it
    skips the step and halves the scale; at a run's start, several times in a row): not a skipped
    step of the trainer's count, which stops a run after ``MAX_BAD_STEPS`` in a row."""
    class InfGrad(Trainer):
        def train_step(self, batch):
            if self.step < MAX_BAD_STEPS + 2:
                p = next(self.model.depth_net.parameters())
                h = p.register_hook(lambda g: (h.remove(), g * float("inf"))[1])
            return super().train_step(batch)

    tr = InfGrad(_opts(num_workers=0, max_steps=MAX_BAD_STEPS + 3, epochs=0), seqs, None, tmp_path,
                 progress=False, tensorboard=False)
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 20)
    w0 = [q.detach().clone() for q in tr.model.parameters()]
    summary = tr.fit()
    tr.close()
    assert summary["steps"] == MAX_BAD_STEPS + 3 and summary["skipped_steps"] == 0
    assert tr.scaler.get_scale() == 2.0 ** (20 - MAX_BAD_STEPS - 2)
    assert any(not torch.equal(a, b) for a, b in zip(w0, tr.model.parameters()))  # the last steps updated
    assert all(torch.isfinite(q).all() for q in tr.model.parameters())


@pytest.mark.parametrize("log_every, snapshot_every, stopped_at", [
    (100, 0, 2),  # found when the next loss turns non-finite: the run stops at that step
    (2, 0, 1),    # found by the check every log_every updates, in the step that made them
    (100, 2, 2),  # found before the snapshot of that step: no snapshot of them
])
def test_an_update_that_makes_the_weights_non_finite_stops_the_run_unwritten(seqs, tmp_path, log_every,
                                                                              snapshot_every, stopped_at):
    """An optimiser step that leaves a weight non-finite (loss and gradient were finite): the
    weights are not checked after every update (~6 ms a step), but when a loss turns non-finite,
    every ``log_every`` updates and before any write; the run stops naming the update, and nothing
    is written from the weights (no checkpoint, no snapshot)."""
    tr = Trainer(_opts(num_workers=0, max_steps=4, log_every=log_every, snapshot_every=snapshot_every),
                 seqs, None, tmp_path, progress=False, tensorboard=False)
    step = tr.optimizer.step

    def overflowing_step(*a, **kw):  # the second update overflows one weight
        out = step(*a, **kw)
        if tr.step == 1:
            with torch.no_grad():
                next(tr.model.depth_net.parameters()).view(-1)[0] = float("inf")
        return out
    tr.optimizer.step = overflowing_step
    with pytest.raises(TrainingError) as info:
        tr.fit()
    tr.close()
    msg = str(info.value)
    assert "the weights are non-finite by the update of step 2" in msg and "this run wrote no checkpoint" in msg
    assert "last.pt (none)" in msg and "model.pt (none)" in msg
    assert tr.step == stopped_at
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "model.pt").exists()
    assert not list(tmp_path.glob("snapshots/*.pt"))


def test_a_streak_of_bad_steps_names_the_checkpoints_it_wrote(seqs, tmp_path):
    """After one good step (written: ckpt_every=1) the loss turns non-finite for good: the stop
    message names what this run wrote (the step-1 weights) and what it did not."""
    class NaNAfterOne(Trainer):
        def _forward(self, batch, model, keep_images=False):
            outputs, losses, images = super()._forward(batch, model, keep_images)
            if self.step >= 1:
                losses["loss"] = losses["loss"] * float("nan")
            return outputs, losses, images

    opts = _opts(num_workers=0, epochs=10)
    tr = NaNAfterOne(opts, seqs, None, tmp_path, progress=False, tensorboard=False, ckpt_every=1)
    with pytest.raises(TrainingError) as info:
        tr.fit()
    tr.close()
    msg = str(info.value)
    assert "non-finite for 10 steps in a row (after step 1)" in msg
    assert "last good checkpoints written by this run: last.pt (step 1), model.pt (step 1)" in msg, msg
    for name in ("last.pt", "model.pt"):
        assert read_checkpoint(tmp_path / name)["step"] == 1 and _finite(tmp_path / name)


def test_save_refuses_non_finite_state(seqs, tmp_path):
    tr = Trainer(_opts(num_workers=0, max_steps=1), seqs, None, tmp_path, progress=False, tensorboard=False)
    tr.fit()
    good = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        next(tr.model.pose_net.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(TrainingError, match="not writing last.pt at step 1: the weights or the optimiser"):
        tr.save("last.pt")
    tr.close()
    assert (tmp_path / "last.pt").read_bytes() == good


# ----------------------------------------------------------------------------- atomic writes
_SAVER = textwrap.dedent("""
    import sys, torch
    from sfm_ros.core.checkpoint import atomic_torch_save
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        atomic_torch_save({"format": "sfm_ros/1", "i": i, "t": torch.full((8_000_000,), float(i))}, path)
        print(i, flush=True)
""")


def _check_complete(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["t"].shape == (8_000_000,)
    assert torch.all(state["t"] == float(state["i"]))  # the whole new (or old) checkpoint
    return state["i"]


def test_atomic_save_survives_sigkill_mid_write(tmp_path):
    """A process saving a 32 MB checkpoint over and over is SIGKILLed while a temporary file is
    being written: the target is a complete checkpoint, and the leftovers do not hurt the next save."""
    target = tmp_path / "last.pt"
    killed_mid_write = 0
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target)], stdout=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO, text=True)
        try:
            assert proc.stdout.readline().strip() == "1"  # one complete save exists
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                tmps = [p for p in tmp_path.glob(".last.pt.*.tmp") if p.stat().st_size > 0]
                if tmps:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.001)
        finally:
            proc.kill()
            proc.wait()
        _check_complete(target)
        if list(tmp_path.glob(".last.pt.*.tmp")):
            killed_mid_write += 1
            break
    assert killed_mid_write, "never caught the saver in the middle of a write"
    # The next save (and load) works with the stale temporary file still there.
    atomic_torch_save({"format": "sfm_ros/1", "i": 99, "t": torch.full((8_000_000,), 99.0)}, target)
    assert _check_complete(target) == 99


# ------------------------------------------------------------------------------------- DDP
def test_ddp_two_ranks_cpu(tmp_path):
    r = run_ddp_worker(tmp_path, "cpu", timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s0, s1 = (json.loads((tmp_path / f"summary{i}.json").read_text()) for i in (0, 1))
    assert s0["world"] == s1["world"] == 2 and s0["backend"] == "gloo"
    # 2 x 8 windows sharded over 2 ranks -> 8 each -> 4 steps of 2 an epoch; stopped at 3.
    assert s0["steps"] == s1["steps"] == 3 and s0["steps_per_epoch"] == 4
    p0, p1 = (torch.load(tmp_path / f"params{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(p0, p1)  # identical parameters on both ranks after training
    assert np.isfinite(p0.numpy()).all()
    # Only rank 0 wrote checkpoints and TensorBoard logs.
    assert {p.name for p in (tmp_path / "out0").iterdir()} >= {"last.pt", "model.pt", "tb"}
    assert list((tmp_path / "out0" / "tb").iterdir())
    assert not (tmp_path / "out1").exists()
    state = read_checkpoint(tmp_path / "out0" / "last.pt")
    assert state["step"] == 3 and state["world_size"] == 2


def test_epipolar_prior_windows_and_training(seqs, tmp_path):
    """With loss.epipolar_weight the training windows carry each pair's two-view geometry (the
    rendered street's true rotation within 0.5°, direction within 5°), and training logs the term."""
    from sfm_ros.data.datasets import WindowDataset, collate
    from sfm_ros.training.priors import epipolar_priors

    ds = WindowDataset(seqs, 3, 1)
    ds.priors = epipolar_priors(seqs, ds.items, 3)
    s = render_sequence(9, H, W, seed=3)
    item = ds[0]
    t, src = ds.items[0][1][1], ds.items[0][1][0]
    T_true = np.linalg.inv(s.poses[src]) @ s.poses[t]  # T_src_tgt
    T = item["prior_T"][0].double().numpy()
    assert item["prior_w"].shape == (2, 2)
    if item["prior_w"][0, 1] == 1:
        cos = T[:3, 3] @ T_true[:3, 3] / np.linalg.norm(T_true[:3, 3])
        assert np.degrees(np.arccos(min(1.0, cos))) < 5.0
        assert np.linalg.norm(T[:3, 3]) == pytest.approx(1.0)
    R_err = np.degrees(np.linalg.norm(matrix_to_axis_angle(T[:3, :3].T @ T_true[:3, :3])))
    assert item["prior_w"][0, 0] == 0 or R_err < 0.5
    assert "prior_T" in collate([ds[0], ds[1]]) and "prior_T" not in WindowDataset(seqs, 3, 1)[0]
    opts = _opts(max_steps=2)
    opts.loss.epipolar_weight = 1.0
    lines = []
    tr = Trainer(opts, seqs, None, tmp_path / "o", log=lines.append)
    logs = tr.train_step(collate([ds[0], ds[1], ds[2], ds[3]]))
    assert "epipolar" in logs and np.isfinite(logs["epipolar"]) and logs["epipolar"] > 0
    assert any("epipolar prior:" in x for x in lines), lines


def test_num_workers_auto_and_validation():
    """-1 (the default) is auto; below it is refused with the option's name."""
    assert load_options("default", []).train.num_workers == -1
    with pytest.raises(ValueError, match="train.num_workers"):
        load_options("default", ["train.num_workers=-2"])


def test_tensorboard_logs_scalars_and_images(seqs, tmp_path):
    """With TensorBoard on (what ``sfm_train`` does unless ``--no-tensorboard``) the steps that log
    images run and write them: a name clash once made the first such step raise TypeError."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr = Trainer(_opts(num_workers=0, max_steps=2, image_every=1), seqs, None, tmp_path, progress=False,
                 tensorboard=True, ckpt_every=0)
    tr.fit()
    tr.writer.flush()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert tags["images"] and tags["scalars"], tags


def test_sparse_depth_prior_corners_follow_the_true_depth_and_train(tmp_path):
    """Each pair's inlier corners, triangulated with its two-view motion, give the target's depth up
    to one scale (against the rendered street's true depth: log depths correlated, median over the
    pairs > 0.3 (0.50 measured); one-frame pairs of a car moving ~1 m past things 7-60 m away are noisy); the
    augmentation's crop moves them with the image; training logs the term."""
    from sfm_ros.data.augment import PRIOR_POINTS, prior_points
    from sfm_ros.data.datasets import WindowDataset, collate
    from sfm_ros.training.priors import epipolar_priors

    h, w = 128, 416  # enough texture for corners that move a few pixels a frame
    s = render_sequence(9, h, w, seed=3)
    seqs = [prepare_sequence(zip(s.images, s.timestamps), s.K, (h, w), name="synthetic")]
    ds = WindowDataset(seqs, 3, 1)
    ds.priors = epipolar_priors(seqs, ds.items, 3)
    corr = []
    for (si, t, j), pr in ds.priors.items():
        if not len(pr.depths):
            continue
        assert pr.points.shape == (len(pr.depths), 2) and len(pr.depths) <= PRIOR_POINTS and np.all(pr.depths > 0)
        q = np.round(pr.points).astype(int)
        true = s.depths[t][q[:, 1], q[:, 0]]
        f = np.isfinite(true)  # the sky is infinitely far
        corr.append(np.corrcoef(np.log(pr.depths[f]), np.log(true[f]))[0, 1])
    assert len(corr) >= len(ds.priors) // 2 and np.median(corr) > 0.3, corr
    item = ds[0]
    assert item["prior_pts"].shape == (2, PRIOR_POINTS, 2) and item["prior_depth"].shape == (2, PRIOR_POINTS)
    pr = [ds.priors[(0, 1, 0)], ds.priors[(0, 1, 2)]]
    pts, depth = prior_points(pr, (h, w), (int(h * 1.1), int(w * 1.1), 3, 5))
    k = len(pr[0].depths)
    expect = (pr[0].points + 0.5) * np.array([int(w * 1.1) / w, int(h * 1.1) / h]) - 0.5 - np.array([5, 3])
    assert np.allclose(pts[0, :k].numpy(), expect, atol=1e-4)
    inside = (expect[:, 0] >= 0) & (expect[:, 0] <= w - 1) & (expect[:, 1] >= 0) & (expect[:, 1] <= h - 1)
    assert np.array_equal(depth[0, :k].numpy() > 0, inside) and np.all(depth[0, k:].numpy() == 0)
    o = load_options("default", ["model.height=96", "model.width=288", "model.width_mult=0.25", "train.batch_size=2",
                                 "train.log_every=1", "train.image_every=0", "train.device=cpu", "train.max_steps=1",
                                 "loss.epipolar_weight=0", "loss.sparse_depth_weight=1"])
    o.train.amp = "off"
    lines = []
    tr = Trainer(o, seqs, None, tmp_path / "o", log=lines.append)
    assert tr.sparse_depth_weight() == 1.0  # the start of a one-step budget: the full weight
    logs = tr.train_step(collate([tr.train_set[0], tr.train_set[1]]))
    assert "sparse_depth" in logs and np.isfinite(logs["sparse_depth"]) and logs["sparse_depth"] > 0
    tr.step = 1  # the budget's end (fit() counts the steps)
    assert tr.sparse_depth_weight() == 0.0
    assert "epipolar" not in logs
    assert any("corners triangulated for" in x for x in lines), lines


def test_turn_pose_only_trains_the_pose_network_on_the_turned_frames(seqs, tmp_path):
    """``data.turn_pose_only``: the training batches carry the turned frames; a step feeds them to the
    pose network alone (the turn back itself: test_window_turn.py), the loss is finite and the run
    goes on; with the explainability mask the option is refused by name."""
    opts = _opts(max_steps=3)
    opts.data.augment, opts.data.turn_deg, opts.data.turn_step_deg, opts.data.turn_pose_only = True, 4.0, 1.5, True
    tr = Trainer(opts, seqs, None, tmp_path / "o", progress=False, tensorboard=False)
    try:
        from sfm_ros.data.datasets import collate

        batch = collate([tr.train_set[i] for i in range(2)])
        assert batch["pose_turn"].shape == (2, 3, 3, 3) and batch["pose_sources"].shape == batch["sources"].shape
        seen = []
        real = tr.model.pose_net.forward
        tr.model.pose_net.forward = lambda t, s: seen.append(t) or real(t, s)
        logs = tr.train_step(batch)
        assert np.isfinite(logs["loss"])
        from sfm_ros.core.networks import normalize_image
        assert torch.equal(seen[0], normalize_image(batch["pose_target"]))
        tr.model.pose_net.forward = real
        tr.fit()
        assert tr.step == 3
    finally:
        tr.close()
    with pytest.raises(ValueError, match="data.turn_pose_only needs loss.exp_weight 0"):
        load_options("paper", ["data.turn_pose_only=true"])
