"""Device policy (sfm_ros.core.device): what ``auto`` means and how bad device names fail."""
import pytest
import torch

from sfm_ros.core.device import cpu_has_bf16_instructions, cpu_supports_bf16, forked_rng, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bf16_flags_are_bools(monkeypatch):
    from sfm_ros.core import device

    monkeypatch.setattr(device, "_cpu_flags", lambda: "flags: avx512_bf16")
    assert cpu_has_bf16_instructions() and not cpu_supports_bf16()  # AVX512-BF16 alone does not pay
    monkeypatch.setattr(device, "_cpu_flags", lambda: "flags: amx_bf16")
    assert cpu_has_bf16_instructions() and cpu_supports_bf16()


def test_forked_rng_leaves_the_cpu_stream_as_it_was():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with forked_rng(torch.device("cpu")):
        torch.manual_seed(123)
        torch.rand(5)
    assert torch.equal(torch.rand(3), expected)
