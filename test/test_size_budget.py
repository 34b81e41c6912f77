"""The input size a time budget affords on the running CPU (:mod:`sfm_ros.training.size_budget`):
what is tried, what is chosen for a given step time, when it applies, and that ``sfm_train``'s
set-up uses it and says so. Step times are injected: no test depends on this CPU's speed."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import sfm_ros.core.precision as precision
from sfm_ros.cli import train as train_cli
from sfm_ros.core.options import preset
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.budget import apply_given_budget
from sfm_ros.training.run_inputs import load_inputs
from sfm_ros.training.run_setup import explicit_keys
from sfm_ros.training.size_budget import MIN_STEPS, NARROW_WIDTH, budget_size, narrows, size_ladder, sizes_time


def test_the_ladder_keeps_the_aspect_ratio_and_shrinks():
    assert size_ladder(640, 480) == [(192, 256), (128, 160)]
    assert size_ladder(1241, 376) == [(128, 416), (96, 320)]
    for cam in ((640, 480), (1241, 376), (1280, 720), (848, 800)):
        ladder = size_ladder(*cam)
        pixels = [h * w for h, w in ladder]
        assert pixels == sorted(pixels, reverse=True) and len(set(pixels)) == len(pixels)
        assert all(h % 32 == 0 and w % 32 == 0 for h, w in ladder)
        assert all(abs(math.log((w / h) / (cam[0] / cam[1]))) < 0.25 for h, w in ladder)


def _opts(minutes: float):
    o = preset("default")
    o.train.epochs, o.train.max_steps, o.train.max_minutes = 0, 0, minutes
    o.train.device = "cpu"
    return o


def _pixel_time(ms_per_kpixel: float):
    """A step time proportional to the pixels (what was asked recorded)."""
    asked = []

    def step_seconds(o):
        asked.append((o.model.height, o.model.width))
        return o.model.height * o.model.width / 1000 * ms_per_kpixel / 1000, "fp32"
    return step_seconds, asked


def test_the_largest_size_that_buys_the_steps_is_chosen():
    """12 minutes = 720 s; 192x256 = 49.152 kilopixels, 128x160 20.48."""
    assert MIN_STEPS == 1000
    fast, asked = _pixel_time(600 / 49.152)  # 0.6 s a step at 192x256: 1200 steps
    hw, wm, why = budget_size(640, 480, _opts(12), fast)
    assert hw == (192, 256) and wm == 1.0 and asked == [(192, 256)]
    assert why.startswith("the 12-minute budget on this CPU: 192x256 600 ms a step (fp32)") and "1000 timed steps" in why
    slow, asked = _pixel_time(1200 / 49.152)  # 1.2 s: 600 steps; 128x160 0.5 s: 1440
    hw, wm, why = budget_size(640, 480, _opts(12), slow)
    assert hw == (128, 160) and wm == 1.0 and asked == [(192, 256), (128, 160)]
    assert "192x256 1200 ms" in why and "128x160 500 ms a step (fp32), 1440 steps" in why
    assert budget_size(640, 480, _opts(30), slow)[:2] == ((192, 256), 1.0)  # 30 minutes buy 1500 steps
    crawl, asked = _pixel_time(100.0)  # nothing buys the steps: the smallest
    assert budget_size(640, 480, _opts(12), crawl)[:2] == ((128, 160), 1.0)
    assert budget_size(1241, 376, _opts(12), crawl)[:2] == ((96, 320), 1.0)
    assert budget_size(640, 480, _opts(12), lambda o: (0.01, "bf16"))[:2] == ((192, 256), 1.0)


def _net_time(ms_full_192x256: float):
    """A step time proportional to the pixels and, as measured on the AVX2 EPYC (1002 / 399 ms a step
    at 192x256), 2.5x shorter at half width; what was asked recorded as (H, W, width_mult)."""
    asked = []

    def step_seconds(o):
        asked.append((o.model.height, o.model.width, o.model.width_mult))
        share = o.model.height * o.model.width / 49152
        return ms_full_192x256 / 1000 * share / (2.5 if o.model.width_mult == 0.5 else 1.0), "fp32"
    return step_seconds, asked


def test_the_half_width_network_comes_before_fewer_pixels_when_the_network_is_left_open():
    """With ``narrow``: the full width at the automatic size, then half width at it, then half width
    at the smaller size; the first that buys the steps."""
    assert NARROW_WIDTH == 0.5
    slow, asked = _net_time(960.0)  # full 750 steps; half 1875
    hw, wm, why = budget_size(640, 480, _opts(12), slow, narrow=True)
    assert (hw, wm) == ((192, 256), 0.5) and asked == [(192, 256, 1.0), (192, 256, 0.5)]
    assert "192x256 x1 960 ms a step (fp32), 750 steps; 192x256 x0.5 384 ms a step (fp32), 1875 steps" in why
    asked.clear()
    assert budget_size(640, 480, _opts(12), slow)[:2] == ((128, 160), 1.0)  # without: fewer pixels, as before
    assert asked == [(192, 256, 1.0), (128, 160, 1.0)]
    crawl, asked = _net_time(3000.0)  # half width at 192x256 600 steps: half width at 128x160
    assert budget_size(640, 480, _opts(12), crawl, narrow=True)[:2] == ((128, 160), 0.5)
    assert asked == [(192, 256, 1.0), (192, 256, 0.5), (128, 160, 0.5)]
    fast, asked = _net_time(600.0)
    assert budget_size(640, 480, _opts(12), fast, narrow=True)[:2] == ((192, 256), 1.0) and len(asked) == 1


def test_only_the_default_network_left_open_is_narrowed():
    o = _opts(12)
    assert narrows(o, set())
    assert not narrows(o, {"model.width_mult"}) and not narrows(o, {"model.depth_arch"})
    o.model.width_mult = 0.5
    assert not narrows(o, set())  # a preset or config with its own width
    o.model.width_mult, o.model.depth_arch = 1.0, "resnet"
    assert not narrows(o, set())


def test_only_a_time_budget_on_one_cpu_process_chooses(monkeypatch):
    assert sizes_time(_opts(12)) is None
    o = _opts(12)
    o.train.max_steps = 500
    assert sizes_time(o) == "a step or epoch budget"
    o = _opts(12)
    o.train.epochs = 20
    assert sizes_time(o) == "a step or epoch budget"
    assert sizes_time(_opts(0)) == "a step or epoch budget"
    o = _opts(12)
    o.train.amp = "fp16"
    assert sizes_time(o) == "train.amp=fp16"
    o = _opts(12)
    o.train.device = "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sizes_time(o) == "a GPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sizes_time(o) is None
    o.train.device = "tpu"
    assert sizes_time(o) == "no CPU run"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert sizes_time(_opts(12)) == "a distributed run"


def test_cpu_step_seconds_measures_the_runs_precision_and_keeps_the_rng():
    o = preset("default")
    o.model.height, o.model.width = 64, 96
    o.train.amp = "off"
    state = torch.get_rng_state()
    seconds, name = precision.cpu_step_seconds(o, steps=1)
    assert seconds > 0 and name == "fp32"
    assert torch.equal(torch.get_rng_state(), state)


def test_cpu_step_seconds_reads_the_runs_calibrated_precision(tmp_path, monkeypatch):
    """On a CPU with bf16 instructions and ``train.amp=auto`` the step time is the calibrated
    precision's, from the calibration cache (measured once per CPU and configuration)."""
    import json

    import sfm_ros.core.device as device

    monkeypatch.setenv("SFM_ROS_CACHE", str(tmp_path))
    monkeypatch.setattr(device, "cpu_has_bf16_instructions", lambda: True)
    o = preset("default")
    o.model.height, o.model.width = 64, 96
    for choice, expect in (("bf16", (0.25, "bf16")), ("fp32", (0.4, "fp32"))):
        precision.cache_path().write_text(json.dumps({precision.calibration_key(o): {
            "choice": choice, "fp32_ms": 400.0, "bf16_ms": 250.0, "measured": "then"}}))
        assert precision.cpu_step_seconds(o) == expect


def _frames(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    seq = render_sequence(8, 120, 160, seed=5)
    for i, im in enumerate(seq.images):
        cv2.imwrite(str(d / f"{i:04d}.png"), im[:, :, ::-1])
    return ["--images", str(d), "--fx", str(seq.K[0, 0]), "--cx", str(seq.K[0, 2]), "--cy", str(seq.K[1, 2]),
            "--out", str(tmp_path / "o"), "--device", "cpu"]


def _load(argv, logs):
    args = train_cli.build_parser().parse_args([str(a) for a in argv])
    opts = train_cli.build_options(args)
    given = train_cli.explicit_keys_given(args)
    apply_given_budget(opts, given & {"train.epochs", "train.max_steps", "train.max_minutes"})
    load_inputs(args, opts, log=logs.append, explicit=explicit_keys(given, args.config))
    return opts


def test_sfm_train_takes_the_size_its_time_budget_affords(tmp_path, monkeypatch):
    """A 160x120 camera (auto size 192x256) with a 12-minute budget on a CPU that takes 2 s a step
    at 192x256 and proportionally less at smaller sizes: 128x160 is chosen and logged with what was
    measured; a size given, a step budget, or an epoch budget measure nothing."""
    step_seconds, asked = _pixel_time(2000 / 49.152)
    monkeypatch.setattr(precision, "cpu_step_seconds", step_seconds)
    base = _frames(tmp_path)
    logs: list[str] = []
    opts = _load(base + ["--max-minutes", "12", "--width-mult", "1"], logs)
    assert (opts.model.height, opts.model.width, opts.model.width_mult) == (128, 160, 1.0)
    line = next(m for m in logs if m.startswith("input size"))
    assert line.startswith("input size 128x160 (chosen:") and "192x256 2000 ms a step (fp32), 360 steps" in line
    assert "then fewer pixels for the time budget" in line
    assert asked == [(192, 256), (128, 160)]
    assert "--height/--width to choose" in line
    # the network left open: the half-width DispNet first (here 2.5x faster: 900 steps, not enough)
    step_seconds, asked = _net_time(2000.0)
    monkeypatch.setattr(precision, "cpu_step_seconds", step_seconds)
    logs.clear()
    opts = _load(base + ["--max-minutes", "12"], logs)
    assert (opts.model.height, opts.model.width, opts.model.width_mult) == (128, 160, 0.5)
    assert asked == [(192, 256, 1.0), (192, 256, 0.5), (128, 160, 0.5)]
    line = next(m for m in logs if m.startswith("input size"))
    assert line.startswith("input size 128x160, DispNet x0.5 (chosen:") and "--width-mult to choose" in line
    assert "then the half-width DispNet for the time budget, then fewer pixels" in line
    step_seconds, asked = _pixel_time(2000 / 49.152)
    monkeypatch.setattr(precision, "cpu_step_seconds", step_seconds)
    for extra in (["--max-minutes", "12", "--height", "96", "--width", "128"], ["--max-steps", "100"],
                  ["--epochs", "3"], ["--max-minutes", "12", "--max-steps", "100"]):
        asked.clear()
        opts = _load(base + extra, logs)
        assert not asked, extra
    assert (opts.model.height, opts.model.width) == (192, 256)
