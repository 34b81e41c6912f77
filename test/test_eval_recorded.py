"""sfm_eval pose --pred-topic: scoring what the node published (a recorded nav_msgs/Odometry topic,
in base_link as the node's /odom) against ground truth from a topic of the same or another bag, a
TUM file or a KITTI file with stamps; --plot. The renderer's exact poses and perturbed copies, so
every figure is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sfm_ros.cli import eval as eval_cli
from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose, matrix_to_quat
from sfm_ros.data.pose_files import write_kitti, write_tum
from sfm_ros.evaluation.segment_drift import choose_lengths, drift_report, path_distances
from sfm_ros.evaluation.trajectory import ate, chain, relative_poses, rpe, snippet_ate

pytestmark = pytest.mark.slow  # bags, a dozen evaluations and a plot: ~3 s

N = 60
T0 = 1_700_000_000.0  # sfm_bag from-kitti's first stamp
SCALE, YAW = 1.2, 0.004  # the perturbed copy: steps 1.2x too long, heading drifting 0.004 rad a frame


def _write_odometry_bag(path: Path, topics: dict[str, tuple[np.ndarray, np.ndarray, str]]) -> Path:
    """A ROS 2 bag of nav_msgs/Odometry topics: name → (stamps, poses (N, 4, 4), child_frame_id)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from sfm_ros.data.bag_writer import _odometry
    from sfm_ros.data.bags import ODOMETRY_MSGTYPE, bag_typestore

    ts = bag_typestore(False)
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    for topic, (stamps, poses, child) in topics.items():
        c = w.add_connection(topic, ODOMETRY_MSGTYPE, typestore=ts)
        for t, P in zip(stamps, poses):
            sec = int(np.floor(t))
            nsec = int(round((t - sec) * 1e9))
            msg = _odometry(ts.types, P[:3, 3], matrix_to_quat(P[:3, :3]), sec, nsec, "odom", child)
            w.write(c, sec * 1_000_000_000 + nsec, ts.serialize_cdr(msg, ODOMETRY_MSGTYPE))
    w.close()
    return path


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> dict:
    from sfm_ros.data.synthetic import make_scene, trajectory
    from sfm_ros.runtime.odometry import camera_extrinsic, camera_to_base

    root = tmp_path_factory.mktemp("recorded")
    truth = trajectory(make_scene(seed=3, curvature=0.02), np.arange(N) / 10.0)  # camera-to-world, 35 m
    stamps = T0 + np.arange(N) / 10.0
    T_bc = camera_extrinsic()  # the node's default mount: a forward camera at base_link's origin
    cam = np.linalg.inv(truth[0]) @ truth  # the node starts its odometry at the identity
    rel = relative_poses(cam)
    rel[:, :3, 3] *= SCALE
    rel = np.asarray([make_pose(axis_angle_to_matrix([0.0, YAW, 0.0]), [0, 0, 0]) @ r for r in rel])
    bent = chain(rel)
    keep = [i for i in range(N) if i != 1]  # the node publishes no pose while its first window fills
    jitter = 0.005 * np.sin(np.arange(N))   # stamps a few ms off, within --max-dt
    base = np.asarray([camera_to_base(c, T_bc) for c in cam])
    base_bent = np.asarray([camera_to_base(c, T_bc) for c in bent])
    bag = _write_odometry_bag(root / "rec", {
        "/odom": (stamps[keep], base[keep], "base_link"),
        "/odom_perturbed": ((stamps + jitter)[keep], base_bent[keep], "base_link"),
        "/camera_odom": (stamps[keep], cam[keep], "camera_optical_frame"),
        "/ground_truth/odom": (stamps, truth, "camera_optical_frame")})
    gt_bag = _write_odometry_bag(root / "gt", {"/ground_truth/odom": (stamps, truth, "camera_optical_frame")})
    write_tum(root / "gt.txt", stamps, truth)
    write_kitti(root / "gt_kitti.txt", truth)
    return {"root": root, "bag": bag, "gt_bag": gt_bag, "truth": truth, "bent": bent, "keep": keep}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = eval_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _pose(capsys, tmp_path, *argv) -> tuple[dict, str]:
    out = tmp_path / "r.json"
    code, text, err = _run(capsys, "pose", *argv, "--json", out)
    assert code == 0, err
    return json.loads(out.read_text()), text


def test_exact_odometry_in_base_link_scores_zero_and_plots(rec, tmp_path, capsys):
    """The node's /odom (base_link, default mount) of the exact motion: every error is zero, the
    missing second pose is left out and counted, the plot is top-down x-z."""
    png = tmp_path / "odom.png"
    res, text = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/odom", "--gt-topic",
                      "/ground_truth/odom", "--plot", png)
    assert res["count"] == N - 1 and res["model"] is None
    m = res["methods"]["prediction"]
    assert m["ate"]["rmse"] < 1e-6 and m["rpe"]["trans_rmse"] < 1e-6 and m["rpe"]["rot_rmse_deg"] < 1e-4
    assert m["snippet_ate"]["mean"] < 1e-6
    assert m["segment_drift"]["as_published"]["t_err_pct"] < 1e-4
    assert res["path_lengths"]["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert "base_link, turned into the camera's optical frame" in res["source"]
    assert any("1 of the 60 selected ground-truth poses have no predicted pose" in n for n in res["notes"])
    assert png.is_file() and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert res["plot"]["axes"] == ["x", "z"] and "top-down x-z" in res["plot"]["view"]
    assert f"plotted {png}" in text and "path length: prediction" in text
    # the same poses published in the camera's frame: --pred-frame camera; the frame matters
    res, _ = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/camera_odom", "--pred-frame", "camera",
                   "--gt-topic", "/ground_truth/odom")
    assert res["methods"]["prediction"]["rpe"]["trans_rmse"] < 1e-6
    res, _ = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/odom", "--pred-frame", "camera",
                   "--gt-topic", "/ground_truth/odom")
    assert res["methods"]["prediction"]["rpe"]["trans_rmse"] > 0.1


def test_perturbed_odometry_figures_and_every_ground_truth_source(rec, tmp_path, capsys):
    """A copy 1.2x too long and turning 0.004 rad a frame too much, stamped a few ms off: the
    figures are those of the library on the same poses; the ground truth from the same bag, another
    bag, a TUM file or a KITTI file with --gt-start give the same figures."""
    truth, keep = rec["truth"], rec["keep"]
    gt, pred = truth[keep], rec["bent"][keep]
    res, text = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/odom_perturbed", "--gt-topic",
                      "/ground_truth/odom")
    m = res["methods"]["prediction"]
    assert m["ate"]["rmse"] == pytest.approx(ate(gt, pred)["rmse"], rel=1e-6) and m["ate"]["rmse"] > 0.05
    assert m["rpe"]["trans_rmse"] == pytest.approx(rpe(gt, pred)["trans_rmse"], rel=1e-6)
    assert m["rpe"]["rot_rmse_deg"] == pytest.approx(rpe(gt, pred)["rot_rmse_deg"], rel=1e-4)
    assert m["snippet_ate"]["mean"] == pytest.approx(snippet_ate(gt, pred, 5, est_is_relative=False)["mean"], rel=1e-6)
    lengths = choose_lengths(float(path_distances(gt)[-1]))
    want = drift_report(gt, pred, lengths, 1)
    got = m["segment_drift"]
    assert got["as_published"]["t_err_pct"] == pytest.approx(want["as_published"]["t_err_pct"], rel=1e-6)
    assert got["as_published"]["r_err_deg_per_100m"] == pytest.approx(want["as_published"]["r_err_deg_per_100m"],
                                                                      rel=1e-4)
    assert got["as_published"]["t_err_pct"] > 15.0  # 20 % too long, and turning
    assert res["path_lengths"]["ratio"] == pytest.approx(1.0 / SCALE, rel=1e-6)
    assert f"ratio {1 / SCALE:.4g}" in text
    for gt_args in (["--gt-bag", rec["gt_bag"], "--gt-topic", "/ground_truth/odom"],
                    ["--gt-tum", rec["root"] / "gt.txt"],
                    ["--gt-kitti", rec["root"] / "gt_kitti.txt", "--gt-start", T0]):
        again, _ = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/odom_perturbed", *gt_args)
        assert again["count"] == N - 1, gt_args
        assert again["methods"]["prediction"]["ate"]["rmse"] == pytest.approx(m["ate"]["rmse"], rel=1e-5), gt_args
    # --frames selects ground-truth poses
    part, _ = _pose(capsys, tmp_path, "--bag", rec["bag"], "--pred-topic", "/odom_perturbed", "--gt-topic",
                    "/ground_truth/odom", "--frames", "10:50")
    assert part["count"] == 40
    assert part["methods"]["prediction"]["ate"]["rmse"] == pytest.approx(ate(truth[10:50], rec["bent"][10:50])["rmse"],
                                                                         rel=1e-6)


def test_recorded_odometry_errors_are_one_line(rec, tmp_path, capsys):
    from sfm_ros.data.bag_writer import write_image_bag

    img_bag = tmp_path / "img"
    write_image_bag(img_bag, [np.zeros((24, 32), np.uint8)] * 2, None, start_time=T0)
    base = ["pose", "--bag", rec["bag"], "--pred-topic"]
    for argv, needle in (
            (base + ["/nope", "--gt-topic", "/ground_truth/odom"], "--pred-topic: topic '/nope' is not in bag"),
            (["pose", "--bag", img_bag, "--pred-topic", "/camera/image_raw", "--gt-tum", rec["root"] / "gt.txt"],
             "is sensor_msgs/msg/Image, not nav_msgs/msg/Odometry"),
            (base + ["/odom", "--gt-kitti", rec["root"] / "gt_kitti.txt", "--gt-start", "0"],
             "no stamps overlapping the ground truth's"),
            (base + ["/odom", "--gt-kitti", rec["root"] / "gt_kitti.txt"], "give --gt-times FILE"),
            (["pose", "--pred-topic", "/odom", "--gt-tum", rec["root"] / "gt.txt"], "--pred-topic /odom goes with --bag"),
            (base + ["/odom", "--pred-tum", rec["root"] / "gt.txt", "--gt-tum", rec["root"] / "gt.txt"],
             "give one of --pred-topic, --pred-tum and --pred-kitti"),
            (base + ["/odom", "--gt-topic", "/ground_truth/odom", "--plot", tmp_path / "no" / "p.png"],
             "does not exist"),
            (base + ["/odom", "--gt-topic", "/ground_truth/odom", "--plot", tmp_path / "p.xyz"],
             "unknown image format '.xyz'; expected one of .avif"),
            (["pose", "--checkpoint", rec["root"] / "none.pt", "--images", rec["root"], "--gt-tum",
              rec["root"] / "gt.txt", "--pred-frame", "base"], "--pred-frame base says which frame")):
        code, text, err = _run(capsys, *argv)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_kitti_printed_scale_gives_the_nodes_odom_the_true_path_length(kitti_dir, tmp_path, capsys):
    """Issue 27: the scale sfm_eval prints for the node's defaults, given to the node's own pipeline
    (refine_pose epipolar, pose_flip true) over the same frames, makes its /odom path as long as
    the ground truth's; scored back through --pred-topic. KITTI 00 120:160 with the shipped model:
    printed 26.91 (Sim(3) 26.07), the node's path 25.23 m against 24.88 m (+1.4 %)."""
    import time

    import cv2

    from sfm_ros.runtime.frames import InputFrame
    from sfm_ros.runtime.model_loading import load_estimator
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.runtime.pipeline import FramePipeline, Settings

    ckpt = Path(__file__).resolve().parents[1] / "models" / "sfm_default.pt"
    res, text = _pose(capsys, tmp_path, "--checkpoint", ckpt, "--kitti", kitti_dir, "--frames", "120:160",
                      "--pose-flip", "--refine", "epipolar", "--device", "cpu")
    ns = res["node_scale"]
    assert ns["node_defaults"] and ns["warning"] is None and "scale for the node with refine_pose epipolar, " \
        "pose_flip true" in text
    assert ns["scale"] == pytest.approx(ns["gt_path"] / ns["pred_path"])
    est = load_estimator(str(ckpt), device="cpu", backend="torch")[0]
    pl = FramePipeline(est, camera_extrinsic(), Settings(scale=ns["scale"], intrinsics=(718.856, 718.856, 607.1928,
                                                                                            185.2157)))
    stamps, poses = [], []
    for i in range(120, 160):
        img = cv2.imread(str(kitti_dir / "image_0" / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE)
        r = pl.process(InputFrame(None, T0 + i / 10.0, "cam", time.monotonic(), image=img))
        if r is not None and r.odometry is not None:
            stamps.append(T0 + i / 10.0)
            poses.append(r.odometry.T_odom_base)
    from sfm_ros.data.pose_files import read_kitti

    truth = read_kitti(kitti_dir / "poses.txt")
    bag = _write_odometry_bag(tmp_path / "node", {
        "/odom": (np.asarray(stamps), np.asarray(poses), "base_link"),
        "/ground_truth/odom": (T0 + np.arange(len(truth)) / 10.0, truth, "camera_optical_frame")})
    scored, _ = _pose(capsys, tmp_path, "--bag", bag, "--pred-topic", "/odom", "--gt-topic", "/ground_truth/odom",
                      "--frames", "120:160")
    assert scored["count"] == 39  # the node's second frame has no pose
    assert scored["path_lengths"]["ratio"] == pytest.approx(1.0, abs=0.04), scored["path_lengths"]
    assert scored["methods"]["prediction"]["snippet_ate"]["mean"] < 0.05
