"""A vehicle's distance along its path over time: a cruising speed with stops.

Each stop ``(t, d)`` holds the vehicle at rest from ``t`` to ``t + d`` seconds; it brakes over the
``RAMP_S`` seconds before ``t`` and pulls away over the ``RAMP_S`` seconds after ``t + d``, its
speed following a smoothstep (``3u² - 2u³``) between cruising and rest, so speed is continuous. The
distance is the speed's integral in closed form: a stop costs ``d + RAMP_S`` seconds of cruising
(half of each ramp). Used by the rendered streets (:mod:`sfm_ros.data.synthetic`) to make drives
that stop, as traffic does (issue 24's long drives).

Convention: times in seconds from the start of the drive (``t >= 0``), distances in metres from its
start. Without stops the distance is exactly ``speed * times``. numpy only.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["RAMP_S", "check_stops", "distance", "parse_stops"]

#: seconds to brake from cruising to rest before a stop, and to pull away after it (6 m/s: ~3 m/s²)
RAMP_S = 2.0


def check_stops(stops) -> tuple[tuple[float, float], ...]:
    """``stops`` as a tuple of ``(start, duration)`` pairs (seconds) after checking them: finite,
    ``start >= RAMP_S`` (room to brake from cruising), ``duration > 0``, in time order, and each
    stop's braking beginning after the previous one's pulling away ended; ValueError naming the
    stop otherwise."""
    out = []
    for k, stop in enumerate(() if stops is None else stops):
        try:
            t, d = (float(x) for x in stop)
        except (TypeError, ValueError):
            raise ValueError(f"stop {k} must be a (start, duration) pair of seconds, got {stop!r}") from None
        if not (math.isfinite(t) and math.isfinite(d)):
            raise ValueError(f"stop {k} must be finite seconds, got ({t}, {d})")
        if t < RAMP_S:
            raise ValueError(f"stop {k} starts at {t:g} s: a stop needs the first {RAMP_S:g} s to brake "
                             f"(start >= {RAMP_S:g})")
        if d <= 0:
            raise ValueError(f"stop {k} must last > 0 s, got {d:g}")
        if out and t - RAMP_S < out[-1][0] + out[-1][1] + RAMP_S:
            raise ValueError(f"stop {k} at {t:g} s begins braking before stop {k - 1} has pulled away "
                             f"({out[-1][0] + out[-1][1] + RAMP_S:g} s): stops in time order, "
                             f"{2 * RAMP_S:g} s apart at least")
        out.append((t, d))
    return tuple(out)


def parse_stops(text: str) -> tuple[tuple[float, float], ...]:
    """``"START:DURATION,..."`` (seconds; empty: none) → :func:`check_stops`' pairs; a bad item is
    named (ValueError)."""
    pairs = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 2:
            raise ValueError(f"a stop is START:DURATION in seconds, got {item!r}")
        try:
            pairs.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"a stop is START:DURATION in seconds, got {item!r}") from None
    return check_stops(pairs)


def _braking_lost(x: np.ndarray) -> np.ndarray:
    """Cruising time lost (in ramps) after ``x`` (0..1) of a braking ramp: ∫₀ˣ (3u² - 2u³) du."""
    return x ** 3 - 0.5 * x ** 4


def _pulling_lost(x: np.ndarray) -> np.ndarray:
    """Cruising time lost (in ramps) after ``x`` (0..1) of a pulling-away ramp: ∫₀ˣ (1 - 3u² + 2u³) du."""
    return x - x ** 3 + 0.5 * x ** 4


def distance(times, speed: float, stops=()) -> np.ndarray:
    """Metres driven at ``times`` (seconds, any shape, >= 0) cruising at ``speed`` (m/s) with
    ``stops`` (:func:`check_stops`); exactly ``speed * times`` without stops."""
    times = np.asarray(times, dtype=np.float64)
    speed = float(speed)
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
    stops = check_stops(stops)
    if not stops:
        return speed * times
    if np.any(times < 0) or not np.all(np.isfinite(times)):
        raise ValueError("times must be finite seconds >= 0")
    lost = np.zeros_like(times)
    for t0, d in stops:
        lost += RAMP_S * _braking_lost(np.clip((times - (t0 - RAMP_S)) / RAMP_S, 0.0, 1.0))
        lost += np.clip(times - t0, 0.0, d)
        lost += RAMP_S * _pulling_lost(np.clip((times - (t0 + d)) / RAMP_S, 0.0, 1.0))
    return speed * (times - lost)
