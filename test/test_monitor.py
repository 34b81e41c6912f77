"""The collapse monitor sees the failure modes users report, and stays quiet on a healthy run."""
from __future__ import annotations

import torch

from sfm_ros.training.monitor import CollapseMonitor, batch_stats


def _outputs(depth: torch.Tensor, t: float) -> dict:
    b = depth.shape[0]
    pose = torch.zeros(b, 6)
    pose[:, 2] = t
    return {("depth", 0, 0): depth, ("pose_vec", -1): pose, ("pose_vec", 1): -pose}


def _ramp(b=2, h=16, w=20, lo=1.0, hi=10.0):
    return torch.linspace(lo, hi, h).view(1, 1, h, 1).expand(b, 1, h, w).clone()


def test_batch_stats_measure_saturation_spread_translation_and_automask():
    s = batch_stats(_outputs(_ramp(), 0.05), {("automask_keep", 0): torch.tensor(0.4)}, [-1, 1], 0.1, 100.0)
    assert s["saturated"] == 0 and s["depth_spread"] > 0.3
    assert abs(s["translation"] - 0.05 / s["median_depth"]) < 1e-6
    assert abs(s["automask_keep"] - 0.4) < 1e-6
    flat = batch_stats(_outputs(torch.full((2, 1, 8, 8), 0.1), 0.0), {}, [-1, 1], 0.1, 100.0)
    assert flat["saturated"] == 1.0 and flat["saturated_near"] == 1.0
    assert flat["depth_spread"] < 1e-6 and flat["translation"] == 0 and "automask_keep" not in flat


def _run(monitor, stats, losses, every=50):
    lines = []
    for i, loss in enumerate(losses, 1):
        monitor.update(i, loss, stats if i % every == 0 else None)
        if i % every == 0:
            lines += monitor.check(i)
    return lines


def test_a_healthy_run_gives_no_warning():
    s = batch_stats(_outputs(_ramp(), 0.05), {("automask_keep", 0): torch.tensor(0.7)}, [-1, 1], 0.1, 100.0)
    losses = [1.0 / (1 + i / 100) for i in range(600)]
    assert _run(CollapseMonitor(stride=10), s, losses) == []


def test_each_collapse_is_named_once_with_what_to_try():
    bad = batch_stats(_outputs(torch.full((2, 1, 8, 8), 0.1), 0.0), {("automask_keep", 0): torch.tensor(0.05)},
                      [-1, 1], 0.1, 100.0)
    lines = _run(CollapseMonitor(stride=3), bad, [0.5] * 600)
    text = "\n".join(lines)
    assert len(lines) == 5, text  # saturated, flat depth, no translation, auto-mask, flat loss: once each
    assert "nearest end" in text and "nearly constant" in text and "rotation alone" in text
    assert "auto-masking keeps only 5 %" in text and "has not dropped" in text
    assert "--stride (now 3)" in text


def test_one_odd_batch_is_not_a_collapse():
    good = batch_stats(_outputs(_ramp(), 0.05), {}, [-1, 1], 0.1, 100.0)
    bad = batch_stats(_outputs(torch.full((2, 1, 8, 8), 0.1), 0.0), {}, [-1, 1], 0.1, 100.0)
    m = CollapseMonitor()
    out = []
    for i, s in enumerate([good, bad, good, bad, good], 1):
        m.update(50 * i, 1.0 / i, s)
        out += m.check(50 * i)
    assert out == []


def _flat_ish(spread: float, b=2, h=16, w=20) -> torch.Tensor:
    """Depths whose log spreads by ``spread`` (std over the image) about 1."""
    g = torch.linspace(-1.0, 1.0, h * w).view(1, 1, h, w)
    return torch.exp(spread * g / g.std()).expand(b, 1, h, w).clone()


def test_the_end_note_names_a_depth_that_has_not_taken_shape():
    """Before the depth takes shape the plain 7-Scenes command's spread is 0.02-0.08, after it
    0.22-0.31: at 0.06 the run's end says so and how to train longer; at 0.25 it says nothing; one
    shaped check among the last three is no note; with fewer checks, those there are; none, no note."""
    from sfm_ros.training.monitor import SHAPED_SPREAD

    flat = batch_stats(_outputs(_flat_ish(0.06), 0.05), {}, [-1, 1], 0.1, 100.0)
    shaped = batch_stats(_outputs(_flat_ish(0.25), 0.05), {}, [-1, 1], 0.1, 100.0)
    assert abs(flat["depth_spread"] - 0.06) < 1e-3 and abs(shaped["depth_spread"] - 0.25) < 1e-3
    assert flat["depth_spread"] < SHAPED_SPREAD < shaped["depth_spread"]
    m = CollapseMonitor()
    assert _run(m, flat, [1.0 / (1 + i / 100) for i in range(600)]) == []  # not a collapse: no warning
    note = m.end_note("run the same command (without --init) with --resume o/last.pt: it trains another "
                      "--max-minutes 12")
    assert note.startswith("note: the depth still varies little across each image at the end (log-depth "
                           "spread 0.060;"), note
    assert note.endswith("the budget ended before the depth took shape; to train it longer, run the same "
                         "command (without --init) with --resume o/last.pt: it trains another --max-minutes 12"), note
    assert m.end_note().endswith("to train it longer, give it a larger budget")
    m = CollapseMonitor()
    _run(m, shaped, [1.0] * 600)
    assert m.end_note() is None
    m = CollapseMonitor()
    for i, s in enumerate([flat, flat, shaped, flat, flat], 1):
        m.update(50 * i, 1.0, s)
    assert m.end_note() is None  # the last three checks: shaped, flat, flat
    m = CollapseMonitor()
    m.update(50, 1.0, flat)
    assert m.end_note() is not None  # one check, flat
    m.update(100, 1.0, shaped)
    assert m.end_note() is None
    m = CollapseMonitor()
    m.update(10, 1.0, None)
    assert m.end_note() is None  # no check: nothing to say
