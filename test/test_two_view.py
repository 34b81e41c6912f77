"""The stateless two-view functions of sfm_ros.runtime.motion: the solver (two_view), and its parts
(rotation_only, sampson, triangulation, parallax, rotation_angle, spread, depth_length,
three_view), on exact synthetic correspondences and rendered street views; shapes are checked."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from motion_scenes import angle_deg, dir_err_deg, two_views

from sfm_ros.core.se3 import invert_pose, make_pose, rot_x, rot_y
from sfm_ros.data.features import to_grey
from sfm_ros.runtime.motion.depth_length import depth_baseline, still_length
from sfm_ros.runtime.motion.parallax import parallax_each, parallax_px
from sfm_ros.runtime.motion.rotation_angle import angle_between_deg, rotation_angle_deg
from sfm_ros.runtime.motion.rotation_only import rotation_only
from sfm_ros.runtime.motion.sampson import epipolar_information, signed_sampson
from sfm_ros.runtime.motion.spread import robust_spread
from sfm_ros.runtime.motion.three_view import three_view_step_ratio
from sfm_ros.runtime.motion.triangulation import triangulate_depths
from sfm_ros.runtime.motion.two_view import (ESTIMATORS, TwoViewOptions, direction_given_rotation, essential_matrix,
                                             prior_agrees, solve_tracks, solve_two_view)
from sfm_ros.runtime.motion.view import make_view

K = np.array([[500.0, 0.0, 208.0], [0.0, 500.0, 64.0], [0.0, 0.0, 1.0]])


def _pairs(R: np.ndarray, t, n: int = 200, seed: int = 0):
    """Exact pixels ``p ↔ q`` of random points 4-40 m ahead under ``x_new = R x_ref + t``, and
    their depths in the reference camera."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-10, 10, n), rng.uniform(-3, 3, n), rng.uniform(4, 40, n)]
    Xn = X @ R.T + np.asarray(t, float)
    p = X @ K.T
    q = Xn @ K.T
    return p[:, :2] / p[:, 2:], q[:, :2] / q[:, 2:], X[:, 2]


@pytest.fixture(scope="module")
def views():
    return two_views()


def test_robust_spread_is_the_scaled_median_absolute_deviation():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 100.0])
    assert robust_spread(x) == pytest.approx(1.4826 * 1.5)
    assert robust_spread(x, center=1.0) == pytest.approx(1.4826 * 1.5)
    assert robust_spread(np.random.default_rng(0).normal(0.0, 2.0, 100000)) == pytest.approx(2.0, rel=0.02)
    with pytest.raises(ValueError, match="at least one"):
        robust_spread(np.zeros(0))


def test_rotation_angles():
    assert rotation_angle_deg(rot_y(np.radians(10.0))) == pytest.approx(10.0)
    assert angle_between_deg(rot_y(np.radians(10.0)), rot_y(np.radians(25.0))) == pytest.approx(15.0)
    assert angle_between_deg(rot_x(0.3), rot_x(0.3)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"R must be 3x3"):
        rotation_angle_deg(np.eye(4))
    with pytest.raises(ValueError, match=r"R_b must be 3x3"):
        angle_between_deg(np.eye(3), np.eye(2))
    # exact near 0° and 180°, as the axis-angle conversion (to 1e-9°); not a rotation, or not finite: refused
    from sfm_ros.core.se3 import axis_angle_to_matrix, matrix_to_axis_angle
    for a in (1e-9, 1e-4, 0.5, 2.0, np.pi - 1e-9, np.pi):
        R = axis_angle_to_matrix(np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8]) * a)
        assert rotation_angle_deg(R) == pytest.approx(np.degrees(np.linalg.norm(matrix_to_axis_angle(R))), abs=1e-9)
    with pytest.raises(ValueError, match="rotation matrix"):
        rotation_angle_deg(2.0 * np.eye(3))
    with pytest.raises(ValueError, match="finite"):
        rotation_angle_deg(np.full((3, 3), np.nan))


def test_parallax_is_what_the_rotation_leaves():
    R = rot_y(np.radians(3.0))
    p, q, _ = _pairs(R, [0.0, 0.0, 0.0])
    assert parallax_px(p, q, K, R) < 1e-9  # a turn on the spot: none
    p, q, _ = _pairs(R, [0.0, 0.0, -1.0])
    each = parallax_each(p, q, K, R)
    assert each.shape == (len(p),) and parallax_px(p, q, K, R) == pytest.approx(float(np.median(each)))
    assert parallax_px(p, q, K, R) > 1.0
    with pytest.raises(ValueError, match=r"p must be \(N, 2\)"):
        parallax_each(np.c_[p, np.ones(len(p))], q, K, R)
    with pytest.raises(ValueError, match="same number of points"):
        parallax_each(p, q[:-1], K, R)


def test_triangulation_recovers_the_depths():
    R, t = rot_y(np.radians(2.0)), np.array([0.1, 0.0, -1.0])
    p, q, z = _pairs(R, t)
    z_ref, z_new = triangulate_depths(p, q, K, make_pose(R, t))
    np.testing.assert_allclose(z_ref, z, rtol=1e-6)
    np.testing.assert_allclose(z_new, (z[:, None] * (np.c_[p, np.ones(len(p))] @ np.linalg.inv(K).T) @ R.T + t)[:, 2],
                               rtol=1e-6)
    z2, _ = triangulate_depths(p, q, K, make_pose(R, 2.0 * t))  # twice the baseline: twice the depths
    np.testing.assert_allclose(z2, 2.0 * z, rtol=1e-6)
    with pytest.raises(ValueError, match="T_new_ref must be 4x4"):
        triangulate_depths(p, q, K, np.eye(3))


def test_sampson_residuals_vanish_on_the_motion_and_its_information_is_well_posed():
    R, t = rot_y(np.radians(2.0)), np.array([0.1, 0.0, -1.0])
    p, q, _ = _pairs(R, t)
    r = signed_sampson(p, q, K, R, t)
    assert r.shape == (len(p),) and np.abs(r).max() < 1e-9
    np.testing.assert_allclose(signed_sampson(p, q, K, R, 5.0 * t), r, atol=1e-9)  # the length does not matter
    shifted = q + np.array([0.0, 1.0])  # off the epipolar lines (mostly)
    assert np.median(np.abs(signed_sampson(p, shifted, K, R, t))) > 0.1
    info, B, r0 = epipolar_information(p, q, K, R, t)
    assert info.shape == (5, 5) and B.shape == (3, 2) and r0.shape == (len(p),)
    np.testing.assert_allclose(info, info.T)
    assert np.all(np.linalg.eigvalsh(info) > 0)  # 200 points fix all five parameters
    np.testing.assert_allclose(B.T @ B, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(B.T @ (t / np.linalg.norm(t)), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="t must be 3"):
        signed_sampson(p, q, K, R, np.zeros(4))
    with pytest.raises(ValueError, match="K must be 3x3"):
        epipolar_information(p, q, np.eye(4), R, t)


def test_rotation_only_recovers_a_turn_on_the_spot():
    R = rot_y(np.radians(2.0)) @ rot_x(np.radians(0.5))
    p, q, _ = _pairs(R, [0.0, 0.0, 0.0])
    R_est, residual = rotation_only(p.astype(np.float32), q.astype(np.float32), K)
    assert angle_deg(R_est.T @ R) < 1e-3 and residual < 1e-2
    _, moving = rotation_only(*[x.astype(np.float32) for x in _pairs(R, [0.3, 0.0, -1.0])[:2]], K)
    assert moving > 0.5  # a translation leaves parallax no rotation explains
    with pytest.raises(ValueError, match=r"q must be \(N, 2\)"):
        rotation_only(p, q[:, :1], K)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_finds_the_motion_through_outliers(estimator):
    """Each robust estimator, on exact correspondences with a fifth of them moved 5-15 px at random:
    the motion's rotation within 0.05° and its direction within 1°, the moved pairs outside the mask
    (but the few moved along their epipolar line, which stay consistent: at most a tenth)."""
    R, t = rot_y(np.radians(1.5)) @ rot_x(np.radians(0.4)), np.array([0.1, -0.02, 0.6])
    p, q, _ = _pairs(R, t)
    rng = np.random.default_rng(5)
    bad = rng.random(len(p)) < 0.2
    q = q.copy()
    q[bad] += rng.uniform(5.0, 15.0, (int(bad.sum()), 2)) * rng.choice([-1.0, 1.0], (int(bad.sum()), 2))
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    E, mask = essential_matrix(p32, q32, K, estimator, 0.3)
    _, R_est, t_est, _ = cv2.recoverPose(E[:3], p32, q32, K, mask=mask.copy())
    assert angle_deg(R_est.T @ R) < 0.05 and dir_err_deg(t_est.ravel(), t) < 1.0
    assert np.mean(mask.ravel()[bad] > 0) <= 0.1 and np.mean(mask.ravel()[~bad] > 0) > 0.9


def test_solve_two_view_on_a_rendered_street(views):
    """The full solution (rotation within 0.3°, direction within 5°), its inlier sets, the prior
    kept where the corners cannot tell it apart, and the named failures."""
    a, b = make_view(views["ref"], views["K"]), make_view(views["new"], views["K"])
    T = views["T"]
    sol = solve_two_view(a.grey, b.grey, a.K, TwoViewOptions())
    assert sol.why == "" and sol.inliers >= 20 and sol.tracks >= sol.inliers and not sol.prior_kept
    assert sol.p_in.shape == sol.q_in.shape == (sol.inliers, 2) and sol.info.shape == (5, 5)
    assert angle_deg(sol.T_ref_new[:3, :3].T @ T[:3, :3]) < 0.3 and dir_err_deg(sol.T_ref_new[:3, 3], T[:3, 3]) < 5.0
    np.testing.assert_allclose(sol.T_ref_new, invert_pose(sol.T_new_ref))
    assert np.linalg.norm(sol.T_new_ref[:3, 3]) == pytest.approx(1.0)
    np.testing.assert_array_equal(sol.R, sol.T_new_ref[:3, :3])
    prior = solve_two_view(a.grey, b.grey, a.K, TwoViewOptions(), T_prior=T)
    if prior.prior_kept:
        assert dir_err_deg(prior.T_ref_new[:3, 3], T[:3, 3]) < 1e-3
    flat = np.full_like(a.grey, 128)
    few = solve_two_view(flat, flat, a.K, TwoViewOptions())
    assert few.why == "few tracks" and few.reason.startswith("0 corners tracked") and few.T_new_ref is None
    still = solve_two_view(a.grey, a.grey, a.K, TwoViewOptions())
    assert still.why == "still" and still.flow_px < 0.1
    with pytest.raises(ValueError, match="of one size"):
        solve_two_view(a.grey, b.grey[:64], a.K, TwoViewOptions())
    with pytest.raises(ValueError, match="K must be 3x3"):
        solve_two_view(a.grey, b.grey, np.eye(4), TwoViewOptions())
    with pytest.raises(ValueError, match="lk_window"):
        TwoViewOptions(lk_window=1)


def test_solve_tracks_is_the_solver_after_the_tracking(views):
    """Given correspondences: exact ones give the motion (to 1e-3°); the tracker's own give what
    :func:`solve_two_view` gives; mismatched arrays are named."""
    R, t = rot_y(np.radians(1.5)), np.array([0.1, -0.02, 0.6])
    p, q, _ = _pairs(R, t)
    sol = solve_tracks(p, q, K, TwoViewOptions())
    assert sol.why == "" and sol.tracks == len(p) and sol.inliers >= 100
    assert angle_deg(sol.R @ R.T) < 1e-3 and dir_err_deg(sol.T_new_ref[:3, 3], t) < 1e-3
    from sfm_ros.data.features import track_corners

    a, b = make_view(views["ref"], views["K"]), make_view(views["new"], views["K"])
    o = TwoViewOptions()
    direct = solve_two_view(a.grey, b.grey, a.K, o)
    pt, qt = track_corners(a.grey, b.grey, max_corners=o.max_corners, min_distance=o.min_distance_px,
                           iterations=o.lk_iterations, window=o.lk_window, max_fb_error=o.max_fb_px)
    again = solve_tracks(pt, qt, a.K, o)
    assert again.tracks == direct.tracks
    assert angle_deg(again.R @ direct.R.T) < 0.05
    with pytest.raises(ValueError, match="p and q must be"):
        solve_tracks(p, q[:10], K, TwoViewOptions())


def test_prior_agrees_only_with_a_motion_the_corners_cannot_reject():
    R, t = rot_y(np.radians(2.0)), np.array([0.1, 0.0, -1.0])
    p, q, _ = _pairs(R, t)
    q = q + np.random.default_rng(1).normal(0.0, 0.3, q.shape)
    r_epi = signed_sampson(p, q, K, R, t)
    noise = float(np.var(r_epi))
    truth = invert_pose(make_pose(R, t / np.linalg.norm(t)))  # T_ref_new
    assert prior_agrees(p, q, K, R, t, r_epi, noise, truth)
    turned = truth @ make_pose(rot_y(np.radians(2.0)))
    assert not prior_agrees(p, q, K, R, t, r_epi, noise, turned)
    backwards = make_pose(truth[:3, :3], -truth[:3, 3])  # the residuals do not see the sign: the test does
    assert not prior_agrees(p, q, K, R, t, r_epi, noise, backwards)
    with pytest.raises(ValueError, match="T_prior must be 4x4"):
        prior_agrees(p, q, K, R, t, r_epi, noise, np.eye(3))


def test_depth_baseline_and_still_length(views):
    """The depth comparison gives the step's length from the exact depth (within 10 %) and fails
    where the depth disagrees with the corners; a still camera's largest step is ``still_px``
    times the corners' median depth over the smaller of ``f`` and their distance from the
    principal point (a step along the view moves corners near the centre least)."""
    a, b = make_view(views["ref"], views["K"]), make_view(views["new"], views["K"])
    sol = solve_two_view(a.grey, b.grey, a.K, TwoViewOptions())
    opts = dict(max_depth_step=1.1, max_spread=0.5, min_points=10)
    length, spread = depth_baseline(sol.p_in, sol.q_in, a.K, sol.T_new_ref, views["depth"], **opts)
    assert length == pytest.approx(np.linalg.norm(views["T"][:3, 3]), rel=0.10) and 0 < spread < 0.1
    noise = np.random.default_rng(0).uniform(0.1, 100.0, views["depth"].shape)
    assert depth_baseline(sol.p_in, sol.q_in, a.K, sol.T_new_ref, noise, **opts) is None
    with pytest.raises(ValueError, match=r"depth must be \(H, W\)"):
        depth_baseline(sol.p_in, sol.q_in, a.K, sol.T_new_ref, views["depth"][None], **opts)
    p = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    depth = np.full((64, 64), 8.0)
    r = float(np.median(np.hypot(p[:, 0] - K[0, 2], p[:, 1] - K[1, 2])))
    assert still_length(p, depth, K, 0.1) == pytest.approx(0.1 / min(500.0, r) * 8.0)
    far = p + np.array([K[0, 2], K[1, 2]]) + 600.0  # corners far from the centre: the focal length bounds it
    assert still_length(far, depth, K, 0.1) == pytest.approx(0.1 / 500.0 * 8.0)
    assert np.isnan(still_length(p, None, K, 0.1))
    with pytest.raises(ValueError, match=r"p must be \(N, 2\)"):
        still_length(p[:, 0], depth, K, 0.1)


def test_three_view_step_ratio_checks_its_motions(views):
    a = to_grey(views["ref"])
    p = np.zeros((30, 2))
    with pytest.raises(ValueError, match="T_ref_before must be 4x4"):
        three_view_step_ratio(a, a, p, p, K, np.eye(4), np.eye(3), max_points=100, min_points=20, max_fb_px=1.0,
                              lk_iterations=30, lk_window=11)


def test_track_points_follows_given_points_and_flags_lost_ones(views):
    """``track_points`` (the three-view step's back-tracking) returns one position and flag per
    given point: the corners ``track_corners`` keeps land where it puts them, and a point whose
    neighbourhood is flat is flagged, not dropped."""
    from sfm_ros.data.features import track_corners, track_points

    a, b = to_grey(views["ref"]), to_grey(views["new"])
    p, q = track_corners(a, b, max_corners=200)
    assert len(p) >= 20
    flat = np.array([[2.0, 2.0]], np.float32)  # the sky's corner: no texture
    pts = np.vstack([p, flat])
    p2, q2, ok = track_points(a, b, pts)
    assert p2.shape == q2.shape == (len(pts), 2) and ok.shape == (len(pts),)
    np.testing.assert_allclose(q2[:-1][ok[:-1]], q[ok[:-1]], atol=1e-3)
    assert ok[:-1].mean() > 0.95 and not ok[-1]
    empty = track_points(a, b, np.zeros((0, 2)))
    assert all(len(x) == 0 for x in empty)
    with pytest.raises(ValueError, match="grey images of one size"):
        track_points(a, b[:10], pts)


def test_solve_tracks_motion_alone_is_the_full_solutions():
    """``full=False``: the same rotation, direction and outcome as the full solution without a prior,
    without the covariance; a prior is refused with it."""
    from motion_scenes import two_views

    from sfm_ros.data.features import track_corners
    from sfm_ros.runtime.motion.two_view import TwoViewOptions, solve_tracks
    from sfm_ros.runtime.motion.view import make_view

    d = two_views()
    a, b = make_view(d["ref"], d["K"]), make_view(d["new"], d["K"])
    p, q = track_corners(a.grey, b.grey, 500, 5, 1.0, 30, 11)
    full, lean = solve_tracks(p, q, a.K, TwoViewOptions()), solve_tracks(p, q, a.K, TwoViewOptions(), full=False)
    assert full.why == lean.why == "" and full.inliers == lean.inliers
    assert np.allclose(full.T_new_ref, lean.T_new_ref) and lean.info is None and np.isnan(lean.residual_px)
    with pytest.raises(ValueError, match="T_prior"):
        solve_tracks(p, q, a.K, TwoViewOptions(), T_prior=np.eye(4), full=False)


def test_direction_given_rotation_is_exact_robust_and_signed():
    """With the rotation held the direction is linear in the pairs: exact from exact pixels; within
    1.5° with 0.3 px of noise and a tenth of the pairs 5 px off (measured 1.4°; a plain
    least-squares fit is pulled by such pairs); its sign follows ``t_sign``; too few pairs or a
    degenerate set: None; shapes are checked."""
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 208], [0, 300, 64], [0, 0, 1]])
    X = np.c_[rng.uniform(-10, 10, 200), rng.uniform(-3, 2, 200), rng.uniform(5, 40, 200)]
    R = rot_y(0.05) @ rot_x(0.01)
    t = np.array([0.1, -0.02, 1.0])
    t /= np.linalg.norm(t)
    x1, x2 = X @ K.T, (X @ R.T + 0.6 * t) @ K.T
    p, q = x1[:, :2] / x1[:, 2:], x2[:, :2] / x2[:, 2:]
    assert dir_err_deg(direction_given_rotation(p, q, K, R, np.array([0.0, 0, 1])), t) < 1e-4
    assert dir_err_deg(direction_given_rotation(p, q, K, R, np.array([0.0, 0, -1])), -t) < 1e-4
    noisy = q + rng.normal(0, 0.3, q.shape)
    noisy[:20] += rng.normal(0, 5.0, (20, 2))
    assert dir_err_deg(direction_given_rotation(p, noisy, K, R, np.array([0.0, 0, 1])), t) < 1.5
    assert direction_given_rotation(p[:2], q[:2], K, R, t) is None
    assert direction_given_rotation(p[:5], p[:5], K, np.eye(3), t) is None  # no motion: every direction fits
    with pytest.raises(ValueError, match="one shape"):
        direction_given_rotation(p, q[:5], K, R, t)
