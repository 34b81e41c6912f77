"""Tests of sfm_ros.evaluation.trajectory (alignment, ATE/RPE, SfMLearner snippet ATE, baselines, IO).

Tolerances: exact identities to 1e-9 (alignment residuals, ~0 errors); hand-computed values to
1e-12; agreement with evo's python API to 1e-6 as required (observed ~1e-15).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from sfm_ros.core import se3
from sfm_ros.data import pose_files as pf
from sfm_ros.evaluation import trajectory as tj


def _random_rotation(rng) -> np.ndarray:
    return se3.axis_angle_to_matrix(rng.normal(size=3))


def _smooth_traj(n=60, seed=0, rot_noise=0.0, step=0.5) -> np.ndarray:
    """A curved, non-planar trajectory: forward motion with yaw/pitch/roll increments."""
    rng = np.random.default_rng(seed)
    rel = []
    for i in range(n - 1):
        r = np.array([0.01 * math.sin(0.3 * i), 0.05 + 0.02 * math.cos(0.2 * i), 0.01]) + rot_noise * rng.normal(size=3)
        t = np.array([0.05 * math.sin(0.1 * i), 0.02 * math.cos(0.15 * i), step])
        rel.append(se3.make_pose(se3.axis_angle_to_matrix(r), t))
    return tj.chain(np.array(rel), start=se3.make_pose(_random_rotation(rng), rng.normal(size=3)))


def _sim3(poses, s, R, t) -> np.ndarray:
    out = poses.copy()
    out[:, :3, :3] = R @ poses[:, :3, :3]
    out[:, :3, 3] = s * poses[:, :3, 3] @ R.T + t
    return out


# --------------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------------
def test_relative_and_chain():
    P = _smooth_traj(20)
    rel = tj.relative_poses(P)
    assert rel.shape == (19, 4, 4)
    np.testing.assert_allclose(rel[3], np.linalg.inv(P[3]) @ P[4], atol=1e-12)
    np.testing.assert_allclose(tj.chain(rel, start=P[0]), P, atol=1e-9)
    # network target->source convention: T_s_t = inv(T_w_s) T_w_t = inv(rel[t]) for s = t + 1
    T_s_t = np.linalg.inv(P[5]) @ P[4]
    np.testing.assert_allclose(T_s_t, np.linalg.inv(rel[4]), atol=1e-12)


# --------------------------------------------------------------------------------------------
# Umeyama / ATE / RPE
# --------------------------------------------------------------------------------------------
def test_umeyama_recovers_known_sim3():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(30, 3))
    R = _random_rotation(rng)
    s, t = 2.5, np.array([1.0, -2.0, 3.0])
    dst = s * src @ R.T + t
    s_, R_, t_ = tj.umeyama(src, dst)
    assert s_ == pytest.approx(s, abs=1e-10)
    np.testing.assert_allclose(R_, R, atol=1e-10)
    np.testing.assert_allclose(t_, t, atol=1e-10)
    # without scale on a rigid copy
    s1, R1, t1 = tj.umeyama(src, src @ R.T + t, with_scale=False)
    assert s1 == 1.0
    np.testing.assert_allclose(R1, R, atol=1e-10)
    # a mirrored target still yields a proper rotation
    _, Rm, _ = tj.umeyama(src, src * np.array([1, 1, -1]), with_scale=False)
    assert np.linalg.det(Rm) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        tj.umeyama(src, dst[:-1])


def test_ate_sim3_removes_known_offset_and_scale():
    gt = _smooth_traj(40)
    rng = np.random.default_rng(4)
    est = _sim3(gt, 0.3, _random_rotation(rng), np.array([5.0, -1.0, 2.0]))
    r = tj.ate(gt, est, align="sim3")
    assert r["rmse"] < 1e-9 and r["max"] < 1e-9
    assert r["scale"] == pytest.approx(1 / 0.3, rel=1e-9)
    # constant offset, no alignment: every error is |offset|
    off = np.array([0.3, -0.4, 1.2])  # norm 1.3
    est2 = gt.copy()
    est2[:, :3, 3] += off
    r2 = tj.ate(gt, est2, align="none")
    for k in ("rmse", "mean", "median", "max", "min"):
        assert r2[k] == pytest.approx(1.3, abs=1e-12)
    assert r2["std"] == pytest.approx(0.0, abs=1e-12) and r2["scale"] == 1.0
    assert tj.ate(gt, est2, align="se3")["rmse"] < 1e-9
    assert tj.ate(gt, est2, align="sim3")["rmse"] < 1e-9
    # scale only (about the origin): undoes a pure scaling, not an offset
    est3 = gt.copy()
    est3[:, :3, 3] *= 2.0
    assert tj.ate(gt, est3, align="scale")["rmse"] < 1e-9
    assert tj.ate(gt, est2, align="scale")["rmse"] > 0.1
    with pytest.raises(ValueError):
        tj.ate(gt, est[:-1])
    with pytest.raises(ValueError):
        tj.ate(gt, est, align="bogus")


def test_rpe_hand_computed():
    # straight line along z; estimate steps 1.1 instead of 1.0, no alignment: error 0.1 per step
    n = 10
    gt = tj.chain(np.tile(se3.make_pose(t=[0, 0, 1.0]), (n - 1, 1, 1)))
    est = tj.chain(np.tile(se3.make_pose(se3.axis_angle_to_matrix([0, math.radians(2.0), 0]), [0, 0, 1.1]), (n - 1, 1, 1)))
    r = tj.rpe(gt, est, delta=1, align="none")
    assert r["pairs"] == n - 1
    assert r["trans_rmse"] == pytest.approx(0.1, abs=1e-12) and r["rmse"] == r["trans_rmse"]
    assert r["rot_rmse_deg"] == pytest.approx(2.0, abs=1e-10)
    r2 = tj.rpe(gt, est, delta=2, align="none")
    assert r2["pairs"] == n - 2
    assert r2["rot_mean_deg"] == pytest.approx(4.0, abs=1e-10)


# --------------------------------------------------------------------------------------------
# SfMLearner snippet protocol
# --------------------------------------------------------------------------------------------
def test_snippet_ate_single_hand_computed():
    g = np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]])
    p = np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 1.0]])
    # scale = (1 + 2) / (1 + 1) = 1.5; e = [0, 0.5, -0.5]
    val, s = tj.snippet_ate_single(g, p)
    assert s == pytest.approx(1.5, abs=1e-12)
    assert val == pytest.approx(math.sqrt(0.5) / 3, abs=1e-12)  # SfMLearner: sqrt(sum e^2) / L
    val_rmse, _ = tj.snippet_ate_single(g, p, formula="rmse")
    assert val_rmse == pytest.approx(math.sqrt(0.5 / 3), abs=1e-12)


def test_snippet_ate_perfect_up_to_scale_is_zero():
    gt = _smooth_traj(20, seed=5)
    L = 5
    rng = np.random.default_rng(6)
    # (a) whole trajectory in another frame and scale
    est = _sim3(gt, 0.2, _random_rotation(rng), rng.normal(size=3))
    r = tj.snippet_ate(gt, est, snippet_len=L)
    assert r["count"] == 20 - L + 1 and r["per_snippet"].shape == (16,)
    assert r["mean"] < 1e-9 and r["std"] < 1e-9
    np.testing.assert_allclose(r["scales"], 5.0, rtol=1e-9)
    # (b) a chain of relative poses with a different scale per snippet window: per-snippet input
    snips = tj.snippets_from_poses(gt, L)
    k = rng.uniform(0.1, 3.0, size=len(snips))
    pred = snips.copy()
    pred[:, :, :3, 3] *= k[:, None, None]
    pred = se3.make_pose(_random_rotation(rng), [1, 2, 3])[None, None] @ pred  # any snippet frame
    r = tj.snippet_ate(gt, pred, snippet_len=L)
    assert r["mean"] < 1e-9
    np.testing.assert_allclose(r["scales"], 1 / k, rtol=1e-9)
    # (c) relative poses (N-1) -> same as the trajectory
    rel = tj.relative_poses(est)
    r = tj.snippet_ate(gt, rel, snippet_len=L)
    assert r["mean"] < 1e-9
    np.testing.assert_allclose(tj.snippets_from_relative(tj.relative_poses(gt), L), snips, atol=1e-9)
    # a wrong prediction is not ~0
    bad = est.copy()
    bad[::3, :3, 3] += 0.5
    assert tj.snippet_ate(gt, bad, snippet_len=L)["mean"] > 1e-3
    with pytest.raises(ValueError):
        tj.snippet_ate(gt, est[:-3])


def test_snippet_from_network_matches_ground_truth():
    gt = _smooth_traj(5, seed=7)
    tgt = 2
    src = [np.linalg.inv(gt[s]) @ gt[tgt] for s in range(5) if s != tgt]  # T_s_t
    snip = tj.snippet_from_network(np.array(src), tgt)
    np.testing.assert_allclose(snip, tj.snippets_from_poses(gt, 5)[0], atol=1e-9)
    # pose-vector input
    snip_v = tj.snippet_from_network(se3.matrix_to_pose_vec(np.array(src)), tgt)
    np.testing.assert_allclose(snip_v, snip, atol=1e-9)


def test_zero_motion_baseline_straight_line_hand_value():
    # constant speed v = 0.5 m / frame along z. Each 5-frame snippet has gt positions 0, v, .., 4v;
    # the prediction is all zeros, so e = -g and ATE = sqrt(v^2 (0+1+4+9+16)) / 5 = v sqrt(30) / 5.
    n, v, L = 12, 0.5, 5
    gt = tj.chain(np.tile(se3.make_pose(t=[0, 0, v]), (n - 1, 1, 1)))
    r = tj.snippet_ate(gt, tj.zero_motion_poses(n), snippet_len=L)
    assert r["count"] == n - L + 1
    assert r["mean"] == pytest.approx(v * math.sqrt(30) / 5, abs=1e-12)  # 0.5477
    assert r["std"] == pytest.approx(0.0, abs=1e-12)
    r3 = tj.snippet_ate(gt, tj.zero_motion_poses(n), snippet_len=3)
    assert r3["mean"] == pytest.approx(v * math.sqrt(5) / 3, abs=1e-12)
    rr = tj.snippet_ate(gt, tj.zero_motion_poses(n), snippet_len=L, formula="rmse")
    assert rr["mean"] == pytest.approx(v * math.sqrt(30 / 5), abs=1e-12)


def test_mean_odometry_baseline():
    # training set: straight line at 0.5 m/frame and a yawing one; the mean increment is known
    straight = tj.chain(np.tile(se3.make_pose(t=[0, 0, 0.5]), (9, 1, 1)))
    yaw = tj.chain(np.tile(se3.make_pose(se3.axis_angle_to_matrix([0, 0.1, 0]), [0, 0, 1.5]), (9, 1, 1)))
    M = tj.mean_relative_motion([straight, yaw])
    np.testing.assert_allclose(M[:3, 3], [0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(se3.matrix_to_axis_angle(M[:3, :3]), [0, 0.05, 0], atol=1e-12)
    P = tj.mean_odometry_poses([straight, yaw], 6)
    assert P.shape == (6, 4, 4)
    np.testing.assert_allclose(tj.relative_poses(P), np.tile(M, (5, 1, 1)), atol=1e-12)
    # trained on the test trajectory itself (constant motion): the baseline is exact
    assert tj.snippet_ate(straight, tj.mean_odometry_poses(straight, 10))["mean"] < 1e-12
    assert tj.snippet_ate(yaw, tj.mean_odometry_poses(straight, 10))["mean"] > 1e-3


# --------------------------------------------------------------------------------------------
# IO
# --------------------------------------------------------------------------------------------
def test_tum_and_kitti_round_trip(tmp_path):
    P = _smooth_traj(30, seed=8)
    stamps = 1_317_000_000.0 + 0.1 * np.arange(30) + 1e-6
    pf.write_tum(tmp_path / "a.tum", stamps, P)
    line = (tmp_path / "a.tum").read_text().splitlines()[0].split(" ")
    assert len(line) == 8
    s2, P2 = pf.read_tum(tmp_path / "a.tum")
    np.testing.assert_array_equal(s2, stamps)
    np.testing.assert_array_equal(P2[:, :3, 3], P[:, :3, 3])
    np.testing.assert_allclose(P2, P, atol=1e-14)
    pf.write_kitti(tmp_path / "a.txt", P)
    assert len((tmp_path / "a.txt").read_text().splitlines()[0].split(" ")) == 12
    np.testing.assert_array_equal(pf.read_kitti(tmp_path / "a.txt"), P)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError):
        pf.read_kitti(tmp_path / "bad.txt")


# --------------------------------------------------------------------------------------------
# Equality with evo
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evo_pair(tmp_path_factory):
    pytest.importorskip("evo")
    rng = np.random.default_rng(9)
    gt = _smooth_traj(120, seed=9, rot_noise=0.02)
    est = _sim3(gt, 0.37, _random_rotation(rng), np.array([2.0, 1.0, -3.0]))
    est[:, :3, 3] += 0.05 * rng.normal(size=(120, 3))
    noise = se3.axis_angle_to_matrix(0.01 * rng.normal(size=(120, 3)))
    est[:, :3, :3] = est[:, :3, :3] @ noise
    d = tmp_path_factory.mktemp("evo")
    stamps = 100.0 + 0.1 * np.arange(120)
    pf.write_tum(d / "gt.tum", stamps, gt)
    pf.write_tum(d / "est.tum", stamps, est)
    return d / "gt.tum", d / "est.tum"


def _evo_trajs(gt_path, est_path):
    from evo.core import sync
    from evo.tools import file_interface

    ref = file_interface.read_tum_trajectory_file(str(gt_path))
    est = file_interface.read_tum_trajectory_file(str(est_path))
    return sync.associate_trajectories(ref, est)


@pytest.mark.parametrize("align", ["sim3", "se3", "scale"])
def test_ate_equals_evo_ape(evo_pair, align):
    from evo.core import metrics

    ref, est = _evo_trajs(*evo_pair)
    umeyama = est.align(ref, correct_scale=align == "sim3", correct_only_scale=align == "scale")
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    stats = ape.get_all_statistics()

    _, gt = pf.read_tum(evo_pair[0])
    _, mine_est = pf.read_tum(evo_pair[1])
    mine = tj.ate(gt, mine_est, align=align)
    for k in ("rmse", "mean", "median", "std", "min", "max"):
        assert mine[k] == pytest.approx(stats[k], abs=1e-6), k
    assert mine["scale"] == pytest.approx(umeyama[2], abs=1e-9)
    if align == "sim3":
        assert 0.01 < mine["rmse"] < 1.0  # the noise is really there


def test_rpe_equals_evo_rpe(evo_pair):
    from evo.core import metrics

    ref, est = _evo_trajs(*evo_pair)
    est.align(ref, correct_scale=True)
    out = {}
    for rel in (metrics.PoseRelation.translation_part, metrics.PoseRelation.rotation_angle_deg):
        rpe = metrics.RPE(rel, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data((copy.deepcopy(ref), copy.deepcopy(est)))
        out[rel] = rpe.get_all_statistics()

    _, gt = pf.read_tum(evo_pair[0])
    _, mine_est = pf.read_tum(evo_pair[1])
    mine = tj.rpe(gt, mine_est, delta=1, align="sim3")
    t = out[metrics.PoseRelation.translation_part]
    r = out[metrics.PoseRelation.rotation_angle_deg]
    for k in ("rmse", "mean", "median", "std", "max"):
        assert mine[f"trans_{k}"] == pytest.approx(t[k], abs=1e-6), k
        assert mine[f"rot_{k}_deg"] == pytest.approx(r[k], abs=1e-6), k
    assert mine["pairs"] == 119 and mine["rot_rmse_deg"] > 0.1
