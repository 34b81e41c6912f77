"""sfm_ros.core.se3: the numpy rotation/pose conversions (round trips, edge cases, the degenerate-input
policy, conventions) and the numpy intrinsics scaling rule (sfm_ros.data.camera.resize_intrinsics)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch

from sfm_ros.core import geometry
from sfm_ros.core import se3
from sfm_ros.data.camera import CameraModel, resize_intrinsics
from sfm_ros.runtime.odometry import OPTICAL_RPY

RNG = np.random.default_rng(0)


def _random_rotvecs(n: int) -> np.ndarray:
    """Axes uniform on the sphere, angles uniform in [0, pi)."""
    axis = RNG.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * RNG.uniform(0, math.pi, (n, 1))


def _expm(xi: np.ndarray) -> np.ndarray:
    """exp of a twist [v, w] via the 4x4 matrix exponential."""
    A = np.zeros((4, 4))
    A[:3, :3] = se3.skew(xi[3:])
    A[:3, 3] = xi[:3]
    return scipy.linalg.expm(A)


# --------------------------------------------------------------------------------------------
# skew, rot_x/y/z
# --------------------------------------------------------------------------------------------
def test_skew_is_the_cross_product():
    a, b = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    np.testing.assert_allclose(se3.skew(a) @ b[..., None], np.cross(a, b)[..., None], atol=1e-14)
    np.testing.assert_allclose(se3.skew(a), -np.swapaxes(se3.skew(a), -1, -2))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        se3.skew([1.0, 2.0])


def test_axis_rotations_are_right_handed_and_vectorised():
    q = math.pi / 2
    np.testing.assert_allclose(se3.rot_x(q) @ [0, 1, 0], [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(se3.rot_y(q) @ [0, 0, 1], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(se3.rot_z(q) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    a = RNG.uniform(-3, 3, (4, 2))
    for f, axis in ((se3.rot_x, 0), (se3.rot_y, 1), (se3.rot_z, 2)):
        R = f(a)
        assert R.shape == (4, 2, 3, 3)
        e = np.zeros(3)
        e[axis] = 1.0
        np.testing.assert_allclose(R, se3.axis_angle_to_matrix(a[..., None] * e), atol=1e-14)
    with pytest.raises(ValueError, match="rot_y: angles must be finite"):
        se3.rot_y([0.0, np.nan])


# --------------------------------------------------------------------------------------------
# axis-angle
# --------------------------------------------------------------------------------------------
def test_axis_angle_round_trip_random_and_edges():
    r = _random_rotvecs(200)
    R = se3.axis_angle_to_matrix(r)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-14)
    np.testing.assert_allclose(se3.matrix_to_axis_angle(R), r, atol=1e-10)
    # angle 0, tiny, and pi (the axis up to sign: +-axis*pi is the same rotation)
    np.testing.assert_array_equal(se3.axis_angle_to_matrix(np.zeros(3)), np.eye(3))
    np.testing.assert_array_equal(se3.matrix_to_axis_angle(np.eye(3)), np.zeros(3))
    np.testing.assert_allclose(se3.matrix_to_axis_angle(se3.axis_angle_to_matrix([0, 1e-10, 0])), [0, 1e-10, 0],
                               atol=1e-20)
    for axis in ([1, 0, 0], [0, 0.6, 0.8], [-0.48, 0.6, 0.64]):
        for angle in (math.pi, math.pi - 1e-9):
            R = se3.axis_angle_to_matrix(np.array(axis) * angle)
            back = se3.matrix_to_axis_angle(R)
            assert np.linalg.norm(back) == pytest.approx(angle, abs=1e-9)
            np.testing.assert_allclose(se3.axis_angle_to_matrix(back), R, atol=1e-12)
            np.testing.assert_allclose(abs(back @ axis), angle, atol=1e-9)
    # batch shapes are kept
    assert se3.matrix_to_axis_angle(se3.axis_angle_to_matrix(RNG.normal(size=(2, 3, 3)))).shape == (2, 3, 3)


def test_axis_angle_agrees_with_cv2_rodrigues_and_torch():
    for r in _random_rotvecs(20):
        R_cv, _ = cv2.Rodrigues(r)
        np.testing.assert_allclose(se3.axis_angle_to_matrix(r), R_cv, atol=1e-14)
        r_cv, _ = cv2.Rodrigues(R_cv)
        np.testing.assert_allclose(se3.matrix_to_axis_angle(R_cv), r_cv.ravel(), atol=1e-9)
    r = _random_rotvecs(50)
    R_t = geometry.axis_angle_to_matrix(torch.from_numpy(r)).numpy()
    np.testing.assert_allclose(se3.axis_angle_to_matrix(r), R_t, atol=1e-12)


# --------------------------------------------------------------------------------------------
# quaternions (x, y, z, w)
# --------------------------------------------------------------------------------------------
def test_quaternion_round_trip_and_sign():
    R = se3.axis_angle_to_matrix(RNG.normal(size=(100, 3)))
    q = se3.matrix_to_quat(R)
    assert q.shape == (100, 4) and np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(se3.quat_to_matrix(q), R, atol=1e-14)
    # w < 0 is the same rotation; matrix_to_quat gives it back with w >= 0
    np.testing.assert_allclose(se3.quat_to_matrix(-q), R, atol=1e-14)
    np.testing.assert_allclose(se3.matrix_to_quat(se3.quat_to_matrix(-q)), q, atol=1e-14)
    # ROS order: 90 deg about z is (0, 0, sin 45, cos 45); the identity is (0, 0, 0, 1)
    np.testing.assert_allclose(se3.matrix_to_quat(se3.rot_z(math.pi / 2)), [0, 0, math.sqrt(0.5), math.sqrt(0.5)],
                               atol=1e-15)
    np.testing.assert_array_equal(se3.matrix_to_quat(np.eye(3)), [0, 0, 0, 1])
    # angle pi: w = 0, the axis comes back up to sign
    qp = se3.matrix_to_quat(se3.axis_angle_to_matrix([0, 0.6 * math.pi, 0.8 * math.pi]))
    np.testing.assert_allclose(abs(qp), [0, 0.6, 0.8, 0], atol=1e-15)
    # axis-angle -> quaternion -> axis-angle
    r = _random_rotvecs(50)
    np.testing.assert_allclose(se3.matrix_to_axis_angle(se3.quat_to_matrix(se3.matrix_to_quat(
        se3.axis_angle_to_matrix(r)))), r, atol=1e-10)


def test_quaternion_policy_normalises_and_rejects_degenerate():
    np.testing.assert_allclose(se3.quat_to_matrix([0, 0, 0, 2.0]), np.eye(3))
    q = np.array([0.1, -0.2, 0.3, 0.9])
    np.testing.assert_allclose(se3.quat_to_matrix(5 * q), se3.quat_to_matrix(q / np.linalg.norm(q)), atol=1e-15)
    with pytest.raises(ValueError, match="non-zero norm, got \\[0.0, 0.0, 0.0, 0.0\\]"):
        se3.quat_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="non-zero norm.*at index \\(1,\\)"):
        se3.quat_to_matrix([[0, 0, 0, 1.0], [0, 0, 0, 0]])
    for bad in ([np.nan, 0, 0, 1], [0, np.inf, 0, 1]):
        with pytest.raises(ValueError, match="must be finite"):
            se3.quat_to_matrix(bad)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        se3.quat_to_matrix([0, 0, 1])


def test_rotation_matrix_policy():
    # what the package produces passes: float32 rotations, KITTI's 7-digit ground truth
    R32 = se3.axis_angle_to_matrix([0.1, 0.2, 0.3]).astype(np.float32)
    se3.matrix_to_quat(R32)
    se3.matrix_to_quat(np.round(se3.axis_angle_to_matrix([0.1, 0.2, 0.3]), 7))
    bad = {
        "scaled": 1.01 * np.eye(3),
        "sheared": np.array([[1.0, 0.01, 0], [0, 1, 0], [0, 0, 1]]),
        "mirrored": np.diag([1.0, 1.0, -1.0]),
        "zero": np.zeros((3, 3)),
    }
    for name, M in bad.items():
        for f in (se3.matrix_to_quat, se3.matrix_to_axis_angle, se3.matrix_to_rpy):
            with pytest.raises(ValueError, match="must be a rotation matrix"):
                f(M)
    with pytest.raises(ValueError, match="at index \\(1,\\)"):
        se3.matrix_to_quat(np.stack([np.eye(3), 2 * np.eye(3)]))
    with pytest.raises(ValueError, match="must be finite"):
        se3.matrix_to_quat(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        se3.matrix_to_quat(np.eye(4))
    with pytest.raises(ValueError, match="must be finite"):
        se3.axis_angle_to_matrix([0.0, np.nan, 0.0])
    assert se3.check_rotation(np.eye(3), "R_test").dtype == np.float64
    with pytest.raises(ValueError, match="^R_test must be a rotation"):
        se3.check_rotation(2 * np.eye(3), "R_test")


# --------------------------------------------------------------------------------------------
# roll, pitch, yaw (URDF / tf2)
# --------------------------------------------------------------------------------------------
def test_rpy_convention_and_round_trip():
    for rpy in [(0.1, -0.2, 0.3), (-1.0, 0.5, 2.5), OPTICAL_RPY]:
        R = se3.rpy_to_matrix(*rpy)
        np.testing.assert_allclose(R, se3.rot_z(rpy[2]) @ se3.rot_y(rpy[1]) @ se3.rot_x(rpy[0]), atol=1e-15)
        np.testing.assert_allclose(se3.matrix_to_rpy(R), rpy, atol=1e-12)
        q = se3.rpy_to_quat(*rpy)
        assert np.isclose(np.linalg.norm(q), 1.0) and q[3] >= 0
        np.testing.assert_allclose(se3.quat_to_matrix(q), R, atol=1e-15)
        np.testing.assert_allclose(se3.matrix_to_quat(R), q, atol=1e-15)
    # tf2: yaw pi/2 is (0, 0, sin 45, cos 45)
    np.testing.assert_allclose(se3.rpy_to_quat(0, 0, math.pi / 2), [0, 0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-15)
    # random batch (pitch inside (-pi/2, pi/2)) through every representation
    rpy = np.stack([RNG.uniform(-3, 3, 30), RNG.uniform(-1.5, 1.5, 30), RNG.uniform(-3, 3, 30)], -1)
    R = se3.rpy_to_matrix(rpy[:, 0], rpy[:, 1], rpy[:, 2])
    np.testing.assert_allclose(se3.matrix_to_rpy(se3.axis_angle_to_matrix(se3.matrix_to_axis_angle(
        se3.quat_to_matrix(se3.matrix_to_quat(R))))), rpy, atol=1e-9)


def test_rpy_singularity_puts_the_turn_in_yaw():
    R = se3.rpy_to_matrix(0.3, math.pi / 2, 0.5)  # roll and yaw are the same axis here
    roll, pitch, yaw = se3.matrix_to_rpy(R)
    assert roll == 0.0 and pitch == pytest.approx(math.pi / 2)
    np.testing.assert_allclose(se3.rpy_to_matrix(roll, pitch, yaw), R, atol=1e-12)
    R = se3.rpy_to_matrix(0.3, -math.pi / 2, 0.5)
    np.testing.assert_allclose(se3.rpy_to_matrix(*se3.matrix_to_rpy(R)), R, atol=1e-12)


# --------------------------------------------------------------------------------------------
# poses
# --------------------------------------------------------------------------------------------
def test_make_invert_compose_identities():
    T = se3.make_pose(se3.axis_angle_to_matrix(RNG.normal(size=(10, 3))), RNG.normal(size=(10, 3)))
    eye = np.broadcast_to(np.eye(4), T.shape)
    np.testing.assert_allclose(se3.compose_poses(T, se3.invert_pose(T)), eye, atol=1e-14)
    np.testing.assert_allclose(se3.compose_poses(se3.invert_pose(T), T), eye, atol=1e-14)
    np.testing.assert_allclose(se3.invert_pose(se3.invert_pose(T)), T, atol=1e-14)
    np.testing.assert_allclose(se3.invert_pose(T), np.linalg.inv(T), atol=1e-12)
    A, B, C = T[:3], T[3:6], T[6:9]
    np.testing.assert_allclose(se3.compose_poses(se3.compose_poses(A, B), C),
                               se3.compose_poses(A, se3.compose_poses(B, C)), atol=1e-12)
    np.testing.assert_allclose(se3.invert_pose(se3.compose_poses(A, B)),
                               se3.compose_poses(se3.invert_pose(B), se3.invert_pose(A)), atol=1e-12)
    # defaults, a column translation (OpenCV's t), broadcasting one rotation over translations
    np.testing.assert_array_equal(se3.make_pose(), np.eye(4))
    np.testing.assert_array_equal(se3.make_pose(t=np.array([[1.0], [2.0], [3.0]]))[:3, 3], [1, 2, 3])
    assert se3.make_pose(np.eye(3), np.zeros((5, 3))).shape == (5, 4, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        se3.invert_pose(np.eye(3))
    with pytest.raises(ValueError, match="T_b_c"):
        se3.compose_poses(np.eye(4), np.eye(3))


def test_pose_vector_convention_and_round_trip():
    T = se3.pose_vec_to_matrix([1.0, 2.0, 3.0, 0.0, 0.0, math.pi / 2])
    p = T @ np.array([1.0, 0.0, 0.0, 1.0])  # p' = R p + t: rotate x -> y about z, then translate
    np.testing.assert_allclose(p[:3], [1.0, 3.0, 3.0], atol=1e-12)
    v = np.concatenate([RNG.normal(size=(50, 3)), _random_rotvecs(50)], axis=1)
    np.testing.assert_allclose(se3.matrix_to_pose_vec(se3.pose_vec_to_matrix(v)), v, atol=1e-10)
    np.testing.assert_allclose(se3.matrix_to_pose_vec(se3.pose_vec_to_matrix(v)[:, :3]), v, atol=1e-10)  # (3, 4)
    # the same as the networks' torch convention
    Tt = geometry.pose_vec_to_mat(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(se3.pose_vec_to_matrix(v), Tt, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        se3.pose_vec_to_matrix([0, 0, 0])


def test_se3_log_inverts_exp():
    xi = np.array([0.3, -0.1, 0.7, 0.2, -0.4, 0.9])
    np.testing.assert_allclose(se3.se3_log(_expm(xi)), xi, atol=1e-12)
    np.testing.assert_allclose(se3.se3_log(se3.make_pose(t=[1, 2, 3])), [1, 2, 3, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(se3.matrix_to_axis_angle(se3.rpy_to_matrix(0, 0, 3.1)), [0, 0, 3.1], atol=1e-12)
    xis = np.concatenate([RNG.normal(size=(8, 3)), _random_rotvecs(8) * 0.9], axis=1)
    Ts = np.stack([_expm(x) for x in xis])
    np.testing.assert_allclose(se3.se3_log(Ts), xis, atol=1e-9)


# --------------------------------------------------------------------------------------------
# intrinsics scaling: u -> (u + 0.5) s - 0.5 (README "Conventions")
# --------------------------------------------------------------------------------------------
def test_resize_intrinsics_follows_pixel_centres():
    K = np.array([[500.0, 0.5, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])
    K2 = resize_intrinsics(K, (480, 640), (128, 416))
    sx, sy = 416 / 640, 128 / 480
    X = np.array([0.3, -0.2, 2.0])
    u, u2 = K @ X / X[2], K2 @ X / X[2]
    np.testing.assert_allclose(u2[:2], (u[:2] + 0.5) * [sx, sy] - 0.5, atol=1e-12)
    np.testing.assert_allclose(K2[0, 1], 0.5 * sx)
    np.testing.assert_array_equal(K[0, 2], 320.0)  # the input is not changed
    # the image centre stays the centre: (W - 1) / 2 -> (W' - 1) / 2
    Kc = np.array([[100.0, 0, 49.5], [0, 100.0, 24.5], [0, 0, 1]])
    np.testing.assert_allclose(resize_intrinsics(Kc, (50, 100), (25, 50))[:2, 2], [24.5, 12.0])
    # batches, the torch twin, CameraModel.scaled
    Kb = np.stack([K, Kc])
    np.testing.assert_allclose(resize_intrinsics(Kb, (50, 100), (25, 50))[1], resize_intrinsics(Kc, (50, 100), (25, 50)))
    Kt = geometry.resize_intrinsics(torch.from_numpy(K), (480, 640), (128, 416)).numpy()
    np.testing.assert_allclose(K2, Kt, atol=1e-12)
    np.testing.assert_allclose(CameraModel(640, 480, K).scaled(416, 128).K, K2, atol=0)
    with pytest.raises(ValueError, match="positive"):
        resize_intrinsics(K, (0, 640), (128, 416))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        resize_intrinsics(np.eye(4), (480, 640), (128, 416))
