"""The ground normal's tilt measured from two views (:mod:`sfm_ros.runtime.motion.ground_tilt`)."""
from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.core.se3 import rot_x
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.runtime.motion.ground_length import ground_pixels
from sfm_ros.runtime.motion.ground_tilt import GroundTilt, tilted_down, travel_tilt_deg
from sfm_ros.runtime.motion.view import make_view


def test_tilted_down_turns_towards_the_optical_axis():
    d = tilted_down(np.array([0.0, 1.0, 0.0]), 10.0)
    np.testing.assert_allclose(d, [0.0, np.cos(np.radians(10)), np.sin(np.radians(10))], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(tilted_down(np.array([0.3, 2.0, 0.1]), -4.0)), 1.0)
    np.testing.assert_allclose(tilted_down(tilted_down(np.array([0.0, 1.0, 0.0]), 3.0), -3.0), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(tilted_down(np.array([0.0, 0.0, 2.0]), 5.0), [0, 0, 1])  # no axis: unchanged


def test_options_are_checked():
    with pytest.raises(ValueError, match="every, window"):
        GroundTilt(every=0)
    with pytest.raises(ValueError, match="step_deg"):
        GroundTilt(step_deg=3.0, span_deg=2.0)


@pytest.mark.parametrize("error_deg", [-1.5, 1.0])
def test_a_wrong_nominal_down_is_measured(error_deg):
    """The true motion between rendered frames of a level camera, a nominal "down" wrong by
    ``error_deg``: the measured tilt undoes it, within 0.75 degrees (measured: 0.43 too high for
    both errors and for a right nominal: the estimator's own bias on these frames, BENCHMARKS.md)."""
    seq = render_sequence(num_frames=16, seed=11, yaw_rate=0.0, weave=0.0, pitch_roll=0.0)
    true_down = np.array([0.0, 1.0, 0.0])
    nominal = tilted_down(true_down, error_deg)
    tilt = GroundTilt(every=1, window=15)
    for i in range(len(seq) - 1):
        a, b = make_view(seq.images[i], seq.K).grey, make_view(seq.images[i + 1], seq.K).grey
        T = np.linalg.inv(seq.poses[i + 1]) @ seq.poses[i]  # x_new = R x_ref + t
        L = float(np.linalg.norm(T[:3, 3]))
        tilt.observe(ground_pixels(a, b), seq.K, T[:3, :3], T[:3, 3] / L, nominal, 1.5, L)
    assert len(tilt.measurements) >= 10
    assert abs(tilt.tilt_deg + error_deg) < 0.75, (tilt.tilt_deg, list(tilt.measurements))
    np.testing.assert_allclose(tilt.down(nominal), true_down, atol=np.radians(0.75))


def test_only_every_nth_pair_is_measured():
    seq = render_sequence(num_frames=7, seed=12, yaw_rate=0.0)
    tilt = GroundTilt(every=3)
    got = []
    for i in range(6):
        a, b = make_view(seq.images[i], seq.K).grey, make_view(seq.images[i + 1], seq.K).grey
        T = np.linalg.inv(seq.poses[i + 1]) @ seq.poses[i]
        L = float(np.linalg.norm(T[:3, 3]))
        got.append(tilt.observe(ground_pixels(a, b), seq.K, T[:3, :3], T[:3, 3] / L, np.array([0, 1.0, 0]), 1.5, L))
    assert [g is not None for g in got] == [True, False, False, True, False, False]
    assert tilt.tilt_deg == 0.0  # fewer than min_measurements: the nominal down is used


def test_travel_tilt_makes_the_normal_perpendicular_to_the_direction_of_travel():
    down = np.array([0.0, 1.0, 0.0])
    for elev_deg in (-2.0, 0.0, 1.2):
        e = np.radians(elev_deg)
        c = np.array([0.1, -np.sin(e), np.cos(e)])  # moves forward, 'up' by elev_deg in the camera frame
        R = np.eye(3)
        tilt = travel_tilt_deg(down, R, -R @ c)
        assert tilt is not None
        assert abs(float(tilted_down(down, tilt) @ c)) < 1e-12
        assert tilt == pytest.approx(elev_deg, abs=1e-9)
        assert travel_tilt_deg(down, R, R @ c) == pytest.approx(tilt)  # driving backwards: the same tilt
        P = rot_x(np.radians(5.0))  # a pitched motion: the direction is -Rᵀ t, not -R t
        assert travel_tilt_deg(down, P, -P @ c) == pytest.approx(elev_deg, abs=1e-9)
    assert travel_tilt_deg(down, np.eye(3), np.array([-1.0, 0.0, -0.2])) is None  # sideways: says nothing
    assert travel_tilt_deg(np.array([0.0, 0.0, 1.0]), np.eye(3), np.array([0.0, 0.0, -1.0])) is None
    assert travel_tilt_deg(down, np.eye(3), np.full(3, np.nan)) is None
    nan_down = GroundTilt(every=1, source="travel")
    assert nan_down.observe(None, np.eye(3), np.eye(3), np.array([0.0, 0.0, -1.0]), np.full(3, np.nan), 1.5, 1.0) is None
    assert not nan_down.measurements
    with pytest.raises(ValueError, match="source"):
        GroundTilt(source="lidar")


def test_travel_tilt_undoes_a_wrong_nominal_down_on_rendered_motion():
    """The true motions of a rendered drive (yaw, weave and the renderer's pitch and roll jitter of
    0.01 rad about a level camera): the direction of travel lies in the ground, so the travel tilt
    undoes a nominal "down" wrong by 1.5 degrees, within the jitter's median (0.2 degrees)."""
    seq = render_sequence(num_frames=12, seed=13, yaw_rate=0.05)
    nominal = tilted_down(np.array([0.0, 1.0, 0.0]), 1.5)
    tilt = GroundTilt(every=1, window=15, source="travel")
    for i in range(len(seq) - 1):
        T = np.linalg.inv(seq.poses[i + 1]) @ seq.poses[i]
        L = float(np.linalg.norm(T[:3, 3]))
        tilt.observe(None, seq.K, T[:3, :3], T[:3, 3] / L, nominal, 1.5, L)
    assert len(tilt.measurements) == 11
    assert tilt.tilt_deg == pytest.approx(-1.5, abs=0.2), list(tilt.measurements)
