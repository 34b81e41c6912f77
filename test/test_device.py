"""Device policy (sfm_ros.core.device): what ``auto`` means and how bad device names fail."""
import pytest
import torch

from sfm_ros.core.device import cpu_has_bf16_instructions, cpu_supports_bf16, forked_rng, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("mps", "bogus", "cuda:abc", ""):  # torch's own parse errors become the same one line
        with pytest.raises(ValueError, match=f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {bad!r}"):
            resolve_device(bad)
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


def test_cpu_description_tells_apart_machines_of_one_model_name(monkeypatch):
    """Two "AMD EPYC" virtual machines, one with AVX2 only and one with AVX512-BF16, must not share
    a cached precision measurement (core.precision keys its cache by this description)."""
    from sfm_ros.core import device

    avx2 = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n"
    avx512 = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n"
    monkeypatch.setattr(device, "_cpu_flags", lambda: avx2)
    a = device.cpu_description()
    assert a == "AMD EPYC [avx2]"
    monkeypatch.setattr(device, "_cpu_flags", lambda: avx512)
    b = device.cpu_description()
    assert b == "AMD EPYC [avx512_bf16,avx512_vnni,avx512f,avx2]" and a != b
    monkeypatch.setattr(device, "_cpu_flags", lambda: "model name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert device.cpu_description() == "Old CPU [no avx2]"
    # the trainer's bf16/fp32 cache key follows the instruction set, not only the model name
    from sfm_ros.core import precision
    from sfm_ros.core.options import load_options

    opts = load_options("default", [])
    keys = []
    for text in (avx2, avx512):
        monkeypatch.setattr(device, "_cpu_flags", lambda text=text: text)
        keys.append(precision.calibration_key(opts))
    assert keys[0] != keys[1] and keys[0].startswith("AMD EPYC [avx2]|")
