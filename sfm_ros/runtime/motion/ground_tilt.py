"""The ground's normal measured from the images: self-calibration of the camera's tilt to the road.

The ground's homography (:mod:`sfm_ros.runtime.motion.ground_length`) turns the camera's height into
metres through the ground's normal ``n``: a ground point at depth ``Z`` lies at ``n · X ≈ h + Z
sin θ`` when the normal is tilted by ``θ`` from the one assumed, so a tilt error scales the far
ground's motion and with it the step length. Measured on KITTI 00 (frames 0-159, the shipped model,
the node's defaults): the step-length ratio moves from 1.06 with the mount's nominal "down" to
1.20 and 0.94 with that "down" tilted by -1.3° and +1.3° — about 9 % a degree. A real camera's tilt
to the road (the mount, the car's load, the road's camber) is rarely known to a degree.

:class:`GroundTilt` measures it: every ``every``-th frame pair whose motion is known (rotation and
direction from the two-view solution), the step length is searched for each tilt of a grid
around the current estimate (``span_deg``, ``step_deg``) and the tilt whose best length aligns the
ground best (lowest photometric error) is one measurement; the tilt used is the median of the last
``window`` measurements (a frame's measurement is noisy: a kerb, a shadow; its median is steady).
The tilt turns the nominal "down" about the axis perpendicular to it and to the optical axis (the
pitch of a forward-looking camera), within ``max_deg``. Far and near ground pixels move differently
under a tilt and under a length change, which is what separates the two (Hartley & Zisserman,
Multiple View Geometry, 2nd ed., Sec. 13.1: the plane-induced homography ``K (R + t nᵀ/d) K⁻¹``).

A second ``source`` needs no search: ``"travel"`` takes the ground to contain the direction of
travel (a wheeled robot or a car moves along its road), so each measurement is the tilt that makes
the normal perpendicular to a measured direction of travel (:func:`travel_tilt_deg`,
:meth:`GroundTilt.add_travel`). A frame pair's direction is too poorly fixed in elevation for it:
on rendered streets it reads 0.4-0.9° low (the rotation-translation coupling of the five-point
solution), and there each pair's direction cost 1.2 points of drift against the nominal "down";
the refiner reads it over chords of 8 frame steps instead (:mod:`~sfm_ros.runtime.motion.travel_chord`),
which brings KITTI 00 0-159 from 5.96 % to 2.59 % and costs the level rendered cameras 0.06-0.34
points (BENCHMARKS.md, issue 24). A holonomic robot that moves up or down (a drone) breaks its
assumption.

Convention: as :mod:`sfm_ros.runtime.motion.ground_length`; angles in degrees in the options and
the state (``tilt_deg``), positive tilts turning "down" towards the optical axis (+z).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sfm_ros.runtime.motion.ground_length import GroundPixels, search_step_length

__all__ = ["GroundTilt", "SOURCES", "tilted_down", "travel_tilt_deg"]

#: what :class:`GroundTilt` measures the tilt from (module doc)
SOURCES = ("photometric", "travel")


def _tilt_frame(down: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(d, forward)``: ``down`` as a unit vector and the unit vector it turns towards for a positive
    tilt (about ``down × z``), or None when ``down`` lies along the optical axis or is not finite."""
    d = np.asarray(down, dtype=np.float64).reshape(3)
    d = d / np.linalg.norm(d)
    axis = np.cross(d, np.array([0.0, 0.0, 1.0]))
    na = float(np.linalg.norm(axis))
    if not na >= 1e-9:
        return None
    return d, np.cross(axis / na, d)


def tilted_down(down: np.ndarray, tilt_deg: float) -> np.ndarray:
    """``down`` (3,) turned by ``tilt_deg`` about ``down × z`` (towards +z for a positive tilt);
    ``down`` along the optical axis has no such axis: returned unchanged."""
    frame = _tilt_frame(down)
    if frame is None or tilt_deg == 0.0:
        d = np.asarray(down, dtype=np.float64).reshape(3)
        return d / np.linalg.norm(d)
    d, forward = frame
    th = math.radians(tilt_deg)
    return d * math.cos(th) + forward * math.sin(th)


def travel_tilt_deg(nominal: np.ndarray, R: np.ndarray, t: np.ndarray, min_forward: float = 0.5) -> float | None:
    """The tilt (degrees, :func:`tilted_down`'s sign) that makes ``nominal`` turned by it perpendicular
    to the direction of travel of a motion ``x_new = R x_ref + t`` (the camera moves by ``-Rᵀ t`` in
    the reference frame), or None when that direction's component along the tilt's forward axis is
    under ``min_forward`` of its length (a sideways or vertical step says nothing about the tilt) or
    ``nominal`` lies along the optical axis or the motion is zero or not finite. Driving backwards
    gives the same tilt as forwards."""
    frame = _tilt_frame(nominal)
    c = -np.asarray(R, dtype=np.float64).reshape(3, 3).T @ np.asarray(t, dtype=np.float64).reshape(3)
    nc = float(np.linalg.norm(c))
    if frame is None or not nc >= 1e-12:  # NaN input says nothing either
        return None
    d, forward = frame
    along, down = float(forward @ c) / nc, float(d @ c) / nc
    if abs(along) < min_forward:
        return None
    # (d cos θ + forward sin θ) · c = 0
    return math.degrees(math.atan(-down / along))


@dataclass
class GroundTilt:
    """The ground normal's tilt from the mount's "down", measured and filtered (module doc).

    ``points``: the most ground pixels each tilt's search uses (evenly spread over the length
    search's when it has more; the tilt search runs ``2 span / step + 1`` length searches).
    State: ``measurements`` (the last ``window`` tilts, degrees), ``calls`` (frame pairs offered)."""

    every: int = 2
    window: int = 61
    points: int = 2000
    span_deg: float = 2.0
    step_deg: float = 0.5
    max_deg: float = 6.0
    min_measurements: int = 3
    source: str = "photometric"
    measurements: deque = field(default_factory=deque, repr=False)
    calls: int = 0

    def __post_init__(self) -> None:
        if self.every < 1 or self.window < 1 or self.min_measurements < 1:
            raise ValueError(f"every, window and min_measurements must be >= 1, got {self.every}, {self.window}, "
                             f"{self.min_measurements}")
        if not (0 < self.step_deg <= self.span_deg and self.max_deg > 0):
            raise ValueError(f"need 0 < step_deg <= span_deg and max_deg > 0, got {self.step_deg}, "
                             f"{self.span_deg}, {self.max_deg}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        self.measurements = deque(maxlen=self.window)

    @property
    def tilt_deg(self) -> float:
        """The tilt in use (degrees): the median of the measurements, 0 before ``min_measurements``."""
        if len(self.measurements) < self.min_measurements:
            return 0.0
        return float(np.median(self.measurements))

    def down(self, nominal: np.ndarray) -> np.ndarray:
        """The ground's normal to use: ``nominal`` turned by :attr:`tilt_deg`."""
        return tilted_down(nominal, self.tilt_deg)

    def reset(self) -> None:
        self.measurements.clear()
        self.calls = 0

    def add_travel(self, nominal: np.ndarray, R: np.ndarray, t: np.ndarray) -> float | None:
        """One measurement from the direction of travel of a motion ``x_new = R x_ref + t`` (a frame
        pair's or a chord's, :mod:`~sfm_ros.runtime.motion.travel_chord`), whatever ``source`` and
        ``every``: the tilt recorded (degrees), or None (:func:`travel_tilt_deg` says nothing, or the
        tilt is beyond ``max_deg``)."""
        tilt = travel_tilt_deg(nominal, R, t)
        if tilt is None or not abs(tilt) <= self.max_deg:
            return None
        self.measurements.append(tilt)
        return tilt

    def observe(self, pix: GroundPixels, K: np.ndarray, R: np.ndarray, t: np.ndarray, nominal: np.ndarray,
                height: float, guess: float | None) -> float | None:
        """Offer one frame pair (prepared :class:`GroundPixels`, its motion ``R``, unit ``t``); every
        ``every``-th is measured. Returns the measured tilt (degrees) or None (not this frame, or no
        length found at any tilt; with ``source="travel"``: a direction that says nothing, or a tilt
        beyond ``max_deg``). A best tilt at the end of the grid is recorded as that end (the median
        moves that way, and the next grid with it)."""
        self.calls += 1
        if (self.calls - 1) % self.every:
            return None
        if self.source == "travel":
            return self.add_travel(nominal, R, t)
        if len(pix.px) > self.points:  # the strongest-gradient pixels come last: a spread subset
            keep = np.linspace(0, len(pix.px) - 1, self.points).round().astype(int)
            pix = GroundPixels(pix.px[keep], pix.ref[keep], pix.B)
        centre = self.tilt_deg
        n_side = int(round(self.span_deg / self.step_deg))
        tilts = centre + self.step_deg * np.arange(-n_side, n_side + 1)
        tilts = tilts[np.abs(tilts) <= self.max_deg]
        errs = np.full(len(tilts), np.inf)
        for i, tilt in enumerate(tilts):
            g = search_step_length(pix, K, R, t, tilted_down(nominal, float(tilt)), height, guess=guess)
            if g.length is not None:
                errs[i] = g.error
        k = int(np.argmin(errs))
        if not np.isfinite(errs[k]):
            return None
        if k == 0 or k == len(tilts) - 1:  # beyond the grid: the end moves the median that way
            self.measurements.append(float(tilts[k]))
            return float(tilts[k])
        # the parabola through the best tilt and its neighbours: a measurement finer than the grid
        e0, e1, e2 = errs[k - 1], errs[k], errs[k + 1]
        curv = e0 - 2.0 * e1 + e2
        offset = 0.5 * (e0 - e2) / curv if np.isfinite(curv) and curv > 0 else 0.0
        tilt = float(tilts[k] + self.step_deg * float(np.clip(offset, -0.5, 0.5)))
        self.measurements.append(tilt)
        return tilt
