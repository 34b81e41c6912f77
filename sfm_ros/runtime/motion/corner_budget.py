"""Keeping the refiner's cost per frame within a budget on the machine it runs on.

Convention: times in milliseconds; the refiner is anything with an integer ``max_corners``
(:class:`sfm_ros.runtime.motion.refiner.Refiner`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sfm_ros.runtime.motion.result import Used

__all__ = ["CornerBudget"]


class _Tunable(Protocol):
    max_corners: int


@dataclass
class CornerBudget:
    """Tries to keep a refiner's cost per frame within ``budget_ms`` on the machine it runs on, by
    its ``max_corners`` (the corner tracking is the largest part of the cost: ~6 µs a corner,
    forward and back, on one core at the 11-pixel window, ~14 µs at 21; what does not scale with
    the corners, e.g. the ground search, it cannot cut).

    CPUs of one kind differ (the refiner with a 21-pixel window measured 10 ms a frame on one Xeon,
    14-22 ms on an AMD EPYC), so the node measures instead of assuming: after every ``window``
    refinements, a median time over the budget takes ``step`` corners off (down to ``low``), one
    under ``relax`` times the budget gives them back (up to ``high``, the tuned default). Only
    refinements that tracked and solved are timed (a fallback on a featureless frame is cheap and
    says nothing of the cost). The node's diagnostics show the median and the corners it was
    measured with. Offline evaluation keeps the refiner's own setting."""

    budget_ms: float = 15.0
    window: int = 20
    low: int = 300
    high: int = 500
    step: int = 100
    relax: float = 0.6
    times: deque = field(default_factory=deque, repr=False)
    last_ms: float = float("nan")  # the median of the last full window
    last_corners: int = 0           # the corners that window was measured with

    def __post_init__(self) -> None:
        if not (self.budget_ms > 0 and self.window >= 1 and 1 <= self.low <= self.high and self.step >= 1
                and 0 < self.relax < 1):
            raise ValueError(f"CornerBudget: budget_ms > 0, window >= 1, 1 <= low <= high, step >= 1, "
                             f"0 < relax < 1 expected, got {self}")
        self.times = deque(maxlen=int(self.window))

    def update(self, refiner: _Tunable, ms: float, used: str = Used.EPIPOLAR) -> None:
        """Record one refinement's time (ms; ``used``: its :attr:`Refinement.used`, a fallback to
        the network is not timed) and, after a full window, adjust ``refiner.max_corners``."""
        if used == Used.NETWORK:
            return
        self.times.append(float(ms))
        if len(self.times) < self.window:
            return
        self.last_ms, self.last_corners = float(np.median(self.times)), int(refiner.max_corners)
        self.times.clear()
        if self.last_ms > self.budget_ms and refiner.max_corners > self.low:
            refiner.max_corners = max(self.low, refiner.max_corners - self.step)
        elif self.last_ms < self.relax * self.budget_ms and refiner.max_corners < self.high:
            refiner.max_corners = min(self.high, refiner.max_corners + self.step)
