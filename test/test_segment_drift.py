"""Segment drift (sfm_ros.evaluation.segment_drift): the KITTI devkit's t_err / r_err on exact trajectories."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose
from sfm_ros.evaluation.segment_drift import (KITTI_LENGTHS, choose_lengths, drift_report, path_distances,
                                              segment_drift, segment_errors)
from sfm_ros.evaluation.trajectory import chain

STEP = 0.7  # m a frame: no segment end falls exactly on a length


def _drive(n: int = 120, yaw_rate: float = 0.01, seed: int = 0) -> np.ndarray:
    """A car-like path (forward along z, turning about y, a little noise): (n, 4, 4) T_w_c."""
    rng = np.random.default_rng(seed)
    rel = [make_pose(axis_angle_to_matrix([0.0, yaw_rate, 0.0] + rng.normal(0, 1e-3, 3)),
                     [0.0, 0.0, STEP] + rng.normal(0, 1e-2, 3)) for _ in range(n - 1)]
    return chain(np.array(rel))


def test_path_distances_and_lengths_fit_the_path():
    gt = chain(np.array([make_pose(t=[0, 0, STEP])] * 10))
    np.testing.assert_allclose(path_distances(gt), STEP * np.arange(11))
    assert choose_lengths(52.0) == (10, 20, 40)
    assert choose_lengths(170.0) == (10, 20, 40, 80, 160)
    assert choose_lengths(5.0) == (1, 2, 4)
    assert choose_lengths(3700.0) == KITTI_LENGTHS
    assert choose_lengths(0.0) == ()


def test_a_perfect_prediction_has_no_drift():
    gt = _drive()
    lengths = choose_lengths(path_distances(gt)[-1])
    res = drift_report(gt, gt.copy(), lengths)
    for key in ("as_published", "global_scale"):
        assert res[key]["t_err_pct"] == pytest.approx(0.0, abs=1e-9)
        assert res[key]["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-6)
    assert res["scale"] == pytest.approx(1.0)


def _chords(gt: np.ndarray, lengths) -> np.ndarray:
    """|true displacement| / L of every segment: a segment ends at the first frame beyond L, so a
    little more than 1 on a straight drive."""
    d = path_distances(gt)
    out = []
    for i in range(len(gt)):
        for L in lengths:
            j = np.nonzero(d > d[i] + L)[0]
            if j.size:
                out.append(np.linalg.norm(gt[j[0], :3, 3] - gt[i, :3, 3]) / L)
    return np.array(out)


def test_a_prediction_scaled_by_1_1_drifts_10_percent_until_one_global_scale():
    gt = _drive()
    pred = gt.copy()
    pred[:, :3, 3] *= 1.1
    lengths = (10.0, 20.0, 40.0)
    res = drift_report(gt, pred, lengths, step=1)
    # 10 % of each segment's displacement, divided by L as the devkit does
    assert res["as_published"]["t_err_pct"] == pytest.approx(10.0 * _chords(gt, lengths).mean(), rel=1e-9)
    assert res["as_published"]["t_err_pct"] == pytest.approx(10.0, abs=0.5)
    assert res["as_published"]["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-6)
    assert res["global_scale"]["t_err_pct"] == pytest.approx(0.0, abs=1e-9)
    assert res["scale"] == pytest.approx(1 / 1.1)
    assert [p["length"] for p in res["as_published"]["per_length"]] == list(lengths)
    # every frame that has a segment of that length starts one (step 1); the devkit's step 10 fewer
    d = path_distances(gt)
    n10 = sum((d > d[i] + 10).any() for i in range(len(gt)))
    assert res["as_published"]["per_length"][0]["segments"] == n10
    assert segment_drift(gt, pred, lengths, step=10)["segments"] < res["as_published"]["segments"] / 5


def test_a_constant_yaw_rate_error_gives_its_rate_per_length():
    """Ground truth straight ahead, the prediction turning eps rad a frame: a segment of n frames
    (the first n with n * STEP > L) is off by n * eps, so r_err = n * eps / L."""
    n_frames, eps = 100, 0.002
    gt = chain(np.array([make_pose(t=[0, 0, STEP])] * (n_frames - 1)))
    pred = chain(np.array([make_pose(axis_angle_to_matrix([0, eps, 0]), [0, 0, STEP])] * (n_frames - 1)))
    lengths = (10.0, 20.0, 40.0)
    err = segment_errors(gt, pred, lengths)
    for L in lengths:
        n = math.floor(L / STEP) + 1
        r = err[err[:, 1] == L, 3]
        assert len(r) == n_frames - n and np.allclose(r, n * eps / L)
    expected = np.mean([math.degrees((math.floor(L / STEP) + 1) * eps / L) * 100 for L in lengths
                        for _ in range(n_frames - math.floor(L / STEP) - 1)])
    assert segment_drift(gt, pred, lengths)["r_err_deg_per_100m"] == pytest.approx(expected, rel=1e-9)


def test_no_segment_fits_and_a_still_prediction_has_no_global_scale():
    gt = _drive(10)
    assert segment_drift(gt, gt, (1000.0,)) is None
    still = np.repeat(np.eye(4)[None], len(gt), axis=0)
    res = drift_report(gt, still, (2.0,))
    assert res["as_published"]["t_err_pct"] == pytest.approx(100.0 * _chords(gt, (2.0,)).mean(), rel=1e-9)
    assert res["global_scale"] is None and res["scale"] is None


def test_shapes_are_checked():
    gt = _drive(10)
    with pytest.raises(ValueError, match="same shape"):
        segment_errors(gt, gt[:5], (1.0,))
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        segment_errors(gt[:, :3], gt[:, :3], (1.0,))
    with pytest.raises(ValueError, match="lengths"):
        segment_errors(gt, gt, (0.0,))
    with pytest.raises(ValueError, match="step"):
        segment_errors(gt, gt, (1.0,), step=0)


def _devkit(gt: np.ndarray, pred: np.ndarray, lengths, step: int) -> tuple[float, float]:
    """The devkit's calcSequenceErrors written out as its C++ reads (inverse(delta_result) *
    delta_gt, acos of the trace, strict > for the end frame): (mean t_err, mean r_err) per unit length."""
    dist = [0.0]
    for k in range(1, len(gt)):
        dist.append(dist[-1] + float(np.linalg.norm(gt[k, :3, 3] - gt[k - 1, :3, 3])))
    t, r = [], []
    for first in range(0, len(gt), step):
        for L in lengths:
            last = next((k for k in range(first, len(gt)) if dist[k] > dist[first] + L), -1)
            if last == -1:
                continue
            d_gt = np.linalg.inv(gt[first]) @ gt[last]
            d_res = np.linalg.inv(pred[first]) @ pred[last]
            e = np.linalg.inv(d_res) @ d_gt
            t.append(np.linalg.norm(e[:3, 3]) / L)
            r.append(math.acos(max(min(0.5 * (np.trace(e[:3, :3]) - 1.0), 1.0), -1.0)) / L)
    return float(np.mean(t)), float(np.mean(r))


@pytest.mark.parametrize("step", [1, 10])
def test_agrees_with_the_devkit_loop_on_a_noisy_prediction(step):
    gt = _drive(150, seed=1)
    rng = np.random.default_rng(2)
    rel = np.linalg.inv(gt[:-1]) @ gt[1:]
    noisy = np.array([make_pose(axis_angle_to_matrix(rng.normal(0, 3e-3, 3)), rng.normal(0, 0.03, 3)) @ r for r in rel])
    pred = chain(noisy)
    lengths = (10.0, 20.0, 40.0, 80.0)
    t, r = _devkit(gt, pred, lengths, step)
    res = segment_drift(gt, pred, lengths, step)
    assert res["t_err_pct"] == pytest.approx(100 * t, rel=1e-9)
    assert res["r_err_deg_per_100m"] == pytest.approx(math.degrees(r) * 100, rel=1e-6)
    assert res["t_err_pct"] > 0.5 and res["r_err_deg_per_100m"] > 0.1


def test_rotation_drift_splits_by_the_axis_that_drifts():
    """A heading that gains 0.01 rad a frame drifts in the camera's y (yaw) alone; a pitch error in
    x alone; the sum of the axes bounds r_err (a rotation's angle is at most the sum of its
    components' magnitudes); bad inputs are refused like segment_errors'."""
    from sfm_ros.evaluation.segment_drift import rotation_drift_axes

    gt = _drive(yaw_rate=0.0)
    lengths = choose_lengths(path_distances(gt)[-1])
    for axis in (0, 1):
        extra = np.zeros(3)
        extra[axis] = 0.01
        rel = [np.linalg.inv(gt[k]) @ gt[k + 1] for k in range(len(gt) - 1)]
        pred = chain(np.array([make_pose(axis_angle_to_matrix(extra) @ r[:3, :3], r[:3, 3]) for r in rel]))
        axes = rotation_drift_axes(gt, pred, lengths)
        r_err = segment_drift(gt, pred, lengths)["r_err_deg_per_100m"]
        # 0.01 rad every 0.7 m chains to 0.573 deg / 0.7 m = 81.9 deg/100 m (a segment ends just past L)
        assert 80.0 < axes[axis] < 95.0
        others = np.delete(axes, axis)
        assert np.all(others < 0.1 * axes[axis])
        assert r_err <= axes.sum() + 1e-9
        assert r_err == pytest.approx(axes[axis], rel=0.1)
    assert rotation_drift_axes(gt, gt.copy(), lengths) == pytest.approx(np.zeros(3), abs=1e-6)
    # The axes are the segment's first camera's: a pitch error made at the start of a 90° turn is
    # pitch there (in the end camera's axes it would read as roll).
    turn = np.array([make_pose(axis_angle_to_matrix([0.0, a, 0.0]), [0.0, 0.0, k]) for k, a in
                     enumerate(np.radians([0.0, 45.0, 90.0]))])
    pitch = make_pose(axis_angle_to_matrix([0.01, 0.0, 0.0]))
    pred = np.array([turn[0], pitch @ turn[1], pitch @ turn[2]])
    axes = rotation_drift_axes(turn, pred, (1.5,))  # one segment: frame 0 to frame 2
    np.testing.assert_allclose(axes, [math.degrees(0.01) / 1.5 * 100.0, 0.0, 0.0], atol=1e-6)
    assert rotation_drift_axes(gt[:2], gt[:2].copy(), (100.0,)) is None
    with pytest.raises(ValueError, match="same shape"):
        rotation_drift_axes(gt, gt[:-1], lengths)
    with pytest.raises(ValueError, match="finite and > 0"):
        rotation_drift_axes(gt, gt.copy(), (-1.0,))
