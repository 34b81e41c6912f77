"""Checks shared by the two-view functions and the refiner's parts: the shape checks raise ValueError
naming the argument; :func:`integer_at_least` answers, and its caller names the option."""
from __future__ import annotations

import numpy as np


def points(x, name: str) -> np.ndarray:
    """``x`` as an (N, 2) array of pixel coordinates (its dtype kept)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must be (N, 2) pixel coordinates, got shape {x.shape}")
    return x


def pairs(p, q) -> tuple[np.ndarray, np.ndarray]:
    """Corresponding pixels ``p`` ↔ ``q``: both (N, 2), one N."""
    p, q = points(p, "p"), points(q, "q")
    if len(p) != len(q):
        raise ValueError(f"p and q must hold the same number of points, got {len(p)} and {len(q)}")
    return p, q


def matrix(x, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``x`` as a float64 array of ``shape``."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != shape:
        raise ValueError(f"{name} must be {'x'.join(map(str, shape))}, got shape {x.shape}")
    return x


def integer_at_least(x, low: int) -> bool:
    """Whether ``x`` is an integer (an int or an integral number, not a bool) of at least ``low``."""
    return not isinstance(x, bool) and int(x) == x and x >= low
