"""sfm_eval (sfm_ros.cli.eval): depth and pose evaluation from the command line.

Tiny untrained checkpoints (width_mult 0.25, 64x96) on a few rendered frames; the real KITTI /
7-Scenes checks skip when ../shared/data is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sfm_ros.cli import eval as eval_cli
from sfm_ros.evaluation import pose_eval
from sfm_ros.data.camera import kitti_lidar_calib
from sfm_ros.core.checkpoint import save_checkpoint
from sfm_ros.evaluation.metrics import DEPTH_METRIC_KEYS
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import ModelOptions, Options
from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose
from sfm_ros.data.pose_files import read_tum, write_kitti
from sfm_ros.evaluation.trajectory import (chain, mean_odometry_poses, relative_poses, snippet_ate, snippets_from_poses,
                                zero_motion_poses)

H, W = 64, 96
N_FRAMES = 4


def _ckpt(path: Path, seq_len: int = 3) -> Path:
    import torch

    torch.manual_seed(0)
    mo = ModelOptions(width_mult=0.25, height=H, width=W, seq_len=seq_len)
    save_checkpoint(path, SfMModel(mo), Options(model=mo))
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return _ckpt(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    """Rendered frames as PNG, ground truth as 16-bit mm PNG (65535 = sky) and as npy (metres)."""
    from sfm_ros.data.synthetic import render_sequence

    root = tmp_path_factory.mktemp("synth")
    seq = render_sequence(num_frames=N_FRAMES, height=H, width=W, seed=1)
    dirs = {k: root / k for k in ("images", "gt_png", "gt_npy")}
    for d in dirs.values():
        d.mkdir()
    for i in range(N_FRAMES):
        cv2.imwrite(str(dirs["images"] / f"{i:06d}.png"), cv2.cvtColor(seq.images[i], cv2.COLOR_RGB2BGR))
        d = seq.depths[i]
        mm = np.where(np.isfinite(d), np.clip(np.round(d * 1000.0), 1, 65534), 65535).astype(np.uint16)
        cv2.imwrite(str(dirs["gt_png"] / f"{i:06d}.png"), mm)
        np.save(dirs["gt_npy"] / f"{i:06d}.npy", d)
    return {"root": root, "seq": seq, **dirs}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = eval_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ------------------------------------------------------------------------------------------ depth
def test_depth_checkpoint_table_and_json(tiny_ckpt, synth, tmp_path, capsys):
    out = tmp_path / "depth.json"
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--images", synth["images"],
                           "--gt-png", synth["gt_png"], "--json", out, "--save-npy", tmp_path / "pred",
                           "--device", "cpu")
    assert code == 0, err
    assert "| abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3 |" in text
    assert f"{N_FRAMES} images" in text
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == set(DEPTH_METRIC_KEYS)
    m = res["metrics"]
    assert res["count"] == N_FRAMES and len(res["per_image"]) == N_FRAMES
    assert all(np.isfinite(v) for v in m.values())
    assert m["abs_rel"] > 0 and m["rmse"] > 0 and m["rmse_log"] > 0
    assert 0 <= m["a1"] <= m["a2"] <= m["a3"] <= 1
    assert res["settings"] == {"min_depth": 1e-3, "max_depth": 80.0, "crop": "none", "median_scaling": True, "camera_height": None,
                               "frames": None}
    assert res["model"]["seq_len"] == 3 and res["model"]["size"] == [H, W]
    # the saved predictions, evaluated again against the npy ground truth, give the same numbers
    # (up to the PNG's millimetre quantisation)
    assert len(list((tmp_path / "pred").glob("*.npy"))) == N_FRAMES
    out2 = tmp_path / "depth2.json"
    code, text, err = _run(capsys, "depth", "--pred-npy", tmp_path / "pred", "--gt-npy", synth["gt_npy"],
                           "--json", out2)
    assert code == 0, err
    m2 = json.loads(out2.read_text())["metrics"]
    for k in DEPTH_METRIC_KEYS:
        assert m2[k] == pytest.approx(m[k], rel=2e-3, abs=2e-3), k


def test_depth_pred_npy_median_scaling_is_perfect(synth, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for i, d in enumerate(synth["seq"].depths):
        np.save(pred / f"{i:06d}.npy", d / 3.0)  # ground truth = prediction * 3
    out = tmp_path / "m.json"
    code, text, err = _run(capsys, "depth", "--pred-npy", pred, "--gt-npy", synth["gt_npy"], "--json", out)
    assert code == 0, err
    res = json.loads(out.read_text())
    m = res["metrics"]
    assert m["abs_rel"] < 1e-5 and m["rmse"] < 1e-4 and m["rmse_log"] < 1e-5
    assert m["a1"] == m["a2"] == m["a3"] == 1.0
    assert res["scale_mean"] == pytest.approx(3.0, rel=1e-5)
    # the constant-depth baseline: what a constant prediction scores, and worse than a perfect one
    base = res["baseline_constant"]
    assert base["abs_rel"] > 0.05 and base["a1"] < 1.0
    const = tmp_path / "const"
    const.mkdir()
    for i, d in enumerate(synth["seq"].depths):
        np.save(const / f"{i:06d}.npy", np.full_like(d, 7.0))
    code, text, err = _run(capsys, "depth", "--pred-npy", const, "--gt-npy", synth["gt_npy"], "--json", out)
    assert code == 0, err
    assert "| constant depth (baseline) |" in text
    assert "warning: the predicted depth is nearly constant" in text  # a model that learnt no layout
    c = json.loads(out.read_text())
    assert c["depth_spread"] < 1e-6 and len(c["warnings"]) == 1
    assert res["warnings"] == [] and res["depth_spread"] > 0.1  # the real layout: no warning
    assert c["metrics"] == pytest.approx(base, rel=1e-6) and c["baseline_constant"] == pytest.approx(base, rel=1e-6)
    # without median scaling the factor 3 shows: |g - g/3| / g = 2/3; --frames selects 2 images
    code, text, err = _run(capsys, "depth", "--pred-npy", pred, "--gt-npy", synth["gt_npy"], "--json", out,
                           "--no-median-scaling", "--frames", "1:3", "--crop", "garg", "--max-depth", "50")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["count"] == 2 and [r["index"] for r in res["per_image"]] == [0, 1]
    assert res["metrics"]["abs_rel"] == pytest.approx(2.0 / 3.0, rel=1e-4)
    assert res["metrics"]["a3"] == 0.0
    assert res["baseline_constant"] is None  # only meaningful with median scaling
    assert res["settings"]["crop"] == "garg" and res["settings"]["max_depth"] == 50.0


def test_depth_sevenscenes(tiny_ckpt, sevenscenes_dir, tmp_path, capsys):
    out = tmp_path / "s.json"
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--sevenscenes", sevenscenes_dir,
                           "--frames", "400:402", "--json", out, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["count"] == 2 and res["settings"]["max_depth"] == 10.0  # indoor default
    assert "not registered" in res["ground_truth"]
    assert 0 < res["metrics"]["abs_rel"] < 10 and 0 <= res["metrics"]["a1"] <= 1


# ------------------------------------------------------------------------------------------ pose
def test_increments_from_exact_snippets():
    """Per-window predictions that are exact give back the exact increments (any seq_len)."""
    rng = np.random.default_rng(0)
    rel = np.array([make_pose(axis_angle_to_matrix(rng.normal(0, 0.05, 3)), rng.normal(0, 1, 3)) for _ in range(9)])
    gt = chain(rel)
    for L in (3, 5):
        inc = pose_eval.network_increments(snippets_from_poses(gt, L))
        np.testing.assert_allclose(inc, relative_poses(gt), atol=1e-9)
    # two different estimates of one increment are averaged
    a, b = make_pose(t=[1.0, 0, 0]), make_pose(t=[3.0, 0, 0])
    np.testing.assert_allclose(pose_eval.average_increments([[a, b]])[0], make_pose(t=[2.0, 0, 0]))


def test_pose_kitti_snippet_ate_and_baselines(tiny_ckpt, kitti_dir, tmp_path, capsys):
    out = tmp_path / "pose.json"
    tum = tmp_path / "traj" / "pred.txt"
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--kitti", kitti_dir, "--frames", "0:20",
                           "--json", out, "--tum", tum, "--device", "cpu")
    assert code == 0, err
    for label in ("| model |", "| zero motion |", "| mean odometry |", "snippet ATE (5 frames)"):
        assert label in text
    res = json.loads(out.read_text())
    assert res["count"] == 20 and res["snippet"] == 5
    assert set(res["methods"]) == {"model", "zero_motion", "mean_odometry"}
    from sfm_ros.data.sources import read_kitti_odometry

    gt_all = read_kitti_odometry(kitti_dir).poses
    gt = gt_all[:20]
    zero = res["methods"]["zero_motion"]["snippet_ate"]
    assert zero["count"] == 16
    assert zero["mean"] == pytest.approx(snippet_ate(gt, zero_motion_poses(20), 5)["mean"], rel=1e-12)
    # mean odometry from the frames outside the evaluated range (20:160)
    mo = res["methods"]["mean_odometry"]["snippet_ate"]
    assert mo["mean"] == pytest.approx(snippet_ate(gt, mean_odometry_poses([gt_all[20:]], 20), 5)["mean"], rel=1e-12)
    assert "20:160" in res["mean_odometry_from"]
    model = res["methods"]["model"]
    assert model["snippet_ate"]["count"] == 16 and np.isfinite(model["snippet_ate"]["mean"])
    assert model["ate"]["align"] == "sim3" and model["rpe"]["pairs"] == 19
    assert res["methods"]["zero_motion"]["ate"]["align"] == "se3"
    assert any("chained" in n for n in res["notes"])  # seq_len 3 model, 5-frame snippets
    # trajectories that evo reads: the prediction and the ground truth of the same frames
    stamps, poses = read_tum(tum)
    assert poses.shape == (20, 4, 4)
    _, gposes = read_tum(tum.with_name("pred.gt.txt"))
    np.testing.assert_allclose(gposes, gt, atol=1e-6)  # KITTI rotations are rounded, TUM re-orthonormalises
    evo_file = pytest.importorskip("evo.tools.file_interface")
    assert evo_file.read_tum_trajectory_file(str(tum)).num_poses == 20
    # the written trajectory evaluated from the file gives the model's whole-trajectory ATE
    code, text, err = _run(capsys, "pose", "--pred-tum", tum, "--gt-tum", tum.with_name("pred.gt.txt"),
                           "--json", out)
    assert code == 0, err
    again = json.loads(out.read_text())["methods"]["prediction"]
    assert again["ate"]["rmse"] == pytest.approx(model["ate"]["rmse"], rel=1e-6)


def test_pose_refine_epipolar_runs_the_nodes_refiner(tiny_ckpt, kitti_dir, tmp_path, capsys):
    """An untrained network's motion is noise; the epipolar refinement of the same increments (on
    the refiner's own 128x416 views, whatever the 64x96 network input) recovers the car's path on
    real KITTI frames: measured 0.886 → 0.049 snippet ATE (mean odometry 0.066); the same without
    the rotation window (``--no-rotation-window``)."""
    res = {}
    for mode, extra in (("none", ()), ("epipolar", ()), ("epipolar", ("--no-rotation-window",))):
        key = mode + "".join(extra)
        out = tmp_path / f"{key}.json"
        code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--kitti", kitti_dir, "--frames",
                               "0:20", "--refine", mode, "--json", out, "--device", "cpu", *extra)
        assert code == 0, err
        res[key] = json.loads(out.read_text())
    notes = " ".join(res["epipolar"]["notes"])
    assert "--refine epipolar:" in notes and "increments epipolar" in notes
    assert "the node's rotation_window;" in notes
    assert "the node's rotation_window false" in " ".join(res["epipolar--no-rotation-window"]["notes"])
    assert not any("rotation_window" in n for n in res["none"]["notes"])
    ate = {m: r["methods"]["model"]["snippet_ate"]["mean"] for m, r in res.items()}
    assert ate["epipolar"] < 0.25 * ate["none"], ate
    assert ate["epipolar--no-rotation-window"] < 0.25 * ate["none"], ate
    assert ate["epipolar"] < 0.25 * res["none"]["methods"]["zero_motion"]["snippet_ate"]["mean"], ate


def test_pose_seq_len5_uses_one_prediction_per_snippet(kitti_dir, tmp_path, capsys):
    ck = _ckpt(tmp_path / "s5.pt", seq_len=5)
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, "pose", "--checkpoint", ck, "--kitti", kitti_dir, "--frames", "0:8",
                           "--train-frames", "100:160", "--json", out, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["methods"]["model"]["snippet_ate"]["count"] == 4
    assert any("one pose-network prediction" in n for n in res["notes"])
    assert res["mean_odometry_from"] == "frames 100:160"


def test_pose_pred_kitti_file_scaled_ground_truth(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rel = np.array([make_pose(axis_angle_to_matrix(rng.normal(0, 0.02, 3)), [0.1, 0.0, 1.0] + rng.normal(0, 0.1, 3))
                    for _ in range(11)])
    gt = chain(rel)
    pred = gt.copy()
    pred[:, :3, 3] *= 0.5  # monocular: right up to scale
    write_kitti(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "pred.txt", pred)
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, "pose", "--pred-kitti", tmp_path / "pred.txt", "--gt-kitti",
                           tmp_path / "gt.txt", "--snippet", "3", "--frames", "2:12", "--json", out)
    assert code == 0, err
    res = json.loads(out.read_text())
    p = res["methods"]["prediction"]
    assert p["snippet_ate"]["mean"] < 1e-9 and p["ate"]["rmse"] < 1e-9 and p["rpe"]["trans_rmse"] < 1e-9
    assert p["ate"]["scale"] == pytest.approx(2.0)
    assert res["methods"]["zero_motion"]["snippet_ate"]["mean"] > 0.1
    assert res["count"] == 10 and res["mean_odometry_from"] == "frames 0:2 (outside the evaluated range)"
    # segment drift: lengths fitted to the ~10 m path; half the motion drifts 50 % of each segment's
    # displacement (divided by L as the devkit does: ~1 m steps overshoot the 1 and 2 m lengths) until
    # one global scale
    sd = res["segment_drift"]
    assert sd["lengths"] == [1, 2, 4, 8] and sd["step"] == 1 and 8 < sd["path_length"] < 12
    d = p["segment_drift"]
    assert 50.0 <= d["as_published"]["t_err_pct"] < 75.0
    assert d["global_scale"]["t_err_pct"] < 1e-6 and d["global_scale"]["r_err_deg_per_100m"] < 1e-4
    assert d["scale"] == pytest.approx(2.0)
    assert "segment drift (KITTI devkit definition): segments of 1, 2, 4, 8 m" in text
    assert "| prediction | " in text.split("segment drift")[1]
    code, text, err = _run(capsys, "pose", "--pred-kitti", tmp_path / "pred.txt", "--gt-kitti", tmp_path / "gt.txt",
                           "--snippet", "3", "--frames", "2:12", "--drift-lengths", "3,5", "--drift-step", "10",
                           "--json", out)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["segment_drift"]["lengths"] == [3, 5] and res["segment_drift"]["step"] == 10
    assert res["methods"]["prediction"]["segment_drift"]["as_published"]["segments"] == 2  # frame 0, both lengths
    for flags, needle in ((["--drift-lengths", "10,x"], "--drift-lengths '10,x' must be metres > 0"),
                          (["--drift-step", "0"], "--drift-step must be >= 1")):
        code, text, err = _run(capsys, "pose", "--pred-kitti", tmp_path / "pred.txt", "--gt-kitti",
                               tmp_path / "gt.txt", "--snippet", "3", *flags)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_pose_sevenscenes_stride(tiny_ckpt, sevenscenes_dir, tmp_path, capsys):
    out = tmp_path / "p.json"
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--sevenscenes", sevenscenes_dir,
                           "--frames", "0:60", "--json", out, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["stride"] == 10 and res["count"] == 6 and res["methods"]["model"]["snippet_ate"]["count"] == 2


def test_images_times_txt_is_read_by_the_sources_parser(tiny_ckpt, synth, tmp_path, capsys):
    """``times.txt`` beside --images goes through sfm_ros.data.sources.read_times (the one parser): a file
    with fewer times than images is an error naming it, not silently replaced by index / fps."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(synth["images"], images)
    (images / "times.txt").write_text("0.0\n0.1\n")
    code, _, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--images", images, "--gt-npy",
                        synth["gt_npy"], "--device", "cpu")
    assert code == 2 and f"times.txt has 2 times but there are {N_FRAMES} images" in err, err


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv, needle", [
    ([], "the following arguments are required"),
    (["depth", "--images", "{images}", "--gt-png", "{gt_png}"], "--checkpoint"),
    (["depth", "--checkpoint", "{root}/missing.pt", "--images", "{images}", "--gt-png", "{gt_png}"], "does not exist"),
    (["depth", "--checkpoint", "{ckpt}", "--gt-png", "{gt_png}"], "no input"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}"], "no ground truth"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-png", "{root}/nope"], "not a folder"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--frames", "3:1"], "selects no frame"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--frames", "x"], "must look like A:B"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--frames", "0:9"], "ends after the last frame"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--kitti", "{root}", "--gt-npy", "{gt_npy}"], "give one input"),
    (["depth", "--pred-npy", "{gt_npy}", "--gt-npy", "{gt_npy}", "--checkpoint", "{ckpt}"], "replaces the model"),
    (["depth", "--pred-npy", "{gt_npy}", "--gt-npy", "{gt_npy}", "--min-depth", "5", "--max-depth", "1"], "min-depth"),
    (["depth", "--pred-npy", "{gt_npy}", "--gt-npy", "{gt_npy}", "--crop", "foo"], "invalid choice"),
    (["depth", "--checkpoint", "{images}/000000.png", "--images", "{images}", "--gt-npy", "{gt_npy}"], "is not a PyTorch checkpoint"),
    (["pose", "--pred-kitti", "{root}/none.txt", "--gt-kitti", "{root}/none.txt"], "does not exist"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}"], "no ground truth"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-kitti", "{images}/000000.png"], "ground truth"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--snippet", "1", "--gt-kitti", "x"], "--snippet"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--refine", "photo", "--gt-kitti", "x"], "--refine"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--refine", "epipolar", "--gt-kitti", "x"],
     "needs the camera intrinsics"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--camera-height", "1.5", "--gt-kitti", "x"],
     "--camera-height 1.5 needs the camera intrinsics: image folder {images}: no intrinsics: give --calib YAML or --fx"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--camera-height", "1.5"],
     "--camera-height 1.5 needs the camera intrinsics: image folder {images}: no intrinsics: give --calib YAML or --fx"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--camera-height", "0"],
     "--camera-height must be > 0 m, got 0"),
    (["frobnicate"], "invalid choice"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--threads", "0"],
     "argument --threads: expected an integer >= 1, got '0'"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--device", "bogus"],
     "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'bogus'"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--json",
      "{images}/000000.png/out.json"], "--json {images}/000000.png/out.json: {images}/000000.png is a file; expected a folder there"),
    (["depth", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-npy", "{gt_npy}", "--save-npy",
      "{images}/000000.png"], "--save-npy {images}/000000.png is a file; expected a folder"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--gt-kitti", "x", "--kitti-out", "{root}"],
     "--kitti-out {root} is a folder; expected a file name"),
    (["pose", "--checkpoint", "{ckpt}", "--images", "{images}", "--fps", "0", "--gt-kitti", "x"], "--fps must be a frame rate > 0, got 0"),
])
def test_bad_input_exits_2_with_one_line(argv, needle, tiny_ckpt, synth, capsys):
    fill = {"ckpt": tiny_ckpt, "root": synth["root"], "images": synth["images"], "gt_png": synth["gt_png"],
            "gt_npy": synth["gt_npy"]}
    code, text, err = _run(capsys, *[a.format(**fill) for a in argv])
    assert code == 2, (text, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfm_eval: error:"), err
    assert needle.format(**fill) in lines[0], lines[0]


def test_pose_ground_truth_count_mismatch(tiny_ckpt, synth, tmp_path, capsys):
    write_kitti(tmp_path / "gt.txt", zero_motion_poses(2))  # 2 poses for 4 images
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--images", synth["images"],
                           "--gt-kitti", tmp_path / "gt.txt", "--snippet", "3")
    assert code == 2 and "poses" in err and err.startswith("sfm_eval: error:")


def test_depth_gt_lidar_projection(tiny_ckpt, synth, tmp_path, capsys):
    """KITTI-style LiDAR ground truth: scans in a rotated, shifted LiDAR frame, a calib.txt with
    ``Tr`` and a ``P2`` with a baseline; the projection recovers the rendered depth at the hit pixels."""
    seq = synth["seq"]
    K = seq.K
    b = np.array([-0.06, 0.01, 0.002])  # P2 = K [I | b]: cam2 relative to the rectified cam0
    P2 = np.hstack([K, (K @ b)[:, None]])
    Tr = make_pose(axis_angle_to_matrix([0.1, -0.2, 0.05]), [0.3, -0.1, 0.5])  # LiDAR -> cam0
    calib = tmp_path / "calib.txt"
    calib.write_text("".join(f"P{i}: " + " ".join(map(str, (P2 if i == 2 else np.hstack([K, np.zeros((3, 1))])).ravel()))
                             + "\n" for i in range(4)) + "Tr: " + " ".join(map(str, Tr[:3].ravel())) + "\n")
    T, Kc = kitti_lidar_calib(calib, "P2")
    np.testing.assert_allclose(T, make_pose(t=b) @ Tr, atol=1e-9)
    velo = tmp_path / "velodyne"
    velo.mkdir()
    v, u = np.mgrid[0:H:3, 0:W:3]
    for i, d in enumerate(seq.depths):
        z = d[v, u]
        ok = np.isfinite(z) & (z < 80)
        rays = np.linalg.solve(K, np.stack([u[ok], v[ok], np.ones(ok.sum())]))
        p_cam2 = (rays * z[ok]).T
        p_lidar = (np.linalg.inv(T) @ np.hstack([p_cam2, np.ones((len(p_cam2), 1))]).T).T[:, :3]
        np.hstack([p_lidar, np.zeros((len(p_lidar), 1))]).astype(np.float32).tofile(velo / f"{i:06d}.bin")
        if i == 0:
            from sfm_ros.evaluation.metrics import project_lidar

            sparse = project_lidar(p_lidar, T, Kc, H, W)
            np.testing.assert_allclose(sparse[v[ok], u[ok]], z[ok], rtol=1e-4)
            assert (sparse > 0).sum() == ok.sum()
    out = tmp_path / "l.json"
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--images", synth["images"], "--gt-lidar", velo,
                           "--calib", calib, "--json", out, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["count"] == N_FRAMES and "(P2)" in res["ground_truth"]
    assert 0 < res["valid_pixels_mean"] < (H // 3 + 1) * (W // 3 + 1)


def test_pose_bag_only_image_topic_gt_topic_and_node_scale(tiny_ckpt, synth, tmp_path, capsys):
    """``--bag`` without ``--topic`` takes the only image topic; ``--gt-topic`` reads the bag's
    nav_msgs/Odometry (as ``sfm_bag from-kitti`` writes it); the node's ``scale`` is printed: the
    ratio of the path lengths, for the settings of the run (not the node's defaults here: warned)."""
    from sfm_ros.data.bag_writer import write_image_bag
    from sfm_ros.data.camera import CameraModel

    seq = synth["seq"]
    poses = seq.poses.copy()
    poses[:, :3, 3] *= 3.0  # metric ground truth 3x the renderer's units
    bag = tmp_path / "bag"
    write_image_bag(bag, list(zip(seq.timestamps, seq.images)), CameraModel(W, H, seq.K), poses=poses)
    out, tum = tmp_path / "p.json", tmp_path / "pred.txt"
    code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, "--bag", bag, "--gt-topic",
                           "/ground_truth/odom", "--snippet", "3", "--json", out, "--tum", tum, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["count"] == N_FRAMES and "/camera/image_raw" in res["source"]
    assert "/ground_truth/odom" in res["ground_truth"]
    _, gposes = read_tum(tum.with_name("pred.gt.txt"))
    np.testing.assert_allclose(gposes, poses, atol=1e-6)
    ns = res["node_scale"]
    scale = ns["scale"]
    _, pred = read_tum(tum)
    path = lambda T: np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1).sum()  # noqa: E731
    assert scale == pytest.approx(path(poses) / path(pred), rel=1e-5) and scale > 0
    assert ns["sim3_scale"] == pytest.approx(res["methods"]["model"]["ate"]["scale"])
    assert f"sfm_node --ros-args -p scale:={scale:.6g}" in text
    assert "scale for the node with refine_pose none, pose_flip false" in text
    assert ns["settings"] == {"refine_pose": "none", "pose_flip": False} and not ns["node_defaults"]
    assert "warning: this run is not the node's defaults" in text and "--pose-flip --refine epipolar" in ns["warning"]
    # a trajectory file against the same topic
    code, text, err = _run(capsys, "pose", "--pred-tum", tum, "--bag", bag, "--gt-topic", "/ground_truth/odom",
                           "--snippet", "3", "--json", out)
    assert code == 0, err
    assert json.loads(out.read_text())["methods"]["prediction"]["ate"]["rmse"] == \
        pytest.approx(res["methods"]["model"]["ate"]["rmse"], rel=1e-6)
    # refusals: --gt-topic without --bag, a topic that is no odometry, two ground truths
    for argv, needle in (
            (["--images", synth["images"], "--gt-topic", "/ground_truth/odom"], "--gt-topic /ground_truth/odom goes with --bag"),
            (["--bag", bag, "--gt-topic", "/camera/image_raw"], "not nav_msgs/msg/Odometry"),
            (["--bag", bag, "--gt-topic", "/ground_truth/odom", "--gt-kitti", tum], "give one of --gt-tum, --gt-kitti and --gt-topic")):
        code, text, err = _run(capsys, "pose", "--checkpoint", tiny_ckpt, *argv, "--snippet", "3", "--device", "cpu")
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_depth_gt_lidar_kitti_object_benchmark_calibration(tiny_ckpt, synth, tmp_path, capsys):
    """The object benchmark's layout: ``training/velodyne/NNNNNN.bin`` with one ``training/calib/NNNNNN.txt``
    per scan (P0..P3, R0_rect, Tr_velo_to_cam), found beside the scans without --calib; every scan
    is projected with its own file (frame 1's LiDAR is mounted quite differently)."""
    from sfm_ros.evaluation.metrics import project_lidar

    seq = synth["seq"]
    K = seq.K
    root = tmp_path / "training"
    velo, calib = root / "velodyne", root / "calib"
    velo.mkdir(parents=True)
    calib.mkdir()
    b = np.array([0.06, 0.0, 0.0])
    P2 = np.hstack([K, (K @ b)[:, None]])
    R0 = axis_angle_to_matrix([0.01, -0.02, 0.005])
    v, u = np.mgrid[0:H:3, 0:W:3]
    counts = []
    for i, d in enumerate(seq.depths):
        Tr = make_pose(axis_angle_to_matrix([0.1 + 1.5 * (i == 1), -0.2, 0.05]), [0.3, -0.1, 0.5 + i])
        rows = {f"P{j}": (P2 if j == 2 else np.hstack([K, np.zeros((3, 1))])).ravel() for j in range(4)}
        rows.update(R0_rect=R0.ravel(), Tr_velo_to_cam=Tr[:3].ravel(), Tr_imu_to_velo=np.eye(4)[:3].ravel())
        (calib / f"{i:06d}.txt").write_text("".join(f"{k}: {' '.join(map(str, x))}\n" for k, x in rows.items()))
        T = make_pose(t=b) @ make_pose(R0) @ Tr  # LiDAR -> cam2, as the devkit's P2 @ R0_rect @ Tr_velo_to_cam
        T_read, K_read = kitti_lidar_calib(calib / f"{i:06d}.txt", "P2")
        np.testing.assert_allclose(T_read, T, atol=1e-9)
        np.testing.assert_allclose(K_read, K, atol=1e-9)
        z = d[v, u]
        ok = np.isfinite(z) & (z < 80)
        p_cam = (np.linalg.solve(K, np.stack([u[ok], v[ok], np.ones(ok.sum())])) * z[ok]).T
        p_lidar = (np.linalg.inv(T) @ np.hstack([p_cam, np.ones((len(p_cam), 1))]).T).T[:, :3]
        np.hstack([p_lidar, np.zeros((len(p_lidar), 1))]).astype(np.float32).tofile(velo / f"{i:06d}.bin")
        sparse = project_lidar(p_lidar, T, K, H, W)
        counts.append(int(((sparse > 1e-3) & (sparse <= 80)).sum()))
    out = tmp_path / "o.json"
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--images", synth["images"], "--gt-lidar",
                           velo, "--json", out, "--device", "cpu")
    assert code == 0, err
    res = json.loads(out.read_text())
    assert f"{calib}/NNNNNN.txt (P2)" in res["ground_truth"]
    assert res["valid_pixels_mean"] == pytest.approx(np.mean(counts)) and min(counts) > 100
    # one scan without its calibration file: named
    (calib / "000002.txt").unlink()
    code, text, err = _run(capsys, "depth", "--checkpoint", tiny_ckpt, "--images", synth["images"], "--gt-lidar",
                           velo, "--calib", calib, "--device", "cpu")
    assert code == 2 and f"{calib} lacks 000002.txt" in err and len(err.strip().splitlines()) == 1, err


def test_depth_help_names_the_calibration_layouts(capsys):
    assert eval_cli.main(["depth", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for needle in ("calib.txt (Tr, P0..P3)", "calib/ folder", "R0_rect, Tr_velo_to_cam",
                   "calib_cam_to_cam.txt, calib_velo_to_cam.txt"):
        assert needle in out, needle


def test_plot_path_accepts_what_matplotlib_writes(tmp_path):
    """--plot is checked before the evaluation: any format matplotlib writes, or no suffix (PNG)."""
    from sfm_ros.evaluation.plot import check_plot_path

    for name in ("t.png", "t.PDF", "t.svg", "t.gif", "t.jpg", "t"):
        assert check_plot_path(tmp_path / name) == tmp_path / name
    with pytest.raises(ValueError, match=r"unknown image format '\.xyz'; expected one of .*\.png"):
        check_plot_path(tmp_path / "t.xyz")
    with pytest.raises(ValueError, match="is a folder"):
        check_plot_path(tmp_path)
