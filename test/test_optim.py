"""The shared optimiser: fused Adam where torch has the kernel, the same updates as the plain one."""
import copy

import torch

from sfm_ros.core.model import SfMModel
from sfm_ros.core.optim import adam, prefer_fused
from sfm_ros.core.options import ModelOptions


def _pair():
    torch.manual_seed(0)
    m = SfMModel(ModelOptions(height=32, width=64, width_mult=0.25), output_exp=False)
    return copy.deepcopy(m), copy.deepcopy(m)


def test_fused_adam_updates_equal_the_plain_adam_to_float_rounding():
    a, b = _pair()
    plain = torch.optim.Adam(a.parameters(), lr=2e-4, betas=(0.9, 0.999))
    fused = adam(b.parameters(), lr=2e-4, betas=(0.9, 0.999))
    assert fused.param_groups[0]["fused"] is True  # this torch has the CPU kernel
    torch.manual_seed(1)
    for _ in range(20):
        grads = [torch.randn_like(p) for p in a.parameters()]
        for model, opt in ((a, plain), (b, fused)):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    moved = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), _pair()[0].parameters()))
    diff = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-3 and diff < 1e-6  # 20 steps of 2e-4 each; fp32 rounding ~1e-8


def test_a_plain_adams_state_resumes_fused():
    a, b = _pair()
    plain = torch.optim.Adam(a.parameters(), lr=2e-4)
    for p in a.parameters():
        p.grad = torch.ones_like(p)
    plain.step()
    resumed = adam(b.parameters(), lr=2e-4)
    resumed.load_state_dict(plain.state_dict())
    assert not resumed.param_groups[0].get("fused")  # load_state_dict restores the writer's setting
    prefer_fused(resumed)
    assert resumed.param_groups[0]["fused"] is True
    for p in b.parameters():  # the fused kernel's step counts: float32 on the parameter's device
        step = resumed.state[p]["step"]
        assert step.device == p.device and step.dtype == torch.float32
    for p in b.parameters():
        p.grad = torch.ones_like(p)
    resumed.step()
    assert int(resumed.state[next(iter(b.parameters()))]["step"]) == 2


def test_a_fused_state_resumes_plain_where_there_is_no_fused_kernel(monkeypatch):
    import sfm_ros.core.optim as optim

    a, b = _pair()
    fused = adam(a.parameters(), lr=2e-4)
    for p in a.parameters():
        p.grad = torch.ones_like(p)
    fused.step()
    monkeypatch.setattr(optim, "_fusable", lambda params: False)  # a machine without the kernel
    resumed = optim.adam(b.parameters(), lr=2e-4)
    resumed.load_state_dict(fused.state_dict())
    prefer_fused(resumed)
    assert not resumed.param_groups[0]["fused"]
    assert all(resumed.state[p]["step"].device.type == "cpu" for p in b.parameters())
    for p in b.parameters():
        p.grad = torch.ones_like(p)
    resumed.step()
