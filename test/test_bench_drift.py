"""bench/bench_drift.py's NEES of the published increments: about 1 per axis for errors drawn
from the covariance published with them, about 4 for errors twice as large."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_bench

from sfm_ros.core.se3 import axis_angle_to_matrix, invert_pose, make_pose
from sfm_ros.runtime.odometry import camera_extrinsic

def _bench():
    return load_bench("bench_drift")


@pytest.mark.parametrize("gain, want", [(1.0, 1.0), (2.0, 4.0)])
def test_step_nees_of_errors_drawn_from_the_covariance(gain, want):
    rng = np.random.default_rng(0)
    n, dt = 4000, 0.1
    sd = np.array([0.05, 0.01, 0.02, 0.002, 0.003, 0.004])  # base frame: x y z (m), roll pitch yaw (rad)
    B = camera_extrinsic()
    Bi = invert_pose(B)
    true_inc = make_pose(axis_angle_to_matrix([0.0, 0.0, 0.02]), [0.6, 0.0, 0.01])  # base frame: ahead, turning
    gt, est = [np.eye(4)], [np.eye(4)]
    for _ in range(n):
        e = gain * sd * rng.standard_normal(6)
        gt.append(gt[-1] @ Bi @ true_inc @ B)  # camera poses
        est.append(est[-1] @ Bi @ true_inc @ make_pose(axis_angle_to_matrix(e[3:]), e[:3]) @ B)
    cov = [None] + [np.diag(sd ** 2 / dt ** 2)] * n  # the twist covariance; none on the first frame
    stamps = dt * np.arange(n + 1)
    nees, band = _bench().step_nees(np.asarray(gt), np.asarray(est), cov, stamps)
    np.testing.assert_allclose(nees, want, rtol=0.1)
    assert band[0] < 1.0 < band[1] and band[1] - band[0] < 0.2
