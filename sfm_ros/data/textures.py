"""Procedural surface textures of the synthetic street (:mod:`sfm_ros.data.synthetic`).

Band-limited value noise: smooth (C1) noise on a periodic 256x256 lattice, summed over octaves
whose cell size is given in metres on a surface, each faded towards its mean when its cell spans
fewer than a few pixels (a mip-map-like level of detail: ``1 / footprint`` is pixels per metre at
the hit point), and soft window patterns for facades. Pure numpy, float32 where the renderer's
cost lies; no state (the lattice values come with the scene).
"""
from __future__ import annotations

import numpy as np

__all__ = ["TABLE_SIZE", "smoothstep", "quad_table", "value_noise", "lod_weight", "fbm", "low_freq",
           "window_pattern"]

TABLE_BITS = 8
TABLE_SIZE = 1 << TABLE_BITS
TABLE_MASK = TABLE_SIZE - 1

# Cell sizes (metres) and amplitudes of the value-noise octaves on surfaces.
OCTAVE_CELLS = np.array([3.0, 1.2, 0.5, 0.2, 0.08])
OCTAVE_AMPS = np.array([0.30, 0.26, 0.22, 0.20, 0.18])
# Level of detail: an octave is fully present when its cell spans >= LOD_FULL pixels and gone
# at <= LOD_ZERO pixels (smoothstep in between).
LOD_ZERO = 1.5
LOD_FULL = 4.0


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def quad_table(table: np.ndarray) -> np.ndarray:
    """Pack each lattice cell's 4 corner values (v00, v01, v10, v11) as float32 into one complex128
    (16 bytes), so one ``take`` fetches a whole cell."""
    t = np.asarray(table, dtype=np.float32)
    q = np.stack([t, np.roll(t, -1, axis=1), np.roll(t, -1, axis=0), np.roll(np.roll(t, -1, axis=0), -1, axis=1)], -1)
    return np.ascontiguousarray(q).view(np.complex128).reshape(-1)


def value_noise(quad: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth (C1) value noise in [0, 1] at (x, y) in lattice units; period 256 cells.

    ``quad`` comes from :func:`quad_table`. Inputs and output are float32.
    """
    xf = np.floor(x)
    yf = np.floor(y)
    ix = xf.astype(np.int32)
    iy = yf.astype(np.int32)
    ix &= TABLE_MASK
    iy &= TABLE_MASK
    iy <<= TABLE_BITS
    iy |= ix
    v = quad.take(iy).view(np.float32).reshape(-1, 4)
    fx = np.subtract(x, xf, out=xf)
    fy = np.subtract(y, yf, out=yf)
    sx = fx * fx
    sx *= 3.0 - 2.0 * fx
    sy = fy * fy
    sy *= 3.0 - 2.0 * fy
    a = v[:, 1] - v[:, 0]
    a *= sx
    a += v[:, 0]
    b = v[:, 3] - v[:, 2]
    b *= sx
    b += v[:, 2]
    b -= a
    b *= sy
    b += a
    return b


_OCT_ROT = [(np.cos(a), np.sin(a)) for a in (0.0, 0.61, 1.33, 2.17, 2.79)]


def lod_weight(cell: np.ndarray | float, inv_fp: np.ndarray) -> np.ndarray:
    """Level-of-detail weight of an octave with cell size ``cell`` (metres) given 1 / footprint."""
    x = cell * inv_fp
    x -= LOD_ZERO
    x *= 1.0 / (LOD_FULL - LOD_ZERO)
    return smoothstep(x)


def fbm(quad: np.ndarray, s1: np.ndarray, s2: np.ndarray, inv_fp: np.ndarray) -> np.ndarray:
    """Band-limited fractal noise (zero mean, within about +-0.5) at surface coordinates (metres).

    ``inv_fp`` is 1 / (world footprint of a pixel) at each point; octaves whose cell spans fewer
    than ``LOD_FULL`` pixels fade towards zero (their mean), and vanish below ``LOD_ZERO``.
    """
    out = np.zeros_like(s1)
    norm = OCTAVE_AMPS.sum()
    for k, (cell, amp) in enumerate(zip(OCTAVE_CELLS, OCTAVE_AMPS)):
        w = lod_weight(cell, inv_fp)
        sel = np.flatnonzero(w > 0)
        if sel.size == 0:
            continue
        c, s = _OCT_ROT[k]
        c, s = np.float32(c / cell), np.float32(s / cell)
        off = np.float32(37.7 * (k + 1))
        full = sel.size == s1.size
        a, b = (s1, s2) if full else (s1.take(sel), s2.take(sel))
        x = c * a
        x -= s * b
        x += off
        y = s * a
        y += c * b
        y -= off
        n = value_noise(quad, x, y)
        n -= 0.5
        n *= np.float32(amp / norm)
        if full:
            n *= w
            out += n
        else:
            n *= w.take(sel)
            out[sel] += n
    return out


def low_freq(quad: np.ndarray, s1: np.ndarray, s2: np.ndarray, inv_fp: np.ndarray,
              cell: np.ndarray | float) -> np.ndarray:
    """One large octave in [0, 1] (mean 0.5) with cell size ``cell``, faded like the others."""
    w = lod_weight(cell, inv_fp)
    out = np.full_like(s1, 0.5)
    sel = np.flatnonzero(w > 0)
    if sel.size:
        inv_c = (1.0 / np.broadcast_to(np.asarray(cell, dtype=np.float32), s1.shape)).take(sel)
        nz = value_noise(quad, s1.take(sel) * inv_c + np.float32(101.3), s2.take(sel) * inv_c + np.float32(57.9))
        out[sel] += w.take(sel) * (smoothstep((nz - 0.5) * 2.0 + 0.5) - 0.5)
    return out


def window_pattern(s1, s2, period_a, period_b, inv_fp):
    """Soft window pattern in [0, 1] (0 = wall) with a level-of-detail fade (to its mean)."""
    ca = np.cos(2 * np.pi * s1 / period_a)
    cb = np.cos(2 * np.pi * (s2 / period_b + 0.25))
    m = smoothstep((ca - 0.1) / 0.5) * smoothstep((cb - 0.0) / 0.5)
    mean = 0.16  # approximate spatial mean of m
    # Edges are ~period / 12 wide: keep them >= ~2 pixels.
    w = smoothstep((np.minimum(period_a, period_b) * inv_fp - 12.0) / 24.0)
    return mean + w * (m - mean)
