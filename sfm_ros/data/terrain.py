"""Hills for the synthetic street (:mod:`sfm_ros.data.synthetic`): the ground's height along the road.

A street without hills lies on the plane ``y = ground_y``. With hills its ground rises and falls
along the road with a smooth grade profile and has no cross slope: the height of a ground point
is the road's height at the nearest point of the centreline. The camera then pitches with the
road (:func:`sfm_ros.data.synthetic.trajectory`), the boxes stand on it (buried on their downhill
side), and rays find it by marching and bracketing (:meth:`Terrain.intersect`).

Conventions
-----------
* World frame as in :mod:`sfm_ros.data.synthetic`: x right, **y down**, z forward at the start;
  heights are world ``y`` values, so climbing makes ``y`` smaller.
* **Grade**: rise over run along the road, ``-d(road_y)/ds``; positive climbs. ``s`` is the
  centreline's arc length in the horizontal plane (the scene's ``road_s``). The grade is zero at
  ``s = 0`` (where every sequence starts with the identity pose) and at most ``max_grade`` in
  magnitude.
* **The ground's surface** is bilinear on a square grid of ``GRID_CELL`` metres that covers the
  street and ``GRID_MARGIN`` metres around it (beyond it, the nearest edge value holds). It is
  a function of the world point alone, so every view sees the same ground.
* Where the street bends tightly, the nearest centreline point jumps across the inside of the
  bend (its centre of curvature, at least 15 m away): the ground there steps by the height the
  road climbed in between. Gentle curves and the streets' buildings keep this out of view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["Terrain", "MAX_GRADE", "GRID_CELL", "GRID_MARGIN", "TILE_CELLS", "grade_profile", "make_terrain",
           "tile_slopes"]

MAX_GRADE = 0.15  # rise over run: steeper than any road a car camera records on
GRID_CELL = 1.0  # metres
GRID_MARGIN = 100.0  # metres of ground around the street's centreline extent
TILE_CELLS = 8  # grid cells along a side of a tile of the march's slope bounds
_T_RATIO = 1.1  # the march's step: each sample at least 10 % farther than the one before
_REFINE = 60  # at most this many bracketing steps (Illinois false position; bisection where it stalls)
_TOL = 1e-10  # a hit is found when the ray is this close to the ground, relative to t


@dataclass(frozen=True)
class Terrain:
    """The ground's height: a profile along the centreline and its bilinear grid over the world."""

    road_s: np.ndarray  # (N,) centreline arc length, metres
    road_y: np.ndarray  # (N,) world y of the ground on the centreline (y down)
    grade: np.ndarray  # (N,) rise over run (positive climbs)
    origin: np.ndarray  # (2,) world (x, z) of grid node [0, 0]
    cell: float  # grid spacing, metres
    grid: np.ndarray  # (Nz, Nx) world y of the ground at the grid nodes
    tile_slope: np.ndarray  # (Tz, Tx) steepest slope (rise over run) in each tile and its 8 neighbours
    tile_cells: int = TILE_CELLS  # cells along a tile's side

    @property
    def march_slope(self) -> float:
        """The steepest slope anywhere (rise over run, any direction)."""
        return float(self.tile_slope.max())

    @property
    def y_min(self) -> float:
        """Highest ground (smallest world y)."""
        return float(self.grid.min())

    @property
    def y_max(self) -> float:
        """Lowest ground (largest world y)."""
        return float(self.grid.max())

    def along(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Ground height (world y) and grade on the centreline at arc length ``s`` (interpolated)."""
        s = np.asarray(s, dtype=np.float64)
        return np.interp(s, self.road_s, self.road_y), np.interp(s, self.road_s, self.grade)

    def _cells(self, x, z):
        """The bilinear cell under world ``(x, z)``: its corner heights ``a b c d`` (``a`` at the
        cell's lowest x and z, ``b`` +x, ``c`` +z, ``d`` +x+z) and the fractions ``fx``, ``fz``."""
        x = np.asarray(x, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        nz, nx = self.grid.shape
        gx = np.clip((x - self.origin[0]) / self.cell, 0.0, nx - 1.0)
        gz = np.clip((z - self.origin[1]) / self.cell, 0.0, nz - 1.0)
        ix = np.minimum(gx.astype(np.int64), nx - 2)
        iz = np.minimum(gz.astype(np.int64), nz - 2)
        flat = self.grid.reshape(-1)
        k = iz * nx + ix
        return flat.take(k), flat.take(k + 1), flat.take(k + nx), flat.take(k + nx + 1), gx - ix, gz - iz

    def height(self, x, z) -> np.ndarray:
        """World y of the ground under the world points ``(x, z)`` (any equal shapes)."""
        a, b, c, d, fx, fz = self._cells(x, z)
        top = a + fx * (b - a)
        return top + fz * (c + fx * (d - c) - top)

    def normal(self, x, z) -> np.ndarray:
        """Unit normal (..., 3) of the ground under ``(x, z)``, pointing down into it (+y on level ground)."""
        a, b, c, d, fx, fz = self._cells(x, z)
        # The bilinear cell's gradient; the surface y = G(x, z) has the normal (-G_x, 1, -G_z).
        g_x = ((1.0 - fz) * (b - a) + fz * (d - c)) / self.cell
        g_z = ((1.0 - fx) * (c - a) + fx * (d - b)) / self.cell
        n = np.stack([-g_x, np.ones_like(g_x), -g_z], axis=-1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    def local_slope(self, x, z) -> np.ndarray:
        """The steepest slope of the ground within a tile's side (``tile_cells * cell`` metres) of ``(x, z)``."""
        tz, tx = self.tile_slope.shape
        side = self.tile_cells * self.cell
        ix = np.clip(np.floor((np.asarray(x) - self.origin[0]) / side), 0, tx - 1).astype(np.int64)
        iz = np.clip(np.floor((np.asarray(z) - self.origin[1]) / side), 0, tz - 1).astype(np.int64)
        return self.tile_slope.reshape(-1).take(iz * tx + ix)

    def intersect(self, origin, dirs, t_max) -> np.ndarray:
        """First ground hit ``t`` of the rays ``origin + t * dirs`` with ``0 < t < t_max``; inf where none.

        ``origin`` (3,) is above the ground; ``dirs`` (N, 3) world directions (any length);
        ``t_max`` (N,) or a scalar (e.g. the depth of what the ray already hit). The march samples
        ``t`` from as far as the steepest slope near the camera (``local_slope``, within a tile's
        side) lets the ray go without meeting the ground; each next sample lies as far as the
        steepest slope near the ray's last sample lets it go, but at least 10 % farther. Rays that
        could not reach ground rising at the steepest slope anywhere (``march_slope``) never hit.
        A sample under the ground brackets the hit, which is then refined to ``1e-10`` of ``t``:
        only a crest thinner than a tenth of its distance can be stepped over, by a grazing ray.
        Where the nearest centreline point jumps (across the inside of a bend) the ground steps
        and the slopes near it are steep: the march is slower there, not wrong.
        """
        o = np.asarray(origin, dtype=np.float64)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        n = d.shape[0]
        t_max = np.broadcast_to(np.asarray(t_max, dtype=np.float64), (n,))
        # Rays end twice the grid's diagonal away (past its edge the ground keeps the edge's heights).
        run = np.hypot(d[:, 0], d[:, 2])  # horizontal metres per unit t
        reach = 2.0 * float(np.hypot(*self.grid.shape) * self.cell) / np.linalg.norm(d, axis=1)
        t_end = np.minimum(t_max, reach)
        side = self.tile_cells * self.cell
        out = np.full(n, np.inf)
        clearance = float(self.height(o[0], o[2])) - o[1]
        if clearance <= 0.0:
            raise ValueError(f"the camera at {o} is not above the ground (ground y "
                             f"{o[1] + clearance:.3f}, y points down)")
        # How fast a ray can close on the ground per unit t: its own descent plus the steepest
        # rise of the ground over its horizontal run. Rays that cannot close never hit.
        closing = d[:, 1] + self.march_slope * run

        def below(idx: np.ndarray, t: np.ndarray, slope: bool = False):
            """Ray height minus ground height (> 0: the ray point lies under the ground); with
            ``slope``, also the steepest slope near the point (:meth:`local_slope`)."""
            p = o + t[:, None] * d.take(idx, axis=0)
            f = p[:, 1] - self.height(p[:, 0], p[:, 2])
            return (f, self.local_slope(p[:, 0], p[:, 2])) if slope else f

        y_lo, y_hi = self.y_min, self.y_max
        # The first sample: as far as the slopes near the camera let each ray go unhindered.
        first = d[:, 1] + self.local_slope(o[0], o[2]) * run
        with np.errstate(divide="ignore", invalid="ignore"):
            t_first = np.minimum(np.where(first > 0.0, clearance / first, np.inf), side / run)
        idx = np.flatnonzero((closing > 0.0) & (t_end > t_first))
        t_prev = t_first.take(idx)
        f_prev, l_prev = below(idx, t_prev, slope=True)
        hit_idx, lo, hi, f_lo, f_hi = [], [], [], [], []
        early = f_prev >= 0.0  # only where the slopes were given too low: bracket from the camera
        if np.any(early):
            hit_idx.append(idx[early])
            lo.append(np.zeros(int(early.sum())))
            hi.append(t_prev[early])
            f_lo.append(np.full(int(early.sum()), -clearance))
            f_hi.append(f_prev[early])
            idx, t_prev, f_prev, l_prev = idx[~early], t_prev[~early], f_prev[~early], l_prev[~early]
        while idx.size:
            h = run.take(idx)
            near = d[idx, 1] + l_prev * h
            with np.errstate(divide="ignore", invalid="ignore"):
                # Safe within a tile's side of the sample: no farther than that side horizontally.
                safe = np.minimum(np.where(near > 0.0, -f_prev / near, np.inf), side / h)
            step = np.maximum(safe, (_T_RATIO - 1.0) * t_prev)
            t = np.minimum(t_prev + step, t_end.take(idx))
            f, l_now = below(idx, t, slope=True)
            crossed = f >= 0.0
            if np.any(crossed):
                hit_idx.append(idx[crossed])
                lo.append(t_prev[crossed])
                hi.append(t[crossed])
                f_lo.append(f_prev[crossed])
                f_hi.append(f[crossed])
            dy = d[idx, 1]
            y = o[1] + t * dy
            # Done: crossed, reached the end, or above all ground and rising (or level).
            live = ~crossed & (t < t_end.take(idx)) & ~((y < y_lo) & (dy <= 0.0)) & ~(y > y_hi)
            idx, t_prev, f_prev, l_prev = idx[live], t[live], f[live], l_now[live]
        idx = np.concatenate(hit_idx) if hit_idx else np.zeros(0, dtype=np.int64)
        if not idx.size:
            return out
        a, b = np.concatenate(lo), np.concatenate(hi)
        fa, fb = np.concatenate(f_lo), np.concatenate(f_hi)
        moved = np.zeros(idx.size, dtype=np.int8)  # which end moved last time (Illinois): -1 b, 1 a
        for _ in range(_REFINE):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = b - fb * (b - a) / (fb - fa)
            bad = ~np.isfinite(t) | (t <= a) | (t >= b)
            t = np.where(bad, 0.5 * (a + b), t)
            f = below(idx, t)
            done = (np.abs(f) <= _TOL * t) | (b - a <= _TOL * b)
            out[idx[done]] = t[done]
            up = f >= 0.0  # the hit lies in [a, t]
            # Illinois: halve the function value of an end kept twice in a row.
            fa = np.where(up & (moved == -1), 0.5 * fa, fa)
            fb = np.where(~up & (moved == 1), 0.5 * fb, fb)
            b, fb = np.where(up, t, b), np.where(up, f, fb)
            a, fa = np.where(up, a, t), np.where(up, fa, f)
            moved = np.where(up, -1, 1).astype(np.int8)
            keep = ~done
            idx, a, b, fa, fb, moved = idx[keep], a[keep], b[keep], fa[keep], fb[keep], moved[keep]
            if not idx.size:
                break
        out[idx] = b  # not converged in _REFINE steps (none seen): the under-ground end
        return out


def grade_profile(s, max_grade: float, wavelengths, weights) -> np.ndarray:
    """The grade at arc lengths ``s``: ``max_grade * sum(w_k sin(2 pi s / L_k)) / sum(w_k)``.

    Zero at ``s = 0`` and never steeper than ``max_grade``.
    """
    s = np.asarray(s, dtype=np.float64)
    wavelengths = np.asarray(wavelengths, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    waves = np.sin(2.0 * np.pi * s[..., None] / wavelengths) @ weights
    return max_grade * waves / weights.sum()


def make_terrain(road_s: np.ndarray, road_xz: np.ndarray, ground_y: float, max_grade: float,
                 rng: np.random.Generator) -> Terrain:
    """Hills along the centreline sampled at ``road_s`` (which holds ``s = 0``) with ``road_xz``.

    The grade is two sine waves drawn from ``rng`` (wavelengths 250-500 m and 50-110 m), scaled
    to ``max_grade`` (rise over run, ``0 < max_grade <= MAX_GRADE``); the ground is at
    ``ground_y`` where the street starts (``s = 0``).
    """
    max_grade = float(max_grade)
    if not np.isfinite(max_grade) or not 0.0 < max_grade <= MAX_GRADE:
        raise ValueError(f"hills (the steepest grade, rise over run) must be in (0, {MAX_GRADE}], "
                         f"got {max_grade}")
    road_s = np.asarray(road_s, dtype=np.float64)
    road_xz = np.asarray(road_xz, dtype=np.float64)
    if road_s.ndim != 1 or road_xz.shape != (road_s.size, 2) or road_s.size < 2:
        raise ValueError(f"road_s (N,) and road_xz (N, 2) must match, got {road_s.shape} and {road_xz.shape}")
    i0 = int(np.argmin(np.abs(road_s)))
    if road_s[i0] != 0.0:
        raise ValueError("road_s must hold s = 0 exactly (where the street starts)")
    wavelengths = [rng.uniform(250.0, 500.0), rng.uniform(50.0, 110.0)]
    weights = [1.0, rng.uniform(0.3, 0.7)]
    grade = grade_profile(road_s, max_grade, wavelengths, weights)
    # Height: y falls as the road climbs; trapezoidal integration from s = 0.
    rise = np.concatenate([[0.0], np.cumsum(0.5 * (grade[1:] + grade[:-1]) * np.diff(road_s))])
    road_y = float(ground_y) - (rise - rise[i0])

    lo = road_xz.min(axis=0) - GRID_MARGIN
    hi = road_xz.max(axis=0) + GRID_MARGIN
    nx = int(np.ceil((hi[0] - lo[0]) / GRID_CELL)) + 1
    nz = int(np.ceil((hi[1] - lo[1]) / GRID_CELL)) + 1
    gx, gz = np.meshgrid(lo[0] + GRID_CELL * np.arange(nx), lo[1] + GRID_CELL * np.arange(nz))
    nodes = np.stack([gx.ravel(), gz.ravel()], axis=1)
    # Arc length of each node's nearest centreline point: the nearest sample, then along its
    # tangent (the samples are 0.1 m apart, so the step stays within one or two samples).
    _, k = cKDTree(road_xz).query(nodes)
    k = np.clip(k, 0, road_s.size - 2)
    tangent = road_xz[k + 1] - road_xz[k]
    seg = np.linalg.norm(tangent, axis=1)
    along = np.einsum("ij,ij->i", nodes - road_xz[k], tangent) / np.maximum(seg, 1e-12)
    s_node = np.clip(road_s[k] + along, road_s[0], road_s[-1])
    grid = np.interp(s_node, road_s, road_y).reshape(nz, nx)
    return Terrain(road_s=road_s.copy(), road_y=road_y, grade=grade, origin=lo, cell=GRID_CELL,
                   grid=grid, tile_slope=tile_slopes(grid, GRID_CELL, TILE_CELLS))


def tile_slopes(grid: np.ndarray, cell: float, tile_cells: int) -> np.ndarray:
    """The steepest slope of the bilinear surface over ``grid`` in each tile of ``tile_cells`` cells
    and its 8 neighbours (so it bounds the slope within a tile's side of any point of the tile).

    A bilinear cell is nowhere steeper than its steeper x edge and its steeper z edge together.
    """
    from scipy.ndimage import maximum_filter

    dx = np.abs(np.diff(grid, axis=1))
    dz = np.abs(np.diff(grid, axis=0))
    sx = np.maximum(dx[1:], dx[:-1])  # (Nz - 1, Nx - 1): the cell's steeper x edge
    sz = np.maximum(dz[:, 1:], dz[:, :-1])
    cells = np.hypot(sx, sz) / cell
    cz, cx = cells.shape
    tz, tx = -(-cz // tile_cells), -(-cx // tile_cells)
    padded = np.zeros((tz * tile_cells, tx * tile_cells))
    padded[:cz, :cx] = cells
    tiles = padded.reshape(tz, tile_cells, tx, tile_cells).max(axis=(1, 3))
    return maximum_filter(tiles, size=3, mode="nearest")
