"""The weights a run hands to its user: a power-function moving average of the training weights.

The optimiser's last weights wander around the minimum it is approaching; an average of the
recent weights sits closer to it (Polyak averaging; Izmailov et al. 2018, "Averaging weights leads
to wider optima"). A fixed-decay EMA averages a fixed number of steps, too many early in a short
run and too few late in a long one. The power-function EMA of Karras et al. 2024 ("Analyzing and
improving the training dynamics of diffusion models", section 3.1) averages a fixed *share* of the
run instead, whatever its length: after step ``t``

    beta_t = (1 - 1/t) ** (gamma + 1),    avg_t = beta_t * avg_(t-1) + (1 - beta_t) * theta_t,

which weighs the weights of step ``s <= t`` by ``s ** gamma``. Its width relative to the run,
``sigma_rel`` (the standard deviation of that profile over ``t``), fixes ``gamma`` through

    sigma_rel = sqrt(gamma + 1) / (gamma + 2) / sqrt(gamma + 3).

Step 1 gives ``beta = 0``: the average starts as the first step's weights (no bias towards the
initialisation). Float buffers (batch-norm statistics) are averaged alike; integer buffers are
copied. ``state_dict`` / ``load_state_dict`` make a resumed run's average continue exactly.

ROS-free; torch only.
"""
from __future__ import annotations

import math

import torch

__all__ = ["PowerEMA", "gamma_from_sigma_rel", "sigma_rel_from_gamma"]


def sigma_rel_from_gamma(gamma: float) -> float:
    """The relative width of the power-function profile ``s ** gamma`` on ``[0, t]`` (over ``t``)."""
    if not gamma > -1:
        raise ValueError(f"gamma must be > -1, got {gamma}")
    return math.sqrt(gamma + 1) / (gamma + 2) / math.sqrt(gamma + 3)


def gamma_from_sigma_rel(sigma_rel: float) -> float:
    """The exponent ``gamma`` whose profile has relative width ``sigma_rel`` (0 < sigma_rel < 0.2886;
    the upper end is the uniform average of the whole run, ``gamma = 0``)."""
    top = sigma_rel_from_gamma(0.0)
    if not 0 < sigma_rel < top:
        raise ValueError(f"sigma_rel must be in (0, {top:.4f}) (the uniform average of the whole run), "
                         f"got {sigma_rel}")
    lo, hi = 0.0, 1.0
    while sigma_rel_from_gamma(hi) > sigma_rel:  # sigma_rel falls monotonically with gamma
        hi *= 2
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sigma_rel_from_gamma(mid) > sigma_rel else (lo, mid)
    return 0.5 * (lo + hi)


class PowerEMA:
    """The power-function moving average of a module's parameters and float buffers.

    Args:
        module: the module whose weights are averaged (its ``state_dict`` keys and shapes).
        sigma_rel: the average's width as a share of the run so far (see the module doc).
    """

    def __init__(self, module: torch.nn.Module, sigma_rel: float):
        self.sigma_rel = float(sigma_rel)
        self.gamma = gamma_from_sigma_rel(self.sigma_rel)
        self.steps = 0  # updates folded in (the step count t of the formula)
        self.average = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def beta(self, t: int) -> float:
        """The weight of the previous average at update ``t`` (>= 1)."""
        return (1.0 - 1.0 / t) ** (self.gamma + 1.0)

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int | None = None) -> None:
        """Fold in the module's current weights as those of ``step`` (default: the next update)."""
        self.steps = int(step) if step is not None else self.steps + 1
        if self.steps < 1:
            raise ValueError(f"step must be >= 1, got {self.steps}")
        keep = self.beta(self.steps)
        current = module.state_dict()
        if current.keys() != self.average.keys():
            raise ValueError("the module's weights do not match the averaged ones (another architecture)")
        floats_avg, floats_cur = [], []
        for k, v in current.items():
            if v.is_floating_point():
                floats_avg.append(self.average[k])
                floats_cur.append(v.detach())
            else:
                self.average[k].copy_(v)
        if floats_avg:
            torch._foreach_lerp_(floats_avg, floats_cur, 1.0 - keep)

    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a ``state_dict`` of the module; tensors owned by this object)."""
        return self.average

    def state_dict(self) -> dict:
        """What a checkpoint stores to continue the average exactly."""
        return {"sigma_rel": self.sigma_rel, "steps": self.steps,
                "average": {k: v.detach().cpu() for k, v in self.average.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue the average ``state`` (:meth:`state_dict`) holds; its width must be this one's."""
        if abs(float(state["sigma_rel"]) - self.sigma_rel) > 1e-12:
            raise ValueError(f"the saved average has sigma_rel {state['sigma_rel']}, this run {self.sigma_rel}")
        saved = state["average"]
        if saved.keys() != self.average.keys():
            raise ValueError("the saved average does not match this model's weights")
        for k, v in saved.items():
            self.average[k].copy_(v)
        self.steps = int(state["steps"])
