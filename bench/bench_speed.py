#!/usr/bin/env python3
"""Speed and memory of sfm_ros, each measurement in its own process:

* ``infer``  depth + pose inference per frame through :class:`sfm_ros.runtime.inference.Estimator`
  (the path the node and sfm_eval use), 128x416, batch 1, fp32, untrained weights of the
  configuration's architecture; the median of ``--reps`` calls after 5 warm-up calls, on the CPU
  and on CUDA (fp32 and fp16 autocast) when present. (``bench/bench_inference.py`` compares optimised inference paths in
  detail.)
* ``train``  one training step (forward, losses, backward, Adam) of :class:`sfm_ros.training.trainer.Trainer`
  at 128x416, batch 4, fp32 and under bf16 autocast when the CPU has AVX512-BF16/AMX (always on
  CUDA); median of ``--steps`` steps after 1 warm-up step on a fixed batch of real frames; the
  process's peak RSS (``getrusage``).
* ``bag``    ingestion: 100 KITTI frames (1241x376 mono8) written to an mcap bag in a temporary
  folder, then read + decoded + resized to 128x416 with ``read_image_stream`` + ``prepare_sequence``;
  frames per second of the read.
* ``node``   ``python -m sfm_ros.ros.node`` in a child process (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST,
  the bench's own ROS_DOMAIN_ID) fed by a publisher of KITTI frames at 10 Hz for ``--seconds``
  (stamps = publish time); latency = receipt time of ``depth/image`` − its header stamp (p50/p95), the
  node's own ``/diagnostics`` latencies, frames processed/dropped, and the node's peak RSS (VmHWM);
  ``--adapt``: with online adaptation on (its steps and updates from the diagnostics).

    .venv/bin/python bench/bench_speed.py infer --config default [--reps 50]
    .venv/bin/python bench/bench_speed.py train --config paper [--steps 10]
    .venv/bin/python bench/bench_speed.py bag
    .venv/bin/python bench/bench_speed.py node --config default [--seconds 20]
    .venv/bin/python bench/bench_speed.py node --checkpoint models/sfm_default.pt --adapt --seconds 60

Each prints its JSON result as the last line (after ``@@BENCH_JSON@@``).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_SIZE, KITTI, REPO, bench_domain, bench_options, emit, peak_rss_mib  # noqa: E402


def _median_ms(fn, reps: int, warmup: int = 5, sync=None) -> dict:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return {"median_ms": statistics.median(ts), "p90_ms": ts[min(len(ts) - 1, int(0.9 * len(ts)))], "reps": reps}


def _kitti_frames(n: int):
    """(grey frames at the camera resolution, K): KITTI 00, or random frames of its size when absent."""
    import numpy as np

    if (KITTI / "image_0").is_dir():
        from sfm_ros.data.sources import read_kitti_odometry

        seq = read_kitti_odometry(KITTI, max_frames=n)
        return [f.image for f in seq], seq.camera.K, "KITTI 00"
    rng = np.random.default_rng(0)
    K = np.array([[718.856, 0, 607.19], [0, 718.856, 185.22], [0, 0, 1.0]])
    return [rng.integers(0, 256, (376, 1241), dtype=np.uint8) for _ in range(n)], K, "random 1241x376"


def _checkpoint(config: str, path: Path) -> Path:
    import torch

    from sfm_ros.core.checkpoint import save_checkpoint
    from sfm_ros.core.model import SfMModel

    opts = bench_options(config)
    torch.manual_seed(0)
    save_checkpoint(path, SfMModel(opts.model), opts)
    return path


# ------------------------------------------------------------------------------------------ infer
def bench_infer(config: str, reps: int) -> dict:
    import torch

    from sfm_ros.runtime.inference import Estimator

    frames, _, what = _kitti_frames(8)
    out = {"frames": what, "arch": None}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(config, Path(tmp) / "m.pt")
        runs = [("cpu", "fp32")] + ([("cuda", "fp32"), ("cuda", "fp16")] if torch.cuda.is_available() else [])
        for dev, precision in runs:
            est = Estimator(ckpt, device=dev, precision=precision)
            o = est.options.model
            out["arch"] = f"{o.depth_arch} x{o.width_mult:g} + {o.pose_arch}, seq_len {o.seq_len}"
            imgs = [est.preprocess(f) for f in frames[:est.seq_len]]
            sync = torch.cuda.synchronize if dev == "cuda" else None
            pre = _median_ms(lambda: est.preprocess(frames[0]), reps, sync=sync)
            d = _median_ms(lambda: est.depth(imgs[0]), reps, sync=sync)
            p = _median_ms(lambda: est.poses(imgs), reps, sync=sync)
            out[dev if precision == "fp32" else f"{dev}_{precision}"] = {"preprocess": pre, "depth": d, "pose": p,
                        "total_ms": pre["median_ms"] + d["median_ms"] + p["median_ms"]}
    out["threads"] = torch.get_num_threads()
    return out


# ------------------------------------------------------------------------------------------ train
def bench_train(config: str, steps: int) -> dict:
    import torch

    from sfm_ros.data.datasets import collate, prepare_sequence
    from sfm_ros.core.device import cpu_has_bf16_instructions
    from sfm_ros.training.trainer import Trainer

    frames, K, what = _kitti_frames(12)
    seq = prepare_sequence(((f, i / 10.0) for i, f in enumerate(frames)), K, BENCH_SIZE, name="kitti00[0:12]")
    out: dict = {"frames": what}
    modes = ["off"]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda" or cpu_has_bf16_instructions():
        modes.append("bf16")
    with tempfile.TemporaryDirectory() as tmp:
        for amp in modes:
            opts = bench_options(config, extra={"train.amp": amp, "train.batch_size": 4})
            torch.manual_seed(0)
            tr = Trainer(opts, [seq], None, tmp, progress=False, tensorboard=False, ckpt_every=0)
            batch = collate([tr.train_set[i] for i in range(4)])
            sync = torch.cuda.synchronize if tr.device.type == "cuda" else None
            r = _median_ms(lambda: tr.train_step(batch), steps, warmup=1, sync=sync)
            r["device"] = str(tr.device)
            out["fp32" if amp == "off" else "bf16"] = r
            tr.close()
            del tr
    if "bf16" not in out:
        out["bf16"] = {"skipped": "the CPU has no AVX512-BF16/AMX (bf16 autocast would be emulated)"}
    out["peak_rss_mib"] = peak_rss_mib()
    out["threads"] = torch.get_num_threads()
    return out


# ------------------------------------------------------------------------------------------ bag
def bench_bag(n: int = 100) -> dict:
    from sfm_ros.data.bag_writer import write_image_bag
    from sfm_ros.data.bags import read_image_stream
    from sfm_ros.data.datasets import prepare_sequence

    frames, K, what = _kitti_frames(n)
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "kitti_bag"
        t0 = time.perf_counter()
        write_image_bag(bag, [(i / 10.0, f) for i, f in enumerate(frames)], K, storage="mcap")
        write_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file()) / 2 ** 20
        t0 = time.perf_counter()
        seq = prepare_sequence(((f.image, f.stamp) for f in read_image_stream(bag, "/camera/image_raw")),
                               K, BENCH_SIZE, name="bag")
        read_s = time.perf_counter() - t0
    return {"frames": len(seq), "source": what, "encoding": "mono8 1241x376" if what == "KITTI 00" else what,
            "bag_mib": size_mb, "write_s": write_s, "read_resize_s": read_s, "fps": len(seq) / read_s}


# ------------------------------------------------------------------------------------------ node
def bench_node(config: str, seconds: float, rate: float = 10.0, checkpoint: str | None = None,
               adapt: bool = False, params: list[str] | None = None) -> dict:
    """Runs in a process whose environment is already localhost-only in the bench's domain."""
    if not (REPO / "sfm_ros" / "node.py").is_file():
        return {"error": "sfm_ros/ros/node.py is absent"}
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST" or "ROS_DOMAIN_ID" not in os.environ:
        return {"error": "refusing to start rclpy without ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID"}
    try:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
    except ImportError as exc:
        return {"error": f"rclpy is not importable ({exc})"}
    from sfm_ros.data.image_codec import encode_image

    frames, K, what = _kitti_frames(40)
    tmp = tempfile.TemporaryDirectory()
    ckpt = checkpoint or _checkpoint(config, Path(tmp.name) / "m.pt")
    intr = f"intrinsics:=[{K[0, 0]}, {K[1, 1]}, {K[0, 2]}, {K[1, 2]}]"
    extra = ["-p", "adapt:=true", "-p", f"adapt_checkpoint:={Path(tmp.name) / 'adapted.pt'}"] if adapt else []
    for prm in params or []:
        extra += ["-p", prm]
    node = subprocess.Popen([sys.executable, "-m", "sfm_ros.ros.node", "--ros-args", "-p", f"checkpoint:={ckpt}",
                             "-p", intr, "-r", "__node:=sfm_bench_node", *extra],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: [log.append(x) for x in node.stdout], daemon=True).start()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])  # not the bench's own command line
    client = rclpy.create_node("sfm_bench_client", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(client)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    lat: list[float] = []
    lat_at: list[float] = []  # each latency's image stamp, for the latency over the run
    diags: list = []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def on_depth(msg):
        now = client.get_clock().now().nanoseconds * 1e-9
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        lat.append(now - stamp)
        lat_at.append(stamp)

    def on_diag(msg):
        for st in msg.status:
            if "inference" in st.name:
                diags.append({kv.key: kv.value for kv in st.values})

    client.create_subscription(Image, "depth/image", on_depth, qos)
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = client.create_publisher(Image, "image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    result: dict = {"frames": what, "rate_hz": rate, "seconds": seconds, "checkpoint": str(checkpoint or config),
                    "adapt": adapt}
    try:
        t_end = time.monotonic() + 120.0
        while not diags and time.monotonic() < t_end and node.poll() is None:
            time.sleep(0.2)  # the node is up when its 1 Hz diagnostics arrive
        if not diags:
            tail = "".join(log[-3:]).strip().replace("\n", " | ")
            return {"error": f"the node did not come up ({'exited ' + str(node.returncode) if node.poll() is not None else 'no diagnostics in 120 s'}): {tail[:300]}"}
        period = 1.0 / rate
        t_next = time.monotonic()
        sent = 0
        t_first = 0.0
        t_stop = t_next + seconds
        while time.monotonic() < t_stop and node.poll() is None:
            enc, h, w, step, data = encode_image(frames[sent % len(frames)], "mono8")
            msg = Image(encoding=enc, height=h, width=w, step=step, data=data, is_bigendian=0)
            msg.header.frame_id = "camera_optical_frame"
            msg.header.stamp = client.get_clock().now().to_msg()
            if sent == 0:
                t_first = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            pub.publish(msg)
            sent += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        time.sleep(2.5)  # the last outputs and one more diagnostics message
        rss = None
        try:
            for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    rss = int(line.split()[1]) / 1024.0
        except OSError:
            pass
        def pct(xs, q):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else None
        d = diags[-1]
        # The latency over the run, 5-second windows from the first image's stamp (~50 frames a
        # window at 10 Hz: its p95 is about the third largest): a start-up tail shows apart from a
        # steady-state one.
        windows: list[list[float]] = []
        for at, x in zip(lat_at, lat):
            k = max(0, int((at - t_first) // 5.0))
            while len(windows) <= k:
                windows.append([])
            windows[k].append(x)
        result["latency_p50_p95_ms_by_5s"] = [
            [round(1e3 * pct(w, 50), 1), round(1e3 * pct(w, 95), 1)] if w else None for w in windows]
        result.update({"sent": sent, "received_depth": len(lat), "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95),
                       "node_latency_stamp_p50_s": float(d.get("latency_stamp_p50_s", "nan")),
                       "node_latency_stamp_p95_s": float(d.get("latency_stamp_p95_s", "nan")),
                       "node_inference_p50_ms": float(d.get("inference_p50_ms", "nan")),
                       "node_processed": int(d.get("frames_processed", 0)),
                       "node_dropped": int(d.get("frames_dropped", 0)), "node_device": d.get("device"),
                       "node_peak_rss_mib": rss,
                       **{k: d[k] for k in ("adapt", "adapt_steps", "adapt_updates", "adapt_windows", "refine_ms_p50",
                                            "refine_corners", "frame_ms_p50", "rotation_window") if k in d}})
        return result
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(timeout=5)
        ex.shutdown(timeout_sec=2.0)
        client.destroy_node()
        rclpy.try_shutdown(context=ctx)
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("infer", "train", "bag", "node"))
    p.add_argument("--config", default="default", help="preset[+group.key=value...] (default: default)")
    p.add_argument("--reps", type=int, default=50, help="timed inference calls (default 50)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (default 10)")
    p.add_argument("--seconds", type=float, default=20.0, help="node feed duration (default 20)")
    p.add_argument("--checkpoint", help="node: this checkpoint instead of untrained weights of --config")
    p.add_argument("--adapt", action="store_true", help="node: with online adaptation on (-p adapt:=true)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="node: one more node parameter (e.g. pose_flip:=false); repeatable")
    args = p.parse_args(argv)
    try:
        if args.what == "infer":
            res = bench_infer(args.config, args.reps)
        elif args.what == "train":
            res = bench_train(args.config, args.steps)
        elif args.what == "bag":
            res = bench_bag()
        else:
            # Always localhost-only, in the bench's own domain (SFM_BENCH_DOMAIN or 90-99), whatever
            # the caller's environment says; the node inherits it.
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
            os.environ["ROS_DOMAIN_ID"] = str(bench_domain())
            res = bench_node(args.config, args.seconds, checkpoint=args.checkpoint, adapt=args.adapt,
                             params=args.param)
    except Exception as exc:
        res = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    emit(res)
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
