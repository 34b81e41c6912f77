"""The orientation fused over a sliding window of frames (:mod:`sfm_ros.runtime.motion.rotation_window`)
and its use by the refiner (``Refiner(rotation_window=True)``), on a rendered street."""
from __future__ import annotations

import numpy as np
import pytest
from motion_scenes import H, W, angle_deg

from sfm_ros.core.se3 import axis_angle_to_matrix, invert_pose, rot_y, rot_z
from sfm_ros.runtime.motion import Refiner, Used
from sfm_ros.runtime.motion.rotation_window import RotationWindow, chordal_mean
from sfm_ros.runtime.motion.two_view import TwoViewOptions
from sfm_ros.runtime.motion.view import make_view


@pytest.fixture(scope="module")
def street():
    """17 frames, 0.6 m apart, of a camera 1.5 m above a curving street (yaw about 0.3° a frame)."""
    from sfm_ros.data.synthetic import make_scene, render_sequence

    seq = render_sequence(num_frames=17, height=H, width=W, seed=3, speed=6.0,
                          scene=make_scene(3, curvature=0.05 / 6.0))
    steps = np.stack([invert_pose(seq.poses[i]) @ seq.poses[i + 1] for i in range(len(seq.poses) - 1)])
    return seq, [make_view(im, seq.K) for im in seq.images], steps


def test_chordal_mean():
    R = axis_angle_to_matrix(np.array([0.1, -0.2, 0.3]))
    assert np.allclose(chordal_mean([R, R, R]), R, atol=1e-12)
    # about one axis the chordal mean is the angle atan2(Σ w sin θ, Σ w cos θ)
    a, b = np.radians(1.0), np.radians(-3.0)
    M = chordal_mean([rot_z(a), rot_z(b)], [3.0, 1.0])
    want = np.arctan2(3 * np.sin(a) + np.sin(b), 3 * np.cos(a) + np.cos(b))
    assert np.allclose(M, rot_z(want), atol=1e-12)
    assert np.allclose(M @ M.T, np.eye(3), atol=1e-12) and np.linalg.det(M) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rotations"):
        chordal_mean(np.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match="weights"):
        chordal_mean([R, R], [1.0, 0.0])
    with pytest.raises(ValueError, match="weights"):
        chordal_mean([R, R], [1.0])


@pytest.mark.parametrize("kw, match", [(dict(baselines=()), "baselines"), (dict(baselines=(1, 4)), "baselines"),
                                       (dict(baselines=(4, 4)), "baselines"), (dict(agree_deg=0.0), "agree_deg"),
                                       (dict(refill_below=-1), "refill_below"), (dict(max_points=4), "max_points"),
                                       (dict(estimator="lmeds"), "estimator"), (dict(spread_frames=0), "spread_frames")])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        RotationWindow(**kw)


def test_a_step_rotation_that_disagrees_with_the_longer_baselines_is_outvoted(street):
    """The true step rotations but for one 2° wrong (a five-point solution of a planar road can be,
    with many inliers): the window's other baselines agree among themselves and replace it; the
    orientation stays within 0.5° of the truth over the 16 steps (measured: 0.32°, the baselines'
    own errors), where chaining the steps leaves the 2°."""
    seq, views, steps = street
    win, opts = RotationWindow(), TwoViewOptions()
    R_w = np.eye(3)
    for i, T in enumerate(steps):
        R_step = T[:3, :3] @ rot_y(np.radians(2.0)) if i == 11 else T[:3, :3]
        f = win.push(views[i], views[i + 1], R_step, opts)
        assert f.frames == min(i + 2, win.span) and f.tracks >= opts.min_inliers
        assert 1 <= f.predictions <= 1 + sum(k <= i + 1 for k in win.baselines)
        if i == 11:
            assert not f.step_kept and f.agreeing >= 2
            # the set-aside step is ~2° from the fusion, about y
            assert np.degrees(np.sqrt(np.trace(f.set_aside))) == pytest.approx(2.0, abs=0.5)
            assert f.set_aside[1, 1] > 0.9 * np.trace(f.set_aside)
            aside = f.set_aside / f.predictions
        elif i == 12:  # the next step starts from the contested frame: it carries that doubt, in its own axes
            np.testing.assert_allclose(f.set_aside_before, f.R.T @ aside @ f.R, atol=1e-15)
            assert not f.after_own  # the contested frame was a fusion all the same
        R_w = R_w @ f.R
    truth = (invert_pose(seq.poses[0]) @ seq.poses[-1])[:3, :3]
    assert angle_deg(R_w.T @ truth) < 0.5


def test_a_steady_bias_of_the_steps_is_held_by_the_baselines(street):
    """Every step's rotation 0.1° too far in yaw (a bias that chains to 1.6° over 16 steps): within
    ``agree_deg`` of the baselines' own, so averaged with them;
    the orientation ends within 0.5° of the truth (measured: 0.11°)."""
    seq, views, steps = street
    win, opts = RotationWindow(), TwoViewOptions()
    R_w = np.eye(3)
    for i, T in enumerate(steps):
        R_w = R_w @ win.push(views[i], views[i + 1], T[:3, :3] @ rot_y(np.radians(0.1)), opts).R
    truth = (invert_pose(seq.poses[0]) @ seq.poses[-1])[:3, :3]
    assert angle_deg(R_w.T @ truth) < 0.5


def test_the_window_restarts_when_the_views_do_not_follow_on(street):
    _, views, steps = street
    win, opts = RotationWindow(), TwoViewOptions()
    for i in range(3):
        f = win.push(views[i], views[i + 1], steps[i][:3, :3], opts)
    assert f.frames == 4 and f.predictions == 2  # baseline 2 (4 and 8 not yet)
    f = win.push(views[5], views[6], steps[5][:3, :3], opts)  # views[4] was skipped
    assert f.frames == 2 and f.predictions == 1
    with pytest.raises(ValueError, match="one size"):
        win.push(views[6], make_view(np.zeros((64, 64), np.uint8), np.eye(3)), np.eye(3), opts)
    with pytest.raises(ValueError, match="R_step"):
        win.push(views[6], views[7], np.eye(4), opts)
    assert win.push(views[6], views[7], steps[6][:3, :3], opts).frames == 3  # nothing changed by the refusals
    win.reset()
    assert win.push(views[7], views[8], steps[7][:3, :3], opts).frames == 2


def test_a_hurried_frame_carries_the_corners_and_keeps_its_own_rotation(street):
    """``solve=False`` (the node behind): no baseline measured, the step's own rotation returned and
    held, the corners carried; the next frame measures its baselines against it as against any."""
    _, views, steps = street
    win, opts = RotationWindow(), TwoViewOptions()
    for i in range(5):
        f = win.push(views[i], views[i + 1], steps[i][:3, :3], opts)
    assert f.solved and f.predictions == 3 and f.frames == 6
    off = steps[5][:3, :3] @ rot_z(np.radians(1.0))  # a step's rotation a degree off: nothing outvotes it
    f = win.push(views[5], views[6], off, opts, solve=False)
    assert not f.solved and f.predictions == f.agreeing == 1 and f.step_kept and f.frames == 7
    assert f.tracks >= 50 and angle_deg(f.R.T @ off) < 1e-9
    f = win.push(views[6], views[7], steps[6][:3, :3], opts)
    assert f.solved and f.predictions == 3 and f.frames == 8  # baselines 2 and 4 (8: not yet) reach over it
    # the hurried frame held its own rotation: this step may undo its error, which the agreement of
    # the baselines (skipping it) does not measure; the next step starts from a fusion again
    assert f.after_own
    assert not win.push(views[7], views[8], steps[7][:3, :3], opts).after_own
    win.published(steps[7][:3, :3] @ rot_z(np.radians(0.3)))  # the caller published another rotation
    assert win.push(views[8], views[9], steps[8][:3, :3], opts).after_own


def test_the_refiner_uses_the_window(street):
    """A pose network whose rotation is 0.2° a step too far in yaw: one step's corners cannot tell
    its motion from the five-point solution, so the refiner keeps it (``prefer_network``) and the
    bias chains to 3.2° over 16 steps; with ``rotation_window=True`` the longer baselines see it and
    the orientation ends within 0.5° of the truth (measured: 0.12°). Each refinement carries the
    window's fusion, and its rotation is the fused one."""
    seq, views, steps = street
    out = {}
    for on in (False, True):
        r = Refiner(rotation_window=on)
        R_w = np.eye(3)
        for i, T in enumerate(steps):
            net = T.copy()
            net[:3, :3] = T[:3, :3] @ rot_y(np.radians(0.2))
            res = r.refine(views[i], views[i + 1], net)
            assert (res.window is not None) == on
            if on and res.used != Used.STILL:
                assert np.allclose(res.T[:3, :3], res.window.R)
            R_w = R_w @ res.T[:3, :3]
        out[on] = angle_deg(R_w.T @ (invert_pose(seq.poses[0]) @ seq.poses[-1])[:3, :3])
    assert out[False] > 2.5 and out[True] < 0.5
    hurried = Refiner(rotation_window=True)
    for i in range(4):
        res = hurried.refine(views[i], views[i + 1], steps[i], hurry=i == 3)
        assert res.window.solved == (i != 3) and (res.window.predictions == 1) == (i in (0, 3))
    r.set_rotation_window(False)
    assert r.window is None and r.refine(views[0], views[1], steps[0]).window is None
    with pytest.raises(ValueError, match="window_span"):
        Refiner(window_span=1)


def test_the_window_holds_what_was_published(street):
    """The caller publishes another rotation than the fused one (a photometric polish's, here 2°
    off): the window measures the next frame against that one, so baseline 2 (which sees the truth)
    and the step's own prediction (on top of the published 2°) no longer agree; held as fused, they
    do."""
    _, views, steps = street
    opts = TwoViewOptions()
    for publish, agreeing in ((False, 2), (True, 1)):
        win = RotationWindow()
        win.push(views[0], views[1], steps[0][:3, :3], opts)
        if publish:
            win.published(steps[0][:3, :3] @ rot_y(np.radians(2.0)))
        f = win.push(views[1], views[2], steps[1][:3, :3], opts)
        assert f.predictions == 2 and f.agreeing == agreeing and f.step_kept
    with pytest.raises(ValueError, match="R_step"):
        win.published(np.eye(4))


def test_a_refinement_that_raises_restarts_the_window(street, monkeypatch):
    """OpenCV failing inside the window's solution: the window restarts and the frame's refinement
    stands (the step's own rotation); a failure after the window's step (here the covariance)
    propagates and restarts the window too, since the caller then keeps other motion."""
    import cv2

    import sfm_ros.runtime.motion.refiner as refiner_module
    import sfm_ros.runtime.motion.rotation_window as rw

    _, views, steps = street
    r = Refiner()
    for i in range(3):
        r.refine(views[i], views[i + 1], steps[i])
    assert len(r.window._frames) == 4

    def broken(*a, **k):
        raise cv2.error("boom")
    monkeypatch.setattr(rw, "solve_tracks", broken)
    res = r.refine(views[3], views[4], steps[3])
    assert res.window is None and len(r.window._frames) == 0
    monkeypatch.undo()
    r.refine(views[4], views[5], steps[4])
    assert len(r.window._frames) == 2  # started again at views[4]

    def bad_covariance(*a, **k):
        raise ValueError("bad covariance")
    monkeypatch.setattr(refiner_module, "motion_covariance", bad_covariance)
    with pytest.raises(ValueError, match="bad covariance"):
        r.refine(views[5], views[6], steps[5])
    assert len(r.window._frames) == 0


def test_the_photometric_polish_keeps_the_window(street):
    """``epipolar+photometric``: the polish starts from the fused rotation and carries the window's
    fusion; the window then holds the polished rotation."""
    seq, views, steps = street
    r = Refiner("epipolar+photometric")
    depth = np.full(views[0].grey.shape, 10.0, np.float32)
    for i in range(4):
        res = r.refine(views[i], views[i + 1], steps[i], depth)
        assert res.window is not None
        held = r.window._frames[-2].R_w.T @ r.window._frames[-1].R_w
        assert np.allclose(held, res.T[:3, :3], atol=1e-12)


def test_held_orientations_stay_rotations(street):
    """What the window holds and returns is a rotation to rounding, whatever the caller publishes
    (a product chained frame after frame would double its rounding error every frame: 2^40 x 1e-16
    after 40 frames, over the odometry's 1e-3 check)."""
    _, views, steps = street
    win, opts = RotationWindow(), TwoViewOptions()
    for i in range(8):
        f = win.push(views[i], views[i + 1], steps[i][:3, :3], opts)
        win.published(f.R * (1.0 + 1e-6))  # slightly off the rotations
        for R in (f.R, win._frames[-1].R_w):
            assert np.abs(R.T @ R - np.eye(3)).max() < 1e-12


def test_the_spread_of_the_predictions_is_pooled_over_recent_frames(street):
    """``WindowFusion.spread``: the agreeing predictions' outer products around the fusion, per
    degree of freedom (``agreeing - 1`` a frame), over the last ``spread_frames`` frames that had
    two or more; None before any; cleared with the window. On the true step rotations the
    predictions agree to a small fraction of a degree (each baseline's own error)."""
    _, views, steps = street
    win, opts = RotationWindow(spread_frames=3), TwoViewOptions()
    dofs = []
    for i in range(8):
        f = win.push(views[i], views[i + 1], steps[i][:3, :3], opts)
        dofs.append(f.agreeing - 1)
        if i == 0:
            assert f.predictions == 1 and f.spread is None and f.spread_dof == 0
            assert np.array_equal(f.set_aside_before, np.zeros((3, 3)))
    pooled = [d for d in dofs if d >= 1]
    assert len(pooled) > 3 and f.spread_dof == sum(pooled[-3:])  # the last three frames with two or more
    assert f.spread.shape == (3, 3) and np.allclose(f.spread, f.spread.T)
    assert np.all(np.linalg.eigvalsh(f.spread) >= -1e-15)
    assert 0.0 < np.degrees(np.sqrt(np.trace(f.spread))) < 0.3
    win.reset()
    f = win.push(views[8], views[9], steps[8][:3, :3], opts)
    assert f.spread is None and f.spread_dof == 0 and np.array_equal(f.set_aside_before, np.zeros((3, 3)))
