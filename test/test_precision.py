"""train.amp=auto on a CPU: bf16 only when measured faster here, cached per CPU and configuration."""
from __future__ import annotations

import json

import pytest
import torch

from sfm_ros.core import precision
from sfm_ros.core.options import apply_overrides, preset


@pytest.fixture
def tiny():
    o = preset("default")
    apply_overrides(o, {"model.height": 32, "model.width": 64, "model.width_mult": 0.25, "train.batch_size": 1})
    return o


def test_the_choice_is_measured_once_then_read_from_the_cache(tiny, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("SFM_ROS_CACHE", str(tmp_path))
    calls = []
    real = precision._time_steps
    monkeypatch.setattr(precision, "_time_steps", lambda o, d, n: calls.append(d) or real(o, d, 1))
    rng = torch.get_rng_state()
    logs: list[str] = []
    first = precision.calibrate_cpu_amp(tiny, log=logs.append)
    assert torch.equal(torch.get_rng_state(), rng)  # training's seeded start is not disturbed
    assert calls == [None, torch.bfloat16] and "measured now" in logs[-1]
    entry = json.loads((tmp_path / "amp_calibration.json").read_text())[precision.calibration_key(tiny)]
    assert entry["choice"] == ("bf16" if first == torch.bfloat16 else "fp32")
    assert (entry["choice"] == "bf16") == (entry["bf16_ms"] < (1 - precision.MIN_GAIN) * entry["fp32_ms"])
    assert precision.calibrate_cpu_amp(tiny, log=logs.append) == first
    assert len(calls) == 2 and "before" in logs[-1]  # the second run measured nothing


def test_the_faster_precision_wins(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SFM_ROS_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "_time_steps", lambda o, d, n: 0.5 if d is None else 0.3)
    assert precision.calibrate_cpu_amp(tiny) == torch.bfloat16
    other = tiny.copy()
    other.model.height = 64  # another configuration is measured again
    monkeypatch.setattr(precision, "_time_steps", lambda o, d, n: 0.5 if d is None else 0.48)
    assert precision.calibrate_cpu_amp(other) is None  # 4 % faster is not enough


def test_an_unwritable_cache_only_costs_the_measurement(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SFM_ROS_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(precision, "_time_steps", lambda o, d, n: 1.0)
    assert precision.calibrate_cpu_amp(tiny) is None
