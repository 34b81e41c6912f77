"""sfm_eval's intrinsics for --bag and --images (sfm_ros.evaluation.frames): a bag's CameraInfo as
sfm_train reads it, --fx/--calib by hand, one-line errors naming what is missing.

Bags made by ``sfm_bag from-synthetic`` (the renderer; no shared data) and, when ../shared/data is
there, by ``sfm_bag from-kitti`` from KITTI 00 frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sfm_ros.cli import bag as bag_cli
from sfm_ros.cli import eval as eval_cli
from sfm_ros.core.checkpoint import save_checkpoint
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import ModelOptions, Options
from sfm_ros.data.camera import CameraModel
from sfm_ros.data.pose_files import write_kitti

pytestmark = pytest.mark.slow  # ~8 s: inference and bags

H, W, N = 64, 96, 8


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    mo = ModelOptions(width_mult=0.25, height=H, width=W, seq_len=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, SfMModel(mo), Options(model=mo))
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    """A bag from ``sfm_bag from-synthetic`` (images, CameraInfo, ground-truth odometry), a bag of the
    same frames without CameraInfo, and the frames as an image folder with a KITTI poses file."""
    from sfm_ros.data.bag_writer import write_image_bag
    from sfm_ros.data.synthetic import render_sequence

    root = tmp_path_factory.mktemp("synth")
    assert bag_cli.main(["from-synthetic", str(root / "bag"), "--frames", str(N), "--height", str(H),
                         "--width", str(W)]) == 0
    seq = render_sequence(N, H, W, seed=0)
    write_image_bag(root / "bare_bag", list(zip(seq.timestamps, seq.images)), None, poses=seq.poses)
    images = root / "images"
    images.mkdir()
    for i, im in enumerate(seq.images):
        cv2.imwrite(str(images / f"{i:06d}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    write_kitti(root / "poses.txt", seq.poses)
    return {"root": root, "seq": seq, "bag": root / "bag", "bare_bag": root / "bare_bag", "images": images,
            "poses": root / "poses.txt"}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = eval_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _intrinsics_note(res: dict) -> str:
    notes = [n for n in res["notes"] if n.startswith("intrinsics of ")]
    assert len(notes) == 1, res["notes"]
    return notes[0]


def test_pose_bag_refine_reads_the_bags_camera_info(tiny_ckpt, synth, tmp_path, capsys):
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--bag", synth["bag"], "--gt-topic",
                           "/ground_truth/odom", "--refine", "epipolar", "--snippet", "3", "--json", out,
                           "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    K = synth["seq"].K
    note = _intrinsics_note(res)
    assert "intrinsics from the bag's CameraInfo" in note and f"fx {K[0, 0]:.6g}" in note, note
    assert f"cx {K[0, 2]:.6g}" in note and f"at {W}x{H}" in note
    assert note in text and res["count"] == N
    assert any(n.startswith("--refine epipolar:") for n in res["notes"])
    # --fx is ignored next to a CameraInfo, as in sfm_train
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--bag", synth["bag"], "--gt-topic",
                           "/ground_truth/odom", "--refine", "epipolar", "--snippet", "3", "--fx", "5",
                           "--json", out, "--device", "cpu")
    assert code == 0, err
    assert "--calib/--fx ignored" in _intrinsics_note(json.loads(out.read_text()))


def test_pose_bag_without_camera_info_takes_fx_or_names_what_is_missing(tiny_ckpt, synth, tmp_path, capsys):
    base = ["pose", "--checkpoint", tiny_ckpt, "--bag", synth["bare_bag"], "--gt-topic", "/ground_truth/odom",
            "--snippet", "3", "--device", "cpu"]
    for flags, needle in ((["--refine", "epipolar"], "--refine epipolar needs the camera intrinsics: bag "),
                          (["--camera-height", "1.5"], "--camera-height 1.5 needs the camera intrinsics: bag "),
                          (["--refine", "epipolar", "--camera-height", "1.5"],
                           "--refine epipolar and --camera-height 1.5 need the camera intrinsics")):
        code, text, err = _run(capsys, *base, *flags)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert needle in err and "no intrinsics: expected a CameraInfo topic in the bag, --calib YAML or --fx" in err
    K = synth["seq"].K
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, *base, "--refine", "epipolar", "--fx", K[0, 0], "--cx", K[0, 2], "--cy", K[1, 2],
                           "--json", out)
    assert code == 0, err
    assert "intrinsics from --fx/--fy/--cx/--cy" in _intrinsics_note(json.loads(out.read_text()))
    # without a use for them, a bag without intrinsics is evaluated as before
    code, text, err = _run(capsys, *base, "--json", out)
    assert code == 0, err
    assert not any(n.startswith("intrinsics of ") for n in json.loads(out.read_text())["notes"])


def test_pose_images_fx_and_calib_yaml_give_the_same_motion(tiny_ckpt, synth, tmp_path, capsys):
    K = synth["seq"].K
    base = ["pose", "--checkpoint", tiny_ckpt, "--images", synth["images"], "--gt-kitti", synth["poses"],
            "--refine", "epipolar", "--snippet", "3", "--device", "cpu"]
    yaml = tmp_path / "cam.yaml"
    CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H).save_yaml(yaml)
    res = {}
    for name, flags in (("fx", ["--fx", K[0, 0], "--fy", K[1, 1], "--cx", K[0, 2], "--cy", K[1, 2]]),
                        ("calib", ["--calib", yaml])):
        out = tmp_path / f"{name}.json"
        code, text, err = _run(capsys, *base, *flags, "--json", out)
        assert code == 0, err
        res[name] = json.loads(out.read_text())
    assert "intrinsics from --fx/--fy/--cx/--cy" in _intrinsics_note(res["fx"])
    assert f"intrinsics from --calib {yaml}" in _intrinsics_note(res["calib"])
    assert f"fx {K[0, 0]:.6g}" in _intrinsics_note(res["calib"])
    ate = {k: r["methods"]["model"]["ate"]["rmse"] for k, r in res.items()}
    assert ate["fx"] == pytest.approx(ate["calib"], rel=1e-9)


@pytest.mark.parametrize("flags, needle", [
    (["--refine", "epipolar"], "--refine epipolar needs the camera intrinsics: image folder "),
    (["--camera-height", "1.5"], "--camera-height 1.5 needs the camera intrinsics: image folder "),
    (["--camera-height", "-1"], "--camera-height must be > 0 m, got -1"),
    (["--refine", "epipolar", "--fy", "100"], "--fy/--cx/--cy need --fx"),
    (["--refine", "epipolar", "--fx", "-3"], "--fx/--fy must be > 0"),
    (["--refine", "epipolar", "--fx", "100", "--calib", "{root}/cam.yaml"], "give either --calib or --fx"),
    (["--refine", "epipolar", "--calib", "{root}/missing.yaml"], "missing.yaml"),
    (["--fx", "abc"], "invalid float value"),
])
def test_pose_images_bad_intrinsics_exit_2_with_one_line(flags, needle, tiny_ckpt, synth, capsys):
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--images", synth["images"], "--gt-kitti",
                           synth["poses"], "--snippet", "3", "--device", "cpu",
                           *[f.format(root=synth["root"]) for f in flags])
    assert code == 2, (text, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfm_eval: error:"), err
    assert needle in lines[0], lines[0]


def test_depth_bag_camera_height_reads_the_camera_info(tiny_ckpt, synth, tmp_path, capsys):
    """depth --camera-height on a bag: the CameraInfo's intrinsics go to the ground-plane scale (an
    untrained model may find no ground plane: then every image is skipped, which is reported)."""
    gt = tmp_path / "gt"
    gt.mkdir()
    for i, d in enumerate(synth["seq"].depths):
        np.save(gt / f"{i:06d}.npy", d)
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--bag", synth["bare_bag"], "--gt-npy", gt,
                           "--camera-height", "1.5", "--device", "cpu")
    assert code == 2 and "--camera-height 1.5 needs the camera intrinsics: bag" in err, err
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--bag", synth["bag"], "--gt-npy", gt,
                           "--camera-height", "1.5", "--device", "cpu")
    assert "needs the camera intrinsics" not in err, err
    assert code == 0 or "no image had valid ground-truth pixels" in err, err


def test_pose_kitti_bag_from_sfm_bag_from_kitti(tiny_ckpt, kitti_dir, tmp_path, capsys):
    """The reported command: a bag of KITTI 00 frames from ``sfm_bag from-kitti``, evaluated with
    --refine epipolar against its /ground_truth/odom: calib.txt's P0 comes back from the CameraInfo."""
    bag = tmp_path / "kitti_bag"
    assert bag_cli.main(["from-kitti", str(kitti_dir), str(bag), "--max-frames", "8"]) == 0
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--bag", bag, "--gt-topic", "/ground_truth/odom",
                           "--refine", "epipolar", "--json", out, "--device", "cpu")
    assert code == 0, err
    note = _intrinsics_note(json.loads(out.read_text()))
    assert "intrinsics from the bag's CameraInfo" in note and "fx 718.856" in note and "cx 607.193" in note, note
