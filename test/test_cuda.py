"""The GPU paths: training with mixed precision, fp16 loss-scale resume, CUDA inference matching the
CPU, DDP with ranks on CUDA. Skipped where there is no CUDA device (CI, the 2-core dev machine);
run on a GPU machine with ``python -m pytest test/test_cuda.py``.

Tolerances: cuDNN convolutions use TF32 by default on Ampere and later GPUs (10-bit mantissa), so
CUDA fp32 depth is compared with the CPU's at a median relative difference of 1e-3 (max 3e-2);
fp16 inference at 1e-2 (max 1e-1). Poses (6-DoF vectors of a tiny net) at 2e-3 / 2e-2 absolute.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_ddp_worker
from sfm_ros.core.checkpoint import read_checkpoint
from sfm_ros.data.datasets import prepare_sequence
from sfm_ros.runtime.inference import Estimator
from sfm_ros.core.options import load_options
from sfm_ros.data.synthetic import render_sequence
from sfm_ros.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

H, W = 64, 208


@pytest.fixture(scope="module")
def seqs():
    out = []
    for seed in (0, 1):
        s = render_sequence(12, H, W, seed=seed)
        out.append(prepare_sequence(zip(s.images, s.timestamps), s.K, (H, W), name=f"street{seed}"))
    return out


def _opts(preset="default", **train):
    o = load_options(preset, [f"model.height={H}", f"model.width={W}", "model.width_mult=0.25",
                              "train.batch_size=4", "train.log_every=1", "train.image_every=0",
                              "train.device=cuda", "train.epochs=1000", "train.num_workers=0", "train.lr=5e-4"])
    for k, v in train.items():
        setattr(o.train, k, v)
    return o


def _fit(opts, seqs, out, resume=None):
    tr = Trainer(opts, seqs, None, out, resume=resume, progress=False, tensorboard=False, ckpt_every=0)
    try:
        summary = tr.fit()
    finally:
        tr.close()
    return tr, summary


def test_auto_picks_cuda_and_mixed_precision_training_learns(seqs, tmp_path):
    o = _opts(max_steps=80)
    o.train.device = "auto"
    tr, summary = _fit(o, seqs, tmp_path)
    assert tr.device.type == "cuda"
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert tr.amp == want
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 80 and np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:5]), (losses[:5], losses[-10:])
    state = read_checkpoint(tmp_path / "last.pt")  # saved from CUDA, read on the CPU
    assert state["step"] == 80
    assert all(v.device.type == "cpu" for v in state["depth_net"].values())


def test_fp16_gradscaler_state_is_saved_and_resumed(seqs, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    _, s_full = _fit(_opts("paper", amp="fp16", max_steps=6), seqs, full)
    _fit(_opts("paper", amp="fp16", max_steps=3), seqs, part)
    st = read_checkpoint(part / "last.pt")
    assert "scaler" in st and st["scaler"]["scale"] > 0
    tr, s_res = _fit(_opts("paper", amp="fp16", max_steps=6), seqs, part, resume=part / "last.pt")
    assert tr.scaler.get_scale() == pytest.approx(read_checkpoint(full / "last.pt")["scaler"]["scale"])
    a = [h["loss"] for h in s_full["history"] if h["step"] > 3]
    b = [h["loss"] for h in s_res["history"] if h["step"] > 3]
    # Same batches, same weights: equal up to CUDA's non-deterministic reductions.
    assert np.allclose(a, b, rtol=2e-2), (a, b)


def test_cuda_inference_matches_cpu(seqs, tmp_path):
    _fit(_opts(max_steps=20), seqs, tmp_path)
    ckpt = tmp_path / "last.pt"
    cpu = Estimator(ckpt, device="cpu")
    gpu = Estimator(ckpt, device="auto")
    f16 = Estimator(ckpt, device="cuda", precision="fp16")
    assert gpu.device.type == "cuda"
    frames = [seqs[0].frames[i] for i in range(3)]

    def run(est):
        x = [est.preprocess(f) for f in frames]
        return est.depth(x[1]).cpu().numpy(), est.poses(x).cpu().numpy()

    d_cpu, p_cpu = run(cpu)
    for est, med, mx in ((gpu, 1e-3, 3e-2), (f16, 1e-2, 1e-1)):
        d, p = run(est)
        rel = np.abs(d - d_cpu) / d_cpu
        assert np.median(rel) < med and rel.max() < mx, (est.precision, np.median(rel), rel.max())
        assert np.abs(p - p_cpu).max() < 20 * med, (est.precision, np.abs(p - p_cpu).max())


def test_ddp_two_ranks_on_cuda(tmp_path):
    """Two ranks: NCCL with a GPU each when there are two, else gloo sharing one GPU."""
    r = run_ddp_worker(tmp_path, "cuda")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s0, s1 = (json.loads((tmp_path / f"summary{i}.json").read_text()) for i in (0, 1))
    assert s0["backend"] == ("nccl" if torch.cuda.device_count() >= 2 else "gloo")
    assert s0["steps"] == s1["steps"] == 3
    p0, p1 = (torch.load(tmp_path / f"params{i}.pt", weights_only=True) for i in (0, 1))
    assert p0.device.type == "cuda" and torch.equal(p0.cpu(), p1.cpu())
    assert not (tmp_path / "out1").exists()


def test_forked_rng_leaves_the_gpu_stream_as_it_was():
    """The validation's and the adaptation's fixed seed must not reseed the training's GPU stream."""
    from sfm_ros.core.device import forked_rng

    dev = torch.device("cuda")
    torch.manual_seed(7)
    expected = torch.rand(3, device=dev)
    torch.manual_seed(7)
    with forked_rng(dev):
        torch.manual_seed(123)
        torch.rand(5, device=dev)
    assert torch.equal(torch.rand(3, device=dev), expected)
