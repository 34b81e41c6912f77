"""A checkpoint's depth and pose networks as TorchScript and ONNX, for deployment (the library;
the ``sfm_export`` command line is :mod:`sfm_ros.cli.export`).

:func:`export_model` writes into a folder:

==================  =================================================================================
file                content
==================  =================================================================================
``depth.pt``        TorchScript (traced, frozen: batch norm folded): ``image`` (B, 3, H, W) RGB in
                    ``[0, 1]`` → ``depth`` (B, 1, H, W) = ``1 / disparity`` at the finest scale
``pose.pt``         TorchScript: ``target`` (B, 3, H, W) and ``sources`` (B, N, 3, H, W), in ``[0, 1]``
                    → ``poses`` (B, N, 6) target→source ``[tx, ty, tz, rx, ry, rz]``
``depth.onnx``      the same graphs as ONNX (opset >= 17, batch norm folded, dynamic axes named ``batch``,
                    ``height``, ``width``: ``image`` (batch, 3, height, width) ...; the other axes fixed;
``pose.onnx``       only Conv/ConvTranspose/Relu/Elu/Sigmoid/Resize/Concat/Slice/MaxPool/ReduceMean/
                    Reshape/Transpose/element-wise ops, all supported by TensorRT)
``model.json``      metadata: the export and training sizes, every input's and output's shape as in the
                    ONNX files (named axes dynamic), ``dynamic_axes`` (what each accepts), ``seq_len``,
                    the source frame offsets (order of ``sources``), pose convention, depth units, the
                    files and their checked accuracy
==================  =================================================================================

The ``[-1, 1]`` input normalisation of the networks is inside the exported graphs: feed ``[0, 1]``
RGB. Depth is in *network units* (monocular depth is known up to scale; see
:mod:`sfm_ros.runtime.inference`). Sources are ordered as :func:`sfm_ros.core.model.source_offsets` (``seq_len =
3``: the previous frame, then the next one). Pose vectors follow :mod:`sfm_ros.core.geometry`: ``T_s_t``
maps target-camera points into the source camera, ``[R(r) | t]`` with ``r`` an axis-angle vector;
:func:`sfm_ros.core.geometry.pose_vec_to_mat` turns them into 4x4 matrices.

Every exported file is checked after writing against the PyTorch model on random images, batch 1
and 2 at the export size and batch 1 at a second size (32 pixels taller and wider: the dynamic
height and width are really dynamic); the maximum differences go into ``model.json``.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sfm_ros.core.model import source_offsets
from sfm_ros.core.networks import normalize_image
from sfm_ros.core.resnet import fold_batchnorm

Tensor = torch.Tensor

FORMATS = ("torchscript", "onnx")
DEFAULT_OPSET = 17
# Accepted differences between an exported graph and PyTorch (float32, random inputs):
DEPTH_RTOL = 1e-4   # max |depth_exported - depth_torch| / depth_torch
POSE_ATOL = 1e-5    # max |pose_exported - pose_torch| (pose vectors are ~0.01-scaled)

POSE_CONVENTION = (
    "poses[b, i] = [tx, ty, tz, rx, ry, rz] of T_s_t, the target->source transform of source i "
    "(maps points from the target camera frame to source i's camera frame; optical frame x right, "
    "y down, z forward); T = [R(r) | t] with r an axis-angle rotation vector in radians "
    "(sfm_ros.core.geometry.pose_vec_to_mat). The camera motion target->source is inv(T_s_t)."
)


class DepthExport(nn.Module):
    """``[0, 1]`` images (B, 3, H, W) → depth (B, 1, H, W) = 1 / finest disparity (network units)."""

    def __init__(self, depth_net: nn.Module):
        super().__init__()
        self.net = depth_net

    def forward(self, image: Tensor) -> Tensor:
        return 1.0 / self.net(normalize_image(image))[0]


class PoseExport(nn.Module):
    """``[0, 1]`` target (B, 3, H, W) and sources (B, N, 3, H, W) → (B, N, 6) target→source poses."""

    def __init__(self, pose_net: nn.Module, num_sources: int):
        super().__init__()
        self.net = pose_net
        self.num_sources = num_sources

    def forward(self, target: Tensor, sources: Tensor) -> Tensor:
        t = normalize_image(target)
        s = normalize_image(sources)
        return self.net(t, [s[:, i] for i in range(self.num_sources)])[0]


def inference_modules(model: nn.Module) -> tuple[DepthExport, PoseExport]:
    """Eval-mode, batch-norm-folded copies of an :class:`SfMModel`'s networks behind the export
    interface (normalisation inside, depth out, stacked sources in)."""
    model = getattr(model, "module", model)
    depth = DepthExport(fold_batchnorm(model.depth_net)).eval()
    pose_net = fold_batchnorm(model.pose_net)
    pose = PoseExport(pose_net, len(model.offsets)).eval()
    for p in list(depth.parameters()) + list(pose.parameters()):
        p.requires_grad_(False)
    return depth, pose


def example_inputs(height: int, width: int, num_sources: int, batch: int = 1,
                   seed: int = 0) -> tuple[tuple[Tensor], tuple[Tensor, Tensor]]:
    """Random ``[0, 1]`` inputs for the depth and the pose graphs."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g)
    sources = torch.rand(batch, num_sources, 3, height, width, generator=g)
    return (image,), (image, sources)


def to_torchscript(module: nn.Module, inputs: tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    """Trace and freeze (constants folded, batch norm folded)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on the networks' shape checks
        traced = torch.jit.trace(module.eval(), inputs, check_trace=False)
        return torch.jit.freeze(traced)


def to_onnx(module: nn.Module, inputs: tuple[Tensor, ...], input_names: list[str], output_name: str,
            opset: int = DEFAULT_OPSET, shapes: dict[str, list] | None = None) -> bytes:
    """ONNX bytes of ``module`` (TorchScript-based exporter).

    ``shapes``: the declared shape of every input and of the output by name, one entry per axis: a
    string names a dynamic axis (``"batch"``, ``"height"``, ``"width"``), an int fixes it. Every
    axis of the written graph's inputs and output is set from it, so no axis keeps an exporter-made
    name (``Muldepth_dim_2``). Default: the batch axis (axis 0) dynamic, the others as traced."""
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    if shapes is None:
        axes = {n: {0: "batch"} for n in [*input_names, output_name]}
    else:
        missing = [n for n in [*input_names, output_name] if n not in shapes]
        if missing:
            raise ValueError(f"shapes lacks {missing}; expected one shape per input and for the output")
        axes = {n: {i: d for i, d in enumerate(shapes[n]) if isinstance(d, str)} for n in shapes}
    f = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings; the TorchScript exporter's deprecation note
        torch.onnx.export(module.eval(), inputs, f, input_names=input_names, output_names=[output_name],
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    if shapes is None:
        return f.getvalue()
    import onnx

    m = onnx.load_from_string(f.getvalue())
    for v in [*m.graph.input, *m.graph.output]:
        if v.name not in shapes:
            continue
        dims = v.type.tensor_type.shape.dim
        if len(dims) != len(shapes[v.name]):
            raise ValueError(f"ONNX {v.name} has {len(dims)} axes; the declared shape {shapes[v.name]} has "
                             f"{len(shapes[v.name])}")
        for d, want in zip(dims, shapes[v.name]):
            if isinstance(want, str):
                d.dim_param = want
            else:
                d.dim_value = int(want)
    return m.SerializeToString()


def onnx_shapes(model_path: str | Path | bytes) -> dict[str, list]:
    """Every input's and output's declared shape of an ONNX file (a named axis as its name)."""
    import onnx

    m = onnx.load_from_string(model_path) if isinstance(model_path, bytes) else onnx.load(str(model_path))
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*m.graph.input, *m.graph.output]}


def ort_session(model: bytes | str | Path, threads: int = 0, spinning: bool = True):
    """An ONNX Runtime CPU session with all graph optimisations (``threads=0``: ORT's default).

    ``spinning=False`` stops idle worker threads from busy-waiting (better on shared/loaded CPUs).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def depth_rel_diff(a: Tensor, ref: Tensor) -> float:
    return float(((a.float() - ref.float()).abs() / ref.float().abs()).max())


def median_scaled_deviation(a, ref) -> np.ndarray:
    """``|r / median(r) - 1|`` per pixel with ``r = a / ref`` (depth maps, arrays or tensors): what
    differs between two depth predictions once their scales are matched, as the depth metrics'
    median scaling matches them (int8 and bf16 against fp32)."""
    r = (np.asarray(a, dtype=np.float64) / np.asarray(ref, dtype=np.float64)).ravel()
    return np.abs(r / np.median(r) - 1.0)


def pose_abs_diff(a: Tensor, ref: Tensor) -> float:
    return float((a.float() - ref.float()).abs().max())


def _depth_range(opts) -> list[float]:
    from sfm_ros.core.model import disparity_head

    alpha, beta = disparity_head(opts)
    return [1.0 / (alpha + beta), 1.0 / beta]


#: The files :func:`export_model` may write into its folder.
EXPORT_FILES = ("depth.pt", "pose.pt", "depth.onnx", "pose.onnx", "depth.int8.onnx", "pose.int8.onnx", "model.json")


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> None:
    """An export folder must not exist, or be an empty folder, unless ``overwrite``; raises
    ``FileExistsError`` (``--out DIR exists (holds ...): pass --overwrite ...``) or
    ``NotADirectoryError``."""
    out = Path(out_dir)
    if not out.exists():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; expected a folder for the exported files")
    present = sorted(p.name for p in out.iterdir())
    if present and not overwrite:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise FileExistsError(f"--out {out} exists (holds {shown}): pass --overwrite to replace the exported "
                              f"files in it, or another --out")


def export_model(model: nn.Module, out_dir: str | Path, formats: tuple[str, ...] = FORMATS,
                 height: int = 128, width: int = 416, opset: int = DEFAULT_OPSET,
                 verify: bool = True, info: dict | None = None) -> dict:
    """Export an :class:`SfMModel`'s networks into ``out_dir``; returns (and writes) the metadata.

    ``verify`` runs every written file on random inputs (batch 1 and 2) and checks it against the
    PyTorch model within :data:`DEPTH_RTOL` / :data:`POSE_ATOL`; a failure raises ``RuntimeError``.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown}; expected a subset of {list(FORMATS)}")
    model = getattr(model, "module", model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:  # an earlier export's files this one does not replace would disagree
        (out / name).unlink(missing_ok=True)
    depth, pose = inference_modules(model)
    n = len(model.offsets)
    d_in, p_in = example_inputs(height, width, n)
    # The second size every file is checked at: the axes named dynamic must really be dynamic.
    other = (height + 32, width + 32)
    shapes = {"image": ["batch", 3, "height", "width"], "depth": ["batch", 1, "height", "width"],
              "target": ["batch", 3, "height", "width"], "sources": ["batch", n, 3, "height", "width"],
              "poses": ["batch", n, 6]}
    meta: dict = {
        "format": "sfm_ros_export/1",
        **(info or {}),
        "depth_arch": model.opts.depth_arch,
        "width_mult": model.opts.width_mult,
        "pose_arch": model.opts.pose_arch,
        "height": height,
        "width": width,
        "seq_len": model.opts.seq_len,
        "source_offsets": list(model.offsets),
        "trained_size": [model.opts.height, model.opts.width],
        "inputs": {"depth": {"image": shapes["image"]},
                   "pose": {"target": shapes["target"], "sources": shapes["sources"]}},
        "outputs": {"depth": {"depth": shapes["depth"]}, "pose": {"poses": shapes["poses"]}},
        "dynamic_axes": {
            "batch": "any batch size >= 1",
            "height": f"any image height (checked at {height} and {other[0]}; multiples of 32 for every "
                      f"architecture, required by depth_arch resnet); the networks learnt at "
                      f"{model.opts.height}x{model.opts.width}: other sizes change the depth they predict",
            "width": f"any image width (checked at {width} and {other[1]}; multiples of 32 as for height)",
        },
        "checked_sizes": [[height, width], list(other)],
        "input_range": "RGB float32 in [0, 1] (normalised to [-1, 1] inside the graph)",
        "depth_units": "network units: depth = 1 / disparity, monocular (known up to scale; multiply "
                       "by a metric scale to get metres)",
        "depth_range": _depth_range(model.opts),
        "pose_convention": POSE_CONVENTION,
        "frames": "sources ordered by source_offsets relative to the target (e.g. [-1, 1]: previous, next)",
        "torch_version": torch.__version__,
        "files": {},
        "check": {"depth_max_rel_diff_limit": DEPTH_RTOL, "pose_max_abs_diff_limit": POSE_ATOL},
    }
    with torch.no_grad():
        refs = {}
        for b, (hh, ww) in ((1, (height, width)), (2, (height, width)), (1, other)):
            di, pi = example_inputs(hh, ww, n, batch=b, seed=b)
            refs[(b, hh, ww)] = (di, pi, depth(*di), pose(*pi))
    if "torchscript" in formats:
        for name, mod, inp in (("depth", depth, d_in), ("pose", pose, p_in)):
            path = out / f"{name}.pt"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
                torch.jit.save(to_torchscript(mod, inp), str(path))
            meta["files"][f"{name}_torchscript"] = path.name
        if verify:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                d_ts, p_ts = torch.jit.load(str(out / "depth.pt")), torch.jit.load(str(out / "pose.pt"))
            with torch.no_grad():
                diffs = [(depth_rel_diff(d_ts(*di), d_ref), pose_abs_diff(p_ts(*pi), p_ref))
                         for di, pi, d_ref, p_ref in refs.values()]
            _check(meta, "torchscript", diffs)
    if "onnx" in formats:
        import onnx

        for name, mod, inp, names, oname in (("depth", depth, d_in, ["image"], "depth"),
                                             ("pose", pose, p_in, ["target", "sources"], "poses")):
            data = to_onnx(mod, inp, names, oname, opset=opset, shapes={k: shapes[k] for k in [*names, oname]})
            onnx.checker.check_model(onnx.load_from_string(data))
            path = out / f"{name}.onnx"
            path.write_bytes(data)
            meta["files"][f"{name}_onnx"] = path.name
        meta["onnx_opset"] = opset
        if verify:
            d_s, p_s = ort_session(out / "depth.onnx"), ort_session(out / "pose.onnx")
            diffs = []
            for di, pi, d_ref, p_ref in refs.values():
                d = torch.from_numpy(d_s.run(None, {"image": di[0].numpy()})[0])
                p = torch.from_numpy(p_s.run(None, {"target": pi[0].numpy(), "sources": pi[1].numpy()})[0])
                diffs.append((depth_rel_diff(d, d_ref), pose_abs_diff(p, p_ref)))
            _check(meta, "onnx", diffs)
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _check(meta: dict, fmt: str, diffs: list[tuple[float, float]]) -> None:
    d = max(x[0] for x in diffs)
    p = max(x[1] for x in diffs)
    meta["check"][fmt] = {"depth_max_rel_diff": d, "pose_max_abs_diff": p, "batches": [1, 2],
                          "sizes": meta["checked_sizes"]}
    if not (d <= DEPTH_RTOL and p <= POSE_ATOL):
        raise RuntimeError(f"{fmt} export differs from PyTorch: depth max rel diff {d:.3g} (limit {DEPTH_RTOL}), "
                           f"pose max abs diff {p:.3g} (limit {POSE_ATOL})")
