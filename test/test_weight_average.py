"""The power-function weight average (model.pt): its width, its exact weights, buffers, resume."""
from __future__ import annotations

import pytest
import torch

from sfm_ros.training.weight_average import PowerEMA, gamma_from_sigma_rel, sigma_rel_from_gamma


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2, 0.28])
def test_sigma_rel_and_gamma_are_inverse(sigma):
    g = gamma_from_sigma_rel(sigma)
    assert g > 0 and sigma_rel_from_gamma(g) == pytest.approx(sigma, rel=1e-9)


def test_sigma_rel_matches_the_profile_it_names():
    """sigma_rel is the standard deviation, over t, of the profile s**gamma on [0, t] (numerically)."""
    g = gamma_from_sigma_rel(0.1)
    s = torch.linspace(0, 1, 200001, dtype=torch.float64)
    w = s ** g
    w = w / w.sum()
    mean = (w * s).sum()
    std = ((w * (s - mean) ** 2).sum()).sqrt()
    assert float(std) == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.29, float("nan")])
def test_sigma_rel_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="sigma_rel must be in"):
        gamma_from_sigma_rel(bad)


def test_the_average_weighs_step_s_exactly_as_the_power_profile():
    """After T updates the weights of step s carry (s/T)**(g+1) - ((s-1)/T)**(g+1): fed one-hot
    weights, the average is that vector (float64, to 1e-12)."""
    T = 40
    m = torch.nn.Linear(T, 1, bias=False).double()
    ema = PowerEMA(m, 0.1)
    g = ema.gamma
    for s in range(1, T + 1):
        with torch.no_grad():
            m.weight.zero_()
            m.weight[0, s - 1] = 1.0
        ema.update(m, s)
    got = ema.averaged_state()["weight"][0]
    k = torch.arange(1, T + 1, dtype=torch.float64)
    want = (k / T) ** (g + 1) - ((k - 1) / T) ** (g + 1)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    assert float(got.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(got[-T // 10:].sum()) > 0.5  # most of the weight on the last tenth of the run


def test_float_buffers_are_averaged_integer_buffers_copied():
    bn = torch.nn.BatchNorm1d(3)
    ema = PowerEMA(bn, 0.2)
    for s in range(1, 4):
        bn.running_mean.fill_(float(s))
        bn.num_batches_tracked.fill_(10 * s)
        ema.update(bn, s)
    avg = ema.averaged_state()
    assert 1.0 < float(avg["running_mean"][0]) < 3.0
    assert int(avg["num_batches_tracked"]) == 30


def test_state_dict_continues_the_average_exactly():
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 2)
    seq = [torch.randn(2, 4) for _ in range(10)]
    full = PowerEMA(m, 0.1)
    for s, w in enumerate(seq, 1):
        m.weight.data.copy_(w)
        full.update(m, s)
    part = PowerEMA(m, 0.1)
    for s, w in enumerate(seq[:6], 1):
        m.weight.data.copy_(w)
        part.update(m, s)
    saved = part.state_dict()
    resumed = PowerEMA(m, 0.1)
    resumed.load_state_dict(saved)
    for s, w in enumerate(seq[6:], 7):
        m.weight.data.copy_(w)
        resumed.update(m)  # the next update after the saved count
    for k in full.averaged_state():
        assert torch.equal(full.averaged_state()[k], resumed.averaged_state()[k])
    with pytest.raises(ValueError, match="sigma_rel"):
        PowerEMA(m, 0.2).load_state_dict(saved)
