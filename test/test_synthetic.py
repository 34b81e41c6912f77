"""Tests of the procedural renderer sfm_ros.data.synthetic (pure numpy + cv2, no torch, no ROS)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sfm_ros.data import synthetic as S

H, W = 128, 416
N = 8


@pytest.fixture(scope="module")
def seq() -> S.SyntheticSequence:
    return S.render_sequence(num_frames=N, height=H, width=W, seed=0, t0=5.0)


@pytest.fixture(scope="module")
def seq1() -> S.SyntheticSequence:
    return S.render_sequence(num_frames=N, height=H, width=W, seed=1)


def _yaw(R: np.ndarray) -> float:
    """Heading of the camera's optical axis in the world x-z plane (world y is down)."""
    return float(np.arctan2(R[0, 2], R[2, 2]))


def _backproject_world(depth: np.ndarray, K: np.ndarray, T_w_c: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    p_c = rays * depth[..., None]
    return p_c @ T_w_c[:3, :3].T + T_w_c[:3, 3]


def _warp_errors(seq: S.SyntheticSequence, t: int, s: int) -> tuple[float, float, float]:
    """Inverse-warp source frame s into target t with the true depth and pose (numpy + cv2).

    Returns (mean abs error with the true pose, with the identity pose, valid fraction), both
    errors in grey levels (0-255, mean over RGB) over the same valid pixels: target depth finite,
    projection inside the source image, and not occluded (the projected depth matches the source
    depth map bilinearly sampled there within 1 %, which also drops pixels next to silhouettes).
    """
    K = seq.K
    h, w = seq.depths.shape[1:]
    d = seq.depths[t].astype(np.float64)
    fin = np.isfinite(d)
    T_src_tgt = np.linalg.inv(seq.poses[s]) @ seq.poses[t]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    p_t = rays * np.where(fin, d, 0.0)[..., None]
    p_s = p_t @ T_src_tgt[:3, :3].T + T_src_tgt[:3, 3]
    z = p_s[..., 2]
    zs = np.where(z > 1e-3, z, 1.0)
    us = K[0, 0] * p_s[..., 0] / zs + K[0, 1] * p_s[..., 1] / zs + K[0, 2]
    vs = K[1, 1] * p_s[..., 1] / zs + K[1, 2]
    mx, my = us.astype(np.float32), vs.astype(np.float32)
    warped = cv2.remap(seq.images[s].astype(np.float32), mx, my, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT)
    src_depth = np.where(np.isfinite(seq.depths[s]), seq.depths[s], 1e6).astype(np.float32)
    src_depth_at = cv2.remap(src_depth, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = (fin & (z > 1e-3) & (us >= 0) & (us <= w - 1) & (vs >= 0) & (vs <= h - 1)
             & (np.abs(src_depth_at - z) < 0.01 * z))
    tgt = seq.images[t].astype(np.float32)
    err = np.abs(warped - tgt).mean(-1)[valid].mean()
    err_id = np.abs(seq.images[s].astype(np.float32) - tgt).mean(-1)[valid].mean()
    return float(err), float(err_id), float(valid.mean())


def test_shapes_dtypes_and_timestamps(seq):
    assert len(seq) == N
    assert seq.images.shape == (N, H, W, 3) and seq.images.dtype == np.uint8
    assert seq.depths.shape == (N, H, W) and seq.depths.dtype == np.float32
    assert seq.poses.shape == (N, 4, 4) and seq.poses.dtype == np.float64
    assert seq.K.shape == (3, 3) and seq.K.dtype == np.float64
    np.testing.assert_allclose(seq.K, S.default_intrinsics(H, W))
    assert seq.K[0, 0] == pytest.approx(0.58 * W) and seq.K[0, 2] == pytest.approx((W - 1) / 2)
    assert seq.timestamps.shape == (N,) and seq.timestamps.dtype == np.float64
    np.testing.assert_allclose(seq.timestamps, 5.0 + np.arange(N) / 10.0)
    # First pose is exactly the identity; all are rigid transforms.
    np.testing.assert_array_equal(seq.poses[0], np.eye(4))
    for T in seq.poses:
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
        np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_render_frame_matches_sequence(seq):
    img, depth = S.render_frame(seq.scene, seq.poses[3], seq.K, H, W)
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_array_equal(img, seq.images[3])
    np.testing.assert_array_equal(depth, seq.depths[3])


def test_determinism_and_seed_dependence(seq, seq1):
    again = S.render_sequence(num_frames=2, height=H, width=W, seed=0)
    np.testing.assert_array_equal(again.images, seq.images[:2])
    np.testing.assert_array_equal(again.depths, seq.depths[:2])
    np.testing.assert_array_equal(again.poses, seq.poses[:2])
    # Another seed: another street (layout, textures) and another trajectory.
    assert np.abs(seq1.images.astype(int) - seq.images.astype(int)).mean() > 10
    assert not np.allclose(seq1.poses[-1], seq.poses[-1])
    assert seq.scene.num_boxes != seq1.scene.num_boxes or not np.allclose(
        seq.scene.box_center, seq1.scene.box_center)


def test_depth_is_exact_on_the_ground_and_boxes(seq):
    sc, K = seq.scene, seq.K
    assert sc.ground_y == pytest.approx(1.5)
    for i in (0, N - 1):
        hits = S.cast_rays(sc, seq.poses[i], K, H, W)
        np.testing.assert_array_equal(hits.depth.astype(np.float32), seq.depths[i])
        ground = hits.labels == S.GROUND
        # Not vacuous: most of the lower middle of the image is road.
        assert ground[H * 3 // 4:, W // 3: 2 * W // 3].mean() > 0.5
        p_w = _backproject_world(seq.depths[i].astype(np.float64), K, seq.poses[i])
        np.testing.assert_allclose(p_w[ground][:, 1], sc.ground_y, atol=1e-4)
        # Box pixels land on the surface of their box.
        boxes = hits.labels > 0
        assert boxes.mean() > 0.05
        bi = hits.labels[boxes] - 1
        pb = p_w[boxes]
        yaw = sc.box_yaw[bi]
        dx, dz = pb[:, 0] - sc.box_center[bi, 0], pb[:, 2] - sc.box_center[bi, 1]
        local = np.stack([np.cos(yaw) * dx - np.sin(yaw) * dz,
                          pb[:, 1] - (sc.ground_y - sc.box_half[bi, 1]),
                          np.sin(yaw) * dx + np.cos(yaw) * dz], -1)
        excess = np.abs(local) - sc.box_half[bi]
        assert np.all(excess.max(-1) > -1e-3) and np.all(excess.max(-1) < 1e-3)
    # Identity pose: closed form z = fy * h / (v - cy) on ground pixels.
    hits = S.cast_rays(sc, seq.poses[0], K, H, W)
    v = np.broadcast_to(np.arange(H, dtype=np.float64)[:, None], (H, W))
    ground = hits.labels == S.GROUND
    np.testing.assert_allclose(hits.depth[ground], K[1, 1] * 1.5 / (v[ground] - K[1, 2]), rtol=1e-9)


def test_sky_is_infinite_and_direction_only(seq):
    d = seq.depths
    sky = np.isinf(d)
    assert sky.any(), "the default street shows some sky"
    assert np.all(d[~sky] > 0) and np.all(np.isfinite(d[~sky]))
    assert not np.any(np.isnan(d))
    # Sky colour is a function of the world ray direction only: translate the camera (same
    # rotation) and the pixels that see sky in both views keep their colour.
    i = int(np.argmax(sky.sum(axis=(1, 2))))
    T2 = seq.poses[i].copy()
    T2[:3, 3] += seq.poses[i][:3, :3] @ [0.3, -0.2, 0.8]
    img2, d2 = S.render_frame(seq.scene, T2, seq.K, H, W)
    both = np.isinf(d2) & sky[i]
    assert both.sum() > 100
    np.testing.assert_array_equal(img2[both], seq.images[i][both])


def test_images_are_textured(seq):
    img = seq.images.astype(np.float32).mean(-1)
    solid = np.isfinite(seq.depths)
    # Surfaces are not flat colours: local contrast inside surfaces (away from silhouettes).
    gx = np.abs(np.diff(img, axis=2))
    inside = solid[:, :, 1:] & solid[:, :, :-1]
    assert gx[inside].mean() > 1.0
    assert img[solid].std() > 15


def assert_views_consistent(seq: S.SyntheticSequence, pairs, label: str = "") -> None:
    """Each (target, source) pair warps with the true depth and pose to within 2 grey levels and
    under 0.3x the identity pose's error, over more than 40 % of the target's pixels."""
    for t, src in pairs:
        err, err_id, frac = _warp_errors(seq, t, src)
        # Measured on flat streets: ~0.6-0.8 grey levels for adjacent frames, ~1.2-1.4 two frames
        # apart; identity pose ~4-10.
        assert frac > 0.4
        assert err < 2.0, f"{label}{t}->{src}: warp error {err:.2f} grey levels"
        assert err < 0.3 * err_id, f"{label}{t}->{src}: {err:.2f} vs identity {err_id:.2f}"


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_view_consistency(seed, seq, seq1):
    assert_views_consistent(seq if seed == 0 else seq1, ((3, 4), (3, 2), (5, 7)), f"seed {seed} ")


def test_camera_moves_forward_and_turns():
    seq = S.render_sequence(num_frames=30, height=32, width=104, seed=2, speed=8.0, yaw_rate=0.2)
    rel = np.linalg.inv(seq.poses[:-1]) @ seq.poses[1:]  # next camera in the current camera frame
    t = rel[:, :3, 3]
    step = np.linalg.norm(t, axis=1)
    assert np.all(t[:, 2] > 0.95 * step), "motion is mostly along +z of the camera"
    np.testing.assert_allclose(step, 0.8, rtol=0.05)
    # Camera height is constant (the ground stays at y = +1.5 below it).
    np.testing.assert_allclose(seq.poses[:, 1, 3], 0.0, atol=1e-12)
    yaws = np.unwrap([_yaw(T[:3, :3]) for T in seq.poses])
    total = yaws[-1] - yaws[0]
    expected = 0.2 * 2.9
    # Curvature varies within 0.5x-1.5x of its mean; the weave adds a few degrees.
    assert 0.5 * expected - 0.1 < total < 1.5 * expected + 0.1
    assert total > 0.15
    left = S.render_sequence(num_frames=30, height=32, width=104, seed=2, speed=8.0, yaw_rate=-0.2)
    assert _yaw(left.poses[-1][:3, :3]) < -0.15
    # Default trajectories turn too (seed-dependent yaw rate of 0.05-0.25 rad/s).
    for seed in range(3):
        poses = S.trajectory(S.make_scene(seed, length=60.0), np.arange(40) / 10.0)
        assert abs(_yaw(poses[-1][:3, :3])) > np.deg2rad(2.0)


def test_argument_validation(seq):
    with pytest.raises(ValueError, match="num_frames"):
        S.render_sequence(num_frames=0)
    with pytest.raises(ValueError, match="height"):
        S.render_sequence(num_frames=1, height=0)
    with pytest.raises(ValueError, match="width"):
        S.render_sequence(num_frames=1, width=-3)
    with pytest.raises(ValueError, match="fps"):
        S.render_sequence(num_frames=1, fps=0.0)
    with pytest.raises(ValueError, match="speed"):
        S.render_sequence(num_frames=1, speed=-1.0)
    with pytest.raises(ValueError, match="curvature"):
        S.render_sequence(num_frames=2, speed=1.0, yaw_rate=1.0)
    with pytest.raises(ValueError, match="K"):
        S.render_sequence(num_frames=1, K=np.eye(2))
    with pytest.raises(ValueError, match="seed"):
        S.make_scene(seed=1.5)
    with pytest.raises(ValueError, match="long"):
        S.render_sequence(num_frames=100, height=16, width=32, scene=S.make_scene(0, length=20.0))
    with pytest.raises(ValueError, match="T_w_c"):
        S.render_frame(seq.scene, np.eye(3), seq.K, H, W)
    inside = np.eye(4)
    inside[:3, 3] = seq.scene.box_center3(0)
    with pytest.raises(ValueError, match="inside box"):
        S.render_frame(seq.scene, inside, seq.K, 16, 32)
