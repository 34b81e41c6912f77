"""The direction of travel over a chord of frames (:mod:`sfm_ros.runtime.motion.travel_chord`) and
the ground tilt measured from it (``Refiner(tilt_chord=...)``), on rendered streets."""
from __future__ import annotations

import numpy as np
import pytest
from motion_scenes import H, W, angle_deg, dir_err_deg

from sfm_ros.core.se3 import invert_pose
from sfm_ros.runtime.motion import Refiner, refine_sequence
from sfm_ros.runtime.motion.travel_chord import TravelChord
from sfm_ros.runtime.motion.two_view import TwoViewOptions
from sfm_ros.runtime.motion.view import make_view


@pytest.fixture(scope="module")
def street():
    """17 frames of a level camera (no weave, pitch or roll) 1.5 m above a gently curving street."""
    from sfm_ros.data.synthetic import make_scene, render_sequence

    seq = render_sequence(num_frames=17, height=H, width=W, seed=3, speed=6.0, weave=0.0, pitch_roll=0.0,
                          scene=make_scene(3, curvature=0.04 / 6.0))
    return seq, [make_view(im, seq.K) for im in seq.images]


def test_a_chord_solves_its_first_and_last_view(street):
    """Two chords of 8 steps over 16: nothing until a chord's last pair, then the motion from its
    first to its last view (``T_new_ref``), rotation within 0.5° and direction within 1° of the
    truth (measured: 0.24° and 0.20°, 0.22°: one chord's direction is noisy on rendered frames; the
    tilt is the median of many)."""
    seq, views = street
    chord, opts = TravelChord(steps=8), TwoViewOptions()
    ends = []
    for i in range(len(views) - 1):
        sol = chord.push(views[i], views[i + 1], opts)
        if sol is None:
            assert chord.pairs == i % 8 + 1
            continue
        ends.append(i + 1)
        assert sol.why == "" and sol.inliers >= opts.min_inliers
        start = i + 1 - 8
        T = invert_pose(seq.poses[i + 1]) @ seq.poses[start]  # x_new = R x_ref + t
        assert angle_deg(sol.R @ T[:3, :3].T) < 0.5
        assert dir_err_deg(sol.T_new_ref[:3, 3], T[:3, 3]) < 1.0
        assert chord.start is views[i + 1] and chord.pairs == 0  # the next chord starts here
    assert ends == [8, 16]


def test_a_chord_restarts_when_the_views_do_not_follow_on(street):
    _, views = street
    chord, opts = TravelChord(steps=3), TwoViewOptions()
    assert chord.push(views[0], views[1], opts) is None and chord.pairs == 1
    assert chord.push(views[2], views[3], opts) is None  # views[1] -> views[2] was skipped
    assert chord.start is views[2] and chord.pairs == 1
    assert chord.push(views[3], views[4], opts) is None
    assert chord.push(views[4], views[5], opts).why == ""
    chord.reset()
    assert chord.start is None and chord.pairs == 0


def test_a_still_camera_gives_no_direction(street):
    _, views = street
    chord, opts = TravelChord(steps=2), TwoViewOptions()
    assert chord.push(views[0], views[0], opts) is None
    assert chord.push(views[0], views[0], opts).why == "still"


def test_a_textureless_view_restarts_the_chord():
    flat = make_view(np.full((128, 416), 128, np.uint8), np.array([[300.0, 0, 208], [0, 300.0, 64], [0, 0, 1]]))
    chord = TravelChord(steps=2)
    assert chord.push(flat, flat, TwoViewOptions()) is None and chord.pairs == 0 and chord.start is flat


@pytest.mark.parametrize("steps", [1, 0, 2.5, True])
def test_chord_length_is_checked(steps):
    with pytest.raises(ValueError, match="steps >= 2"):
        TravelChord(steps=steps)


def test_views_of_two_sizes_are_refused_before_anything_changes(street):
    _, views = street
    chord, opts = TravelChord(steps=3), TwoViewOptions()
    chord.push(views[0], views[1], opts)
    small = make_view(views[2].grey[:64], views[2].K)
    with pytest.raises(ValueError, match="of one size"):
        chord.push(views[1], small, opts)
    assert chord.last is views[1] and chord.pairs == 1


def test_refiner_measures_the_tilt_from_chords(street):
    """``tilt_chord=4`` with ``tilt_source="travel"``: a nominal "down" 2° off on a level street is
    measured from the chords' directions (one measurement per chord, none from the frame pairs);
    the tilt in use undoes it within 0.3° (measured: 0.04°)."""
    from sfm_ros.evaluation.trajectory import relative_poses
    from sfm_ros.runtime.motion.ground_tilt import tilted_down

    seq, _ = street
    gt = relative_poses(seq.poses)
    depths = [np.where(np.isfinite(d), d, 1000.0) for d in seq.depths]
    nominal = tilted_down(np.array([0.0, 1.0, 0.0]), 2.0)
    refiner = Refiner(ground_tilt=True, tilt_source="travel", tilt_chord=4)
    assert refiner.chord is not None and refiner.chord.steps == 4
    views = [refiner.view(im, seq.K) for im in seq.images]
    refine_sequence(refiner, views, depths[:-1], gt, [1.0] * len(gt), (nominal, 1.5))
    assert len(refiner.tilt.measurements) == 4, list(refiner.tilt.measurements)
    assert abs(refiner.tilt.tilt_deg + 2.0) < 0.3, list(refiner.tilt.measurements)
    assert Refiner(ground_tilt=True, tilt_source="photometric", tilt_chord=4).chord is None
    assert Refiner(ground_tilt=False, tilt_source="travel", tilt_chord=4).chord is None
    with pytest.raises(ValueError, match="tilt_chord"):
        Refiner(tilt_chord=0)


def test_ground_tilt_switches_in_place_and_a_failing_chord_restarts(street, monkeypatch):
    """``set_ground_tilt`` keeps the refiner's state (the node's ``ground_tilt`` parameter); a chord
    that raises restarts and the frame's refinement stands."""
    from sfm_ros.evaluation.trajectory import relative_poses

    seq, _ = street
    gt = relative_poses(seq.poses)
    depths = [np.where(np.isfinite(d), d, 1000.0) for d in seq.depths]
    refiner = Refiner()
    views = [refiner.view(im, seq.K) for im in seq.images]
    refine_sequence(refiner, views[:5], depths[:4], gt[:4], [1.0] * 4, (np.array([0.0, 1.0, 0.0]), 1.5))
    log_length, pairs = refiner.length.log_length, refiner.chord.pairs
    assert log_length is not None and pairs == 4
    refiner.set_ground_tilt(False)
    assert refiner.chord is None and not refiner.ground_tilt and refiner.length.log_length == log_length
    refiner.set_ground_tilt(True)
    assert refiner.chord is not None and refiner.chord.pairs == 0

    def broken(*a, **k):
        raise ValueError("degenerate")
    monkeypatch.setattr(refiner.chord, "push", broken)
    out = refiner.refine(views[4], views[5], gt[4], depths[4], 1.0, (np.array([0.0, 1.0, 0.0]), 1.5))
    assert out.used == "epipolar" and refiner.chord.start is None  # refined; the chord restarted
