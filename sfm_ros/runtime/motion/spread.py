"""The robust spread of residuals: the median absolute deviation, scaled to a standard deviation.

Convention: ``x`` any shape (flattened), ``center`` the value deviations are taken from (0:
residuals about zero). ``1.4826 x median |x - center|`` is the standard deviation of normal
samples (1.4826 = 1 / Φ⁻¹(3/4); Rousseeuw & Croux, "Alternatives to the median absolute
deviation", JASA 1993) and ignores outliers up to half of them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["robust_spread"]


def robust_spread(x: np.ndarray, center: float | None = None) -> float:
    """``1.4826 x median |x - center|`` (``center`` None: ``|x|``), in the units of ``x``."""
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError("robust_spread needs at least one value")
    return float(1.4826 * np.median(np.abs(x if center is None else x - center)))
