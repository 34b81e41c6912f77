"""The step-length filter: a Kalman filter on the log of the translation's length, carried from
frame to frame.

Each step's length is *predicted* from the filter's last length times the three-view ratio
(:mod:`sfm_ros.runtime.motion.three_view`; ``track_step_var`` added to its variance), or else from
the network's length on the scale of the recent measurements (the median, over the last
``scale_window`` measured steps, of log(measured / network length)); it is *measured* by the
depth comparison (:func:`sfm_ros.runtime.motion.depth_length.depth_baseline`) or by the ground's
homography (:mod:`sfm_ros.runtime.motion.ground_length`, metres). A measurement 3 sigma off a
carried (three-view) prediction is not taken, unless ``restart_after`` in a row were rejected
(then the filter restarts from it: a wrong prediction does not lock the scale); a three-view
ratio further than ``max_step_ratio`` from 1 (a dropped frame doubles a step) is not taken either.

Convention: the state is the log of a length in the filter's units (the caller's units per
network unit, or metres with the ground) and its variance (log length²); a measurement is
``(length, variance of its log)``. The scalar Kalman update: Kalman, "A new approach to linear
filtering and prediction problems", J. Basic Eng. 1960; the 3-sigma gate on the innovation, a
validation gate: Bar-Shalom, Li & Kirubarajan, "Estimation with applications to tracking and
navigation", 2001. The prediction's variance ``DEPTH_RATIO_LEN_REL²`` for a length on the recent
measurements' scale: :mod:`sfm_ros.runtime.motion.covariance`.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sfm_ros.runtime.motion.covariance import DEPTH_RATIO_LEN_REL
from sfm_ros.runtime.motion.result import ScaleFrom

__all__ = ["LengthFilter"]

_RATIO = {ScaleFrom.DEPTH: ScaleFrom.DEPTH_RATIO, ScaleFrom.GROUND: ScaleFrom.GROUND_RATIO}


@dataclass
class LengthFilter:
    """The filter and its state (module doc).

    Args:
        scale_window: measured steps over which the measured / network length ratio is taken
            (median); chosen on KITTI 00 frames 0-119 (3 over 5-1000).
        track_step_var: variance (log length², per step) the three-view prediction adds on top of
            its measured spread; chosen on KITTI 00 frames 0-119.
        max_step_ratio: a three-view ratio further than this from 1 (either way) is taken as failed.
        restart_after: measurements rejected (3 sigma off the filter) with none accepted in
            between, after which the filter restarts from the last one.
        wander_window, wander_min: the innovations (measured minus three-view-predicted log
            length) over which :meth:`wander` is taken, and the fewest it needs.

    State: ``log_length`` (None before any scale) and ``variance`` of the last length; ``ratios``:
    log(measured length / network length) of the recent measurements; ``innovations``: the recent
    measured minus three-view-predicted log lengths; ``gated``: measurements rejected in a row.
    """

    scale_window: int = 3
    track_step_var: float = 1e-3
    max_step_ratio: float = 3.0
    restart_after: int = 3
    wander_window: int = 20
    wander_min: int = 5
    log_length: float | None = field(default=None, init=False)
    variance: float = field(default=float("nan"), init=False)
    ratios: deque = field(default_factory=deque, init=False, repr=False)
    innovations: deque = field(default_factory=deque, init=False, repr=False)
    gated: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if int(self.scale_window) < 1:
            raise ValueError(f"scale_window must be >= 1, got {self.scale_window!r}")
        if int(self.wander_window) < 1:
            raise ValueError(f"wander_window must be >= 1, got {self.wander_window!r}")
        if not float(self.max_step_ratio) > 1.0:
            raise ValueError(f"max_step_ratio must be > 1, got {self.max_step_ratio!r}")
        if int(self.restart_after) < 1:
            raise ValueError(f"restart_after must be >= 1, got {self.restart_after!r}")
        if not float(self.track_step_var) >= 0.0:
            raise ValueError(f"track_step_var must be >= 0, got {self.track_step_var!r}")
        self.ratios = deque(maxlen=int(self.scale_window))
        self.innovations = deque(maxlen=int(self.wander_window))

    def reset(self) -> None:
        """Forget the ratios, the innovations and the state: until the next measurement holds,
        lengths are the network's."""
        self.ratios.clear()
        self.innovations.clear()
        self.log_length, self.variance, self.gated = None, float("nan"), 0

    def recent_log_length(self, log_net: float) -> float:
        """The log of a network length (``log_net``, network units) on the scale of the recent
        measurements (the median of :attr:`ratios`), in the filter's units."""
        return log_net + float(np.median(self.ratios))

    def update(self, net: float, measured: tuple[float, float] | None, kind: ScaleFrom,
               step: tuple[float, float] | None) -> tuple[float | None, ScaleFrom]:
        """One step: ``net`` the network's length (network units), ``measured`` this step's
        ``(length, log variance)`` in the filter's units or None, ``kind`` what measured it
        (``depth`` or ``ground``), ``step`` the three-view ``(log ratio, variance)`` or None.
        Returns the filtered log length (None: no scale yet, the network's length stands) and
        where it came from (``tracked``, ``kind``, ``kind ratio``)."""
        implausible = step is not None and abs(step[0]) > math.log(self.max_step_ratio)
        if step is not None and not implausible and self.log_length is not None:
            x, P, src = self.log_length + step[0], self.variance + step[1] + self.track_step_var, ScaleFrom.TRACKED
        elif implausible and measured is not None:
            # a step this many times the previous one (frames skipped, or a failed three-view
            # measurement): the lengths before tell nothing about this one; the measurement does
            x, P, src = None, float("nan"), ScaleFrom.NETWORK
        elif self.ratios and net > 1e-12:  # the network's length on the scale of recent measurements
            x, P, src = self.recent_log_length(math.log(net)), DEPTH_RATIO_LEN_REL ** 2, _RATIO[kind]
        else:
            x, P, src = None, float("nan"), ScaleFrom.NETWORK
        if net > 1e-12 and measured is not None:
            self.ratios.append(math.log(measured[0] / net))
        if measured is not None:
            z, Rz = math.log(measured[0]), measured[1]
            if x is not None and src == ScaleFrom.TRACKED:
                self.innovations.append(z - x)
            if x is None:
                x, P, src = z, Rz, kind
            elif src != ScaleFrom.TRACKED or (z - x) ** 2 < 9.0 * (P + Rz):
                # a measurement 3 sigma off a carried state is not taken ... (against a prediction
                # made afresh from the network's length, it is: that prediction knows too little)
                gain = P / (P + Rz)
                x, P, src = x + gain * (z - x), (1.0 - gain) * P, kind
                self.gated = 0
            else:
                self.gated += 1
                if self.gated >= self.restart_after:  # ... unless the filter is the one that is off
                    x, P, src, self.gated = z, Rz, kind, 0
        if x is None:
            self.log_length, self.variance = None, float("nan")
            return None, ScaleFrom.NETWORK
        self.log_length, self.variance = x, P
        return x, src

    def rel_sd(self, floor: float) -> float:
        """The relative standard deviation of the last length: at least ``floor`` (the calibrated
        error of its measurements: they are taken as independent, their errors are correlated from
        frame to frame), the filter's own and :meth:`wander`."""
        return max(floor, math.sqrt(self.variance), self.wander())

    def wander(self) -> float:
        """The recent measurements' wander against the three-view chain: a robust standard
        deviation (``sqrt(median ν² / 0.455)``, the median of a chi-square of one degree) of the
        last ``wander_window`` innovations ν, 0 below ``wander_min`` of them. A length is never
        published as better known than this: when the depth's (or the ground's) scale swings from
        frame to frame, the scale it sets is no better than the swings. (For white measurement
        noise this is cautious: the innovations' spread includes the measurement's and the
        prediction's variance, which the filter's averaging reduces; the learned depth's errors
        are correlated over frames, where averaging does not help, and the measurement variance
        the filter assumes is the calibrated error against the truth, 4-5x the innovations'
        spread on KITTI 00 0-119, so it cannot be subtracted.)"""
        if len(self.innovations) < int(self.wander_min):
            return 0.0
        return math.sqrt(float(np.median(np.square(self.innovations))) / 0.455)
