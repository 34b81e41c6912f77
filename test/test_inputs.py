"""sfm_ros.data.inputs: sources → camera → rectified stream + cache key (sfm_train), and the selected
frames of sfm_eval; ROS-free."""
from __future__ import annotations

import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sfm_ros.data import inputs
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.inputs import InputError, InputOptions


def _folder(path, n=4, h=24, w=32, seed=0):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(path / f"{i:06d}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def test_camera_from_args_defaults_and_errors():
    cam = inputs.camera_from_args(InputOptions(fx=50.0), 32, 24)
    np.testing.assert_allclose(cam.K, [[50, 0, 15.5], [0, 50, 11.5], [0, 0, 1]])
    assert inputs.camera_from_args(InputOptions(), 32, 24, required=False) is None
    with pytest.raises(InputError, match="no calibration"):
        inputs.camera_from_args(InputOptions(), 32, 24)
    with pytest.raises(InputError, match="need --fx"):
        inputs.camera_from_args(InputOptions(cx=3.0), 32, 24)
    with pytest.raises(InputError, match="not both"):
        inputs.camera_from_args(InputOptions(calib="c.yaml", fx=1.0), 32, 24)
    # an argparse namespace with the same attributes works as well
    assert inputs.camera_from_args(SimpleNamespace(fx=10.0, fy=None, cx=None, cy=None, calib=None), 8, 8).K[0, 0] == 10


def test_folder_input_stream_key_and_notes(tmp_path):
    d = _folder(tmp_path / "imgs")
    inp = inputs.folder_input(str(d), InputOptions(fx=40.0))
    frames = list(inp.frames)
    assert len(frames) == 4 and frames[0][0].shape == (24, 32, 3)
    assert np.diff([s for _, s in frames]).min() > 0  # stamps from --fps (default 10 Hz)
    assert inp.image_hw == (24, 32) and inp.K[0, 0] == 40.0 and inp.notes == ["32x24"]
    key = inp.cache_key
    assert key["source"] == "images" and key["K"] == inp.K.tolist() and len(key["stat"]) == 4
    # the key changes with the content of the folder
    f = d / "000000.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert inputs.folder_input(str(d), InputOptions(fx=40.0)).cache_key != key
    with pytest.raises(InputError, match="no intrinsics"):
        inputs.folder_input(str(d), InputOptions())


def test_rectified_distorted_camera_changes_k_and_notes():
    cam = CameraModel.from_intrinsics(40.0, 40.0, 16.0, 12.0, 32, 24, "plumb_bob", [-0.2, 0.05, 0, 0, 0])
    frames = [SimpleNamespace(image=np.full((24, 32, 3), 100, np.uint8), stamp=float(i)) for i in range(2)]
    notes: list[str] = []
    K, pairs = inputs.rectified(cam, frames, "test input", InputOptions(rectify_alpha=0.0), notes, (32, 24))
    out = list(pairs)
    assert len(out) == 2 and out[1][1] == 1.0 and out[0][0].shape == (24, 32, 3)
    assert notes and notes[0].startswith("rectified (plumb_bob") and not np.allclose(K, cam.K)
    # an undistorted camera passes through
    pin = CameraModel.from_intrinsics(40.0, 40.0, 16.0, 12.0, 32, 24)
    K2, pairs2 = inputs.rectified(pin, frames, "x", InputOptions(), [], (32, 24))
    assert np.array_equal(K2, pin.K) and list(pairs2)[0][0] is frames[0].image


def test_peek_and_counter():
    with pytest.raises(InputError, match="video v: no frames"):
        inputs.peek([], "video v")
    first, it = inputs.peek(iter([1, 2, 3]), "x")
    counter = inputs.FrameCounter(it)
    assert first == 1 and list(counter) == [1, 2, 3] and counter.n == 3


def test_synthetic_inputs():
    from sfm_ros.core.options import load_options

    opts = load_options("default", ["model.height=32", "model.width=48"])
    (inp,) = inputs.synthetic_inputs(InputOptions(synthetic=1, synthetic_frames=3), opts)
    assert inp.cache_key is None and len(list(inp.frames)) == 3 and inp.K.shape == (3, 3)
    with pytest.raises(InputError, match="must be positive"):
        inputs.synthetic_inputs(InputOptions(synthetic=1, synthetic_frames=0), opts)


def test_parse_frames():
    assert inputs.parse_frames(None, 7) == (0, 7)
    assert inputs.parse_frames("2:5", 7) == (2, 5)
    assert inputs.parse_frames(":", 7) == (0, 7) and inputs.parse_frames("3:", None) == (3, None)
    for text, msg in (("a:b", "must look like A:B"), ("5:2", "selects no frame"), ("9:12", "starts after"),
                      ("0:9", "ends after")):
        with pytest.raises(InputError, match=msg):
            inputs.parse_frames(text, 7)
    assert inputs.select_indices(10, "1:8", 3) == [1, 4, 7]


def _eval_args(**kw):
    base = dict(images=None, bag=None, kitti=None, sevenscenes=None, topic=None, pattern=None, frames=None,
                fps=10.0, kitti_camera=None)
    return SimpleNamespace(**{**base, **kw})


def test_select_frames_image_folder_with_times(tmp_path):
    d = _folder(tmp_path / "imgs", n=6)
    (d / "times.txt").write_text("".join(f"{0.5 * i}\n" for i in range(6)))
    fr = inputs.select_frames(_eval_args(images=str(d), frames="1:6"), stride=2)
    assert fr.indices == [1, 3, 5] and fr.count == 3 and fr.total == 6 and fr.K is None
    np.testing.assert_allclose(fr.stamps, [0.5, 1.5, 2.5])
    assert len(list(fr.images())) == 3
    with pytest.raises(InputError, match="give one input"):
        inputs.select_frames(_eval_args(images=str(d), kitti="k"))
    with pytest.raises(InputError, match="--topic goes with --bag"):
        inputs.select_frames(_eval_args(images=str(d), topic="/t"))


def test_select_frames_sevenscenes(tmp_path):
    d = tmp_path / "seq"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"frame-{i:06d}.color.png"), np.zeros((8, 8, 3), np.uint8))
        T = np.eye(4)
        T[0, 3] = i
        np.savetxt(d / f"frame-{i:06d}.pose.txt", T)
    fr = inputs.select_frames(_eval_args(sevenscenes=str(d), frames="1:3"))
    assert fr.indices == [1, 2] and fr.sevenscenes is not None and fr.K[0, 0] == 585.0
    np.testing.assert_allclose(fr.stamps, [1 / 30, 2 / 30])
    np.testing.assert_allclose(fr.sevenscenes.poses()[:, 0, 3], [0, 1, 2])
