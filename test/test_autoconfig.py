"""What the trainer chooses by itself: input size from the aspect ratio, stride from the parallax."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sfm_ros.data.autoconfig import MIN_PARALLAX, PAPER_PIXELS, auto_size, choose_stride, measure_motion
from sfm_ros.core.se3 import rot_y
from sfm_ros.data.synthetic import render_sequence


@pytest.mark.parametrize("cam,want", [((1241, 376), (128, 416)), ((640, 480), (192, 256)),
                                      ((1280, 720), (160, 288)), ((848, 800), (224, 224))])
def test_auto_size_keeps_the_aspect_ratio_near_the_paper_pixels(cam, want):
    h, w = auto_size(*cam)
    assert (h, w) == want
    assert h % 32 == 0 and w % 32 == 0
    assert 0.7 < h * w / PAPER_PIXELS < 1.3
    assert abs(np.log((w / h) / (cam[0] / cam[1]))) < 0.12


def test_auto_size_rejects_a_bad_camera():
    with pytest.raises(ValueError, match="camera size"):
        auto_size(0, 480)


@pytest.fixture(scope="module")
def drive():
    return render_sequence(40, 96, 320, seed=5).images  # 10 Hz, 0.6 m a frame


def test_driving_at_10_hz_needs_stride_1(drive):
    prof = measure_motion(drive)
    stride, why = choose_stride(prof, len(drive))
    assert stride == 1, why
    assert prof.parallax[1] >= MIN_PARALLAX


def test_a_camera_k_times_slower_gets_a_k_times_larger_stride(drive):
    """The same drive recorded 4x more often (each frame 4 times, a little sensor noise): the
    stride grows with it, as 30 Hz hand-held video needs ~10 where 10 Hz driving needs 1."""
    rng = np.random.default_rng(0)
    slow = np.repeat(drive, 4, axis=0).astype(np.int16)
    slow = np.clip(slow + rng.integers(-2, 3, slow.shape), 0, 255).astype(np.uint8)
    s_fast, _ = choose_stride(measure_motion(drive), len(drive))
    s_slow, why = choose_stride(measure_motion(slow), len(slow))
    assert s_fast == 1
    assert 3 <= s_slow <= 5, why  # frames 4 apart are the original neighbours


def test_pure_rotation_has_no_parallax_and_takes_the_largest_stride():
    """Frames that differ by a rotation only (a homography of one image) show motion but no
    parallax: no stride gives depth a signal, so the longest one the sequence allows is taken."""
    base = render_sequence(1, 96, 320, seed=4).images[0]
    K = np.array([[250.0, 0, 159.5], [0, 250.0, 47.5], [0, 0, 1]])
    frames = []
    for i in range(40):
        yaw = 0.004 * i
        R = rot_y(yaw)
        H = K @ R @ np.linalg.inv(K)
        frames.append(cv2.warpPerspective(base, H, (320, 96), borderMode=cv2.BORDER_REFLECT))
    frames = np.stack(frames)
    prof = measure_motion(frames)
    assert prof.flow[5] > 0.01  # it moves ...
    assert all(p < MIN_PARALLAX for p in prof.parallax.values() if np.isfinite(p))  # ... without parallax
    stride, why = choose_stride(prof, len(frames))
    assert stride == (len(frames) - 1) // 2 // 4 and "little parallax" in why


def test_textureless_frames_fall_back_to_stride_1():
    frames = np.full((12, 64, 96, 3), 128, np.uint8)
    stride, why = choose_stride(measure_motion(frames), len(frames))
    assert stride == 1 and "no motion" in why
