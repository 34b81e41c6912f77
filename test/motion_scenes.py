"""Rendered scenes and helpers shared by the motion estimator's tests (``test_refiner``,
``test_two_view``, ``test_length_filter``, ``test_photometric``, ``test_motion_covariance``,
``test_ground_length``)."""
from __future__ import annotations

import numpy as np

from sfm_ros.core.se3 import make_pose, matrix_to_axis_angle, rot_y
from sfm_ros.data.synthetic import default_intrinsics, make_scene, render_frame

H, W = 128, 416

STEPS = [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 15]  # 0.6, 0.6, 1.2, 0.6, 1.2, ... m


def angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(matrix_to_axis_angle(R))))


def dir_err_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def two_views() -> dict:
    """Two views of a street: the second turned 2° (yaw) and 0.5 m ahead, slightly to the side."""
    scene = make_scene(seed=3)
    K = default_intrinsics(H, W)
    T_w_ref = make_pose(np.eye(3), [0.0, 0.0, 5.0])
    T_ref_new = make_pose(rot_y(np.radians(2.0)), [0.05, 0.0, 0.5])
    img_ref, depth_ref = render_frame(scene, T_w_ref, K, H, W)
    img_new, _ = render_frame(scene, T_w_ref @ T_ref_new, K, H, W)
    depth_ref = np.where(np.isfinite(depth_ref), depth_ref, 1000.0).astype(np.float32)
    return dict(K=K, ref=img_ref, new=img_new, depth=depth_ref, T=T_ref_new)


def street(seed: int, idx: list[int]):
    """Views, depths and true increments of a rendered street, frames ``idx`` (uneven gaps: the
    step length changes from step to step)."""
    from sfm_ros.data.synthetic import render_sequence
    from sfm_ros.evaluation.trajectory import relative_poses

    scene = make_scene(seed, box_density=6.0)  # corners near the lane: the triangulation needs them
    seq = render_sequence(num_frames=max(idx) + 1, height=H, width=W, seed=seed, speed=6.0, scene=scene)
    depths = [np.where(np.isfinite(seq.depths[i]), seq.depths[i], 1000.0) for i in idx]
    return [seq.images[i] for i in idx], seq.K, depths, relative_poses(seq.poses[idx])


def level_street(seed: int, frames: int = 8):
    """A level camera (no weave, no pitch or roll) 1.5 m above a rendered street, 0.6 m a frame."""
    from sfm_ros.data.synthetic import render_sequence

    return render_sequence(num_frames=frames, height=H, width=W, seed=seed, speed=6.0, weave=0.0,
                           pitch_roll=0.0, camera_height=1.5)
