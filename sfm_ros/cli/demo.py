"""``make demo``: the whole product on the embedded default, end to end, with real ROS 2 topics.

1. Renders a street drive the default model never saw (:mod:`sfm_ros.data.synthetic`, exact depth and
   poses) and writes it as a ROS 2 mcap bag (``sensor_msgs/Image`` + ``CameraInfo`` + ground-truth
   ``nav_msgs/Odometry``, real timestamps).
2. Starts ``sfm_node`` (a separate process, the shipped params file and model, ``use_sim_time``).
3. Plays the bag with the project's player (``/clock`` + camera topics, real time) and records what
   the node publishes (``depth/image``, ``odom``, ``/tf``, ``/diagnostics``) with the project's recorder.
4. Writes ``OUTPUT/`` — ``depth_panels.png`` (frames, predicted and true depth), ``trajectory.png``
   (odometry against ground truth, top view), ``results.json``, the recorded bag — and prints the
   figures: depth error (median-scaled abs rel), trajectory error (ATE after Sim(3) alignment,
   the paper's 5-frame snippet ATE), frames dropped, stamp→publish latency.

Every process it starts stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in a
DDS domain of its own (``--domain-id``, default 73).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "sfm_default.pt"
PARAMS = REPO / "config" / "sfm_ros.yaml"
IMAGE_TOPIC, INFO_TOPIC, GT_TOPIC = "/camera/image_raw", "/camera/camera_info", "/ground_truth/odom"


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def render_bag(out: Path, frames: int, seed: int, t0: float) -> "object":
    from sfm_ros.data.bag_writer import write_image_bag
    from sfm_ros.data.camera import CameraModel
    from sfm_ros.data.synthetic import render_sequence

    seq = render_sequence(frames, 128, 416, seed=seed, t0=t0)
    K = seq.K
    cam = CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], 416, 128)
    write_image_bag(out, list(zip(seq.timestamps, seq.images)), cam, topic=IMAGE_TOPIC,
                    info_topic=INFO_TOPIC, poses=seq.poses, odom_topic=GT_TOPIC, overwrite=True)
    return seq


def run_pipeline(bag: Path, record: Path, checkpoint: Path, rate: float, timeout: float) -> dict:
    """Start sfm_node, play ``bag`` into it and record its outputs; returns run statistics."""
    import rclpy

    from sfm_ros.ros.player import BagPlayer
    from sfm_ros.ros.recorder import Recorder

    cmd = [sys.executable, "-m", "sfm_ros.ros.node", "--ros-args", "--params-file", str(PARAMS),
           "-p", "use_sim_time:=true", "-p", f"checkpoint:={checkpoint}",
           "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"]
    node_log = open(record.parent / "sfm_node.log", "w")
    proc = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=dict(os.environ))
    rclpy.init()
    node = rclpy.create_node("sfm_demo")
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    stats: dict = {}
    try:
        recorder = Recorder(node, record, overwrite=True)
        for topic, msgtype in (("/depth/image", "sensor_msgs/msg/Image"), ("/odom", "nav_msgs/msg/Odometry"),
                               ("/tf", "tf2_msgs/msg/TFMessage"),
                               ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")):
            recorder.add_topic(topic, msgtype)
        player = BagPlayer(node, bag, topics=[IMAGE_TOPIC, INFO_TOPIC], rate=rate, clock=True)
        spin.start()
        _log("waiting for sfm_node (loading the model) ...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sfm_node exited with {proc.returncode}; see {node_log.name}")
            if player.wait_for_subscribers(0.2) and node.count_publishers("/depth/image") > 0:
                break
        else:
            raise RuntimeError(f"sfm_node did not subscribe within {timeout:.0f} s; see {node_log.name}")
        time.sleep(0.5)  # discovery of the reverse direction (node → recorder)
        _log(f"playing {bag.name} at x{rate:g} into sfm_node")
        t_start = time.monotonic()
        player.play_once()
        # wait until the node has published its last result (no new depth for 2 s)
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 2.0 and time.monotonic() < deadline + 60:
            n = recorder.counts.get("/depth/image", 0)
            if n != last:
                last, quiet_since = n, time.monotonic()
            time.sleep(0.1)
        stats["play_seconds"] = time.monotonic() - t_start
        stats["published"] = dict(recorder.counts)
        recorder.close()
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        node_log.close()
    return stats


def analyse(record: Path, seq, out: Path, frames_to_show: int = 4) -> dict:
    """Compare the recorded outputs with the ground truth; writes pictures; returns figures."""
    import cv2
    from rosbags.highlevel import AnyReader

    from sfm_ros.data.bags import BagError, read_odometry
    from sfm_ros.data.image_codec import decode_image
    from sfm_ros.evaluation.metrics import aggregate, evaluate_depth
    from sfm_ros.runtime.odometry import camera_extrinsic
    from sfm_ros.core.se3 import invert_pose
    from sfm_ros.evaluation.trajectory import ate, snippet_ate, zero_motion_poses
    from sfm_ros.runtime.visualize import colorize_depth, stack_panels

    stamp_index = {round(float(t), 6): i for i, t in enumerate(seq.timestamps)}
    depths: dict[int, np.ndarray] = {}
    odom: dict[int, np.ndarray] = {}
    diag: dict[str, str] = {}
    with AnyReader([record]) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/diagnostics":
                for st in msg.status:
                    if "sfm" in st.name:
                        diag = {kv.key: kv.value for kv in st.values}
                continue
            if conn.topic != "/depth/image":
                continue
            stamp = round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)
            i = stamp_index.get(stamp)
            if i is None:
                continue
            depths[i] = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    try:
        odom_stamps, odom_poses = read_odometry(record, "/odom")
    except BagError as exc:
        raise RuntimeError(f"the node's odometry cannot be read from the recording: {exc}") from None
    for t, T in zip(odom_stamps, odom_poses):
        i = stamp_index.get(round(float(t), 6))
        if i is not None:
            odom[i] = T
    if not depths or len(odom) < 6:
        raise RuntimeError(f"the node published too little ({len(depths)} depth images, {len(odom)} odometry "
                           f"messages); see {out / 'sfm_node.log'}")
    # depth: median-scaled errors against the exact rendered depth (sky excluded: infinite)
    results = [evaluate_depth(seq.depths[i], d, min_depth=1e-3, max_depth=80.0) for i, d in depths.items()]
    depth_figures = aggregate(results)
    # trajectory: base_link in odom -> camera poses, compared with the rendered camera poses
    T_base_cam = camera_extrinsic()
    idx = sorted(odom)
    est = np.stack([invert_pose(T_base_cam) @ odom[i] @ T_base_cam for i in idx])
    gt = np.stack([invert_pose(seq.poses[idx[0]]) @ seq.poses[i] for i in idx])
    traj = ate(gt, est, align="sim3")
    snip = snippet_ate(gt, est, snippet_len=5)
    zero = snippet_ate(gt, zero_motion_poses(len(gt)), snippet_len=5)
    # pictures
    show = np.linspace(0, len(depths) - 1, min(frames_to_show, len(depths))).astype(int)
    rows = []
    for k in show:
        i = sorted(depths)[k]
        gt_d = seq.depths[i]
        rows.append(stack_panels([seq.images[i], colorize_depth(depths[i]),
                                  colorize_depth(np.where(np.isfinite(gt_d), gt_d, 0))], vertical=False))
    panel = stack_panels(rows, vertical=True)
    cv2.imwrite(str(out / "depth_panels.png"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    _plot_trajectory(gt, est, traj, out / "trajectory.png")
    return {
        "frames_in_bag": len(seq.timestamps),
        "depth_images": len(depths),
        "odometry_messages": len(odom),
        "depth_abs_rel": depth_figures["abs_rel"],
        "depth_sq_rel": depth_figures["sq_rel"],
        "depth_rmse": depth_figures["rmse"],
        "depth_a1": depth_figures["a1"],
        "ate_sim3_rmse_m": traj["rmse"],
        "ate_sim3_scale": traj["scale"],
        "trajectory_length_m": float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum()),
        "snippet_ate_5": snip["mean"],
        "snippet_ate_5_std": snip["std"],
        "snippet_ate_5_zero_motion": zero["mean"],
        "node_diagnostics": diag,
    }


def _plot_trajectory(gt: np.ndarray, est: np.ndarray, traj: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sfm_ros.evaluation.trajectory import umeyama

    s, R, t = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=True)
    aligned = (s * (R @ est[:, :3, 3].T)).T + t
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt[:, 0, 3], gt[:, 2, 3], "k-", lw=2, label="ground truth")
    ax.plot(aligned[:, 0], aligned[:, 2], "r.-", ms=3, label=f"sfm_node odometry (Sim(3)-aligned, s={s:.2f})")
    ax.set_xlabel("x [m] (right)")
    ax.set_ylabel("z [m] (forward)")
    ax.set_title(f"camera trajectory, top view: ATE {traj['rmse']:.2f} m")
    ax.axis("equal")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sfm_demo", description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="demo_output", help="folder for the results (default demo_output)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_MODEL), help="model (default: the shipped one)")
    ap.add_argument("--frames", type=int, default=100, help="frames to render (default 100 = 10 s)")
    ap.add_argument("--seed", type=int, default=999, help="scene seed (the default model trained on seeds 0..N-1)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: real time)")
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("SFM_DEMO_DOMAIN_ID", 73)))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the node to start")
    args = ap.parse_args(argv)
    # This process and every one it starts: discovery on this machine only, in the demo's own domain.
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        print(f"sfm_demo: error: model {checkpoint} does not exist (train one with sfm_train, see models/README.md)",
              file=sys.stderr)
        return 2
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _log(f"rendering {args.frames} frames of an unseen street (seed {args.seed}) into a bag")
    seq = render_bag(out / "input_bag", args.frames, args.seed, t0=1000.0)
    stats = run_pipeline(out / "input_bag", out / "recorded", checkpoint, args.rate, args.timeout)
    _log(f"recorded {stats['published']}; analysing")
    figures = analyse(out / "recorded", seq, out)
    figures.update({"play_seconds": stats["play_seconds"], "checkpoint": str(checkpoint)})
    (out / "results.json").write_text(json.dumps(figures, indent=2, default=str))
    d = figures["node_diagnostics"]
    lines = [
        f"frames played:        {figures['frames_in_bag']} at x{args.rate:g} ({figures['frames_in_bag'] / 10:.0f} s of 10 Hz camera)",
        f"depth images:         {figures['depth_images']}   odometry messages: {figures['odometry_messages']}",
        f"depth error:          abs rel {figures['depth_abs_rel']:.3f}, sq rel {figures['depth_sq_rel']:.3f}, "
        f"RMSE {figures['depth_rmse']:.2f} m, d<1.25 {figures['depth_a1']:.3f} (median-scaled, vs exact depth)",
        f"trajectory error:     ATE {figures['ate_sim3_rmse_m']:.2f} m over {figures['trajectory_length_m']:.1f} m "
        f"(Sim(3)-aligned), 5-frame snippet ATE {figures['snippet_ate_5']:.4f} "
        f"(zero motion: {figures['snippet_ate_5_zero_motion']:.4f})",
        "node diagnostics:     " + (", ".join(f"{k}={v}" for k, v in d.items()) if d else "none received"),
        f"pictures:             {out / 'depth_panels.png'}, {out / 'trajectory.png'}",
    ]
    print("\n".join(lines))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
