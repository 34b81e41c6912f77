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


# ------------------------------------------------------------------------ the node's scale (issue 27)
def _bent(n: int, step: float, yaw: float) -> np.ndarray:
    """``n`` poses, every step ``step`` long along the camera's z, turning ``yaw`` rad about y a step."""
    return chain(np.asarray([make_pose(axis_angle_to_matrix([0.0, yaw, 0.0]), [0.0, 0.0, step])] * (n - 1)))


def test_node_scale_is_the_path_length_ratio_not_the_sim3_scale():
    """The node multiplies every step by ``scale``: the printed value times the predicted path is the
    true path. A prediction that bends where the truth goes straight has a Sim(3) scale well below that."""
    gt = _bent(21, 1.0, 0.0)              # 20 m straight
    pred = _bent(21, 0.25, 0.08)          # 5 network units, curving
    res = pose_eval.evaluate_pose_methods(gt, {"model": {"traj": pred}}, 5, 1, None)
    ns = pose_eval.node_scale(res, gt, pred, {"refine_pose": "epipolar", "pose_flip": True}, frames="0:21")
    assert ns["scale"] == pytest.approx(4.0, rel=1e-12)
    assert ns["scale"] * pose_eval.path_length(pred) == pytest.approx(pose_eval.path_length(gt), rel=1e-12)
    assert ns["gt_path"] == pytest.approx(20.0) and ns["pred_path"] == pytest.approx(5.0)
    assert ns["sim3_scale"] == pytest.approx(res["model"]["ate"]["scale"])
    assert ns["sim3_scale"] > 1.02 * 4.0  # the bent path's ends are closer together: Sim(3) scales it up
    assert ns["applies_to"] == "the node with refine_pose epipolar, pose_flip true"
    assert ns["node_defaults"] and ns["warning"] is None and "over frames 0:21" in ns["from"]
    assert pose_eval.node_defaults() == {"refine_pose": "epipolar", "pose_flip": True}
    # settings that are not the node's defaults: the scale is for them, and a warning says so
    other = pose_eval.node_scale(res, gt, pred, {"refine_pose": "none", "pose_flip": False})
    assert other["scale"] == ns["scale"] and not other["node_defaults"]
    assert other["applies_to"] == "the node with refine_pose none, pose_flip false"
    assert "--pose-flip --refine epipolar" in other["warning"]
    text = pose_eval.format_pose_report(
        {"count": 21, "stride": 1, "source": "s", "ground_truth": "g", "snippet": 5, "delta": 1, "methods": res,
         "notes": [], "written": [], "node_scale": other, "model": {}}, "sfm_eval")
    assert "scale for the node with refine_pose none, pose_flip false: 4 m per network unit" in text
    assert "sfm_node --ros-args -p scale:=4 " not in text and "-p scale:=4\n" in text
    assert "warning: this run is not the node's defaults" in text
    # no motion, no scale; no method, no scale
    assert pose_eval.node_scale(res, gt, np.tile(np.eye(4), (21, 1, 1)), {"refine_pose": "none", "pose_flip": False}) is None
    assert pose_eval.node_scale({}, gt, pred, {"refine_pose": "none", "pose_flip": False}) is None


def test_piece_ratios_over_consecutive_pieces_of_the_path():
    gt = _bent(31, 1.0, 0.0)  # 30 m: pieces of 10 m (the largest 1/2/5 x 10^k up to a third)
    rel = relative_poses(gt)
    rel[:10, :3, 3] /= 2.0
    rel[10:20, :3, 3] /= 3.0
    rel[20:, :3, 3] /= 4.0
    pc = pose_eval.piece_ratios(gt, chain(rel))
    assert pc["length"] == 10.0 and pc["frames"] == [[0, 10], [10, 20], [20, 30]]
    np.testing.assert_allclose(pc["ratios"], [2.0, 3.0, 4.0], rtol=1e-12)
    assert pose_eval.piece_ratios(gt[:2], gt[:2]) is None  # one piece: nothing to compare


def test_match_stamps_mutual_nearest_within_max_dt():
    gt = np.array([0.0, 0.1, 0.2, 0.3])
    g, p = pose_truth.match_stamps(gt, np.array([0.0, 0.2, 0.31]), 0.02)  # no prediction at 0.1 (window filling)
    np.testing.assert_array_equal(g, [0, 2, 3])
    np.testing.assert_array_equal(p, [0, 1, 2])
    dense = np.arange(101) * 0.01  # a 100 Hz ground truth, a 10 Hz prediction: each prediction once
    g, p = pose_truth.match_stamps(dense, np.array([0.1, 0.5]), 0.02)
    np.testing.assert_array_equal(g, [10, 50])
    np.testing.assert_array_equal(p, [0, 1])
    g, p = pose_truth.match_stamps(gt, gt + 100.0, 0.02)
    assert len(g) == len(p) == 0


def test_base_to_camera_undoes_the_nodes_base_link_odometry():
    """The node publishes ``T_odom_base = T_base_cam · C · inv(T_base_cam)``; turned back, its motion is C's."""
    from sfm_ros.runtime.odometry import camera_extrinsic, camera_to_base

    cam = _path(6)
    args = SimpleNamespace(camera_xyz=[0.3, -0.1, 1.2], camera_rpy=[-1.5, 0.05, -1.6])
    T_bc = camera_extrinsic(args.camera_xyz, args.camera_rpy)
    base = np.asarray([camera_to_base(c, T_bc) for c in cam])
    back = pose_truth.base_to_camera(base, args)
    np.testing.assert_allclose(relative_poses(back), relative_poses(cam), atol=1e-12)
    np.testing.assert_allclose(back, T_bc @ cam, atol=1e-12)


def test_stampless_ground_truth_gets_stamps_from_gt_start_and_fps(tmp_path):
    gt = _path(5)
    write_kitti(tmp_path / "gt.txt", gt)
    (tmp_path / "times.txt").write_text("0.0\n0.1\n0.2\n0.3\n0.4\n")
    base = dict(gt_tum=None, gt_kitti=str(tmp_path / "gt.txt"), kitti=None, sevenscenes=None, fps=10.0)
    _, stamps, _ = pose_truth.ground_truth_trajectory(SimpleNamespace(**base, gt_start=1.7e9))
    np.testing.assert_allclose(stamps, 1.7e9 + np.arange(5) / 10.0)
    _, stamps, _ = pose_truth.ground_truth_trajectory(
        SimpleNamespace(**base, gt_times=str(tmp_path / "times.txt"), gt_start=5.0))
    np.testing.assert_allclose(stamps, 5.0 + np.arange(5) / 10.0)
    (tmp_path / "times.txt").write_text("0.0\n0.1\n")
    with pytest.raises(ValueError, match="has 2 times for the 5 poses"):
        pose_truth.ground_truth_trajectory(SimpleNamespace(**base, gt_times=str(tmp_path / "times.txt")))


def test_ground_scales_without_any_plane_says_what_the_test_is():
    """No frame's lower image holds a plane (KITTI 00 111-146: parked cars both sides): one line
    naming the node's plane test and what to do."""
    from sfm_ros.runtime.ground_scale import GroundScale
    from sfm_ros.runtime.odometry import camera_extrinsic

    rng = np.random.default_rng(0)
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    depths = [rng.uniform(1.0, 30.0, (48, 64)) for _ in range(3)]  # no plane in noise
    with pytest.raises(ValueError, match=r"no ground plane was found in the lower image of any frame \(3 frames; "
                                         r"the node's test: a plane within 20 deg of level through at least 30 % "
                                         r"of the points of the lower 40 % of the image") as e:
        pose_eval.ground_scales(GroundScale(1.65, camera_extrinsic()), depths, K)
    assert "\n" not in str(e.value) and "leave out --camera-height" in str(e.value)
