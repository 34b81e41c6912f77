"""Frames that cannot show a motion give none (issue 28, item 1): a frozen camera, black,
saturated and noise frames hold the odometry where it stood, with a growing covariance, the
scale is not re-measured from them, diagnostics WARN; a still camera's frames (sensor noise only)
give no motion as a measurement; real frames move it again."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from sfm_ros.data.synthetic import render_sequence
from sfm_ros.runtime.frames import InputFrame
from sfm_ros.runtime.motion_evidence import HoldNoise, frame_evidence
from sfm_ros.runtime.diagnostics import FRAME_COUNTS, Counters, Log
from sfm_ros.runtime.model_loading import load_estimator
from sfm_ros.runtime.odometry import camera_extrinsic
from sfm_ros.runtime.pipeline import FramePipeline, Settings
from sfm_ros.runtime.motion import Refiner

pytestmark = pytest.mark.slow  # make test-fast leaves it out

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "sfm_default.pt"


class Sink:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, msg):
        self.lines.append(("info", msg))

    def warning(self, msg):
        self.lines.append(("warning", msg))


@pytest.fixture(scope="module")
def street():
    return render_sequence(num_frames=14, height=128, width=416, seed=3, camera_height=1.5)


def _noisy(img: np.ndarray, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float32) + rng.normal(0, sd, img.shape), 0, 255).astype(np.uint8)


def test_frame_evidence_tells_frames_without_motion_apart(street):
    a, b = street.images[0], street.images[1]
    assert frame_evidence(b, a) is None and frame_evidence(a, None) is None
    assert frame_evidence(a.copy(), a) == "frozen"
    assert frame_evidence(np.zeros_like(a), a) == "textureless"
    assert frame_evidence(np.full_like(a, 255), a) == "textureless"
    assert frame_evidence(a.astype(np.float32) / 255.0, a.astype(np.float32) / 255.0) == "frozen"
    # a live camera's sensor noise alone is not a repeat; noise has contrast (the refiner judges it)
    assert frame_evidence(_noisy(a, 2.0, 1), a) is None
    assert frame_evidence(np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8), a) == "noise"
    dark = (a.astype(np.float32) * 0.1).astype(np.uint8)  # a dark frame is still a scene
    assert frame_evidence(dark, a) is None
    with pytest.raises(ValueError, match="expected an"):
        frame_evidence(np.zeros((2, 3, 4, 5)), None)


def test_hold_noise_is_the_recent_motions_size():
    h = HoldNoise()
    assert np.allclose(np.diag(h.covariance())[:3], 1.0)  # nothing seen yet: one network unit
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 0.5]
    for _ in range(5):
        h.observe(T)
    C = h.covariance()
    assert np.allclose(np.diag(C)[:3], 0.25) and np.allclose(np.diag(C)[3:], h.min_rot ** 2)


def test_the_refiner_says_still_when_the_corners_do_not_move(street):
    """The same frame twice under independent sensor noise: the corners move < 0.1 px: no motion,
    a tight covariance; a real step of the street is refined as before."""
    r = Refiner("epipolar")
    K = street.K
    T_net = np.eye(4)
    T_net[2, 3] = 1.0  # the network claims a step
    a = r.view(_noisy(street.images[4], 1.0, 1), K)
    b = r.view(_noisy(street.images[4], 1.0, 2), K)
    out = r.refine(a, b, T_net)
    assert out.used == "still" and out.why == "still", out.reason
    assert np.allclose(out.T, np.eye(4))
    assert out.covariance[2, 2] < 1e-3 and np.all(np.linalg.eigvalsh(out.covariance) > 0)
    moved = r.refine(r.view(street.images[4], K), r.view(street.images[5], K), T_net)
    assert moved.used != "still"
    assert Refiner("epipolar", still_px=0.0).refine(a, b, T_net).used != "still"  # off (training priors)


def _run(pl, frames, t0):
    res = []
    for i, img in enumerate(frames):
        r = pl.process(InputFrame(stamp=("s", t0 + 0.1 * i), t=t0 + 0.1 * i, frame_id="cam",
                                  recv=time.monotonic(), image=img))
        assert r is not None
        res.append(r)
    return res


def _within_published_uncertainty(before, after, k: float = 3.0) -> bool:
    """The position moved by less than k sigma of the published position covariance."""
    d = np.asarray(after.position) - np.asarray(before.position)
    P = np.asarray(after.pose_covariance)[:3, :3]
    return float(d @ np.linalg.solve(P, d)) <= k ** 2 * 3


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="models/sfm_default.pt is absent")
@pytest.mark.parametrize("kind", ["frozen", "black", "saturated", "noise", "still"])
def test_frames_without_motion_hold_the_odometry(street, kind):
    """Drive 8 frames, then 10 frames that show no motion: the position stays within its published
    uncertainty of where it stood (in fact where it stood), the pose covariance grows (held frames)
    or stays tight (a still camera, a measurement), the camera-height scale is unchanged, and the
    diagnostics WARN with the reason; then the street goes on and the odometry moves again."""
    est = load_estimator(str(DEFAULT_MODEL), device="cpu", backend="torch")[0]
    sink = Sink()
    K = street.K
    pl = FramePipeline(est, camera_extrinsic(), Settings(intrinsics=(K[0, 0], K[1, 1], K[0, 2], K[1, 2]),
                                                         camera_height=1.5),
                       Log(sink), Counters(*FRAME_COUNTS))
    moving = _run(pl, street.images[:8], 10.0)
    before, scale = moving[-1].odometry, pl.odometry.scale
    last = street.images[7]
    frames = {"frozen": [last.copy() for _ in range(10)],
              "black": [np.zeros_like(last) for _ in range(10)],
              "saturated": [np.full_like(last, 255) for _ in range(10)],
              "noise": [np.random.default_rng(i).integers(0, 256, last.shape, dtype=np.uint8) for i in range(10)],
              "still": [_noisy(last, 1.5, i) for i in range(10)]}[kind]
    held = _run(pl, frames, 10.8)  # the stamps go on (a gap would restart the odometry)
    after = held[-1].odometry
    assert _within_published_uncertainty(before, after)
    assert np.linalg.norm(np.asarray(after.position) - np.asarray(before.position)) < 0.05
    assert pl.odometry.scale == pytest.approx(scale, rel=0.05 if kind in ("still", "noise") else 1e-12)
    grew = np.trace(np.asarray(after.pose_covariance)[:3, :3]) - np.trace(np.asarray(before.pose_covariance)[:3, :3])
    warnings = pl.diagnostic_warnings()
    if kind == "still":
        assert pl._refiner.counts.get("still", 0) >= 8 and not pl.held.snapshot()
        assert not any("no motion in the images" in w for w in warnings)
    else:
        reason = {"frozen": "frozen", "black": "textureless", "saturated": "textureless", "noise": "noise"}[kind]
        assert pl.held.snapshot().get(reason, 0) >= 9, pl.held.snapshot()
        assert grew > 0
        assert any(re.search(r"no motion in the images for \d+ frame\(s\)", w) for w in warnings), warnings
        assert any("no motion in the images" in m for lv, m in sink.lines if lv == "warning")
        assert reason in pl.diagnostic_values()["held_frames"]
    # the street goes on: the odometry moves again and the warning clears
    again = _run(pl, street.images[8:], 11.8)
    moved = np.linalg.norm(np.asarray(again[-1].odometry.position) - np.asarray(after.position))
    assert moved > 0.5, moved
    assert not any("no motion in the images" in w for w in pl.diagnostic_warnings())


def test_real_frames_show_motion():
    """KITTI and 7-Scenes frames in a row pass every check (a false hold would freeze the odometry)."""
    from conftest import SHARED_DATA
    from sfm_ros.data.sources import read_image

    kitti = sorted((SHARED_DATA / "kitti_odom_00" / "image_0").glob("*.png"))[::20]
    seven = sorted((SHARED_DATA / "sevenscenes_redkitchen").glob("*.color.jpg"))[::60]
    if not kitti and not seven:
        pytest.skip("../shared/data is absent")
    for files in (kitti, seven):
        imgs = [read_image(f) for f in files]
        for prev, new in zip(imgs, imgs[1:]):
            assert frame_evidence(new, prev) is None
