"""Geometry: conversions round-trip, projection inverts back-projection, the warp is exact on a
plane whose motion is known, gradients are right (gradcheck in float64, default tolerances)."""
import math

import pytest
import torch
import torch.nn.functional as F

from sfm_ros.core.geometry import (
    axis_angle_to_matrix, backproject, compose_poses, crop_intrinsics, inverse_warp, invert_pose,
    mat_to_pose_vec, matrix_to_axis_angle, pose_vec_to_mat, project, relative_pose,
    resize_intrinsics, scale_intrinsics,
)


def _K(b=1, f=50.0, w=96, h=64):
    K = torch.tensor([[f, 0, w / 2 - 0.5], [0, f, h / 2 - 0.5], [0, 0, 1.0]])
    return K.expand(b, 3, 3).clone()


def _random_pose_vec(n, gen, rot=1.0, trans=2.0):
    r = rot * torch.randn(n, 3, generator=gen)
    r = r * (3.0 / r.norm(dim=1, keepdim=True)).clamp(max=1.0)  # angles below pi: a unique vector
    return torch.cat([trans * torch.randn(n, 3, generator=gen), r], 1)


def test_pose_vec_matrix_round_trip():
    g = torch.Generator().manual_seed(0)
    vec = _random_pose_vec(64, g, rot=0.8).double()
    T = pose_vec_to_mat(vec)
    R = T[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(64, dtype=R.dtype), atol=1e-12)
    assert torch.allclose(mat_to_pose_vec(T), vec, atol=1e-9)


def test_axis_angle_known_rotation_and_edge_cases():
    # 90 degrees about +z maps x to y (right-handed).
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)
    # zero and near-pi
    assert torch.allclose(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))
    for angle in (1e-7, 1e-3, math.pi - 1e-5, math.pi):
        r = torch.tensor([0.3, -0.5, 0.81], dtype=torch.float64)
        r = r / r.norm() * angle
        back = matrix_to_axis_angle(axis_angle_to_matrix(r))
        assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(r), atol=1e-8), angle


def test_inverse_and_composition():
    g = torch.Generator().manual_seed(1)
    T = pose_vec_to_mat(_random_pose_vec(16, g).double())
    eye = torch.eye(4, dtype=T.dtype).expand_as(T)
    assert torch.allclose(compose_poses(invert_pose(T), T), eye, atol=1e-12)
    assert torch.allclose(compose_poses(T, invert_pose(T)), eye, atol=1e-12)
    # relative pose of identical cameras is the identity; relative_pose chains correctly
    Tw_a, Tw_b = T[:8], T[8:]
    assert torch.allclose(relative_pose(Tw_a, Tw_a), eye[:8], atol=1e-12)
    assert torch.allclose(Tw_b @ relative_pose(Tw_a, Tw_b), Tw_a, atol=1e-12)


def test_intrinsics_resize_and_crop_follow_pixel_centres():
    K = _K(w=100, h=50)
    K2 = resize_intrinsics(K, (50, 100), (25, 50))
    # the image centre stays the centre: (W-1)/2 -> (W'-1)/2
    assert torch.allclose(K2[0, 0, 2], torch.tensor(24.5)) and torch.allclose(K2[0, 1, 2], torch.tensor(12.0))
    assert torch.allclose(K2[0, 0, 0], torch.tensor(25.0))
    # a 3-D point projects to the same place in the resized image as the resized pixel coordinate
    p = torch.tensor([[0.3], [-0.2], [2.0]])
    u = (K[0] @ p / p[2])[:2, 0]
    u2 = (K2[0] @ p / p[2])[:2, 0]
    assert torch.allclose(u2, (u + 0.5) * 0.5 - 0.5, atol=1e-5)
    K3 = crop_intrinsics(K, 10, 5)
    assert torch.allclose((K3[0] @ p / p[2])[:2, 0], u - torch.tensor([10.0, 5.0]), atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        resize_intrinsics(K, (0, 10), (5, 5))
    assert torch.allclose(scale_intrinsics(K, 1.0, 1.0), K)


def test_project_inverts_backproject():
    g = torch.Generator().manual_seed(2)
    depth = 1 + 10 * torch.rand(2, 1, 8, 12, generator=g)
    K = _K(2, w=12, h=8)
    pix, z = project(backproject(depth, K), K)
    v, u = torch.meshgrid(torch.arange(8.0), torch.arange(12.0), indexing="ij")
    assert torch.allclose(pix[..., 0], u.expand(2, 8, 12), atol=1e-4)
    assert torch.allclose(pix[..., 1], v.expand(2, 8, 12), atol=1e-4)
    assert torch.allclose(z, depth, atol=1e-5)


def _textured(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def test_inverse_warp_reproduces_a_translated_plane():
    """A fronto-parallel plane at Z seen by a camera moved by tx shifts by fx*tx/Z pixels."""
    h, w, f, Z, tx = 64, 96, 50.0, 5.0, 0.4
    tex = _textured(h, w + 40)
    shift = int(f * tx / Z)  # 4 px
    tgt, src = tex[..., 20:20 + w], tex[..., 20 + shift:20 + shift + w]
    T_src_tgt = torch.eye(4)[None].clone()
    T_src_tgt[0, 0, 3] = -tx  # the source camera sits at +tx in the target frame
    depth = torch.full((1, 1, h, w), Z)
    warped, valid = inverse_warp(src, depth, T_src_tgt, _K(f=f, w=w, h=h))
    err = ((warped - tgt).abs() * valid).sum() / valid.sum() / 3
    assert err < 1e-5
    # target pixel u samples the source at u - shift: exactly the left-most `shift` columns fall outside
    assert valid[0, 0, :, shift:].all() and not valid[0, 0, :, :shift].any()
    # the opposite direction is clearly wrong
    T_bad = T_src_tgt.clone()
    T_bad[0, 0, 3] = tx
    warped_bad, valid_bad = inverse_warp(src, depth, T_bad, _K(f=f, w=w, h=h))
    assert ((warped_bad - tgt).abs() * valid_bad).sum() / valid_bad.sum() / 3 > 100 * err + 0.02


def test_points_behind_the_camera_are_invalid():
    depth = torch.full((1, 1, 4, 6), 1.0)
    T = torch.eye(4)[None].clone()
    T[0, 2, 3] = -2.0  # every point ends up at z = -1 in the source
    _, valid = inverse_warp(torch.rand(1, 3, 4, 6), depth, T, _K(w=6, h=4, f=3.0))
    assert valid.sum() == 0


def test_shape_errors_name_the_input():
    with pytest.raises(ValueError, match="tgt_depth"):
        inverse_warp(torch.rand(1, 3, 4, 6), torch.ones(1, 1, 4, 5), torch.eye(4)[None], _K(w=6, h=4))
    with pytest.raises(ValueError, match="pose vector"):
        pose_vec_to_mat(torch.zeros(2, 7))


def test_gradcheck_pose_vec_to_mat():
    g = torch.Generator().manual_seed(3)
    vec = _random_pose_vec(3, g, rot=0.5).double().requires_grad_()
    assert torch.autograd.gradcheck(pose_vec_to_mat, (vec,))
    zero = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)  # the Taylor branch
    assert torch.autograd.gradcheck(pose_vec_to_mat, (zero,))


def test_gradcheck_inverse_warp_depth_and_pose():
    g = torch.Generator().manual_seed(4)
    src = torch.rand(1, 2, 5, 7, generator=g, dtype=torch.float64)
    K = _K(w=7, h=5, f=6.0).double()

    def fn(depth, vec):
        warped, _ = inverse_warp(src, depth, pose_vec_to_mat(vec), K)
        return warped

    # off-grid depths and a small motion keep sample points away from pixel centres (kinks)
    depth = (3.0 + 0.37 * torch.rand(1, 1, 5, 7, generator=g, dtype=torch.float64)).requires_grad_()
    vec = torch.tensor([[0.071, -0.043, 0.052, 0.011, -0.017, 0.009]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (depth, vec), eps=1e-7, atol=1e-5)


def test_inverse_warp_valid_pixels_never_read_the_padding():
    """A sample between the last pixel centre and the image edge mixes in grid_sample's zero
    padding: it must be invalid, or the loss gains a gradient that moves samples off the dark band.
    Constant image of ones, sub-pixel shifts both ways: every valid pixel reads exactly 1."""
    h, w = 12, 16
    src = torch.ones(1, 3, h, w)
    depth = torch.full((1, 1, h, w), 2.0)
    K = torch.tensor([[[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]])
    for shift_px in (0.3, -0.3, 0.45):
        T = torch.eye(4)[None].clone()
        T[0, 0, 3] = shift_px * 2.0 / 20.0  # x translation moving every sample by shift_px pixels
        T[0, 1, 3] = -shift_px * 2.0 / 20.0
        warped, valid = inverse_warp(src, depth, T, K)
        assert valid.sum() == (h - 1) * (w - 1)  # one column and one row fall off, nothing more
        read = warped[valid.expand_as(warped) > 0]
        assert torch.allclose(read, torch.ones_like(read), atol=1e-6), float(read.min())


def test_resize_pixels_moves_points_as_resize_intrinsics_moves_the_principal_point():
    """A pixel resized with the image lands where the resized intrinsics project its ray (pixel
    centres); bad sizes and shapes are refused."""
    import numpy as np

    from sfm_ros.data.camera import resize_intrinsics, resize_pixels

    K = np.array([[300.0, 0.0, 151.3], [0.0, 290.0, 97.8], [0.0, 0.0, 1.0]])
    uv = np.array([[0.0, 0.0], [151.3, 97.8], [299.0, 199.0], [12.25, 180.5]])
    K2 = resize_intrinsics(K, (200, 300), (77, 131))
    rays = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(K).T
    proj = rays @ K2.T
    assert np.allclose(resize_pixels(uv, (200, 300), (77, 131)), proj[:, :2] / proj[:, 2:], atol=1e-9)
    assert np.allclose(resize_pixels(resize_pixels(uv, (200, 300), (77, 131)), (77, 131), (200, 300)), uv)
    with pytest.raises(ValueError, match="positive"):
        resize_pixels(uv, (0, 300), (77, 131))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        resize_pixels(np.zeros((4, 3)), (200, 300), (77, 131))
