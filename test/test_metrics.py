"""Tests of sfm_ros.evaluation.metrics (depth metrics, evaluation protocol, ground-truth loaders).

Tolerances: exact identities (perfect prediction, hand-computed values) to 1e-12 absolute;
float32 paths (resize, png/npy loaders, lidar projection) to 1e-6.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sfm_ros.evaluation import metrics as M


def _gt(h=30, w=40, lo=1.0, hi=20.0, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, size=(h, w))


# --------------------------------------------------------------------------------------------
# depth_errors / evaluate_depth
# --------------------------------------------------------------------------------------------
def test_perfect_prediction():
    gt = _gt()
    r = M.evaluate_depth(gt, gt.copy(), median_scaling=False)
    assert r["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert r["sq_rel"] == pytest.approx(0.0, abs=1e-12)
    assert r["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert r["rmse_log"] == pytest.approx(0.0, abs=1e-12)
    assert r["a1"] == 1.0 and r["a2"] == 1.0 and r["a3"] == 1.0
    assert r["scale"] == 1.0
    assert r["valid_pixels"] == gt.size


def test_constant_scale_error_removed_by_median_scaling_only():
    gt = _gt()  # in [1, 20], so 3 * gt stays below max_depth = 80 (no clamping)
    pred = 3.0 * gt
    r = M.evaluate_depth(gt, pred, median_scaling=True)
    assert r["scale"] == pytest.approx(1.0 / 3.0, rel=1e-12)
    assert r["abs_rel"] < 1e-12 and r["rmse"] < 1e-10 and r["a1"] == 1.0
    r0 = M.evaluate_depth(gt, pred, median_scaling=False)
    assert r0["scale"] == 1.0
    assert r0["abs_rel"] == pytest.approx(2.0, abs=1e-12)  # |g - 3g| / g
    assert r0["sq_rel"] == pytest.approx(4.0 * gt.mean(), rel=1e-12)  # (2g)^2 / g
    assert r0["rmse_log"] == pytest.approx(math.log(3.0), abs=1e-12)
    assert r0["a1"] == 0.0 and r0["a2"] == 0.0 and r0["a3"] == 0.0  # ratio 3 > 1.25^3 = 1.953


def test_hand_computed_metrics():
    gt = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.0, 1.0, 5.0, 6.0])
    # ratios max(g/p, p/g) = [1, 2, 1.25 (exactly: strict < excludes it), 1.667]
    r = M.depth_errors(gt, pred)
    assert r["abs_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4 + 4 / 10) / 4, abs=1e-12)  # 0.2875
    assert r["sq_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4 + 16 / 10) / 4, abs=1e-12)  # 0.5875
    assert r["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1 + 16) / 4), abs=1e-12)
    logs = [0.0, math.log(2.0) ** 2, math.log(4 / 5) ** 2, math.log(10 / 6) ** 2]
    assert r["rmse_log"] == pytest.approx(math.sqrt(sum(logs) / 4), abs=1e-12)
    assert r["a1"] == pytest.approx(1 / 4, abs=1e-12)  # only ratio 1
    assert r["a2"] == pytest.approx(2 / 4, abs=1e-12)  # 1, 1.25 < 1.5625
    assert r["a3"] == pytest.approx(3 / 4, abs=1e-12)  # + 1.667 < 1.953
    assert list(r) == list(M.DEPTH_METRIC_KEYS)


def test_hand_computed_median_scaling_and_clamp():
    gt = np.full((4, 4), 50.0)
    pred = np.full((4, 4), 1000.0)
    # no scaling: pred clamped to max_depth 80 -> |50 - 80| / 50 = 0.6
    r = M.evaluate_depth(gt, pred, median_scaling=False, max_depth=80.0)
    assert r["abs_rel"] == pytest.approx(0.6, abs=1e-12)
    assert r["rmse"] == pytest.approx(30.0, abs=1e-12)
    # odd number of valid pixels: scale = median(gt) / median(pred) on the valid pixels only
    gt2 = np.array([[2.0, 4.0, 6.0, 0.0]])  # the 0 is invalid
    pred2 = np.array([[1.0, 1.0, 3.0, 100.0]])
    r2 = M.evaluate_depth(gt2, pred2)
    assert r2["valid_pixels"] == 3
    assert r2["scale"] == pytest.approx(4.0 / 1.0, abs=1e-12)
    # scaled pred = [4, 4, 12] vs gt [2, 4, 6]: abs_rel = (1 + 0 + 1) / 3
    assert r2["abs_rel"] == pytest.approx(2.0 / 3.0, abs=1e-12)


def test_pred_resized_to_gt_bilinear():
    gt = np.full((20, 40), 10.0)
    pred = np.full((10, 20), 5.0, dtype=np.float32)
    r = M.evaluate_depth(gt, pred)
    assert r["scale"] == pytest.approx(2.0, abs=1e-6)
    assert r["abs_rel"] < 1e-6 and r["valid_pixels"] == 800
    # a horizontal ramp resized 2x keeps its mean (bilinear, pixel-centre aligned)
    ramp = np.tile(np.arange(1, 21, dtype=np.float32), (10, 1))
    expect = cv2.resize(ramp, (40, 20), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    r = M.evaluate_depth(expect, ramp, median_scaling=False)
    assert r["abs_rel"] < 1e-7


def test_invalid_gt_masked():
    gt = _gt(10, 10)
    gt[0, :] = 0.0  # <= min_depth
    gt[1, :] = np.nan
    gt[2, :] = 120.0  # > max_depth
    gt[3, :] = 7.0  # == invalid_value
    gt[4, 0] = 80.0  # == max_depth: valid
    pred = gt.copy()
    pred[:4] = 1.0  # wrong values only where gt is invalid
    r = M.evaluate_depth(gt, pred, median_scaling=False, invalid_value=7.0)
    assert r["valid_pixels"] == 60
    assert r["abs_rel"] < 1e-12


def test_garg_crop_masks_the_right_region():
    H, W = 100, 200
    # int(0.40810811*100)=40, int(0.99189189*100)=99, int(0.03594771*200)=7, int(0.96405229*200)=192
    m = M.crop_mask(H, W, "garg")
    expect = np.zeros((H, W), bool)
    expect[40:99, 7:192] = True
    np.testing.assert_array_equal(m, expect)
    e = M.crop_mask(H, W, "eigen")  # int(33.24)=33, int(91.35)=91, int(7.19)=7, int(192.81)=192
    expect_e = np.zeros((H, W), bool)
    expect_e[33:91, 7:192] = True
    np.testing.assert_array_equal(e, expect_e)

    gt = _gt(H, W)
    pred = gt.copy()
    pred[~expect] = 1e3  # garbage outside the crop only
    r = M.evaluate_depth(gt, pred, crop="garg", median_scaling=False)
    assert r["valid_pixels"] == 59 * 185
    assert r["abs_rel"] < 1e-12
    r_nocrop = M.evaluate_depth(gt, pred, crop=None, median_scaling=False)
    assert r_nocrop["abs_rel"] > 0.1
    pred[50, 100] = 2 * gt[50, 100]  # inside the crop: must count
    r = M.evaluate_depth(gt, pred, crop="garg", median_scaling=False)
    assert r["abs_rel"] == pytest.approx(1.0 / (59 * 185), abs=1e-12)
    with pytest.raises(ValueError):
        M.crop_mask(H, W, "bogus")


def test_value_errors():
    with pytest.raises(ValueError):
        M.depth_errors(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        M.depth_errors(np.ones(0), np.ones(0))
    with pytest.raises(ValueError):
        M.depth_errors(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="no valid"):
        M.evaluate_depth(np.zeros((5, 5)), np.ones((5, 5)))
    with pytest.raises(ValueError):
        M.evaluate_depth(np.ones((2, 5, 5)), np.ones((5, 5)))
    with pytest.raises(ValueError):
        M.evaluate_depth(np.ones((5, 5)), np.ones((1, 5, 5)))
    bad = np.ones((5, 5))
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        M.evaluate_depth(np.ones((5, 5)), bad)


def test_aggregate_means():
    a = {"abs_rel": 0.1, "a1": 0.8, "scale": 2.0, "valid_pixels": 10}
    b = {"abs_rel": 0.3, "a1": 0.6, "scale": 4.0, "valid_pixels": 30}
    r = M.aggregate([a, b])
    assert r["abs_rel"] == pytest.approx(0.2) and r["a1"] == pytest.approx(0.7)
    assert r["scale"] == pytest.approx(3.0) and r["valid_pixels"] == pytest.approx(20.0)
    assert r["count"] == 2
    with pytest.raises(ValueError):
        M.aggregate([])


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------
def test_load_depth_png_invalid_handling(tmp_path):
    raw = np.array([[0, 1000, 65535], [2500, 1, 500]], dtype=np.uint16)
    p = tmp_path / "d.png"
    assert cv2.imwrite(str(p), raw)
    d = M.load_depth_png(p)
    assert d.dtype == np.float32 and d.shape == (2, 3)
    assert np.isnan(d[0, 0]) and np.isnan(d[0, 2])  # 0 and 65535 -> NaN by default
    np.testing.assert_allclose(d[[0, 1, 1, 1], [1, 0, 1, 2]], [1.0, 2.5, 0.001, 0.5], rtol=1e-6)
    d0 = M.load_depth_png(p, fill_value=0.0)
    assert d0[0, 0] == 0.0 and d0[0, 2] == 0.0
    dn = M.load_depth_png(p, invalid=None, scale=5000.0)  # TUM scale, 65535 kept
    assert dn[0, 2] == pytest.approx(65535 / 5000.0, rel=1e-6)
    assert np.isnan(dn[0, 0])
    # NaNs are masked by evaluate_depth
    r = M.evaluate_depth(d, np.nan_to_num(d, nan=1.0), median_scaling=False)
    assert r["valid_pixels"] == 4 and r["abs_rel"] < 1e-7
    color = tmp_path / "c.png"
    cv2.imwrite(str(color), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        M.load_depth_png(color)
    with pytest.raises(FileNotFoundError):
        M.load_depth_png(tmp_path / "missing.png")


def test_load_depth_npy(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    np.save(tmp_path / "a.npy", a)
    d = M.load_depth_npy(tmp_path / "a.npy")
    assert d.shape == (3, 4) and d.dtype == np.float32
    np.testing.assert_array_equal(d, a[0])
    np.save(tmp_path / "b.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        M.load_depth_npy(tmp_path / "b.npy")


def test_project_lidar_known_points():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    # KITTI-like LiDAR (x forward, y left, z up) -> camera optical (x right, y down, z forward),
    # lidar origin 0.5 m behind the camera.
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T[:3, 3] = [0, 0, 0.5]
    pts = np.array(
        [
            [10.0, 0.0, 0.0],  # cam (0, 0, 10.5) -> pixel (50, 40), depth 10.5
            [20.0, 0.0, 0.0],  # same pixel, farther: must not win
            [-5.0, 0.0, 0.0],  # behind the camera (z = -4.5): dropped, would also hit (50, 40)
            [5.0, -1.0, 0.0],  # cam (1, 0, 5.5) -> u = 68.18 -> 68, v = 40
            [2.0, 0.0, 0.3],  # cam (0, -0.3, 2.5) -> u = 50, v = 28
            [1.0, -5.0, 0.0],  # cam (5, 0, 1.5) -> u = 383: outside
        ]
    )
    d = M.project_lidar(pts, T, K, 80, 100)
    assert d.shape == (80, 100) and d.dtype == np.float32
    assert d[40, 50] == pytest.approx(10.5, abs=1e-6)
    assert d[40, 68] == pytest.approx(5.5, abs=1e-6)
    assert d[28, 50] == pytest.approx(2.5, abs=1e-6)
    assert np.count_nonzero(d) == 3
    # nearest wins regardless of input order
    d2 = M.project_lidar(pts[::-1], T, K, 80, 100)
    np.testing.assert_array_equal(d, d2)
    with pytest.raises(ValueError):
        M.project_lidar(pts[:, :2], T, K, 80, 100)
