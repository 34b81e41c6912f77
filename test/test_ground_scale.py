"""Metric scale from the camera height (sfm_ros.runtime.ground_scale) on rendered streets with exact depth.

The renderer's camera is 1.5 m above a flat road; its exact depth divided by 7 stands for a
network's depth in units of 1/7 m. Tolerance: the scale within 2 % (measured 6.998 for 7), the
plane's normal within 2° of the true "down".
"""
from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.runtime.ground_scale import GroundScale, fit_ground_plane
from sfm_ros.runtime.odometry import camera_extrinsic
from sfm_ros.data.synthetic import render_sequence

UNITS = 7.0  # metres per "network unit"


@pytest.fixture(scope="module")
def street():
    seq = render_sequence(num_frames=6, height=96, width=320, seed=4, camera_height=1.5)
    depth = [np.where(np.isfinite(d), d / UNITS, 1e6).astype(np.float32) for d in seq.depths]
    return seq, depth


def test_the_scale_of_a_known_camera_height_is_recovered(street):
    seq, depth = street
    gs = GroundScale(1.5, camera_extrinsic())
    np.testing.assert_allclose(gs.down, [0.0, 1.0, 0.0], atol=1e-12)  # forward camera: optical +y
    for d in depth:
        s = gs.update(d, seq.K)
    assert s == pytest.approx(UNITS, rel=0.02)
    assert gs.accepted == len(depth) and gs.spread < 0.02
    plane = fit_ground_plane(depth[0], seq.K, gs.down)
    assert np.degrees(np.arccos(plane.normal @ gs.down)) < 2.0
    assert plane.distance == pytest.approx(1.5 / UNITS, rel=0.02)


def test_outliers_are_rejected_and_a_missing_ground_is_not_an_estimate(street):
    seq, depth = street
    gs = GroundScale(1.5, camera_extrinsic(), window=6)
    for d in depth:
        gs.update(d, seq.K)
    before = gs.scale
    assert gs.update(depth[0] * 3.0, seq.K) == pytest.approx(before)  # a 3x jump: rejected
    assert gs.rejected == 1
    sky = np.full_like(depth[0], np.inf)
    assert gs.update(sky, seq.K) == pytest.approx(before) and gs.failed == 1
    wall = np.full_like(depth[0], 2.0)  # a frontal wall: no plane near "down"
    assert fit_ground_plane(wall, seq.K, gs.down) is None


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="camera_height"):
        GroundScale(0.0, camera_extrinsic())
    with pytest.raises(ValueError, match="T_base_cam"):
        GroundScale(1.0, np.eye(3))
    with pytest.raises(ValueError, match="region"):
        fit_ground_plane(np.ones((8, 8)), np.eye(3), [0, 1, 0], region=0.0)


def test_a_wrong_start_is_not_kept_for_good(street):
    """Five frames at a wrong scale (a start behind a car), then the true ground: after one window
    of agreeing rejections the history restarts from them."""
    seq, depth = street
    gs = GroundScale(1.5, camera_extrinsic(), window=6)
    for _ in range(5):
        gs.update(depth[0] * 2.0, seq.K)  # scale UNITS / 2
    assert gs.scale == pytest.approx(UNITS / 2, rel=0.02)
    for i in range(12):
        gs.update(depth[i % len(depth)], seq.K)
    assert gs.reseeded == 1 and gs.scale == pytest.approx(UNITS, rel=0.02)
