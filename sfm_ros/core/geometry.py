"""Camera geometry for view synthesis: intrinsics, projection, pose conventions, inverse warp.

Convention
----------
* **Camera frame**: the optical frame of ROS (REP-103 ``*_optical_frame``): x right, y down,
  z forward. Depth is the z coordinate of a point in this frame (not the ray length), in the
  network's units (metres once a scale is applied).
* **Pixels**: integer pixel coordinates ``(u, v)`` address pixel *centres* (OpenCV convention):
  the top-left pixel's centre is ``(0, 0)`` and the image spans ``[-0.5, W - 0.5]``. Resizing an
  image by ``s`` maps ``u -> (u + 0.5) * s - 0.5``; sampling uses ``grid_sample`` with
  ``align_corners=False``, whose normalised coordinate ``-1`` is the left edge of pixel 0.
* **Poses**: ``T_a_b`` is a 4x4 homogeneous matrix that maps points from frame ``b`` to frame
  ``a`` (``p_a = T_a_b @ p_b``); it is also the pose of frame ``b`` expressed in frame ``a``.
  Trajectories are camera-to-world ``T_w_c``.
* **Pose vectors**: ``[tx, ty, tz, rx, ry, rz]`` with ``(rx, ry, rz)`` an axis-angle rotation
  vector (direction = axis, norm = angle in radians, Rodrigues). The matrix is ``[R(r) | t]``, i.e.
  ``p' = R p + t`` (rotate, then translate). Axis-angle is used instead of the Euler angles of the
  original TensorFlow code: no axis-order ambiguity, and identical to first order for the small
  inter-frame rotations the pose network predicts.
* **Predicted pose direction**: the pose network predicts, for each source frame ``s``, the
  *target→source* transform ``T_s_t``: it maps a point in the target camera frame into the source
  camera frame. From ground-truth camera-to-world poses, ``T_s_t = inv(T_w_s) @ T_w_t``. For a camera
  driving forward, the next frame as source gives ``tz < 0`` (the scene moves towards the camera).
  The camera motion from target to source (the source camera's pose in the target frame) is
  ``inv(T_s_t)``.

All functions work on batched torch tensors (leading batch dimension ``B``) and are differentiable.
Their numpy twins (float64, for everything outside the networks and losses) are
:mod:`sfm_ros.core.se3` (rotations, poses, pose vectors) and :func:`sfm_ros.data.camera.resize_intrinsics`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "check_shape",
    "scale_intrinsics",
    "crop_intrinsics",
    "resize_intrinsics",
    "pixel_grid",
    "backproject",
    "project",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "pose_vec_to_mat",
    "mat_to_pose_vec",
    "invert_pose",
    "compose_poses",
    "relative_pose",
    "unturn_motion",
    "pixels_to_grid",
    "inverse_warp",
]


def check_shape(x: Tensor, shape: tuple, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x.shape`` matches ``shape`` (``None`` = any)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------
def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics of an image resized by factors ``sx`` (width) and ``sy`` (height).

    Pixel-centre convention: ``c' = (c + 0.5) * s - 0.5``. Works on (3, 3) or (B, 3, 3).
    """
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {tuple(K.shape)}")
    K = K.clone()
    K[..., 0, 0] = K[..., 0, 0] * sx
    K[..., 0, 1] = K[..., 0, 1] * sx
    K[..., 1, 1] = K[..., 1, 1] * sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: Tensor, x0: float, y0: float) -> Tensor:
    """Intrinsics after cropping an image so that pixel ``(x0, y0)`` becomes ``(0, 0)``."""
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {tuple(K.shape)}")
    K = K.clone()
    K[..., 0, 2] = K[..., 0, 2] - x0
    K[..., 1, 2] = K[..., 1, 2] - y0
    return K


def resize_intrinsics(K: Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Tensor:
    """Intrinsics for an image resized from ``from_hw = (H, W)`` to ``to_hw = (H', W')``."""
    (h0, w0), (h1, w1) = from_hw, to_hw
    if min(h0, w0, h1, w1) <= 0:
        raise ValueError(f"image sizes must be positive, got {from_hw} -> {to_hw}")
    return scale_intrinsics(K, w1 / w0, h1 / h0)


# --------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------
def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Homogeneous pixel-centre coordinates ``[u, v, 1]`` of shape (3, H, W)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def backproject(depth: Tensor, K: Tensor) -> Tensor:
    """3-D points in the camera frame for every pixel: ``depth * K^-1 [u, v, 1]``.

    Args:
        depth: (B, 1, H, W) z-depth.
        K: (B, 3, 3) intrinsics.
    Returns:
        (B, 3, H, W) points ``[x, y, z]`` in the camera optical frame.
    """
    check_shape(depth, (None, 1, None, None), "depth")
    b, _, h, w = depth.shape
    check_shape(K, (b, 3, 3), "K")
    grid = pixel_grid(h, w, depth.device, depth.dtype).reshape(1, 3, -1)
    rays = torch.linalg.inv(K.to(depth.dtype)) @ grid  # (B, 3, HW)
    return (rays * depth.reshape(b, 1, -1)).reshape(b, 3, h, w)


def project(points: Tensor, K: Tensor, T: Tensor | None = None, eps: float = 1e-3):
    """Project camera-frame points (optionally moved by ``T`` first) into pixels.

    Args:
        points: (B, 3, H, W) points in frame ``a``.
        K: (B, 3, 3) intrinsics of the camera of frame ``b``.
        T: optional (B, 4, 4) ``T_b_a`` applied before projecting.
        eps: points with ``z < eps`` are behind the camera (invalid).
    Returns:
        ``(pix, z)``: pixel coordinates (B, H, W, 2) as ``(u, v)`` and depth in frame ``b``
        (B, 1, H, W). Pixels of invalid points hold a finite far-away value.
    """
    check_shape(points, (None, 3, None, None), "points")
    b, _, h, w = points.shape
    check_shape(K, (b, 3, 3), "K")
    pts = points.reshape(b, 3, -1)
    if T is not None:
        check_shape(T, (b, 4, 4), "T")
        pts = T[:, :3, :3].to(pts.dtype) @ pts + T[:, :3, 3:].to(pts.dtype)
    cam = K.to(pts.dtype) @ pts
    z = cam[:, 2:3]
    z_safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    uv = cam[:, :2] / z_safe
    uv = torch.where(z < eps, torch.full_like(uv, -1e6), uv)
    return uv.permute(0, 2, 1).reshape(b, h, w, 2), z.reshape(b, 1, h, w)


# --------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------
def _skew(v: Tensor) -> Tensor:
    zero = torch.zeros_like(v[..., 0])
    return torch.stack(
        [zero, -v[..., 2], v[..., 1], v[..., 2], zero, -v[..., 0], -v[..., 1], v[..., 0], zero],
        dim=-1,
    ).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(r: Tensor) -> Tensor:
    """Rodrigues: rotation vectors (..., 3) to rotation matrices (..., 3, 3).

    Uses the Taylor expansion near zero so the gradient is exact at the identity.
    """
    if r.shape[-1] != 3:
        raise ValueError(f"rotation vectors must be (..., 3), got {tuple(r.shape)}")
    theta2 = (r * r).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    k = _skew(r)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) to rotation vectors (..., 3), angle in [0, pi]."""
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (..., 3, 3), got {tuple(R.shape)}")
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0) / 2.0
    w = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    sin = 0.5 * w.norm(dim=-1)
    theta = torch.atan2(sin, cos)  # well conditioned everywhere, unlike acos near 0 and pi
    near_zero = theta < 1e-4
    near_pi = theta > torch.pi - 1e-3
    scale = torch.where(near_zero, 0.5 + theta**2 / 12.0, theta / (2.0 * sin.clamp_min(1e-12)))
    r = w * scale.unsqueeze(-1)
    if bool(near_pi.any()):
        # Near pi: axis from the symmetric part, (R + R^T - 2 cos I) / (2 (1 - cos)) = a a^T.
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        c = cos[..., None, None]
        B = (R + R.transpose(-1, -2) - 2.0 * c * eye) / (2.0 * (1.0 - c)).clamp_min(1e-12)
        diag = torch.diagonal(B, dim1=-2, dim2=-1).clamp_min(0.0)
        idx = diag.argmax(-1, keepdim=True)
        col = torch.gather(B, -1, idx.unsqueeze(-2).expand(*B.shape[:-1], 1)).squeeze(-1)
        axis = col / col.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # Sign: align with w (which is 2 sin(theta) a, tiny but signed).
        sign = torch.where((axis * w).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        r = torch.where(near_pi.unsqueeze(-1), axis * sign * theta.unsqueeze(-1), r)
    return r


def pose_vec_to_mat(vec: Tensor) -> Tensor:
    """Pose vectors (B, 6) ``[tx, ty, tz, rx, ry, rz]`` to 4x4 matrices (B, 4, 4)."""
    check_shape(vec, (None, 6), "pose vector")
    b = vec.shape[0]
    T = torch.zeros(b, 4, 4, dtype=vec.dtype, device=vec.device)
    T[:, :3, :3] = axis_angle_to_matrix(vec[:, 3:])
    T[:, :3, 3] = vec[:, :3]
    T[:, 3, 3] = 1.0
    return T


def mat_to_pose_vec(T: Tensor) -> Tensor:
    """4x4 matrices (B, 4, 4) to pose vectors (B, 6) ``[tx, ty, tz, rx, ry, rz]``."""
    check_shape(T, (None, 4, 4), "pose matrix")
    return torch.cat([T[:, :3, 3], matrix_to_axis_angle(T[:, :3, :3])], dim=-1)


def invert_pose(T: Tensor) -> Tensor:
    """Inverse of rigid transforms (..., 4, 4): ``[R^T | -R^T t]``."""
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"poses must be (..., 4, 4), got {tuple(T.shape)}")
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def compose_poses(T_a_b: Tensor, T_b_c: Tensor) -> Tensor:
    """``T_a_c = T_a_b @ T_b_c`` (chain frames: c -> b -> a)."""
    if T_a_b.shape[-2:] != (4, 4) or T_b_c.shape[-2:] != (4, 4):
        raise ValueError("poses must be (..., 4, 4)")
    return T_a_b @ T_b_c


def relative_pose(T_w_tgt: Tensor, T_w_src: Tensor) -> Tensor:
    """Target→source transform ``T_src_tgt = inv(T_w_src) @ T_w_tgt`` from camera-to-world poses.

    This is the quantity the pose network predicts (see the module Convention).
    """
    return invert_pose(T_w_src) @ T_w_tgt


def unturn_motion(T: Tensor, R_src: Tensor, R_tgt: Tensor) -> Tensor:
    """A motion seen by turned cameras, seen by the cameras before the turn: ``R̃_srcᵀ T R̃_tgt``.

    A camera turned about its centre by ``R`` sees a point ``X`` of its original frame at ``R X``
    (:class:`sfm_ros.data.augment.Turn`), so a target→source motion ``T`` between the turned cameras
    is ``R̃_src T₀ R̃_tgtᵀ`` with ``T₀`` the original cameras' (``R̃`` the 4x4 rotations); this returns
    ``T₀``. ``T`` (B, 4, 4), ``R_src`` and ``R_tgt`` (B, 3, 3); differentiable in ``T``. Computed in
    at least float32 with autocast off (under bf16 autocast the products would be rounded to ~1e-2,
    no longer a rotation)."""
    check_shape(T, (None, 4, 4), "T")
    check_shape(R_src, (T.shape[0], 3, 3), "R_src")
    check_shape(R_tgt, (T.shape[0], 3, 3), "R_tgt")
    dtype = torch.promote_types(T.dtype, torch.float32)
    with torch.autocast(device_type=T.device.type, enabled=False):
        T = T.to(dtype)
        R_src, R_tgt = R_src.to(T), R_tgt.to(T)
        out = torch.zeros_like(T)
        out[:, :3, :3] = R_src.transpose(1, 2) @ T[:, :3, :3] @ R_tgt
        out[:, :3, 3] = (R_src.transpose(1, 2) @ T[:, :3, 3:]).squeeze(-1)
        out[:, 3, 3] = 1.0
    return out


# --------------------------------------------------------------------------------------------
# View synthesis
# --------------------------------------------------------------------------------------------
def pixels_to_grid(pix: Tensor, height: int, width: int) -> Tensor:
    """Pixel-centre coordinates (B, H, W, 2) to ``grid_sample`` coordinates (align_corners=False)."""
    gx = (2.0 * pix[..., 0] + 1.0) / width - 1.0
    gy = (2.0 * pix[..., 1] + 1.0) / height - 1.0
    return torch.stack([gx, gy], dim=-1)


def inverse_warp(
    src: Tensor,
    tgt_depth: Tensor,
    T_src_tgt: Tensor,
    K: Tensor,
    padding_mode: str = "zeros",
    eps: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Synthesise the target view by sampling the source image (the paper's view synthesis).

    Every target pixel is back-projected with its depth, moved into the source camera with the
    target→source transform, projected with ``K`` and the source is sampled there bilinearly.

    Args:
        src: (B, C, H, W) source image.
        tgt_depth: (B, 1, H, W) depth of the target view.
        T_src_tgt: (B, 4, 4) target→source transform (what the pose network predicts).
        K: (B, 3, 3) intrinsics at this resolution (shared by both views).
        padding_mode: ``grid_sample`` padding for out-of-view samples.
    Returns:
        ``(warped, valid)``: (B, C, H, W) synthesised target and a (B, 1, H, W) float mask that is
        1 where the point lies in front of the source camera and projects inside its image.
    """
    check_shape(src, (None, None, None, None), "src")
    b, _, h, w = src.shape
    check_shape(tgt_depth, (b, 1, h, w), "tgt_depth")
    check_shape(T_src_tgt, (b, 4, 4), "T_src_tgt")
    check_shape(K, (b, 3, 3), "K")
    points = backproject(tgt_depth, K)
    pix, z = project(points, K, T_src_tgt, eps=eps)
    grid = pixels_to_grid(pix, h, w)
    warped = F.grid_sample(src, grid.to(src.dtype), mode="bilinear",
                           padding_mode=padding_mode, align_corners=False)
    # Inside means between the outermost pixel *centres*: there bilinear sampling reads image
    # pixels only. The half-pixel band beyond them (still inside ``grid_sample``'s [-1, 1]) mixes
    # in the zero padding; counting it as valid lets the warp lower the error by moving samples
    # off that dark band, a gradient that biases the pose (most at the coarse scales).
    u, v = pix[..., 0], pix[..., 1]
    inside = ((u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)).unsqueeze(1)
    valid = (inside & (z > eps)).to(src.dtype)
    return warped, valid
