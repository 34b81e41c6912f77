"""The refiner (sfm_ros.runtime.motion.refiner): known motions between rendered street views, its
fallbacks, its options and the corner budget (sfm_ros.runtime.motion.corner_budget).

Tolerances: at 128x416 with corners tracked to ~0.1 px, the five-point solution of a 0.5 m step
with a 2° turn is measured within 0.05° of rotation and 1° of translation direction; the tests
allow 0.3° and 5°, and 10 % on the baseline taken from the exact depth.
"""
from __future__ import annotations

import numpy as np
import pytest
from motion_scenes import H, W, angle_deg, dir_err_deg, two_views

from sfm_ros.core.se3 import invert_pose, make_pose, rot_y
from sfm_ros.data.synthetic import make_scene, render_frame
from sfm_ros.runtime.motion import REFINE_MODES, CornerBudget, Refiner, refine_sequence


@pytest.fixture(scope="module")
def views():
    return two_views()


def test_epipolar_recovers_a_known_rotation_and_translation(views):
    T_net = make_pose(np.eye(3), [0.0, 0.0, 0.3])  # a poor network: no turn, short step
    R = Refiner("epipolar")
    r = R.refine(R.view(views["ref"], views["K"]), R.view(views["new"], views["K"]), T_net, views["depth"])
    T = views["T"]
    assert r.used == "epipolar" and r.scale_from == "depth", r
    assert angle_deg(r.T[:3, :3].T @ T[:3, :3]) < 0.3
    assert dir_err_deg(r.T[:3, 3], T[:3, 3]) < 5.0
    assert np.linalg.norm(r.T[:3, 3]) == pytest.approx(np.linalg.norm(T[:3, 3]), rel=0.10)
    assert r.inliers >= 20 and r.rotation_change_deg == pytest.approx(2.0, abs=0.3)


def test_without_depth_the_network_sets_the_length(views):
    T_net = make_pose(np.eye(3), [0.0, 0.0, 0.3])
    R = Refiner("epipolar")
    r = R.refine(R.view(views["ref"], views["K"]), R.view(views["new"], views["K"]), T_net)
    assert r.used == "epipolar" and r.scale_from == "network"
    assert np.linalg.norm(r.T[:3, 3]) == pytest.approx(0.3, rel=1e-9)
    assert dir_err_deg(r.T[:3, 3], views["T"][:3, 3]) < 5.0


def test_the_networks_length_is_put_on_the_depths_scale_of_recent_frames(views):
    """The length is the network's times the recent depth/network ratio: a frame where the depth
    comparison does not hold (here: no depth), or where the network's motion is kept (no corners),
    keeps the depth's scale of the frames before it, the network's relative step lengths are kept,
    and the ratio is a median over ``scale_window``."""
    R = Refiner("epipolar", scale_window=3)
    a, b = R.view(views["ref"], views["K"]), R.view(views["new"], views["K"])
    true_len = float(np.linalg.norm(views["T"][:3, 3]))
    T_net = make_pose(np.eye(3), [0.0, 0.0, 0.3])  # 0.6x the true length
    first = R.refine(a, b, T_net, views["depth"])
    assert first.scale_from == "depth" and np.linalg.norm(first.T[:3, 3]) == pytest.approx(true_len, rel=0.10)
    ratio = np.linalg.norm(first.T[:3, 3]) / 0.3
    longer = R.refine(a, b, make_pose(np.eye(3), [0.0, 0.0, 0.45]))  # no depth: the recent scale
    assert longer.scale_from == "depth ratio"
    assert np.linalg.norm(longer.T[:3, 3]) == pytest.approx(0.45 * ratio, rel=1e-9)
    flat = R.view(np.full_like(views["ref"], 128), views["K"])  # no corners: the network's motion, ...
    kept = R.refine(flat, flat, make_pose(np.eye(3), [0.0, 0.0, 0.45]))
    assert kept.used == "network" and kept.scale_from == "depth ratio"  # ... on the same scale
    assert np.linalg.norm(kept.T[:3, 3]) == pytest.approx(0.45 * ratio, rel=1e-9)
    for _ in range(3):  # the network's scale changes (e.g. another model): the median follows it
        R.refine(a, b, make_pose(np.eye(3), [0.0, 0.0, 0.15]), views["depth"])
    again = R.refine(a, b, make_pose(np.eye(3), [0.0, 0.0, 0.3]))
    assert np.linalg.norm(again.T[:3, 3]) == pytest.approx(2 * true_len, rel=0.10)
    with pytest.raises(ValueError, match="scale_window must be >= 1"):
        Refiner(scale_window=0)


def test_a_pure_rotation_keeps_the_networks_translation(views):
    scene = make_scene(seed=3)
    K = views["K"]
    T_w_ref = make_pose(np.eye(3), [0.0, 0.0, 5.0])
    turn = make_pose(rot_y(np.radians(1.5)))
    new, _ = render_frame(scene, T_w_ref @ turn, K, H, W)
    T_net = make_pose(np.eye(3), [0.0, 0.0, 0.2])
    R = Refiner("epipolar")
    r = R.refine(R.view(views["ref"], K), R.view(new, K), T_net, views["depth"])
    assert r.used == "rotation" and r.why == "low parallax", r
    np.testing.assert_allclose(r.T[:3, 3], T_net[:3, 3])
    assert angle_deg(r.T[:3, :3].T @ turn[:3, :3]) < 0.3


def test_a_featureless_image_falls_back_to_the_network(views):
    flat = np.full((H, W, 3), 128, np.uint8)
    T_net = make_pose(rot_y(0.01), [0.0, 0.0, 0.4])
    R = Refiner("epipolar")
    r = R.refine(R.view(flat, views["K"]), R.view(flat, views["K"]), T_net)
    assert r.used == "network" and r.why == "few tracks" and not r.refined
    np.testing.assert_array_equal(r.T, T_net)


def test_mode_none_is_the_identity_and_bad_input_is_named(views):
    T_net = make_pose(rot_y(0.01), [0.0, 0.0, 0.4])
    R = Refiner("none")
    a, b = R.view(views["ref"], views["K"]), R.view(views["new"], views["K"])
    r = R.refine(a, b, T_net)
    np.testing.assert_array_equal(r.T, T_net)
    assert set(REFINE_MODES) == {"none", "epipolar", "photometric", "epipolar+photometric"}
    with pytest.raises(ValueError, match="refine mode"):
        Refiner("photometrik")
    with pytest.raises(ValueError, match="K must be 3x3"):
        Refiner().view(views["ref"], np.eye(4))
    with pytest.raises(ValueError, match="T_net must be 4x4"):
        Refiner().refine(a, b, np.eye(3))
    with pytest.raises(ValueError, match="views of one size"):
        Refiner().refine(a, Refiner().view(views["new"][:64], views["K"]), T_net)


def test_refine_sequence_counts_and_checks_lengths(views):
    T_net = make_pose(np.eye(3), [0.0, 0.0, 0.3])
    refiner = Refiner()
    a, b = refiner.view(views["ref"], views["K"]), refiner.view(views["new"], views["K"])
    incs, results = refine_sequence(refiner, [a, b], [views["depth"]], T_net[None])
    assert incs.shape == (1, 4, 4) and results[0].used == "epipolar" and refiner.counts == {"epipolar": 1}
    # the reverse motion is the inverse
    back, _ = refine_sequence(Refiner(), [b, a], None, invert_pose(views["T"])[None])
    assert dir_err_deg(back[0, :3, 3], invert_pose(views["T"])[:3, 3]) < 5.0
    with pytest.raises(ValueError, match="increments must be"):
        refine_sequence(refiner, [a, b], None, np.zeros((2, 4, 4)))


def test_views_are_refined_at_the_paper_pixel_budget_whatever_the_input(views):
    """A small network input does not shrink the refinement: the view keeps the camera's aspect at
    ~128x416 pixels, with the intrinsics scaled (pixel centres) to it."""
    big = np.repeat(np.repeat(views["ref"], 2, axis=0), 2, axis=1)  # 256x832
    K2 = views["K"].copy()
    K2[:2] *= 2.0
    K2[:2, 2] += 0.5
    v = Refiner().view(big, K2)
    assert v.grey.shape == (H, W) and v.grey.dtype == np.uint8
    np.testing.assert_allclose(v.K, views["K"], atol=1e-9)
    v16 = Refiner().view(views["ref"].astype(np.uint16) * 257, views["K"])
    np.testing.assert_array_equal(v16.grey, Refiner().view(views["ref"], views["K"]).grey)


def test_the_networks_motion_is_kept_where_the_corners_cannot_tell_it_apart():
    """``prefer_network``: on this rendered street (~45 corners, most of them distant or on the
    road) the five-point solution of the first step is 54° off in direction and 2.9° in rotation
    while fitting the corners well; the network's exact motion fits them within the 95 %
    chi-square rise and is kept. A network 2° off in yaw fits them worse and the five points win;
    ``prefer_network=False`` always takes the five points."""
    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.evaluation.trajectory import relative_poses

    seq = render_sequence(num_frames=2, seed=500)
    g = relative_poses(seq.poses)[0]
    refiner = Refiner()
    a, b = refiner.view(seq.images[0], seq.K), refiner.view(seq.images[1], seq.K)
    kept = refiner.refine(a, b, g)
    assert kept.used == "epipolar" and kept.network_kept
    assert dir_err_deg(kept.T[:3, 3], g[:3, 3]) < 0.5 and angle_deg(g[:3, :3].T @ kept.T[:3, :3]) < 0.1
    five = Refiner(prefer_network=False).refine(a, b, g)
    assert not five.network_kept and dir_err_deg(five.T[:3, 3], g[:3, 3]) > 20.0
    off = refiner.refine(a, b, g @ make_pose(rot_y(np.radians(2.0))))
    assert not off.network_kept
    np.testing.assert_allclose(off.T[:3, :3], five.T[:3, :3], atol=1e-9)


def test_the_refiners_options_reach_its_solvers():
    """The flat options (the node's and ``sfm_eval``'s) are the solvers' options; a bad one is
    named as the refiner spells it."""
    r = Refiner(max_corners=123, still_px=0.0, photo_lambda=0.01, photo_levels=2, restart_after=5)
    assert r.two_view_options().max_corners == 123 and r.two_view_options().still_px == 0.0
    assert r.photometric_options().damping == 0.01 and r.photometric_options().levels == 2
    assert r.length.restart_after == 5
    r.max_corners = 300  # the corner budget's change reaches the next solve
    assert r.two_view_options().max_corners == 300
    with pytest.raises(ValueError, match="photo_iterations must be >= 1"):
        Refiner(photo_iterations=0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        Refiner(estimator="lmeds")


def test_corner_budget_keeps_the_cost_within_the_budget():
    """``CornerBudget`` (the node's): a median time over the budget in a window of refinements takes
    corners off, down to ``low``; a median well under it gives them back, up to ``high``; bad
    settings are named."""
    refiner, budget = Refiner(), CornerBudget(budget_ms=15.0, window=4)
    assert refiner.max_corners == 500
    for ms in [20.0] * 4:
        budget.update(refiner, ms)
    assert refiner.max_corners == 400 and budget.last_ms == 20.0
    for ms in [20.0] * 12:
        budget.update(refiner, ms)
    assert refiner.max_corners == 300  # never below low
    for ms in [12.0] * 8:  # within the budget but not well under it: kept
        budget.update(refiner, ms)
    assert refiner.max_corners == 300
    for ms in [5.0] * 12:
        budget.update(refiner, ms)
    assert refiner.max_corners == 500  # never above high
    with pytest.raises(ValueError, match="CornerBudget"):
        CornerBudget(budget_ms=0.0)


@pytest.mark.parametrize("mode, step_kept, refit", [
    ("set_aside", False, True),   # the window set the pair's rotation aside: the direction follows its rotation
    ("set_aside", True, False),   # the pair's rotation agreed with the window's: its own direction stays
    ("always", True, True),
    ("off", False, False),
])
def test_a_direction_the_window_rotation_disowns_is_solved_again(monkeypatch, mode, step_kept, refit):
    """``window_direction``: the first step of rendered street 500 fits a five-point solution 2.9°
    off in rotation and 54° off in direction (above). With a rotation window whose baselines agree
    on the true rotation (stubbed here: three agreeing predictions, the step's own set aside), the
    direction is solved again from the pair's inliers with that rotation held (within 3° of the
    truth), before the length is measured; where the pair's own rotation agreed (``set_aside``) or
    the option is off, the five points' direction stays."""
    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.evaluation.trajectory import relative_poses
    from sfm_ros.runtime.motion.result import WindowFusion

    seq = render_sequence(num_frames=2, seed=500)
    g = relative_poses(seq.poses)[0]
    refiner = Refiner(window_direction=mode)
    pushed = []

    def push(ref, new, R_step, opts, solve=True):
        pushed.append(R_step)
        return WindowFusion(R=g[:3, :3].copy(), predictions=4, agreeing=3, step_kept=step_kept, tracks=50, frames=5)
    monkeypatch.setattr(refiner.window, "push", push)
    monkeypatch.setattr(refiner.window, "published", lambda R: None)
    a, b = refiner.view(seq.images[0], seq.K), refiner.view(seq.images[1], seq.K)
    out = refiner.refine(a, b, g @ make_pose(rot_y(np.radians(2.0))))  # a network 2° off: the five points win
    assert len(pushed) == 1 and not out.network_kept and out.used == "epipolar"
    assert angle_deg(g[:3, :3].T @ out.T[:3, :3]) < 1e-6  # the window's rotation, published
    assert out.direction_refit == refit
    if refit:
        assert dir_err_deg(out.T[:3, 3], g[:3, 3]) < 3.0
        assert np.all(np.isfinite(out.covariance))
    else:
        assert dir_err_deg(out.T[:3, 3], g[:3, 3]) > 20.0
    with pytest.raises(ValueError, match="window_direction"):
        Refiner(window_direction="sometimes")
    if mode == "set_aside" and refit:  # a photometric polish after it keeps the flag (the diagnostics count it)
        polish = Refiner("epipolar+photometric", window_direction=mode)
        monkeypatch.setattr(polish.window, "push", push)
        monkeypatch.setattr(polish.window, "published", lambda R: None)
        depth = np.where(np.isfinite(seq.depths[0]), seq.depths[0], 1000.0).astype(np.float32)
        out = polish.refine(a, b, g @ make_pose(rot_y(np.radians(2.0))), depth)
        assert out.used == "photometric" and out.direction_refit
