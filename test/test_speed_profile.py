"""The cruising speed with stops of the rendered drives (:mod:`sfm_ros.data.speed_profile`)."""
import numpy as np
import pytest

from sfm_ros.data.speed_profile import RAMP_S, check_stops, distance, parse_stops
from sfm_ros.data.synthetic import make_scene, render_sequence, trajectory


def test_without_stops_the_distance_is_exactly_speed_times_time():
    t = np.linspace(0.0, 30.0, 301)
    assert np.array_equal(distance(t, 6.0), 6.0 * t)
    assert np.array_equal(distance(t, 6.0, ()), 6.0 * t)


def test_a_stop_stands_still_and_costs_its_duration_and_one_ramp():
    t = np.linspace(0.0, 20.0, 20001)
    s = distance(t, 6.0, [(5.0, 3.0)])
    still = (t >= 5.0) & (t <= 8.0)
    assert np.ptp(s[still]) == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(s) >= -1e-12)
    # before the braking and after the pulling away: cruising; the stop lost 3 s + 2 x RAMP_S / 2
    assert s[t <= 5.0 - RAMP_S] == pytest.approx(6.0 * t[t <= 5.0 - RAMP_S])
    late = t >= 8.0 + RAMP_S
    assert s[late] == pytest.approx(6.0 * (t[late] - 3.0 - RAMP_S))


def test_the_speed_is_continuous_and_brakes_to_rest():
    t = np.linspace(0.0, 20.0, 200001)
    v = np.gradient(distance(t, 6.0, [(5.0, 3.0)]), t)
    assert np.abs(np.diff(v)).max() < 6.0 * 1e-3  # no jump between neighbouring samples (0.1 ms apart)
    assert v[np.searchsorted(t, 5.0 - RAMP_S)] == pytest.approx(6.0, abs=1e-3)
    assert v[np.searchsorted(t, 4.0)] == pytest.approx(3.0, abs=1e-3)  # half-way down the smoothstep
    assert v[np.searchsorted(t, 6.5)] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("stops, match", [
    ([(1.0, 2.0)], "needs the first"),
    ([(5.0, 0.0)], "last > 0"),
    ([(5.0, float("nan"))], "finite"),
    ([(5.0, 2.0), (8.0, 2.0)], "before stop 0 has pulled away"),
    ([(5.0,)], "pair"),
    (["ab"], "pair"),
])
def test_bad_stops_are_named(stops, match):
    with pytest.raises(ValueError, match=match):
        check_stops(stops)


def test_stops_may_be_an_array():
    assert check_stops(np.array([[5.0, 3.0], [20.0, 1.0]])) == ((5.0, 3.0), (20.0, 1.0))
    assert check_stops(None) == () and check_stops(np.zeros((0, 2))) == ()


def test_stops_parse_from_text():
    assert parse_stops("") == ()
    assert parse_stops("10:5, 30:2.5") == ((10.0, 5.0), (30.0, 2.5))
    with pytest.raises(ValueError, match="START:DURATION"):
        parse_stops("10-5")
    with pytest.raises(ValueError, match="START:DURATION"):
        parse_stops("10:x")
    with pytest.raises(ValueError, match="stop 1"):
        parse_stops("10:5,12:1")


def test_a_rendered_drive_stands_still_while_stopped():
    seq = render_sequence(num_frames=60, seed=3, stops=[(2.5, 1.5)])
    still = [i for i, t in enumerate(seq.timestamps) if 2.5 <= t <= 4.0]
    assert len(still) >= 10
    for i in still[1:]:
        assert np.array_equal(seq.poses[i], seq.poses[still[0]])
        assert np.array_equal(seq.images[i], seq.images[still[0]])
    steps = np.linalg.norm(np.diff(seq.poses[:, :3, 3], axis=0), axis=1)
    assert steps[0] == pytest.approx(0.6, rel=0.05) and steps[-1] == pytest.approx(0.6, rel=0.05)
    # the weave and the oscillations follow the distance: the drive is the stop-free one's, re-timed
    scene = make_scene(3, length=150.0)
    free = trajectory(scene, distance(seq.timestamps, 6.0, [(2.5, 1.5)]) / 6.0, seed=3)
    assert np.allclose(trajectory(scene, seq.timestamps, seed=3, stops=[(2.5, 1.5)]), free, atol=1e-12)


def test_without_stops_a_rendered_drive_is_unchanged():
    a = render_sequence(num_frames=4, seed=5)
    b = render_sequence(num_frames=4, seed=5, stops=())
    assert np.array_equal(a.poses, b.poses) and np.array_equal(a.images, b.images)
