"""sfm_ros.evaluation.pose_eval, pose_truth and depth_eval: the evaluation algorithms behind sfm_eval, driven
directly (no command line)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sfm_ros.evaluation import depth_eval
from sfm_ros.evaluation import pose_eval
from sfm_ros.evaluation import pose_truth
from sfm_ros.data.pose_files import read_kitti, write_kitti
from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose
from sfm_ros.evaluation.trajectory import chain, relative_poses


def _path(n=8, seed=0):
    rng = np.random.default_rng(seed)
    rel = [make_pose(axis_angle_to_matrix(rng.normal(0, 0.02, 3)), [0.0, 0.0, 1.0] + rng.normal(0, 0.05, 3))
           for _ in range(n - 1)]
    return chain(np.asarray(rel))


def test_average_increments_means_translation_and_rotation():
    a = make_pose(axis_angle_to_matrix([0, 0, 0.1]), [1, 0, 0])
    b = make_pose(axis_angle_to_matrix([0, 0, 0.3]), [3, 0, 0])
    (m,) = pose_eval.average_increments([[a, b]])
    np.testing.assert_allclose(m, make_pose(axis_angle_to_matrix([0, 0, 0.2]), [2, 0, 0]), atol=1e-12)
    with pytest.raises(ValueError, match="increment 0 has no estimate"):
        pose_eval.average_increments([[]])


def test_network_increments_recovers_the_increments_of_exact_windows():
    gt = _path(7)
    L = 3
    snippets = np.asarray([np.linalg.inv(gt[k]) @ gt[k:k + L] for k in range(len(gt) - L + 1)])
    rel = pose_eval.network_increments(snippets)
    np.testing.assert_allclose(rel, relative_poses(gt), atol=1e-9)


class _FakeEstimator:
    """Pose network stand-in: returns the true T_s_t of each window (target in the middle)."""

    seq_len = 3

    def __init__(self, gt):
        self.gt = gt

    def poses(self, window):
        import torch

        idx = [int(w) for w in window]
        t = idx[len(idx) // 2]
        T = [np.linalg.inv(self.gt[s]) @ self.gt[t] for s in idx if s != t]
        return torch.from_numpy(np.asarray(T))[None]


def test_network_snippets_and_model_method_on_exact_windows():
    gt = _path(6)
    est = _FakeEstimator(gt)
    snips = pose_eval.network_snippets(est, list(range(6)))
    assert snips.shape == (4, 3, 4, 4)
    np.testing.assert_allclose(snips[1], np.linalg.inv(gt[1]) @ gt[1:4], atol=1e-9)
    m, notes, metric = pose_eval.model_pose_method(est, list(range(6)), snippet=3)
    assert metric is None and "snippets" in m and "SfMLearner's protocol" in notes[0]
    np.testing.assert_allclose(m["traj"], np.linalg.inv(gt[0]) @ gt, atol=1e-9)
    m5, notes5, _ = pose_eval.model_pose_method(est, list(range(6)), snippet=5)
    assert "rel" in m5 and "chained" in notes5[0]
    with pytest.raises(ValueError, match="at least seq_len=3"):
        pose_eval.network_snippets(est, [0, 1])


def test_evaluate_pose_methods_perfect_prediction_and_baselines():
    gt = _path(10)
    res = pose_eval.evaluate_pose_methods(gt, {"model": {"traj": gt.copy()}}, 5, 1, [gt])
    assert set(res) == {"model", "zero_motion", "mean_odometry"}
    assert res["model"]["ate"]["rmse"] < 1e-9 and res["model"]["ate"]["align"] == "sim3"
    assert res["zero_motion"]["ate"]["align"] == "se3"  # Sim(3) is undefined for no motion
    assert res["zero_motion"]["ate"]["rmse"] > 0.1
    with pytest.raises(ValueError, match="need at least --snippet 11"):
        pose_eval.evaluate_pose_methods(gt, {}, 11, 1, None)


def test_associate_stamps():
    dst = np.array([0.0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(pose_truth.associate_stamps(np.array([0.11, 0.29]), dst, 0.02, "x"), [1, 3])
    with pytest.raises(ValueError, match="1 of 2 stamps have no ground-truth pose"):
        pose_truth.associate_stamps(np.array([0.1, 0.55]), dst, 0.02, "x")


def test_mean_odometry_segments():
    gt = _path(20)
    parts, what = pose_truth.mean_odometry_segments(gt, list(range(8, 12, 2)), 2)
    assert len(parts) == 2 and "0:8 and 11:20" in what
    np.testing.assert_allclose(parts[0], gt[[0, 2, 4, 6]])
    parts, what = pose_truth.mean_odometry_segments(gt, list(range(20)), 1)
    assert len(parts) == 1 and "evaluated frames themselves" in what


def test_metric_scale_summary_reports_the_step_ratio():
    gt = _path(6)
    rel = relative_poses(gt)
    rel[:, :3, 3] *= 2.0
    metric = {"rel": rel, "scales": np.full(5, 2.0), "step_lengths": np.linalg.norm(rel[:, :3, 3], axis=1)}
    out = pose_eval.metric_scale_summary(gt, metric, 1.5)
    assert out["step_ratio_median"] == pytest.approx(2.0) and out["scale_median"] == 2.0
    assert out["camera_height"] == 1.5 and out["ate_se3"]["rmse"] > 0


def test_write_trajectory_pair_and_ground_truth_trajectory(tmp_path):
    gt = _path(5)
    written = pose_eval.write_trajectory_pair(tmp_path / "pred.txt", "kitti", None, gt, gt)
    assert written == [str(tmp_path / "pred.txt"), str(tmp_path / "pred.gt.txt")]
    np.testing.assert_allclose(read_kitti(tmp_path / "pred.gt.txt"), gt, atol=1e-6)
    with pytest.raises(ValueError, match="is a folder"):
        pose_eval.write_trajectory_pair(tmp_path, "kitti", None, gt, gt)
    write_kitti(tmp_path / "gt.txt", gt)
    args = SimpleNamespace(gt_tum=None, gt_kitti=str(tmp_path / "gt.txt"), kitti=None, sevenscenes=None)
    poses, stamps, what = pose_truth.ground_truth_trajectory(args)
    assert stamps is None and what == str(tmp_path / "gt.txt") and np.allclose(poses, gt, atol=1e-6)
    with pytest.raises(ValueError, match="no ground truth"):
        pose_truth.ground_truth_trajectory(SimpleNamespace(gt_tum=None, gt_kitti=None, kitti=None, sevenscenes=None))


def test_evaluate_depth_sequence():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(1, 20, (12, 16)) for _ in range(3)]
    preds = [(g * 0.1, None) for g in gts]  # right up to scale
    loaders = [lambda hw, g=g: g for g in gts]
    res = depth_eval.evaluate_depth_sequence(iter(preds), loaders, 1e-3, 80.0)
    assert res["count"] == 3 and res["metrics"]["abs_rel"] < 1e-9 and res["skipped"] == []
    assert res["baseline_constant"]["abs_rel"] > 0.1 and res["scale_mean"] == pytest.approx(10.0)
    assert res["warnings"] == []
    # no valid ground truth in an image: skipped; counts that differ: an error
    loaders[1] = lambda hw: np.zeros((12, 16))
    res = depth_eval.evaluate_depth_sequence(iter(preds), loaders, 1e-3, 80.0)
    assert res["skipped"] == [1] and res["count"] == 2
    with pytest.raises(ValueError, match="fewer frames than ground-truth maps"):
        depth_eval.evaluate_depth_sequence(iter(preds[:2]), loaders, 1e-3, 80.0)
    # a constant prediction is flagged
    flat = depth_eval.evaluate_depth_sequence(iter([(np.ones((12, 16)), None)]), loaders[:1], 1e-3, 80.0)
    assert flat["warnings"] and "nearly constant" in flat["warnings"][0]
