"""Procedural monocular street sequences with exact depth, poses and intrinsics.

This is the project's own data: tests, the demo and the default model's training use it (real
data cannot be downloaded). It is pure numpy (vectorised ray casting against a ground plane, or
hills (:mod:`sfm_ros.data.terrain`), and vertical boxes), deterministic by seed, and fast (a 128x416
frame renders in a few tens of ms).

Conventions
-----------
* **Camera frame**: optical frame (REP-103 ``*_optical_frame``): x right, y down, z forward.
* **Pixels**: integer coordinates ``(u, v)`` address pixel *centres* (OpenCV convention); the ray
  of pixel ``(u, v)`` is ``K^-1 [u, v, 1]^T``. Every pixel is shaded by one ray through its centre
  (no supersampling): object silhouettes are hard edges, textures are band-limited instead.
* **Poses**: ``T_w_c`` is camera-to-world (``p_w = T_w_c @ p_c``), 4x4 float64.
* **World frame**: fixed to the street, with the same axes as the camera at rest: x right, **y down**,
  z forward along the start of the street. The origin is the first camera centre; the ground is
  the plane ``y = +camera_height`` (``Scene.ground_y``) unless the street has hills (then that is
  its height where the street starts, :mod:`sfm_ros.data.terrain`), the sky is towards ``-y``. The first pose
  of every sequence is exactly the identity (trajectory jitter vanishes at ``t = 0``).
* **Depth**: z-depth along the optical axis (not the ray length), float32 metres; ``np.inf`` where a
  ray hits nothing (sky). Since rays are ``K^-1 [u, v, 1]`` (unit z), the ray parameter *is* the depth.
* **Sky**: its colour depends only on the ray direction in the world (a point at infinity), so it
  is consistent under camera translation.
* **Images**: RGB ``uint8``.

Scene
-----
A street along a smoothly curving centreline (curvature ``kappa0 * (1 + a sin(2 pi s / L + phi))``,
never changing sign): textured ground, buildings (boxes) on both sides at varied distances with
gaps and optional soft window patterns, boxes of several sizes standing on the ground beside the
lane, a far wall closing the street, and a direction-only sky with clouds. The camera drives along
the centreline at ``camera_height`` with a small lateral weave, small pitch/roll oscillations and
the road's yaw, at a cruising speed, optionally with stops (:mod:`sfm_ros.data.speed_profile`).

Textures are defined in surface coordinates (the same point has the same colour in every view) and
lit by a fixed Lambertian factor per face (view-independent). They are sums of value-noise octaves
(C1, smooth) plus soft-edged window patterns; each octave is faded out (towards its mean) when its
cell size spans fewer than a few pixels at the hit point (a mip-map-like level of detail), so
bilinear resampling of a rendered frame reproduces a neighbouring view up to a couple of grey
levels. The level of detail depends slowly on the distance, so it changes little between frames.
The noise and the window patterns live in :mod:`sfm_ros.data.textures`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sfm_ros.core.se3 import rot_x, rot_y, rot_z
from sfm_ros.data.speed_profile import check_stops, distance
from sfm_ros.data.terrain import MAX_GRADE, Terrain, make_terrain
from sfm_ros.data.textures import (TABLE_SIZE, fbm, low_freq, quad_table, smoothstep, value_noise,
                                   window_pattern)

__all__ = [
    "MAX_MEAN_CURVATURE",
    "Scene",
    "SyntheticSequence",
    "RayHits",
    "default_intrinsics",
    "make_scene",
    "trajectory",
    "cast_rays",
    "render_frame",
    "render_sequence",
]

# Surface labels in ``RayHits.labels``.
SKY = -1
GROUND = 0

_NEAR = 0.05  # metres: near clipping for culling
_MAX_CURVATURE = 1.0 / 15.0  # 1/m: turning radius of at least 15 m
#: the steepest mean curvature of a street (1/m): its curvature reaches 1.5x the mean
MAX_MEAN_CURVATURE = _MAX_CURVATURE / 1.5
_START_MARGIN = 15.0  # metres of street behind the start
_VIEW_MARGIN = 60.0  # metres of street beyond the last camera position (then the far wall)


_BUILDING_COLOURS = np.array(
    [[150, 82, 62], [192, 172, 132], [140, 140, 146], [100, 116, 142], [182, 142, 72],
     [200, 194, 182], [120, 96, 80], [160, 170, 150]], dtype=np.float64)
_BOX_COLOURS = np.array(
    [[162, 122, 72], [176, 140, 96], [72, 122, 72], [212, 122, 44], [62, 92, 162],
     [152, 156, 162], [190, 60, 50], [220, 200, 80]], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """A procedural street. Boxes are vertical prisms standing on the ground.

    ``box_center`` is the footprint centre (x, z) and ``box_yaw`` the rotation about the world y
    axis (a box's local z axis points along ``(sin yaw, 0, cos yaw)``); ``box_half`` holds half
    extents (local x, y, z); a box spans ``y`` in ``[box_base - 2 * half_y, box_base]``, where
    ``box_base`` is ``ground_y`` on a flat street and the lowest ground under the box on hills
    (``terrain``: the box is buried on its downhill side).
    The centreline is sampled at ``road_s`` (arc length, metres) with positions ``road_xz`` and
    headings ``road_heading`` (yaw, radians; 0 = +z, positive turns towards +x, i.e. right).
    """

    seed: int
    camera_height: float
    length: float
    curvature: float
    road_s: np.ndarray
    road_xz: np.ndarray
    road_heading: np.ndarray
    box_center: np.ndarray  # (M, 2) x, z
    box_yaw: np.ndarray  # (M,)
    box_half: np.ndarray  # (M, 3)
    box_colour: np.ndarray  # (M, 2, 3) two base colours mixed by low-frequency noise
    box_offset: np.ndarray  # (M, 2) texture-space offsets (metres)
    box_contrast: np.ndarray  # (M,)
    box_windows: np.ndarray  # (M, 3): [enabled, period along, period up] (metres)
    box_shade: np.ndarray  # (M, 6) Lambert factor per face code (axis * 2 + (d > 0))
    ground_colour: np.ndarray  # (2, 3)
    ground_offset: np.ndarray  # (2,)
    ground_contrast: float
    ground_shade: float
    sun: np.ndarray  # (3,) unit vector towards the sun (world)
    noise_table: np.ndarray  # (S, S) float32 in [0, 1], S = 256
    sky_offset: np.ndarray = field(default_factory=lambda: np.zeros(2))
    terrain: Terrain | None = None  # hills; None: the ground is the plane y = ground_y
    box_base: np.ndarray | None = None  # (M,) world y of each box's bottom; None: ground_y
    noise_quad: np.ndarray = field(init=False, repr=False)

    box_corners: np.ndarray = field(init=False, repr=False)  # (M, 8, 3) world corners

    def __post_init__(self) -> None:
        self.noise_quad = quad_table(self.noise_table)
        if self.box_base is None:
            self.box_base = np.full(self.num_boxes, self.ground_y)
        self.box_corners = np.stack(
            [self.box_center3(i) + (_UNIT_CORNERS * self.box_half[i]) @ self.box_rotation(i).T
             for i in range(self.num_boxes)]) if self.num_boxes else np.zeros((0, 8, 3))

    @property
    def ground_y(self) -> float:
        """World y of the ground plane (y points down); on hills, of the ground where the street starts."""
        return float(self.camera_height)

    @property
    def num_boxes(self) -> int:
        return int(self.box_center.shape[0])

    def box_rotation(self, i: int) -> np.ndarray:
        """World-from-box rotation of box ``i`` (about the world y axis)."""
        return rot_y(float(self.box_yaw[i]))

    def box_center3(self, i: int) -> np.ndarray:
        """3D centre of box ``i`` in the world."""
        cx, cz = self.box_center[i]
        return np.array([cx, self.box_base[i] - self.box_half[i, 1], cz])

    def ground_height(self, x, z) -> np.ndarray:
        """World y of the ground under the world points ``(x, z)`` (y points down)."""
        x, z = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(z, dtype=np.float64))
        if self.terrain is None:
            return np.full(x.shape, self.ground_y)
        return self.terrain.height(x, z)

    def road_pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centreline position (..., 2: x, z) and heading at arc length ``s`` (interpolated)."""
        s = np.asarray(s, dtype=np.float64)
        x = np.interp(s, self.road_s, self.road_xz[:, 0])
        z = np.interp(s, self.road_s, self.road_xz[:, 1])
        h = np.interp(s, self.road_s, self.road_heading)
        return np.stack([x, z], axis=-1), h


@dataclass
class SyntheticSequence:
    """A rendered sequence with exact geometry.

    ``poses[i]`` is ``T_w_c`` of frame ``i`` (``poses[0]`` is the identity); the relative pose
    that maps target-camera points into a source camera is ``inv(poses[s]) @ poses[t]``.
    """

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    depths: np.ndarray  # (N, H, W) float32 metres, z-depth; inf where the sky is seen
    poses: np.ndarray  # (N, 4, 4) float64 camera-to-world T_w_c
    K: np.ndarray  # (3, 3) float64 intrinsics
    timestamps: np.ndarray  # (N,) float64 seconds
    scene: Scene | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RayHits:
    """Result of :func:`cast_rays`: what each pixel's ray hits first."""

    depth: np.ndarray  # (H, W) float64 z-depth, inf for sky
    labels: np.ndarray  # (H, W) int32: -1 sky, 0 ground, 1 + i box i
    faces: np.ndarray  # (H, W) int8 face code of box hits (axis * 2 + (d_local > 0)), -1 otherwise
    dirs_world: np.ndarray  # (H, W, 3) float64 ray directions in the world (unit z in camera)
    origin: np.ndarray  # (3,) camera centre in the world


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_finite(name: str, value, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _check_K(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError("K must have positive focal lengths fx = K[0,0], fy = K[1,1]")
    return K


def _check_pose(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"T_w_c must be a finite 4x4 matrix, got shape {T.shape}")
    return T


def default_intrinsics(height: int = 128, width: int = 416) -> np.ndarray:
    """KITTI-like intrinsics for an image of ``height`` x ``width``.

    ``fx = fy = 0.58 * width`` (horizontal field of view about 81 degrees, as KITTI's 1242-pixel
    camera with fx ~ 718), principal point at the image centre ``((W - 1) / 2, (H - 1) / 2)``.
    """
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    f = 0.58 * width
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------------------------
# Scene generation
# --------------------------------------------------------------------------------------------
def _draw_curvature(rng: np.random.Generator, speed: float) -> float:
    """Seed-dependent mean curvature: a yaw rate of 0.05-0.25 rad/s at ``speed`` m/s, either sign."""
    yaw_rate = rng.uniform(0.05, 0.25) * rng.choice([-1.0, 1.0])
    return float(np.clip(yaw_rate / speed, -MAX_MEAN_CURVATURE, MAX_MEAN_CURVATURE))


def make_scene(seed: int = 0, length: float = 150.0, curvature: float | None = None,
               camera_height: float = 1.5, box_density: float = 1.0, hills: float = 0.0) -> Scene:
    """Build the street for ``seed``.

    ``length``: metres of street ahead of the start (a far wall closes it). ``curvature``: mean
    centreline curvature in 1/m (positive turns right); ``None`` draws one from the seed
    (equivalent to a yaw rate of 0.05-0.25 rad/s at 6 m/s). The curvature varies along the street
    between 0.5x and 1.5x its mean (never changing sign), so ``|curvature|`` must be
    <= 1 / (1.5 * 15 m). ``box_density`` scales the number of small boxes beside the lane.
    ``hills``: the steepest grade of the road (rise over run, e.g. 0.06 for 6 %; 0 keeps the
    ground a plane): the road climbs and falls along its length with a profile drawn from the seed
    (:func:`sfm_ros.data.terrain.make_terrain`), level where the street starts; the streets'
    objects, textures and curvature are the same as without hills.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    length = _check_finite("length", length, positive=True)
    camera_height = _check_finite("camera_height", camera_height, positive=True)
    box_density = _check_finite("box_density", box_density)
    if box_density < 0:
        raise ValueError(f"box_density must be >= 0, got {box_density}")
    hills = _check_finite("hills", hills)
    if not 0 <= hills <= MAX_GRADE:
        raise ValueError(f"hills (the steepest grade, rise over run) must be in [0, {MAX_GRADE}], got {hills}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F3])
    if curvature is None:
        kappa0 = _draw_curvature(rng, 6.0)
    else:
        kappa0 = _check_finite("curvature", curvature)
        if abs(kappa0) * 1.5 > _MAX_CURVATURE + 1e-12:
            raise ValueError(
                f"|curvature| = {abs(kappa0):.4f} 1/m is too tight: it must be <= "
                f"{MAX_MEAN_CURVATURE:.4f} (turning radius >= 15 m at 1.5x the mean)")
        rng.uniform(), rng.choice([-1.0, 1.0])  # keep the stream aligned with the drawn case
    wave_len = rng.uniform(40.0, 100.0)
    wave_amp = rng.uniform(0.2, 0.5)
    wave_phase = rng.uniform(0.0, 2.0 * np.pi)

    # Centreline, sampled every 0.1 m from -_START_MARGIN to length + 5 (heading 0 at s = 0).
    ds = 0.1
    # Integer steps so that s = 0 is a sample exactly (the first pose is then exactly the identity).
    s = np.arange(-int(round(_START_MARGIN / ds)), int(np.ceil((length + 5.0) / ds)) + 1) * ds
    kappa = kappa0 * (1.0 + wave_amp * np.sin(2.0 * np.pi * s / wave_len + wave_phase))
    heading = np.zeros_like(s)
    i0 = int(round(_START_MARGIN / ds))
    # Trapezoidal integration from s = 0 in both directions.
    ck = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * ds)])
    heading = ck - ck[i0]
    sx = np.concatenate([[0.0], np.cumsum(0.5 * (np.sin(heading[1:]) + np.sin(heading[:-1])) * ds)])
    sz = np.concatenate([[0.0], np.cumsum(0.5 * (np.cos(heading[1:]) + np.cos(heading[:-1])) * ds)])
    road_xz = np.stack([sx - sx[i0], sz - sz[i0]], axis=1)

    def frame_at(si: float):
        x = np.interp(si, s, road_xz[:, 0])
        z = np.interp(si, s, road_xz[:, 1])
        h = np.interp(si, s, heading)
        return np.array([x, z]), h, np.array([np.cos(h), -np.sin(h)])  # right normal (x, z)

    centers, yaws, halves, colours, windows, contrasts, offsets = [], [], [], [], [], [], []

    # Buildings along both sides, with gaps and varied set-backs.
    # Separate random streams per side, for the small boxes and the far wall, so that a longer
    # street only adds objects at its end (the first metres of a street do not depend on length).
    for side in (-1.0, 1.0):
        rb = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F3, 1 if side < 0 else 2])
        si = -_START_MARGIN - rb.uniform(0.0, 8.0)
        while si < length:
            seg = rb.uniform(6.0, 16.0)
            if rb.uniform() < 0.25:  # a gap
                si += rb.uniform(3.0, 9.0)
                continue
            setback = rb.uniform(4.5, 8.0)
            depth = rb.uniform(3.0, 10.0)
            height = rb.uniform(3.5, 14.0)
            pos, h, n = frame_at(si + seg / 2)
            centers.append(pos + n * side * (setback + depth / 2))
            yaws.append(h)
            halves.append([depth / 2, height / 2, seg / 2])
            base = _BUILDING_COLOURS[rb.integers(len(_BUILDING_COLOURS))]
            colours.append([base + rb.uniform(-15, 15, 3), base * rb.uniform(0.7, 0.9) + rb.uniform(-10, 10, 3)])
            windows.append([float(rb.uniform() < 0.7), rb.uniform(2.0, 4.0), rb.uniform(2.6, 3.6)])
            contrasts.append(rb.uniform(0.6, 0.9))
            offsets.append(rb.uniform(0, 500.0, 2))
            si += seg + rb.uniform(0.0, 1.0)

    # Small boxes standing beside the lane.
    rx = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F3, 3])
    si = rx.uniform(2.0, 8.0)
    while si < length and box_density > 0:
        side = rx.choice([-1.0, 1.0])
        hx, hy, hz = rx.uniform(0.2, 1.0), rx.uniform(0.15, 1.25), rx.uniform(0.2, 1.0)
        lateral = 2.0 + np.hypot(hx, hz) + rx.uniform(0.0, 2.0)
        pos, h, n = frame_at(si)
        centers.append(pos + n * side * lateral)
        yaws.append(h + rx.uniform(-0.7, 0.7))
        halves.append([hx, hy, hz])
        base = _BOX_COLOURS[rx.integers(len(_BOX_COLOURS))]
        colours.append([base + rx.uniform(-20, 20, 3), base * rx.uniform(0.6, 0.85) + rx.uniform(-15, 15, 3)])
        windows.append([0.0, 1.0, 1.0])
        contrasts.append(rx.uniform(0.7, 1.0))
        offsets.append(rx.uniform(0, 500.0, 2))
        si += rx.uniform(3.0, 9.0) / box_density

    # A far wall across the end of the street.
    rw = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F3, 4])
    pos, h, n = frame_at(length)
    centers.append(pos + np.array([np.sin(h), np.cos(h)]) * 2.0)
    yaws.append(h)
    halves.append([30.0, rw.uniform(8.0, 14.0), 2.0])
    base = _BUILDING_COLOURS[rw.integers(len(_BUILDING_COLOURS))]
    colours.append([base, base * 0.8])
    windows.append([1.0, rw.uniform(2.0, 4.0), rw.uniform(2.6, 3.6)])
    contrasts.append(0.7)
    offsets.append(rw.uniform(0, 500.0, 2))

    m = len(centers)
    box_yaw = np.asarray(yaws, dtype=np.float64)
    box_half = np.asarray(halves, dtype=np.float64)
    box_center = np.asarray(centers, dtype=np.float64)
    terrain, box_base = None, None
    if hills > 0:
        # Its own random stream: a street with hills has the same objects as without.
        terrain = make_terrain(s, road_xz, camera_height, hills,
                               np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5F3, 5]))
        # Each box keeps its height above the highest ground under it and reaches down to the
        # lowest (world y points down), sampled over its footprint at least every 0.5 m.
        box_base, top = np.empty(m), np.empty(m)
        for i in range(m):
            hx, hz = box_half[i, 0], box_half[i, 2]
            lx, lz = np.meshgrid(np.linspace(-hx, hx, int(np.ceil(4 * hx)) + 1),
                                 np.linspace(-hz, hz, int(np.ceil(4 * hz)) + 1))
            c, sn = np.cos(box_yaw[i]), np.sin(box_yaw[i])
            under = terrain.height(box_center[i, 0] + c * lx + sn * lz, box_center[i, 1] - sn * lx + c * lz)
            box_base[i] = under.max()
            top[i] = under.min() - 2.0 * box_half[i, 1]
        box_half[:, 1] = 0.5 * (box_base - top)
    sun = np.array([rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.5, 0.5)])
    sun /= np.linalg.norm(sun)
    # Lambert factor per face code (axis * 2 + (d_local > 0)); the outward normal of face code k is
    # -sign(d) e_axis, i.e. +e_axis for even codes and -e_axis for odd ones.
    shade = np.empty((m, 6))
    for i in range(m):
        R = rot_y(box_yaw[i])
        for k in range(6):
            nrm = R[:, k // 2] * (1.0 if k % 2 == 0 else -1.0)
            shade[i, k] = 0.5 + 0.6 * max(0.0, float(nrm @ sun))
    ground_shade = 0.5 + 0.6 * max(0.0, float(np.array([0.0, -1.0, 0.0]) @ sun))
    g0 = np.array([96.0, 96.0, 102.0]) + rng.uniform(-12, 12, 3)
    g1 = np.array([128.0, 118.0, 100.0]) + rng.uniform(-12, 12, 3)
    return Scene(
        seed=int(seed), camera_height=camera_height, length=length, curvature=float(kappa0),
        road_s=s, road_xz=road_xz, road_heading=heading,
        box_center=box_center, box_yaw=box_yaw, box_half=box_half,
        box_colour=np.clip(np.asarray(colours, dtype=np.float64), 10, 245),
        box_offset=np.asarray(offsets, dtype=np.float64), box_contrast=np.asarray(contrasts),
        box_windows=np.asarray(windows, dtype=np.float64), box_shade=shade,
        ground_colour=np.stack([g0, g1]), ground_offset=rng.uniform(0, 500.0, 2),
        ground_contrast=float(rng.uniform(0.7, 0.9)), ground_shade=ground_shade, sun=sun,
        noise_table=rng.random((TABLE_SIZE, TABLE_SIZE), dtype=np.float32),
        sky_offset=rng.uniform(0, 100.0, 2), terrain=terrain, box_base=box_base,
    )


# --------------------------------------------------------------------------------------------
# Trajectory
# --------------------------------------------------------------------------------------------
def trajectory(scene: Scene, times: np.ndarray, speed: float = 6.0, seed: int | None = None,
               weave: float = 0.3, pitch_roll: float = 0.01, stops=()) -> np.ndarray:
    """Camera-to-world poses (N, 4, 4) at ``times`` (seconds from the start) along the street.

    The camera rides the centreline at arc length ``s = speed * t`` and ``camera_height``, yawed
    with the road, plus a lateral weave of amplitude ``weave`` metres (``w (1 - cos(omega t))``, so
    zero offset and zero slope at ``t = 0``) and pitch/roll oscillations of amplitude
    ``pitch_roll`` radians (``sin``-based, zero at ``t = 0``). The pose at ``t = 0`` is the identity.
    ``stops``: ``(start, duration)`` pairs in seconds (:func:`sfm_ros.data.speed_profile.distance`):
    the arc length is then the speed profile's, and the weave and the oscillations follow the
    distance driven (``t`` above is ``s / speed``): a stopped car stands still. Without stops the
    poses are exactly those of a constant speed.
    On a street with hills (``scene.terrain``) the camera pitches with the road's grade on top of
    its oscillations and sits ``camera_height`` above the ground along the road's normal (on a
    grade, ``camera_height * sin(grade angle)`` behind the point it stands on); ``s`` stays the
    arc length in the horizontal plane, so the camera travels ``1 / cos(grade angle)`` farther.
    """
    times = np.asarray(times, dtype=np.float64)
    speed = _check_finite("speed", speed, positive=True)
    weave = _check_finite("weave", weave)
    pitch_roll = _check_finite("pitch_roll", pitch_roll)
    if not 0 <= weave <= 1.0:
        raise ValueError(f"weave must be in [0, 1] metres, got {weave}")
    if not 0 <= pitch_roll <= 0.1:
        raise ValueError(f"pitch_roll must be in [0, 0.1] rad, got {pitch_roll}")
    seed = scene.seed if seed is None else seed
    stops = check_stops(stops)
    s = distance(times, speed, stops)  # speed * times exactly without stops
    if stops:  # the weave and the oscillations follow the distance driven: a stopped car stands still
        times = s / speed
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x7A1])
    w_om = 2 * np.pi / rng.uniform(5.0, 10.0)
    w_amp = weave * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
    p_om, p_ph = 2 * np.pi / rng.uniform(0.8, 2.0, 2), rng.uniform(0.5, 1.0, 2)
    r_om, r_ph = 2 * np.pi / rng.uniform(1.0, 3.0, 2), rng.uniform(0.5, 1.0, 2)

    if np.any(s > scene.length - 5.0):
        raise ValueError(
            f"the trajectory reaches {s.max():.1f} m but the scene's street is {scene.length:.1f} m "
            "long: make the scene longer (make_scene(length=...)) or the sequence shorter")
    pos, heading = scene.road_pose(s)
    lat = w_amp * (1.0 - np.cos(w_om * times))
    lat_rate = w_amp * w_om * np.sin(w_om * times)
    yaw = heading + np.arctan2(lat_rate, speed)
    pitch = pitch_roll * (p_ph[0] * np.sin(p_om[0] * times) + p_ph[1] * np.sin(p_om[1] * times)) / 2
    roll = pitch_roll * (r_ph[0] * np.sin(r_om[0] * times) + r_ph[1] * np.sin(r_om[1] * times)) / 2
    poses = np.tile(np.eye(4), (len(times), 1, 1))
    if scene.terrain is None:  # level: the ground at ground_y = camera_height, no climb
        ground, climb = np.full(len(times), scene.ground_y), np.zeros(len(times))
    else:
        ground, grade = scene.terrain.along(s)
        climb = np.arctan(grade)  # positive: the road and the camera's optical axis point up (-y)
    poses[:, :3, :3] = rot_y(yaw) @ rot_x(climb + pitch) @ rot_z(roll)
    # The camera stands camera_height along the road's normal: up (-y) by cos, back by sin.
    back = scene.camera_height * np.sin(climb)
    poses[:, 0, 3] = pos[:, 0] + lat * np.cos(heading) - back * np.sin(heading)
    poses[:, 1, 3] = ground - scene.camera_height * np.cos(climb)
    poses[:, 2, 3] = pos[:, 1] - lat * np.sin(heading) - back * np.cos(heading)
    return poses


# --------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------
_BOX_EDGES = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [0, 2], [1, 3], [4, 6], [5, 7],
                       [0, 4], [1, 5], [2, 6], [3, 7]])
_UNIT_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


def _ray_dirs(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera-frame ray directions K^-1 [u, v, 1] (H, W, 3), unit z."""
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    Kinv = np.linalg.inv(K)
    d = np.empty((height, width, 3))
    d[..., 0] = Kinv[0, 0] * u[None, :] + Kinv[0, 1] * v[:, None] + Kinv[0, 2]
    d[..., 1] = Kinv[1, 1] * v[:, None] + Kinv[1, 2] + 0.0 * u[None, :]
    d[..., 2] = 1.0
    return d


def _screen_rect(corners_c: np.ndarray, K: np.ndarray, height: int, width: int):
    """Pixel rectangle (v0, v1, u0, u1) covering a box's projection, or None if not visible."""
    z = corners_c[:, 2]
    if np.all(z < _NEAR):
        return None
    pts = [corners_c[z >= _NEAR]]
    if np.any(z < _NEAR):
        a, b = corners_c[_BOX_EDGES[:, 0]], corners_c[_BOX_EDGES[:, 1]]
        cross = (a[:, 2] < _NEAR) != (b[:, 2] < _NEAR)
        if np.any(cross):
            a, b = a[cross], b[cross]
            t = (_NEAR - a[:, 2]) / (b[:, 2] - a[:, 2])
            pts.append(a + t[:, None] * (b - a))
    p = np.concatenate(pts)
    u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 1] * p[:, 1] / p[:, 2] + K[0, 2]
    v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, width)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def cast_rays(scene: Scene, T_w_c, K, height: int, width: int) -> RayHits:
    """First hit of every pixel's ray: exact z-depth (float64), surface label and box face."""
    K = _check_K(K)
    T = _check_pose(T_w_c)
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    R, o = T[:3, :3], T[:3, 3]
    d_cam = _ray_dirs(K, height, width)
    d_w = d_cam @ R.T
    depth = np.full((height, width), np.inf)
    labels = np.full((height, width), SKY, dtype=np.int32)
    faces = np.full((height, width), -1, dtype=np.int8)

    if scene.terrain is None:
        # Ground plane y = ground_y (world y down): hit where the ray goes down towards it.
        gy = scene.ground_y
        if o[1] < gy:
            dy = d_w[..., 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (gy - o[1]) / dy
            hit = (dy > 0) & np.isfinite(t) & (t > 0)
            depth[hit] = t[hit]
            labels[hit] = GROUND
        _cast_boxes(scene, R, o, K, d_cam, depth, labels, faces)
    else:
        # Hills: the boxes first, so that the ground's march stops at what the ray already hit.
        _cast_boxes(scene, R, o, K, d_cam, depth, labels, faces)
        t = scene.terrain.intersect(o, d_w.reshape(-1, 3), depth.reshape(-1)).reshape(depth.shape)
        hit = t < depth
        depth[hit] = t[hit]
        labels[hit] = GROUND
        faces[hit] = -1
    return RayHits(depth=depth, labels=labels, faces=faces, dirs_world=d_w, origin=o.copy())


def _cast_boxes(scene: Scene, R: np.ndarray, o: np.ndarray, K: np.ndarray, d_cam: np.ndarray,
                depth: np.ndarray, labels: np.ndarray, faces: np.ndarray) -> None:
    """Boxes nearer than ``depth`` along each pixel's ray: update ``depth``, ``labels`` and ``faces``."""
    height, width = depth.shape
    # Cull boxes wholly behind the camera or outside one of the frustum's side planes, then
    # cast only inside each remaining box's screen rectangle.
    corners_all = (scene.box_corners - o) @ R  # (M, 8, 3) camera frame
    x, y, z = corners_all[..., 0], corners_all[..., 1], corners_all[..., 2]
    fx, sk, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    outside = (
        (z < _NEAR).all(1)
        | (fx * x + sk * y + (cx + 0.5) * z < 0).all(1)
        | (-(fx * x + sk * y) + (width - 0.5 - cx) * z < 0).all(1)
        | (fy * y + (cy + 0.5) * z < 0).all(1)
        | (-fy * y + (height - 0.5 - cy) * z < 0).all(1))
    for i in np.flatnonzero(~outside):
        Rb = scene.box_rotation(i)
        cb = scene.box_center3(i)
        half = scene.box_half[i]
        corners_c = corners_all[i]
        rect = _screen_rect(corners_c, K, height, width)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        M = Rb.T @ R  # camera -> box rotation
        o_l = Rb.T @ (o - cb)
        if np.all(np.abs(o_l) < half):
            raise ValueError(f"the camera at {o} is inside box {i}")
        dl = d_cam[v0:v1, u0:u1] @ M.T
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t1 = (-half - o_l) * inv
            t2 = (half - o_l) * inv
        tmin = np.minimum(t1, t2)
        tmax = np.maximum(t1, t2)
        # Rays parallel to a slab: inside it (inf/-inf bounds, NaN never) or outside (miss).
        par = dl == 0
        if np.any(par):
            inside = np.abs(o_l) < half
            tmin = np.where(par, np.where(inside, -np.inf, np.inf), tmin)
            tmax = np.where(par, np.where(inside, np.inf, -np.inf), tmax)
        axis = np.argmax(tmin, axis=-1)
        tnear = np.take_along_axis(tmin, axis[..., None], axis=-1)[..., 0]
        tfar = tmax.min(axis=-1)
        zsub = depth[v0:v1, u0:u1]
        hit = (tnear <= tfar) & (tnear > 0) & (tnear < zsub)
        if not np.any(hit):
            continue
        dpos = np.take_along_axis(dl, axis[..., None], axis=-1)[..., 0] > 0
        zsub[hit] = tnear[hit]
        labels[v0:v1, u0:u1][hit] = i + 1
        faces[v0:v1, u0:u1][hit] = (axis * 2 + dpos)[hit]


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------
def _sky(scene: Scene, d_w: np.ndarray) -> np.ndarray:
    """Sky colour (N, 3) from world ray directions (N, 3): depends on direction only."""
    d = d_w / np.linalg.norm(d_w, axis=-1, keepdims=True)
    up = -d[:, 1]
    g = smoothstep((up + 0.05) / 0.6)[:, None]
    horizon = np.array([206.0, 216.0, 232.0])
    zenith = np.array([92.0, 142.0, 212.0])
    col = horizon + g * (zenith - horizon)
    e = np.maximum(up, 0.0) + 0.25
    cx, cz = d[:, 0] / e * 2.0 + scene.sky_offset[0], d[:, 2] / e * 2.0 + scene.sky_offset[1]
    cx, cz = cx.astype(np.float32), cz.astype(np.float32)
    q = scene.noise_quad
    n = 0.65 * value_noise(q, cx, cz) + 0.35 * value_noise(q, 2.3 * cx + 9.1, 2.3 * cz + 3.7)
    cloud = smoothstep((n - 0.45) / 0.3) * smoothstep(up / 0.15)
    return col + cloud[:, None] * (np.array([245.0, 245.0, 248.0]) - col) * 0.85


def _shade(scene: Scene, hits: RayHits, f_mean: float) -> np.ndarray:
    height, width = hits.depth.shape
    img = np.empty((height * width, 3))
    labels = hits.labels.ravel()
    d_all = hits.dirs_world.reshape(-1, 3)
    quad = scene.noise_quad

    sky = np.flatnonzero(labels == SKY)
    if sky.size:
        img[sky] = _sky(scene, d_all.take(sky, axis=0))
    idx = np.flatnonzero(labels != SKY)
    if idx.size == 0:
        return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(height, width, 3)

    # All surface points at once: surface coordinates, footprint, colours, Lambert factor.
    n = idx.size
    lab = labels.take(idx)
    t = hits.depth.ravel().take(idx)
    d = d_all.take(idx, axis=0)
    p = hits.origin + t[:, None] * d
    dn = np.sqrt(np.einsum("ij,ij->i", d, d))
    s1, s2, ndot = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n)
    contrast, shade, cell = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    c0, c1 = np.empty((n, 3)), np.empty((n, 3))

    g = lab == GROUND
    if np.any(g):
        s1[g] = p[g, 0] + scene.ground_offset[0]
        s2[g] = p[g, 2] + scene.ground_offset[1]
        if scene.terrain is None:
            ndot[g] = d[g, 1]
        else:  # the hill's own normal, for the level of detail
            ndot[g] = np.einsum("ij,ij->i", d[g], scene.terrain.normal(p[g, 0], p[g, 2]))
        contrast[g] = scene.ground_contrast
        shade[g] = scene.ground_shade
        cell[g] = 6.0
        c0[g] = scene.ground_colour[0]
        c1[g] = scene.ground_colour[1]

    b = np.flatnonzero(~g)
    if b.size:
        bi = lab.take(b) - 1
        fc = hits.faces.ravel().take(idx.take(b)).astype(np.int64)
        pb = p.take(b, axis=0)
        db = d.take(b, axis=0)
        yaw = scene.box_yaw.take(bi)
        c, s = np.cos(yaw), np.sin(yaw)
        ctr = scene.box_center.take(bi, axis=0)
        dx = pb[:, 0] - ctr[:, 0]
        dz = pb[:, 2] - ctr[:, 1]
        xl = c * dx - s * dz
        zl = s * dx + c * dz
        yl = pb[:, 1]
        axis = fc // 2
        # Surface coordinates per face: (along, up) on side faces, (x, z) on top/bottom faces;
        # an offset per box and face decorrelates their textures.
        off = scene.box_offset.take(bi, axis=0) + 53.3 * fc[:, None]
        s1[b] = np.where(axis == 0, zl, xl) + off[:, 0]
        s2[b] = np.where(axis == 1, zl, yl) + off[:, 1]
        # |n . d| with the world normal of the face (for the level of detail).
        ndot[b] = np.where(axis == 0, c * db[:, 0] - s * db[:, 2],
                           np.where(axis == 2, s * db[:, 0] + c * db[:, 2], db[:, 1]))
        contrast[b] = scene.box_contrast.take(bi)
        shade[b] = scene.box_shade[bi, fc]
        cell[b] = 4.0
        cols = scene.box_colour.take(bi, axis=0)
        c0[b] = cols[:, 0]
        c1[b] = cols[:, 1]

    # World footprint of one pixel at the hit point, along its most stretched direction.
    cos_i = np.maximum(np.abs(ndot) / dn, 0.02)
    inv_fp = ((f_mean * cos_i) / (t * dn)).astype(np.float32)
    lum = 1.0 + 2.0 * contrast * fbm(quad, s1, s2, inv_fp)
    mix = low_freq(quad, s1, s2, inv_fp, cell)[:, None]
    base = c0 + mix * (c1 - c0)

    if b.size:
        win = scene.box_windows.take(bi, axis=0)
        h = np.flatnonzero((win[:, 0] > 0) & (axis != 1))
        if h.size:
            bh = bi.take(h)
            yh = yl.take(h)
            half = scene.box_half.take(bh, axis=0)
            # Windows from 1 m above the ground to 1 m below the top of the building.
            base_y = scene.box_base.take(bh)
            top = base_y - 2.0 * half[:, 1]
            band = smoothstep((base_y - 1.0 - yh) / 0.5) * smoothstep((yh - top - 1.0) / 0.5)
            # Measured along the face from its start edge.
            along = np.where(axis.take(h) == 0, zl.take(h) + half[:, 2], xl.take(h) + half[:, 0])
            wh = win.take(h, axis=0)
            wm = window_pattern(along, yh, wh[:, 1], wh[:, 2], inv_fp.take(b.take(h))) * band
            glass = np.array([58.0, 70.0, 88.0])
            rows = b.take(h)
            base[rows] += wm[:, None] * (glass - base[rows])

    img[idx] = base * (lum * shade)[:, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(height, width, 3)


def render_frame(scene: Scene, T_w_c, K, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one view: ``(image (H, W, 3) uint8 RGB, depth (H, W) float32 z-depth, inf = sky)``."""
    K = _check_K(K)
    hits = cast_rays(scene, T_w_c, K, height, width)
    image = _shade(scene, hits, 0.5 * (K[0, 0] + K[1, 1]))
    return image, hits.depth.astype(np.float32)


def render_sequence(num_frames: int = 30, height: int = 128, width: int = 416, seed: int = 0,
                    fps: float = 10.0, speed: float = 6.0, yaw_rate: float | None = None,
                    K: np.ndarray | None = None, camera_height: float = 1.5, weave: float = 0.3,
                    pitch_roll: float = 0.01, scene: Scene | None = None,
                    t0: float = 0.0, stops=(), hills: float = 0.0) -> SyntheticSequence:
    """Render ``num_frames`` frames of a car-like camera driving down a procedural street.

    ``speed`` in m/s (6 m/s = 0.6 m per frame at 10 Hz); ``yaw_rate`` the mean yaw rate in rad/s
    (positive turns right, i.e. towards +x; ``None`` draws from ``seed`` a road curvature
    equivalent to 0.05-0.25 rad/s of either sign at 6 m/s; the road's curvature varies between
    0.5x and 1.5x its mean); ``K`` defaults to :func:`default_intrinsics`; ``weave`` (m) and
    ``pitch_roll`` (rad) set the trajectory jitter. ``scene`` overrides the street built from
    ``seed`` (and then ``yaw_rate``/``camera_height`` are the scene's). Timestamps are
    ``t0 + i / fps``; trajectory time starts at 0 whatever ``t0``, so ``poses[0]`` is the identity.
    The street is at least 150 m long, in steps of 50 m, so a shorter sequence with the same
    arguments renders exactly the first frames of a longer one (while the street length agrees).
    ``stops``: ``(start, duration)`` pairs in seconds of trajectory time where the car stands still
    (:func:`trajectory`); its frames there are identical. ``hills``: the road's steepest grade
    (rise over run, :func:`make_scene`; 0: flat), the scene's when ``scene`` is given.
    """
    num_frames = _check_positive_int("num_frames", num_frames)
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    fps = _check_finite("fps", fps, positive=True)
    speed = _check_finite("speed", speed, positive=True)
    t0 = _check_finite("t0", t0)
    K = default_intrinsics(height, width) if K is None else _check_K(K)
    times = np.arange(num_frames, dtype=np.float64) / fps
    if scene is None:
        curvature = None
        if yaw_rate is not None:
            curvature = _check_finite("yaw_rate", yaw_rate) / speed
        # Street length in steps of 50 m (at least 150 m): sequences of different lengths from
        # the same arguments share the same street, so their common frames are identical.
        driven = float(distance(times[-1:], speed, stops)[0])
        length = max(150.0, 50.0 * np.ceil((driven + _VIEW_MARGIN) / 50.0))
        scene = make_scene(seed, length=length, curvature=curvature, camera_height=camera_height,
                           hills=hills)
    elif yaw_rate is not None:
        raise ValueError("give either scene or yaw_rate, not both (the scene fixes the road's curvature)")
    elif hills:
        raise ValueError("give either scene or hills, not both (the scene fixes the road's grades)")
    poses = trajectory(scene, times, speed=speed, seed=seed, weave=weave, pitch_roll=pitch_roll, stops=stops)
    images = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    depths = np.empty((num_frames, height, width), dtype=np.float32)
    for i in range(num_frames):
        images[i], depths[i] = render_frame(scene, poses[i], K, height, width)
    return SyntheticSequence(images=images, depths=depths, poses=poses, K=K.copy(),
                             timestamps=t0 + times, scene=scene)
