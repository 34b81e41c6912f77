"""The step-length filter (sfm_ros.runtime.motion.length_filter) and the three-view ratio that
predicts it (sfm_ros.runtime.motion.three_view): alone, and through the refiner on rendered
streets and KITTI frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
from motion_scenes import STEPS, level_street, street

from sfm_ros.runtime.motion import Refiner, ScaleFrom, refine_sequence
from sfm_ros.runtime.motion.length_filter import LengthFilter


def test_the_filter_predicts_measures_gates_and_restarts():
    """The Kalman update on log length: the first measurement sets it; a three-view prediction is
    combined with a measurement by their variances; a measurement 3 sigma off a carried prediction
    is rejected ``restart_after`` times, then taken; without a measurement the network's length on
    the recent measurements' scale; ``reset`` forgets it all."""
    f = LengthFilter(restart_after=2)
    assert f.update(1.0, None, ScaleFrom.DEPTH, None) == (None, ScaleFrom.NETWORK)
    x, src = f.update(1.0, (2.0, 0.01), ScaleFrom.DEPTH, None)
    assert src == ScaleFrom.DEPTH and x == pytest.approx(math.log(2.0)) and f.variance == pytest.approx(0.01)
    x, src = f.update(1.0, (2.0, 0.01), ScaleFrom.DEPTH, (0.0, 0.01))  # prediction 2.0 (var 0.021), measured 2.0
    assert src == ScaleFrom.DEPTH and x == pytest.approx(math.log(2.0))
    assert f.variance == pytest.approx(0.021 * 0.01 / 0.031) and f.innovations[-1] == pytest.approx(0.0)
    x, src = f.update(1.0, (20.0, 0.01), ScaleFrom.DEPTH, (0.0, 0.0))  # 10x off: gated
    assert src == ScaleFrom.TRACKED and x == pytest.approx(math.log(2.0)) and f.gated == 1
    x, src = f.update(1.0, (20.0, 0.01), ScaleFrom.DEPTH, (0.0, 0.0))  # again: the filter restarts
    assert src == ScaleFrom.DEPTH and x == pytest.approx(math.log(20.0)) and f.gated == 0
    x, src = f.update(0.5, None, ScaleFrom.GROUND, None)  # the network's length on the recent scale
    assert src == ScaleFrom.GROUND_RATIO and x == pytest.approx(math.log(0.5) + float(np.median(f.ratios)))
    assert f.rel_sd(0.3) == pytest.approx(0.3) and f.rel_sd(0.0) == pytest.approx(0.2)  # DEPTH_RATIO_LEN_REL
    x, src = f.update(1.0, (1.0, 0.01), ScaleFrom.DEPTH, (math.log(5.0), 0.0))  # implausible ratio: measured
    assert src == ScaleFrom.DEPTH and x == pytest.approx(0.0)
    f.reset()
    assert f.log_length is None and not f.ratios and not f.innovations and f.gated == 0
    for bad, match in ((dict(scale_window=0), "scale_window"), (dict(max_step_ratio=1.0), "max_step_ratio"),
                       (dict(restart_after=0), "restart_after"), (dict(track_step_var=-1.0), "track_step_var"),
                       (dict(wander_window=0), "wander_window")):
        with pytest.raises(ValueError, match=match):
            LengthFilter(**bad)


def test_three_view_ratio_follows_the_step_length():
    """Each length is predicted from the one before by the corners seen in three frames: on a
    street with steps of 0.6 and 1.2 m the three-view ratio (this step / the previous one) is
    measured within 0.21 in log (median 0.027) with seed 6 (seeds 7, 8: median 0.010, 0.035); the
    test allows a median of 0.1. The network's lengths (here all 0.5 m) do not enter it."""
    images, K, depths, gt = street(6, STEPS)
    refiner = Refiner()
    views = [refiner.view(im, K) for im in images]
    net = gt.copy()
    net[:, :3, 3] *= (0.5 / np.linalg.norm(gt[:, :3, 3], axis=1))[:, None]
    _, results = refine_sequence(refiner, views, depths[:-1], net)
    assert all(r.used == "epipolar" for r in results)
    assert np.isnan(results[0].step_ratio)  # nothing before the first step
    L = np.linalg.norm(gt[:, :3, 3], axis=1)
    err = np.log(np.array([r.step_ratio for r in results[1:]]) / (L[1:] / L[:-1]))
    assert np.all(np.isfinite(err)) and np.median(np.abs(err)) < 0.1, err
    assert {r.scale_from for r in results[1:]} <= {"depth", "tracked"}
    # Off: no ratio is measured.
    off = Refiner(scale_tracking=False)
    _, results = refine_sequence(off, [off.view(im, K) for im in images], depths[:-1], net)
    assert all(np.isnan(r.step_ratio) for r in results)


def test_the_length_filter_outlasts_a_wandering_depth_scale():
    """A learned depth whose scale wanders from frame to frame (here the exact depth times a random
    factor of log-sd 0.2 per frame): with the three-view prediction the lengths keep their ratios
    (log error sd after the common scale: measured 0.069 against 0.446 without the prediction, where
    the lengths are the network's constant ones on the depth's recent scale, corrected by each
    noisy comparison as little as its spread says; seeds 7, 8: 0.037 / 0.330, 0.054 / 0.444); the
    test asks for at least 2x better and below 0.1."""
    images, K, depths, gt = street(6, STEPS)
    rng = np.random.default_rng(0)
    wander = np.exp(rng.normal(0.0, 0.2, len(depths)))
    depths = [d * c for d, c in zip(depths, wander)]
    L = np.linalg.norm(gt[:, :3, 3], axis=1)
    net = gt.copy()
    net[:, :3, 3] *= (0.5 / L)[:, None]
    spread = {}
    for tracking in (True, False):
        refiner = Refiner(scale_tracking=tracking)
        inc, _ = refine_sequence(refiner, [refiner.view(im, K) for im in images], depths[:-1], net)
        e = np.log(np.linalg.norm(inc[:, :3, 3], axis=1) / L)
        spread[tracking] = float(np.std(e - np.median(e)))
    assert spread[True] < 0.1 and spread[True] < 0.5 * spread[False], spread


def test_the_length_filter_runs_in_the_callers_units():
    """``scale``: the factor the caller multiplies the translation by (a scale that follows the
    depth's). A depth c times too long in frame i with a scale 1/c gives metric lengths: the
    returned lengths times the scales are the true ones (measured within 10 %; seeds 7, 8: 11 %,
    12 %; the test allows 25 %), whatever c does from frame to frame; without ``ground`` a change
    of units (> 2x: a caller's new calibration) restarts the filter; a bad scale is named."""
    images, K, depths, gt = street(6, STEPS[:6])
    L = np.linalg.norm(gt[:, :3, 3], axis=1)
    wander = np.array([1.0, 1.3, 0.8, 1.2, 0.9, 1.1])
    depths = [d * c for d, c in zip(depths, wander)]
    refiner = Refiner()
    views = [refiner.view(im, K) for im in images]
    scales = 1.0 / wander[:-1]  # increment i is measured against the depth of frame i
    inc, results = refine_sequence(refiner, views, depths[:-1], gt, scales)
    metric = np.linalg.norm(inc[:, :3, 3], axis=1) * scales
    np.testing.assert_allclose(metric, L, rtol=0.25)
    assert refiner.length.log_length is not None
    r = refiner.refine(views[0], views[1], gt[0], depths[0], scale=10.0)  # new units: start again
    assert r.scale_from == "depth"
    assert np.linalg.norm(r.T[:3, 3]) == pytest.approx(L[0], rel=0.25)  # the depth's (exact) units
    refiner.reset_scale()
    assert refiner.length.log_length is None and not refiner.ratios
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            refiner.refine(views[0], views[1], gt[0], depths[0], scale=bad)
    with pytest.raises(ValueError, match="2 scales for 5 increments"):
        refine_sequence(refiner, views, depths[:-1], gt, [1.0, 1.0])
    with pytest.raises(ValueError, match="track_step_var must be >= 0"):
        Refiner(track_step_var=-1.0)


def test_three_view_ratio_on_kitti_frames(kitti_dir):
    """On real KITTI 00 frames (0-30, the frames the refiner's constants were tuned on) the
    three-view ratio of consecutive step lengths is measured within 0.013 in log of the ground
    truth's (median of 29; the largest 0.044); the test allows a median of 0.03."""
    from sfm_ros.data.sources import read_image, read_kitti_odometry
    from sfm_ros.evaluation.trajectory import relative_poses

    seq = read_kitti_odometry(kitti_dir, "image_0", max_frames=31)
    images = [read_image(f) for f in seq.image_paths]
    K = seq.camera.K
    gt = relative_poses(seq.poses[:31])
    refiner = Refiner()
    _, results = refine_sequence(refiner, [refiner.view(im, K) for im in images], None, gt)
    L = np.linalg.norm(gt[:, :3, 3], axis=1)
    err = np.log(np.array([r.step_ratio for r in results[1:]]) / (L[1:] / L[:-1]))
    assert np.isfinite(err).sum() >= 25 and np.nanmedian(np.abs(err)) < 0.03, err


def test_a_length_whose_measurements_swing_is_published_as_less_certain():
    """The length's relative sd is never below the robust spread of the filter's recent
    innovations (``LengthFilter.wander``): the ground's metres swinging ±15 % from frame to
    frame (against corners whose three-view chain says the steps are even) are published at
    0.30-0.43 from the sixth step (measured), the same street without the swing at 0.12-0.15
    (its three-view ratios and the ground disagree a little on these renders); before
    ``wander_min`` innovations the ground's floor, 0.08."""
    from sfm_ros.evaluation.trajectory import relative_poses
    from sfm_ros.runtime.motion.covariance import GROUND_LEN_REL

    seq = level_street(6, 16)
    gt = relative_poses(seq.poses)
    net = gt.copy()
    net[:, :3, 3] *= 0.3
    sd = {}
    for swing in (0.0, 0.15):
        refiner = Refiner()
        views = [refiner.view(im, seq.K) for im in seq.images]
        out = [refiner.refine(views[i], views[i + 1], net[i], None, 1.0,
                              (np.array([0.0, 1.0, 0.0]), 1.5 * np.exp(swing * (-1) ** i))) for i in range(len(gt))]
        assert all(r.used == "epipolar" for r in out)
        sd[swing] = np.array([r.length_rel_sd for r in out])
        assert np.allclose(sd[swing][:2], GROUND_LEN_REL)
    assert np.all(sd[0.15][6:] > 0.25) and np.all(sd[0.0][6:] < 0.2), sd
    refiner = Refiner(wander_window=4, wander_min=3)
    refiner.length.innovations.extend([0.1, -0.1])
    assert refiner.length.wander() == 0.0
    refiner.length.innovations.extend([0.1, -0.1, 0.1])
    assert len(refiner.length.innovations) == 4 and refiner.length.wander() == pytest.approx(0.1 / np.sqrt(0.455))
    refiner.reset_scale()
    assert len(refiner.length.innovations) == 0
    with pytest.raises(ValueError, match="wander_window"):
        Refiner(wander_window=0)
    with pytest.raises(ValueError, match="lk_window"):
        Refiner(lk_window=1)


def test_a_filter_that_is_off_restarts_and_an_implausible_step_is_not_taken():
    """Measurements rejected ``restart_after`` times in a row (3 sigma off the filter) restart it:
    here the ground's metres change 5x after four steps (as a wrong filter state would look); with
    the default 3 the lengths follow from the seventh step (measured 4.8-5.1x), without it the
    filter keeps its old scale (0.79-0.92x: the three-view ratios of these smooth renders drift a
    little; checked within 0.3 of 1). A three-view ratio more than ``max_step_ratio`` from 1 (a
    step 3.7x the one before, frames skipped) is not taken."""
    from sfm_ros.evaluation.trajectory import relative_poses

    seq = level_street(6, 10)
    gt = relative_poses(seq.poses)
    L = np.linalg.norm(gt[:, :3, 3], axis=1)
    net = gt.copy()
    net[:, :3, 3] *= 0.3
    ratios = {}
    for restart in (3, 1000):
        refiner = Refiner(restart_after=restart)
        views = [refiner.view(im, seq.K) for im in seq.images]
        out = [refiner.refine(views[i], views[i + 1], net[i], None, 1.0,
                              (np.array([0.0, 1.0, 0.0]), 1.5 if i < 4 else 7.5)) for i in range(len(gt))]
        ratios[restart] = np.array([np.linalg.norm(r.T[:3, 3]) for r in out]) / L
    assert np.all(np.abs(ratios[3][:4] - 1.0) < 0.15) and np.all(np.abs(ratios[3][6:] / 5.0 - 1.0) < 0.15), ratios
    assert np.all(np.abs(ratios[1000][4:] - 1.0) < 0.3), ratios
    images, K, depths, gt = street(6, [0, 1, 2, 3, 7, 8])
    net = gt.copy()
    net[:, :3, 3] *= (0.5 / np.linalg.norm(gt[:, :3, 3], axis=1))[:, None]
    refiner = Refiner()
    inc, results = refine_sequence(refiner, [refiner.view(im, K) for im in images], depths[:-1], net)
    assert results[3].step_ratio > 3.0 and results[3].scale_from == "depth", results[3]
    # the measurement alone sets the skipped frames' 2.4 m (measured 0.98x; 0.28x when the recent
    # lengths were taken for it)
    assert np.linalg.norm(inc[3, :3, 3]) == pytest.approx(np.linalg.norm(gt[3, :3, 3]), rel=0.25)
    with pytest.raises(ValueError, match="max_step_ratio must be > 1"):
        Refiner(max_step_ratio=1.0)
    with pytest.raises(ValueError, match="restart_after must be >= 1"):
        Refiner(restart_after=0)
