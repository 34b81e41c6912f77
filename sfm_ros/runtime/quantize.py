"""int8 depth and pose graphs for CPUs: ONNX Runtime static quantisation, calibrated on the user's
own frames.

:func:`quantize_onnx` turns an fp32 ONNX graph of :mod:`sfm_ros.runtime.export` into a QDQ graph
(int8 weights quantised per output channel, uint8 activations whose ranges are the minima and
maxima seen on the calibration inputs), which ONNX Runtime runs with its integer kernels (VNNI /
AVX512 where the CPU has them). :func:`calibration_feeds` makes those inputs from camera frames:
the depth network's from every frame, the pose network's from windows of ``seq_len`` consecutive
frames. :func:`int8_graphs` does both for a model; :func:`compare_graphs` measures what the
quantisation costs on frames that were not calibrated on (the depth's median relative change after
a median scaling, as the depth metrics scale; the pose vectors' largest absolute change).

Frames should be the camera's own (its exposure, its scenes): activation ranges learnt on other
images clip or waste the 256 levels. ``sfm_export --int8 --calib DIR`` is the command line. The node
quantises with :func:`int8_graphs_isolated`: the same graphs, made in a child process at the lowest
CPU priority (:mod:`sfm_ros.runtime.quantize_worker`), so that its frames keep the interpreter lock.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

#: the temporary folders of this module: ``sfm_int8_<pid of the process using it>_<random>``
#: (:func:`remove_stale_work_dirs` removes those whose process has gone)
WORK_PREFIX = "sfm_int8_"

#: calibration windows used at most (each gives one depth and one pose input)
DEFAULT_CALIB_WINDOWS = 32


class _Feeds:
    """ONNX Runtime's ``CalibrationDataReader`` over a list of input dictionaries."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_onnx(model: bytes, feeds: list[dict[str, np.ndarray]]) -> bytes:
    """The QDQ int8 graph of the fp32 ONNX graph ``model`` (bytes), calibrated on ``feeds`` (one
    ``{input name: array}`` per calibration input; at least one)."""
    if not feeds:
        raise ValueError("int8 quantisation needs at least one calibration input")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Feeds, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}_") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model)
        quant_pre_process(str(src), str(pre))  # shape inference + graph optimisation, as ORT recommends
        quantize_static(str(pre), str(out), Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        return out.read_bytes()


def calibration_feeds(frames: Sequence[torch.Tensor], seq_len: int, offsets: Sequence[int],
                      max_windows: int = DEFAULT_CALIB_WINDOWS) -> tuple[list[dict], list[dict]]:
    """``(depth feeds, pose feeds)`` from consecutive preprocessed frames ((1, 3, h, w) in [0, 1],
    in time order): up to ``max_windows`` windows of ``seq_len`` frames spread evenly over the
    sequence; each gives the depth input of its target (middle) frame and the pose input."""
    if len(frames) < seq_len:
        raise ValueError(f"int8 calibration needs at least {seq_len} consecutive frames, got {len(frames)}")
    mid = seq_len // 2
    starts = np.unique(np.linspace(0, len(frames) - seq_len, min(max_windows, len(frames) - seq_len + 1))
                       .round().astype(int))
    depth, pose = [], []
    for s in starts:
        w = frames[s:s + seq_len]
        depth.append({"image": w[mid].numpy()})
        pose.append({"target": w[mid].numpy(), "sources": torch.stack([w[mid + o] for o in offsets], 1).numpy()})
    return depth, pose


def int8_graphs(model, height: int, width: int, frames: Sequence[torch.Tensor],
                max_windows: int = DEFAULT_CALIB_WINDOWS) -> tuple[bytes, bytes, bytes, bytes]:
    """``(depth fp32, pose fp32, depth int8, pose int8)`` ONNX graphs of an :class:`SfMModel` at
    ``height`` x ``width``, the int8 ones calibrated on ``frames`` (:func:`calibration_feeds`)."""
    from sfm_ros.runtime.export import example_inputs, inference_modules, to_onnx

    depth_m, pose_m = inference_modules(model)
    d_in, p_in = example_inputs(height, width, len(model.offsets))
    d32 = to_onnx(depth_m, d_in, ["image"], "depth")
    p32 = to_onnx(pose_m, p_in, ["target", "sources"], "poses")
    d_feeds, p_feeds = calibration_feeds(frames, model.opts.seq_len, model.offsets, max_windows)
    return d32, p32, quantize_onnx(d32, d_feeds), quantize_onnx(p32, p_feeds)


def remove_stale_work_dirs(root: str | Path | None = None, min_age_s: float = 3600.0) -> list[Path]:
    """Remove the folders this module's functions left in ``root`` (the system's temporary folder)
    when their process was killed (a node ended by SIGKILL does not clean up, nor does its
    quantisation child, which ends with it): those whose process no longer runs and that nothing
    has written to for ``min_age_s`` (a process in another PID namespace sharing the folder looks
    gone). Returns them."""
    import time

    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(WORK_PREFIX + "*"):
        pid = path.name[len(WORK_PREFIX):].split("_", 1)[0]
        try:
            if (not path.is_dir() or not (pid.isascii() and pid.isdigit() and len(pid) <= 9) or _process_alive(int(pid))
                    or time.time() - path.stat().st_mtime < min_age_s):
                continue
        except OSError:  # removed meanwhile
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or cannot tell: leave its folder
    return True


def int8_graphs_isolated(model, options, frames: Sequence[torch.Tensor], timeout: float = 600.0) -> tuple[bytes, bytes]:
    """``(depth int8, pose int8)`` graphs of ``model`` (an :class:`SfMModel` with its
    :class:`~sfm_ros.core.options.Options`), calibrated on ``frames`` as :func:`int8_graphs`, made in
    a child process at the lowest CPU priority (:mod:`sfm_ros.runtime.quantize_worker`): the
    caller's process keeps its interpreter lock and its cores for its own work (the node's frames).
    Raises RuntimeError with the child's one line when it fails, or when it runs past ``timeout`` s."""
    import subprocess
    import sys

    from sfm_ros.core.checkpoint import save_weights

    frames = list(frames)
    if len(frames) < model.opts.seq_len:
        raise ValueError(f"int8 calibration needs at least {model.opts.seq_len} consecutive frames, got {len(frames)}")
    remove_stale_work_dirs()
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}_") as tmp:
        work = Path(tmp)
        save_weights(work / "model.pt", options, model.depth_net.state_dict(), model.pose_net.state_dict())
        np.save(work / "frames.npy", torch.cat([f.detach().float().cpu() for f in frames]).numpy())
        import sfm_ros

        root = str(Path(sfm_ros.__file__).resolve().parents[1])  # this package, installed or not
        path = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": root + (os.pathsep + path if path else "")}
        try:
            proc = subprocess.run([sys.executable, "-m", "sfm_ros.runtime.quantize_worker", str(work)], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"int8 quantisation ran past {timeout:.0f} s") from None
        if proc.returncode != 0:
            lines = [x for x in proc.stderr.splitlines() if x.strip()]
            raise RuntimeError(lines[-1] if lines else f"int8 quantisation exited {proc.returncode}")
        return (work / INT8_FILES[0]).read_bytes(), (work / INT8_FILES[1]).read_bytes()


def compare_graphs(fp32: tuple[bytes, bytes], int8: tuple[bytes, bytes], frames: Sequence[torch.Tensor],
                   seq_len: int, offsets: Sequence[int], session: Callable | None = None) -> dict[str, float]:
    """What int8 changes on ``frames`` (not calibrated on): ``depth_median_rel_diff`` (the mean
    over windows of the median ``|d8 / d32 / median(d8 / d32) - 1|``: the change left after median
    scaling), ``depth_max_rel_diff_p95`` (its 95th percentile pixel, mean over windows) and
    ``pose_max_abs_diff`` (the largest change of a pose vector element), ``windows`` compared."""
    from sfm_ros.runtime.export import median_scaled_deviation, ort_session

    session = session or (lambda g: ort_session(g, threads=1, spinning=False))
    d32, p32, d8, p8 = session(fp32[0]), session(fp32[1]), session(int8[0]), session(int8[1])
    d_feeds, p_feeds = calibration_feeds(frames, seq_len, offsets, max_windows=len(frames))
    med, p95, pose = [], [], 0.0
    for df, pf in zip(d_feeds, p_feeds):
        a, b = d32.run(None, df)[0], d8.run(None, df)[0]
        dev = median_scaled_deviation(b, a)
        med.append(float(np.median(dev)))
        p95.append(float(np.percentile(dev, 95)))
        pose = max(pose, float(np.abs(p32.run(None, pf)[0] - p8.run(None, pf)[0]).max()))
    return {"depth_median_rel_diff": float(np.mean(med)), "depth_rel_diff_p95": float(np.mean(p95)),
            "pose_max_abs_diff": pose, "windows": len(d_feeds)}


#: the int8 files :func:`write_int8` adds to an export folder
INT8_FILES = ("depth.int8.onnx", "pose.int8.onnx")


def median_ms(sess, feed: dict, runs: int = 20) -> float:
    """Median wall time (ms) of ``runs`` calls of an ONNX Runtime session after 3 warm-up calls."""
    import time

    for _ in range(3):
        sess.run(None, feed)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        t.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(t))


def write_int8(out_dir: str | Path, model, height: int, width: int, frames: Sequence[torch.Tensor],
               calib_fraction: float = 0.7, max_windows: int = DEFAULT_CALIB_WINDOWS) -> dict:
    """Write :data:`INT8_FILES` into ``out_dir``: calibrated on the first ``calib_fraction`` of
    ``frames`` (consecutive preprocessed frames), compared with fp32 on the rest
    (:func:`compare_graphs`), timed on one thread; returns the record for ``model.json``."""
    from sfm_ros.runtime.export import ort_session

    seq_len = model.opts.seq_len
    n_cal = int(round(len(frames) * calib_fraction))
    if n_cal < seq_len or len(frames) - n_cal < seq_len:
        raise ValueError(f"int8 calibration needs at least {seq_len} frames to calibrate on and {seq_len} to check "
                         f"on ({calib_fraction:.0%} / {1 - calib_fraction:.0%} of the frames); got {len(frames)} "
                         f"frames")
    d32, p32, d8, p8 = int8_graphs(model, height, width, frames[:n_cal], max_windows)
    out = Path(out_dir)
    (out / INT8_FILES[0]).write_bytes(d8)
    (out / INT8_FILES[1]).write_bytes(p8)
    check = compare_graphs((d32, p32), (d8, p8), frames[n_cal:], seq_len, model.offsets)
    d_feed, p_feed = calibration_feeds(frames[n_cal:], seq_len, model.offsets, max_windows=1)
    one = {}
    for name, (g32, g8, feed) in {"depth": (d32, d8, d_feed[0]), "pose": (p32, p8, p_feed[0])}.items():
        one[f"{name}_ms_fp32"] = median_ms(ort_session(g32, threads=1, spinning=False), feed)
        one[f"{name}_ms_int8"] = median_ms(ort_session(g8, threads=1, spinning=False), feed)
    return {"files": list(INT8_FILES), "calibration_frames": n_cal, "checked_frames": len(frames) - n_cal,
            "format": "QDQ: int8 weights per output channel, uint8 activations (min/max calibration)",
            "check": check, "one_thread_ms": one}


#: the camera frames the node calibrates int8 on before it switches to it
NODE_CALIB_FRAMES = 32
#: ``precision auto``: the share of those frames int8 is calibrated on (the rest check its output)
CALIB_SHARE = 0.75


class DeferredCalibration:
    """int8 in the node: once the camera's first ``frames`` processed frames that show something
    (not frozen, dark or noise: the pipeline's frame evidence) are in, a background thread
    quantises on them (a few seconds).

    ``precision: int8`` (``measure`` False): the estimator runs fp32 until then and switches
    (:meth:`sfm_ros.runtime.inference.Estimator.calibrate`). ``precision: auto`` (``measure`` True):
    the estimator runs what the start-up measurement chose; int8 is calibrated on the first
    :data:`CALIB_SHARE` of the frames, compared with it on the rest and timed against it
    (:func:`sfm_ros.runtime.path_measure.int8_verdict`), and swapped in only when it is faster at
    equal output (:meth:`~sfm_ros.runtime.inference.Estimator.adopt`). A failure is logged and the
    estimator keeps its path. ``state`` is the diagnostics' text."""

    def __init__(self, estimator, log, frames: int = NODE_CALIB_FRAMES, measure: bool = False):
        import threading

        self.estimator = estimator
        self.log = log
        self.measure = bool(measure)
        self.frames = max((2 if self.measure else 1) * int(estimator.seq_len), int(frames))
        self._buf: list[torch.Tensor] = []
        self._thread: threading.Thread | None = None
        self.state = (f"{estimator.precision}; int8 measured after {self.frames} frames" if self.measure else
                      f"fp32 until {self.frames} frames calibrate int8" if estimator.needs_calibration else "")

    @property
    def _wanted(self) -> bool:
        return self.measure or self.estimator.needs_calibration

    def offer(self, x: torch.Tensor) -> None:
        """A processed frame's network input; starts the calibration once enough are in."""
        if self._thread is not None or not self._wanted:
            return
        self._buf.append(x)
        self.state = (f"{self.estimator.precision}, collecting frames for int8 ({len(self._buf)}/{self.frames})"
                      if self.measure else f"fp32, calibrating int8 ({len(self._buf)}/{self.frames} frames)")
        if len(self._buf) >= self.frames:
            import threading

            target = self._measure if self.measure else self._calibrate
            self._thread = threading.Thread(target=target, name="sfm_int8_calibration", daemon=True)
            self._thread.start()

    def reset(self) -> None:
        """The frames stopped being consecutive (a new resolution): collect again."""
        if self._thread is None:
            self._buf.clear()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background calibration, if one started (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _calibrate(self) -> None:
        import time

        t0 = time.perf_counter()
        try:
            self.estimator.calibrate(self._buf)
        except Exception as exc:  # quantisation failed: fp32 goes on
            self.estimator.needs_calibration = False
            self.state = f"fp32 (int8 calibration failed: {type(exc).__name__})"
            self.log.warning(f"int8 calibration failed ({type(exc).__name__}: {str(exc)[:200]}): running fp32")
            return
        finally:
            self._buf = []
        self.state = "int8"
        self.log.info(f"int8: calibrated on the camera's first {self.frames} frames in "
                      f"{time.perf_counter() - t0:.1f} s; the networks now run int8")

    def _measure(self) -> None:
        from sfm_ros.runtime.path_measure import int8_verdict

        e = self.estimator
        kept = f"{e.precision} ({e.backend})"
        n_cal = min(max(e.seq_len, int(round(CALIB_SHARE * len(self._buf)))), len(self._buf) - e.seq_len)
        try:
            twin = e.int8_twin(self._buf[:n_cal])
            switch, why = int8_verdict(e, twin, self._buf[n_cal:])
            if switch:
                e.adopt(twin)
        except Exception as exc:  # quantisation failed, new weights arrived meanwhile: the path stays
            self.state = f"{kept} (int8 not measured: {type(exc).__name__})"
            self.log.warning(f"precision auto: int8 not measured ({type(exc).__name__}: {str(exc)[:200]}): "
                             f"staying {kept}")
            return
        finally:
            self._buf = []
        self.state = f"int8 ({why})" if switch else f"{kept} ({why})"
        self.log.info(f"precision auto: {'int8 from now on' if switch else 'staying ' + kept}: {why}")
