"""Hills on the synthetic street: sfm_ros.data.terrain and its use by sfm_ros.data.synthetic."""
from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.data import synthetic as S
from sfm_ros.data.terrain import MAX_GRADE, Terrain, grade_profile, make_terrain

H, W = 64, 208


def _plane_terrain(a: float, bx: float, bz: float) -> Terrain:
    """A tilted plane y = a + bx x + bz z on a grid (bilinear reproduces a plane exactly)."""
    xs = np.arange(-100.0, 101.0)
    gx, gz = np.meshgrid(xs, xs)
    s = np.array([-1.0, 0.0, 1.0])
    return Terrain(road_s=s, road_y=np.full(3, a), grade=np.zeros(3), origin=np.array([-100.0, -100.0]),
                   cell=1.0, grid=a + bx * gx + bz * gz, tile_slope=np.full((1, 1), float(np.hypot(bx, bz))))


def _rays(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.3, 0.5, n), np.ones(n)], axis=1)
    yaw = rng.uniform(-np.pi, np.pi)
    return d @ np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])


def test_grade_profile_is_level_at_the_start_and_bounded():
    s = np.linspace(-50.0, 2000.0, 20001)
    g = grade_profile(s, 0.06, [210.0, 80.0], [1.0, 0.5])
    assert grade_profile(0.0, 0.06, [210.0, 80.0], [1.0, 0.5]) == 0.0
    assert np.abs(g).max() <= 0.06 + 1e-12
    assert np.abs(g).max() > 0.04  # the waves do reach near the steepest grade


@pytest.mark.parametrize("bx,bz", [(0.0, 0.0), (0.05, -0.08), (-0.1, 0.02)])
def test_intersect_matches_a_plane_exactly(bx, bz):
    ter = _plane_terrain(1.5, bx, bz)
    o = np.array([0.3, 0.0, -0.2])  # 1.5 m above the plane's y at the origin, roughly
    d = _rays(4000, seed=int(100 * (bx + 3 * bz)) & 0xFF)
    t = ter.intersect(o, d, np.inf)
    # Analytic: o_y + t d_y = a + bx (o_x + t d_x) + bz (o_z + t d_z).
    num = 1.5 + bx * o[0] + bz * o[2] - o[1]
    den = d[:, 1] - bx * d[:, 0] - bz * d[:, 2]
    with np.errstate(divide="ignore"):
        t_ref = np.where(den > 0, num / den, np.inf)
    p = o + np.where(np.isfinite(t_ref), t_ref, 0.0)[:, None] * d
    # Hits well inside the grid (past its edge the ground keeps the edge's heights).
    inside = np.isfinite(t_ref) & (np.abs(p[:, 0]) < 80) & (np.abs(p[:, 2]) < 80)
    assert inside.sum() > 1000
    np.testing.assert_allclose(t[inside], t_ref[inside], rtol=1e-8)
    # Rays that climb away from the plane never meet it on the grid (past its edge they can meet
    # the edge's heights).
    away = den <= 0
    q = o + np.where(np.isfinite(t[away]), t[away], 0.0)[:, None] * d[away]
    assert np.all(np.isinf(t[away]) | (np.abs(q[:, 0]) >= 100) | (np.abs(q[:, 2]) >= 100))
    assert np.isinf(t[away]).mean() > 0.5


def test_intersect_stops_at_t_max_and_refuses_a_camera_under_ground():
    ter = _plane_terrain(1.5, 0.0, 0.0)
    o = np.zeros(3)
    d = np.array([[0.0, 0.5, 1.0], [0.0, 0.1, 1.0]])  # hits at t = 3 and t = 15
    np.testing.assert_allclose(ter.intersect(o, d, np.inf), [3.0, 15.0], rtol=1e-9)
    t = ter.intersect(o, d, np.array([10.0, 10.0]))
    assert t[0] == pytest.approx(3.0) and np.isinf(t[1])
    # A march cut short at t_max brackets a hit just before it; just after it, none.
    t = ter.intersect(o, d[1:], np.array([15.2]))
    assert t[0] == pytest.approx(15.0, rel=1e-9)
    assert np.isinf(ter.intersect(o, d[1:], np.array([14.9]))[0])
    with pytest.raises(ValueError, match="not above the ground"):
        ter.intersect(np.array([0.0, 2.0, 0.0]), d, np.inf)


def test_make_terrain_follows_the_road_and_checks_its_input():
    sc = S.make_scene(4, length=150.0, curvature=0.01)
    ter = make_terrain(sc.road_s, sc.road_xz, 1.5, 0.07, np.random.default_rng(1))
    gz, gx = np.gradient(ter.grid, ter.cell)
    assert np.hypot(gx, gz).max() <= ter.march_slope + 1e-12
    y0, g0 = ter.along(0.0)
    assert float(y0) == 1.5 and float(g0) == 0.0
    # The grid reproduces the road's height on the centreline (bilinear, 1 m cells: < 2 mm).
    on_road = ter.height(sc.road_xz[::25, 0], sc.road_xz[::25, 1])
    np.testing.assert_allclose(on_road, ter.road_y[::25], atol=2e-3)
    # The road climbs where the grade is positive (y points down).
    k = np.argmax(ter.grade)
    assert ter.road_y[k + 5] < ter.road_y[k - 5]
    for bad in (0.0, -0.02, MAX_GRADE + 0.01, float("nan")):
        with pytest.raises(ValueError, match="hills"):
            make_terrain(sc.road_s, sc.road_xz, 1.5, bad, np.random.default_rng(1))
    with pytest.raises(ValueError, match="s = 0"):
        make_terrain(sc.road_s + 0.05, sc.road_xz, 1.5, 0.05, np.random.default_rng(1))


@pytest.fixture(scope="module")
def hilly() -> S.SyntheticSequence:
    # Gentle curve, 7 % grades, no pitch/roll jitter (the camera's pitch is then the road's alone).
    return S.render_sequence(num_frames=12, height=H, width=W, seed=11, yaw_rate=0.03, hills=0.07,
                             pitch_roll=0.0, speed=8.0)


def test_hills_keep_the_streets_objects_and_flat_streets_unchanged():
    flat = S.make_scene(11, length=150.0)
    hill = S.make_scene(11, length=150.0, hills=0.07)
    assert flat.terrain is None and hill.terrain is not None
    np.testing.assert_array_equal(flat.box_center, hill.box_center)
    np.testing.assert_array_equal(flat.box_yaw, hill.box_yaw)
    np.testing.assert_array_equal(flat.box_colour, hill.box_colour)
    np.testing.assert_array_equal(flat.box_base, np.full(flat.num_boxes, flat.ground_y))
    # On hills every box reaches down to the lowest ground under its footprint.
    c, s = np.cos(hill.box_yaw), np.sin(hill.box_yaw)
    for ex, ez in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        lx, lz = ex * hill.box_half[:, 0], ez * hill.box_half[:, 2]
        g = hill.ground_height(hill.box_center[:, 0] + c * lx + s * lz, hill.box_center[:, 1] - s * lx + c * lz)
        assert np.all(hill.box_base >= g - 1e-12)
        assert np.all(hill.box_base - 2 * hill.box_half[:, 1] < g)  # and stands above it


def test_the_camera_rides_the_hills(hilly):
    sc, P = hilly.scene, hilly.poses
    np.testing.assert_array_equal(P[0], np.eye(4))
    d = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1)
    s = 0.8 * np.arange(len(P))
    _, grade = sc.terrain.along(s)
    assert np.abs(grade).max() > 0.02, "the drive must see a grade"
    # Pitch: the optical axis rises at the road's grade (y down: -z_y / |z_xz| = grade).
    z = P[:, :3, 2]
    np.testing.assert_allclose(-z[:, 1] / np.hypot(z[:, 0], z[:, 2]), grade, atol=1e-6)
    # Height: camera_height along the road's normal, i.e. camera_height / cos above the ground.
    clearance = sc.ground_height(P[:, 0, 3], P[:, 2, 3]) - P[:, 1, 3]
    np.testing.assert_allclose(clearance, sc.camera_height / np.cos(np.arctan(grade)), atol=1e-3)
    assert np.all(d > 0.7) and np.all(d < 0.9)
    # Without the weave, the camera stands exactly camera_height from the road's centreline point
    # along the road's normal (up and, on a climb, back).
    Q = S.trajectory(sc, np.arange(12) / 10.0, speed=8.0, weave=0.0, pitch_roll=0.0)
    xz, heading = sc.road_pose(s)
    y, _ = sc.terrain.along(s)
    climb = np.arctan(grade)
    up = np.stack([-np.sin(climb) * np.sin(heading), -np.cos(climb), -np.sin(climb) * np.cos(heading)], axis=1)
    contact = np.stack([xz[:, 0], y, xz[:, 1]], axis=1)
    np.testing.assert_allclose(Q[:, :3, 3], contact + sc.camera_height * up, atol=1e-9)


def test_depth_is_exact_on_the_hills(hilly):
    K = hilly.K
    for i in (0, 6, 11):
        hits = S.cast_rays(hilly.scene, hilly.poses[i], K, H, W)
        g = hits.labels == S.GROUND
        assert g.mean() > 0.2
        p = hits.origin + hits.depth[g][:, None] * hits.dirs_world[g]
        np.testing.assert_allclose(p[:, 1], hilly.scene.ground_height(p[:, 0], p[:, 2]), atol=1e-6)
        np.testing.assert_array_equal(hilly.depths[i], hits.depth.astype(np.float32))


def test_hilly_views_are_consistent(hilly):
    from test_synthetic import assert_views_consistent

    assert_views_consistent(hilly, ((3, 4), (6, 5), (9, 11)), "hills ")


def test_render_sequence_checks_hills():
    sc = S.make_scene(0, length=150.0)
    with pytest.raises(ValueError, match="hills"):
        S.render_sequence(num_frames=2, height=H, width=W, scene=sc, hills=0.05)
    with pytest.raises(ValueError, match="hills"):
        S.make_scene(0, hills=-0.01)
    with pytest.raises(ValueError, match="hills"):
        S.make_scene(0, hills=0.5)


def test_intersect_finds_ground_that_rises_faster_than_the_march_assumes():
    # A plane rising at 30 % while the march assumes 1 %: hits still exact (bracketed from the start).
    ter = _plane_terrain(1.5, 0.0, -0.3)
    ter = Terrain(road_s=ter.road_s, road_y=ter.road_y, grade=ter.grade, origin=ter.origin,
                  cell=ter.cell, grid=ter.grid, tile_slope=np.full((1, 1), 0.01))
    o = np.zeros(3)
    d = np.array([[0.0, 0.0, 1.0], [0.0, -0.005, 1.0], [0.0, 0.2, 1.0]])
    t_ref = 1.5 / (d[:, 1] + 0.3)
    np.testing.assert_allclose(ter.intersect(o, d, np.inf), t_ref, rtol=1e-8)
