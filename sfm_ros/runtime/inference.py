"""Inference on numpy images: preprocessing, depth, and relative poses from a trained checkpoint.

Used by the ROS node, the evaluation and the demo; ROS-free. Depth is in *network units*
(monocular depth is only known up to scale): multiply by a metric scale to get metres.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from sfm_ros.data.camera import resize_intrinsics
from sfm_ros.data.datasets import resize_float01
from sfm_ros.core.checkpoint import load_model
from sfm_ros.core.device import cpu_supports_bf16, resolve_device
from sfm_ros.core.geometry import check_shape, invert_pose, pose_vec_to_mat
from sfm_ros.core.model import source_offsets
from sfm_ros.core.networks import normalize_image


BACKENDS = ("torch", "onnxruntime")


def to_rgb_array(x: torch.Tensor) -> np.ndarray:
    """A preprocessed (1, 3, h, w) frame (:meth:`Estimator.preprocess`) → (h, w, 3) float32 RGB in
    [0, 1] on the CPU; the inverse of the preprocessing's layout change."""
    check_shape(x, (1, 3, None, None), "frame")
    return x[0].permute(1, 2, 0).float().cpu().numpy()


def to_rgb8(x: torch.Tensor) -> np.ndarray:
    """A preprocessed (1, 3, h, w) frame → (h, w, 3) uint8 RGB (rounded, clipped to 0-255): the
    network-size image of the point cloud's colours and of online adaptation's windows."""
    return (np.clip(to_rgb_array(x), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def auto_backend(device: str, precision: str, size_override: bool = False) -> str:
    """The faster backend measured for a configuration: ``onnxruntime`` for fp32 and int8 on the CPU
    (when installed and the network size is the checkpoint's), else ``torch``."""
    import importlib.util

    try:
        cpu = resolve_device(device).type == "cpu"
    except ValueError:
        return "torch"  # the Estimator reports the bad device
    if cpu and precision in ("fp32", "int8") and not size_override and importlib.util.find_spec("onnxruntime"):
        return "onnxruntime"
    return "torch"


def _ort_sessions(model, height: int, width: int, threads: int, calibration: list | None = None,
                 isolate_options=None):
    """ONNX Runtime sessions of ``model``'s depth and pose graphs (exported in memory); int8 graphs
    calibrated on ``calibration`` (preprocessed consecutive frames) when given, quantised in a
    child process of low priority when ``isolate_options`` (the model's Options) is given
    (:func:`sfm_ros.runtime.quantize.int8_graphs_isolated`: for the node, whose frames go on)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ValueError("backend onnxruntime needs the onnxruntime package (pip install onnxruntime)") from None
    from sfm_ros.runtime.export import example_inputs, inference_modules, ort_session, to_onnx

    if calibration is not None and isolate_options is not None:
        from sfm_ros.runtime.quantize import int8_graphs_isolated

        d_graph, p_graph = int8_graphs_isolated(model, isolate_options, calibration)
    elif calibration is not None:
        from sfm_ros.runtime.quantize import int8_graphs

        d_graph, p_graph = int8_graphs(model, height, width, calibration)[2:]
    else:
        depth_m, pose_m = inference_modules(model)
        d_in, p_in = example_inputs(height, width, len(model.offsets))
        d_graph = to_onnx(depth_m, d_in, ["image"], "depth")
        p_graph = to_onnx(pose_m, p_in, ["target", "sources"], "poses")
    return (ort_session(d_graph, threads=threads, spinning=False),
            ort_session(p_graph, threads=threads, spinning=False))


class Estimator:
    """A trained model ready for inference on numpy frames.

    Args:
        checkpoint: path of an sfm_ros checkpoint.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``fp32`` | ``fp16`` (CUDA) | ``bf16`` (CUDA, or a CPU with bf16 instructions) | ``auto``
            (fp32; bf16 on CPUs that support it natively) | ``int8`` (CPU, backend onnxruntime: both
            graphs quantised, :mod:`sfm_ros.runtime.quantize`, calibrated on ``calibration``; without
            it fp32 until :meth:`calibrate` is given frames, ``needs_calibration`` says so).
        backend: ``torch`` (eager PyTorch) | ``onnxruntime``: the depth and pose networks exported
            to ONNX in memory at start (0.6 s for the shipped model; :mod:`sfm_ros.runtime.export`, batch
            norm folded) and run by ONNX Runtime on the CPU, fp32 only. Measured 1.2-1.6x faster
            than eager PyTorch on a 2-core CPU (BENCHMARKS.md); outputs equal PyTorch's within the
            export tolerances (depth 1e-4 relative, poses 1e-5). Explainability masks still come
            from PyTorch.
        threads: ONNX Runtime intra-op threads (0: its default); PyTorch's are set by the caller.
        pose_flip: also run the pose network on the mirrored window (one batch of two) and average
            the two motions (the mirrored one mirrored back: x translation and the y, z rotations
            change sign): test-time augmentation, as monodepth's flip post-processing does for depth.
        calibration: consecutive camera images (numpy, any size) to calibrate ``int8`` on (at least
            ``seq_len``; a few dozen of the camera's own frames).
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto", precision: str = "fp32",
                 backend: str = "torch", threads: int = 0, pose_flip: bool = False,
                 calibration: list | None = None):
        self.device = resolve_device(device)
        self.model, self.options, self.state = load_model(checkpoint, self.device)
        self.height, self.width = self.options.model.height, self.options.model.width
        self.seq_len = self.options.model.seq_len
        self.offsets = source_offsets(self.seq_len)
        if precision == "auto":
            precision = "bf16" if self.device.type == "cpu" and cpu_supports_bf16() else "fp32"
        if precision not in ("fp32", "fp16", "bf16", "int8"):
            raise ValueError(f"precision must be fp32, fp16, bf16, int8 or auto, got {precision!r}")
        if precision == "int8" and (self.device.type != "cpu" or backend != "onnxruntime"):
            raise ValueError(f"precision int8 runs on the CPU through ONNX Runtime (backend onnxruntime: the "
                             f"onnxruntime package, the checkpoint's input size); got device {self.device} and "
                             f"backend {backend}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.precision = precision
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.threads = threads
        self.pose_flip = bool(pose_flip)
        self._ort_depth = self._ort_pose = None
        self._swap_lock = threading.Lock()  # calibrate and set_model build and swap one at a time
        self._calibration = ([self.preprocess(im) for im in calibration] if precision == "int8" and calibration
                             else None)
        #: int8 was asked for without calibration frames: fp32 until :meth:`calibrate` is given some
        self.needs_calibration = precision == "int8" and self._calibration is None
        #: ``precision auto`` chose this path at start: int8 is to be measured against it on camera frames
        self.int8_candidate = False
        if backend == "onnxruntime":
            if self.device.type != "cpu" or precision not in ("fp32", "int8"):
                raise ValueError(f"backend onnxruntime runs fp32 or int8 on the CPU; got device {self.device} and "
                                 f"precision {precision} (use backend torch on a GPU)")
            self._ort_depth, self._ort_pose = _ort_sessions(self.model, self.height, self.width, threads,
                                                            self._calibration)

    def calibrate(self, frames: list[torch.Tensor]) -> None:
        """Quantise to int8 on ``frames`` (consecutive preprocessed camera frames, at least
        ``seq_len``) and switch to the int8 graphs; built first, then swapped in (a call running in
        another thread finishes with the graphs it started with). Raises ValueError when this
        estimator was not made for int8."""
        if self.precision != "int8" or self.backend != "onnxruntime":
            raise ValueError(f"calibrate needs precision int8 with backend onnxruntime, not {self.precision} "
                             f"with {self.backend}")
        frames = list(frames)
        with self._swap_lock:  # not beside set_model: the graphs must be of the weights served
            depth, pose = _ort_sessions(self.model, self.height, self.width, self.threads, frames,
                                        isolate_options=self.options)
            self._calibration = frames
            self._ort_depth, self._ort_pose = depth, pose
            self.needs_calibration = False

    def int8_twin(self, frames: list[torch.Tensor]) -> "Estimator":
        """A copy of this estimator (the same weights, shared) that runs int8 ONNX Runtime graphs
        calibrated on ``frames`` (consecutive preprocessed frames, at least ``seq_len``); this one is
        unchanged. For ``precision auto``'s measurement (:mod:`sfm_ros.runtime.quantize`); CPU only."""
        import copy

        if self.device.type != "cpu":
            raise ValueError(f"int8 runs on the CPU, not on {self.device}")
        frames = list(frames)
        model = self.model  # read once: the graphs and the twin's weights must be the same ones
        depth, pose = _ort_sessions(model, self.height, self.width, self.threads, frames,
                                    isolate_options=self.options)
        twin = copy.copy(self)
        twin.model = model
        twin._ort_depth, twin._ort_pose, twin._calibration = depth, pose, frames
        twin.precision, twin.backend, twin.needs_calibration = "int8", "onnxruntime", False
        return twin

    def adopt(self, twin: "Estimator") -> None:
        """Run ``twin``'s graphs from now on (an :meth:`int8_twin` of this estimator, of the weights
        served now): its sessions, calibration frames, precision and backend are swapped in; a call
        running in another thread finishes with the path it started with. Raises ValueError when the
        weights changed in between (online adaptation)."""
        with self._swap_lock:
            if twin.model is not self.model:
                raise ValueError("the weights changed since the twin was built")
            self._calibration = twin._calibration
            self._ort_depth, self._ort_pose = twin._ort_depth, twin._ort_pose
            self.precision, self.backend = twin.precision, twin.backend

    def set_model(self, model) -> None:
        """Use new weights of the same architecture (online adaptation, :mod:`sfm_ros.training.adapt`).

        Everything is built first (the ONNX Runtime sessions too, with that backend), then swapped in
        by assignment: a call running in another thread finishes with the weights it started with."""
        model = model.to(self.device).eval()
        with self._swap_lock:
            if self.backend == "onnxruntime":
                depth, pose = _ort_sessions(model, self.height, self.width, self.threads, self._calibration,
                                            isolate_options=self.options)
                self.model = model
                self._ort_depth, self._ort_pose = depth, pose
            else:
                self.model = model

    def _autocast(self):
        if self.precision in ("fp32", "int8"):  # int8: explainability masks stay fp32 PyTorch
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """A camera image → (1, 3, h, w) float tensor in [0, 1] at the network size, on the device.
        A grey image is converted and resized as one channel and repeated after: the values of its
        RGB copy (to one float32 step where the resize halves both sides: OpenCV's own path for
        it), ~5x less work (KITTI's 376x1241: ~1.2 against ~6 ms on one core)."""
        f = resize_float01(image, (self.height, self.width))
        chw = np.broadcast_to(f, (3, *f.shape)) if f.ndim == 2 else f.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(chw))[None].to(self.device)

    def scale_intrinsics(self, K: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Intrinsics of the camera image resized to the network input."""
        return resize_intrinsics(K, image_hw, (self.height, self.width))

    @torch.no_grad()
    def depth(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) preprocessed images → (B, 1, h, w) depth (network units), float32."""
        if self._ort_depth is not None:
            return torch.from_numpy(self._ort_depth.run(None, {"image": images.numpy()})[0])
        with self._autocast():
            disp = self.model.predict_disp(images)[0]
        return 1.0 / disp.float()

    @torch.no_grad()
    def poses(self, frames: list[torch.Tensor], flip: bool | None = None) -> torch.Tensor:
        """``seq_len`` preprocessed frames (oldest first) → (B, N, 4, 4) target→source transforms.

        The target is the middle frame; the sources follow :func:`sfm_ros.core.model.source_offsets`.
        ``flip``: average with the mirrored window's motion (``pose_flip``; None: the estimator's).
        """
        if len(frames) != self.seq_len:
            raise ValueError(f"need {self.seq_len} frames, got {len(frames)}")
        mid = self.seq_len // 2
        flip = self.pose_flip if flip is None else bool(flip)
        if flip:
            frames = [torch.cat([f, torch.flip(f, dims=[-1])]) for f in frames]
        sources = [frames[mid + o] for o in self.offsets]
        if self._ort_pose is not None:
            feed = {"target": frames[mid].numpy(), "sources": torch.stack(sources, 1).numpy()}
            vec = torch.from_numpy(self._ort_pose.run(None, feed)[0])
        else:
            with self._autocast():
                vec, _ = self.model.predict_poses(frames[mid], sources)
        vec = vec.float()
        if flip:  # mirror x back: (tx, ty, tz, rx, ry, rz) -> (-tx, ty, tz, rx, -ry, -rz)
            half = vec.shape[0] // 2
            mirror = torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0, -1.0], device=vec.device)
            vec = 0.5 * (vec[:half] + vec[half:] * mirror)
        b, n, _ = vec.shape
        return pose_vec_to_mat(vec.reshape(b * n, 6)).reshape(b, n, 4, 4)

    @torch.no_grad()
    def explainability(self, frames: list[torch.Tensor]) -> torch.Tensor | None:
        """Finest-scale explainability masks (B, N, h, w) of a window, or None if the model has none."""
        if not getattr(self.model.pose_net, "output_exp", False):
            return None
        mid = self.seq_len // 2
        masks = self.model.pose_net.explainability(
            normalize_image(frames[mid]), [normalize_image(frames[mid + o]) for o in self.offsets])
        return masks[0].float() if masks else None
