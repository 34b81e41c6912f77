"""The training windows' turn about the camera centre (``data.turn_deg``, :mod:`sfm_ros.data.augment`):
the turned camera's intrinsics and motions make the view synthesis as exact as the original's, no
output pixel samples outside the frame, the principal point stays put (unlike a shifted crop), and
the two-view priors turn with the frames."""
import numpy as np
import pytest
import torch

from sfm_ros.core.se3 import axis_angle_to_matrix, make_pose, matrix_to_axis_angle
from sfm_ros.data.augment import Turn, _zoomed, augment_window, turn_window
from sfm_ros.data.datasets import WindowDataset, prepare_sequence
from sfm_ros.data.synthetic import render_sequence
from warp_check import warp_error

H, W = 96, 312


@pytest.fixture(scope="module")
def street():
    return render_sequence(9, H, W, seed=4, yaw_rate=0.1)


def _turned_depth(depth: np.ndarray, turn: Turn) -> np.ndarray:
    """The target's depth map as the turned camera sees it: each output pixel's preimage's depth,
    divided by the turned ray's depth factor (z' = z / (Rᵀ K1⁻¹ q)_z)."""
    import cv2

    h, w = depth.shape
    pre = cv2.warpPerspective(np.nan_to_num(depth, posinf=1e3).astype(np.float32), turn.H(0), (w, h),
                              flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    rays = turn.R[0].T @ np.linalg.inv(turn.K1) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    return pre / rays[2].reshape(h, w)


def test_turn_maps_points_depths_and_motions_consistently():
    """A 3-D point seen by the original camera and by the turned one: ``Turn.points`` gives the
    turned camera's pixel and depth (to 1e-9), and ``Turn.motion`` moves turned points as the
    original motion moves the originals; a positive yaw turns the view right (a point ahead appears
    left of the principal point), a positive pitch turns it down."""
    K0 = np.array([[200.0, 0, 150.5], [0, 190.0, 47.0], [0, 0, 1]])
    R = axis_angle_to_matrix(np.array([0.02, -0.05, 0.0]))
    R2 = axis_angle_to_matrix(np.array([-0.01, 0.04, 0.01]))
    turn = Turn(np.stack([R, R2]), K0, _zoomed(K0, 1.1))
    X = np.random.default_rng(0).uniform([-3, -1, 4], [3, 1, 30], size=(20, 3))
    p = (K0 @ X.T).T
    q_true = (turn.K1 @ (R @ X.T)).T
    q, z = turn.points(p[:, :2] / p[:, 2:], X[:, 2], 0)
    assert np.allclose(q, q_true[:, :2] / q_true[:, 2:], atol=1e-9)
    assert np.allclose(z, (R @ X.T)[2], atol=1e-9)
    T = make_pose(axis_angle_to_matrix(np.array([0.01, 0.03, -0.02])), np.array([0.2, -0.1, 0.9]))
    Xh = np.vstack([X.T, np.ones(len(X))])
    Tt = turn.motion(T[None], [1], 0)[0]  # frame 0 -> frame 1, each turned by its own rotation
    assert np.allclose(Tt @ np.vstack([R @ X.T, np.ones(len(X))]), np.vstack([R2 @ (T @ Xh)[:3], np.ones(len(X))]))
    with pytest.raises(ValueError, match="motions"):
        turn.motion(np.eye(4), [1], 0)
    imgs = np.zeros((2, H, W, 3), np.float32)
    K = np.array([[180.0, 0, (W - 1) / 2], [0, 180.0, (H - 1) / 2], [0, 0, 1]])
    _, _, right = turn_window(imgs, K, np.radians(3), 0.0)
    ahead, _ = right.points(np.array([[(W - 1) / 2, (H - 1) / 2]]), np.ones(1), 1)
    assert ahead[0, 0] < (W - 1) / 2 - 5 and abs(ahead[0, 1] - (H - 1) / 2) < 1e-6
    _, _, down = turn_window(imgs, K, 0.0, np.radians(1))
    ahead, _ = down.points(np.array([[(W - 1) / 2, (H - 1) / 2]]), np.ones(1), 0)
    assert ahead[0, 1] < (H - 1) / 2 - 1


@pytest.mark.parametrize("yaw_deg,pitch_deg,zoom", [(5.0, 1.0, 1.0), (-3.0, -0.5, 1.12), (0.0, 0.0, 1.05)])
def test_turned_frames_sample_inside_the_frame_at_the_least_zoom(yaw_deg, pitch_deg, zoom):
    """Every output corner's preimage lies inside the original frame (so no border pixel is made up);
    the zoom is at least the one asked for, and a 1 % smaller zoom would leave the frame (the least
    that fits) unless the asked-for zoom already fits; the principal point is unchanged."""
    imgs = np.random.default_rng(1).random((3, H, W, 3)).astype(np.float32)
    K = np.array([[150.0, 0, 160.0], [0, 150.0, 46.0], [0, 0, 1]])
    out, K1, turn = turn_window(imgs, K, np.radians(yaw_deg), np.radians(pitch_deg), zoom=zoom)
    assert out.shape == imgs.shape and out.dtype == imgs.dtype
    assert K1[0, 2] == K[0, 2] and K1[1, 2] == K[1, 2]
    got = K1[0, 0] / K[0, 0]
    assert got >= zoom - 1e-12 and K1[1, 1] / K[1, 1] == pytest.approx(got)
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1]], float).T
    pre = np.linalg.inv(turn.H(2)) @ corners
    u, v = pre[0] / pre[2], pre[1] / pre[2]
    assert np.all((u >= -1e-6) & (u <= W - 1 + 1e-6) & (v >= -1e-6) & (v <= H - 1 + 1e-6)), (u, v)
    if got > zoom + 1e-9:
        tighter = Turn(turn.R, K, _zoomed(K, got * 0.99))
        pre = np.linalg.inv(tighter.H(2)) @ corners
        u, v = pre[0] / pre[2], pre[1] / pre[2]
        assert not np.all((u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1))


def test_turn_window_checks_shapes():
    with pytest.raises(ValueError, match="frames"):
        turn_window(np.zeros((H, W, 3)), np.eye(3), 0.01, 0.0)


def test_turned_camera_synthesises_the_turned_view_as_well(street):
    """Warping a rendered frame into its neighbour with the true depth and motion: the turned frames
    with the turned intrinsics, depth and motion (6° of yaw, 1° of pitch: a zoom of 1.25)
    reconstruct about as well as the originals (the turn resamples the frames once more: within 0.001
    grey levels; measured 0.00592 against 0.00579), while the original motion on them is clearly worse
    (the direction of travel is 6° off: measured 0.00905, 1.53x; no motion at all 0.0250)."""
    s = street
    tgt, src = 4, 5
    T = np.linalg.inv(s.poses[src]) @ s.poses[tgt]  # T_src_tgt
    imgs = s.images[[tgt, src]].astype(np.float32) / 255.0
    e0 = warp_error(imgs[1], imgs[0], s.depths[tgt], T, s.K)
    turned, K1, turn = turn_window(imgs, s.K, np.radians(6.0), np.radians(1.0))
    depth = _turned_depth(s.depths[tgt], turn)
    e1 = warp_error(turned[1], turned[0], depth, turn.motion(T[None], [1], 0)[0], K1)
    wrong = warp_error(turned[1], turned[0], depth, T, K1)
    assert abs(e1 - e0) < 0.001, (e0, e1)
    assert wrong > 1.3 * e1, (e1, wrong)


def test_turned_frames_each_by_their_own_turn_synthesise_as_well(street):
    """Each frame turned by its own yaw (``turn_step_deg``): with the motion ``R[src] T R[tgt]ᵀ`` the
    turned frames reconstruct about as well as the originals (measured 0.00592 against 0.00579),
    the window's one-turn motion ``R[tgt] T R[tgt]ᵀ`` (wrong by the 2° between the two turns) is
    clearly worse (measured 0.0560)."""
    s = street
    tgt, src = 4, 5
    T = np.linalg.inv(s.poses[src]) @ s.poses[tgt]
    imgs = s.images[[tgt, src]].astype(np.float32) / 255.0
    e0 = warp_error(imgs[1], imgs[0], s.depths[tgt], T, s.K)
    turned, K1, turn = turn_window(imgs, s.K, np.radians([3.0, 1.0]), np.radians([0.2, -0.3]))
    assert not np.allclose(turn.R[0], turn.R[1])
    depth = _turned_depth(s.depths[tgt], turn)
    e1 = warp_error(turned[1], turned[0], depth, turn.motion(T[None], [1], 0)[0], K1)
    one = warp_error(turned[1], turned[0], depth, turn.motion(T[None], [0], 0)[0], K1)
    assert abs(e1 - e0) < 0.001, (e0, e1)
    assert one > 1.5 * e1, (e1, one)
    with pytest.raises(ValueError, match="turn_step_deg must be in"):
        WindowDataset([], 3, 1, turn_step_deg=9.0)


def test_augment_window_turn_draws_scale_and_colour_alike():
    """``turn_deg``: the colour jitter and the scale are drawn as without it (the same brightness on a
    flat frame), the principal point stays where it was (a shifted crop moves it), and the turns drawn
    spread over ±turn_deg in yaw."""
    K = np.array([[150.0, 0, 155.5], [0, 150.0, 47.5], [0, 0, 1]])
    flat = np.full((3, H, W, 3), 0.5, np.float32)
    yaws, moved = [], 0
    for i in range(40):
        a, Ka, crop = augment_window(flat, K, np.random.default_rng([7, i]))
        b, Kb, turn = augment_window(flat, K, np.random.default_rng([7, i]), turn_deg=5.0)
        assert isinstance(crop, tuple) and isinstance(turn, Turn)
        assert np.allclose(a, b, atol=1e-6)
        assert Kb[0, 2] == K[0, 2] and Kb[1, 2] == K[1, 2]
        assert Kb[0, 0] >= crop[1] / W * K[0, 0] - 1e-9
        moved += abs(Ka[0, 2] - K[0, 2]) > 1.0
        assert np.allclose(turn.R, turn.R[0])  # one turn for the window
        yaws.append(-np.degrees(matrix_to_axis_angle(turn.R[0])[1]))
    assert moved > 20
    assert max(yaws) > 3.0 and min(yaws) < -3.0 and max(np.abs(yaws)) <= 5.0 + 1e-9


def test_dataset_turn_turns_the_priors_with_the_frames():
    """Items with ``turn_deg``: each prior motion keeps its rotation angle and translation length (a
    conjugation) but its direction of travel turns, and the priors' corners stay on the frame; a
    turn_deg out of range is refused with its value."""
    from sfm_ros.training.priors import epipolar_priors

    s = render_sequence(9, 128, 416, seed=3)
    seqs = [prepare_sequence(zip(s.images, s.timestamps), s.K, (128, 416), name="synthetic")]
    plain = WindowDataset(seqs, 3, 1, augment=True, seed=1)
    turned = WindowDataset(seqs, 3, 1, augment=True, seed=1, turn_deg=5.0)
    plain.priors = turned.priors = epipolar_priors(seqs, plain.items, 3)
    for i in range(len(plain)):
        a, b = plain[i], turned[i]
        Ta, Tb = a["prior_T"].double().numpy(), b["prior_T"].double().numpy()
        for x, y in zip(Ta, Tb):
            assert np.linalg.norm(y[:3, 3]) == pytest.approx(np.linalg.norm(x[:3, 3]), rel=1e-5)
            assert np.linalg.norm(matrix_to_axis_angle(y[:3, :3])) == pytest.approx(
                np.linalg.norm(matrix_to_axis_angle(x[:3, :3])), abs=1e-5)
        assert not np.allclose(Ta[:, :3, 3], Tb[:, :3, 3], atol=1e-4)
        has = b["prior_depth"] > 0
        pts = b["prior_pts"][has]
        assert has.any() and bool(((pts[:, 0] >= 0) & (pts[:, 0] <= 415) & (pts[:, 1] >= 0) & (pts[:, 1] <= 127)).all())
    with pytest.raises(ValueError, match="turn_deg must be in"):
        WindowDataset(seqs, 3, 1, augment=True, turn_deg=40.0)


def test_dataset_turn_step_turns_each_prior_by_its_frames_turns():
    """Items with ``turn_step_deg``: each prior motion (target -> source) is ``R[src] T R[tgt]ᵀ`` with
    the turns the augmentation drew for that item (drawn again here from the item's seed); the
    sources are turned by their own turns, the target by the window's alone."""
    from sfm_ros.training.priors import epipolar_priors

    s = render_sequence(7, 128, 416, seed=5)
    seqs = [prepare_sequence(zip(s.images, s.timestamps), s.K, (128, 416), name="synthetic")]
    plain = WindowDataset(seqs, 3, 1, augment=True, seed=2)
    turned = WindowDataset(seqs, 3, 1, augment=True, seed=2, turn_deg=4.0, turn_step_deg=2.0)
    plain.priors = turned.priors = epipolar_priors(seqs, plain.items, 3)
    for i in range(len(plain)):
        _, idx = turned.items[i]
        imgs = seqs[0].frames[idx].astype(np.float32) / 255.0
        _, _, turn = augment_window(imgs, seqs[0].K.copy(), np.random.default_rng([2, 0, i]), 4.0, 2.0, target=1)
        assert not np.allclose(turn.R[0], turn.R[2]) and not np.allclose(turn.R[0], turn.R[1])
        _, _, window = augment_window(imgs, seqs[0].K.copy(), np.random.default_rng([2, 0, i]), 4.0)
        assert np.allclose(turn.R[1], window.R[1])  # the target keeps the window's turn
        pr = [turned.priors[(0, idx[1], j)] for j in (idx[0], idx[2])]
        expected = turn.motion(np.stack([p.T_src_tgt for p in pr]), [0, 2], 1)
        assert np.allclose(turned[i]["prior_T"].double().numpy(), expected, atol=1e-5)


def test_dataset_turn_pose_only_keeps_the_crop_and_adds_the_turned_frames():
    """``turn_pose_only``: an item's frames, intrinsics and priors are those of the turns off (the
    same scale, crop, colour and, with ``flip``, mirror); the turned frames and their turns come as
    well, the frames as :func:`augment_window` turns them from the same draws; a mirrored item
    carries both views mirrored and the mirrored turn ``M R M``; the collated batch stacks them."""
    from sfm_ros.data.augment import mirror_rotation
    from sfm_ros.data.datasets import collate
    from sfm_ros.training.priors import epipolar_priors

    s = render_sequence(7, 128, 416, seed=5)
    seqs = [prepare_sequence(zip(s.images, s.timestamps), s.K, (128, 416), name="synthetic")]
    turns = dict(turn_deg=4.0, turn_step_deg=2.0, turn_pose_only=True)
    mirrored = 0
    for flip in (False, True):
        plain = WindowDataset(seqs, 3, 1, augment=True, seed=2, flip=flip)
        split = WindowDataset(seqs, 3, 1, augment=True, seed=2, flip=flip, **turns)
        plain.priors = split.priors = epipolar_priors(seqs, plain.items, 3)
        for i in range(len(plain)):
            a, b = plain[i], split[i]
            for k in ("target", "sources", "K", "prior_T", "prior_w", "prior_pts", "prior_depth"):
                assert torch.equal(a[k], b[k]), (flip, k)
            _, idx = split.items[i]
            imgs = seqs[0].frames[idx].astype(np.float32) / 255.0
            turned, _, turn = augment_window(imgs, seqs[0].K.copy(), np.random.default_rng([2, 0, i]), 4.0, 2.0,
                                             target=1)
            pose_target, R = torch.from_numpy(turned[1].transpose(2, 0, 1)), turn.R
            crop_rng = np.random.default_rng([2, 0, i])
            augment_window(imgs, seqs[0].K.copy(), crop_rng, target=1)
            if flip and crop_rng.random() < 0.5:  # the flip's draw, as a turns-off item makes it
                mirrored += 1
                pose_target, R = pose_target.flip(-1), mirror_rotation(R)
            assert np.allclose(b["pose_turn"].double().numpy(), R, atol=1e-6)
            assert torch.allclose(b["pose_target"], pose_target)
            if not flip:
                assert torch.allclose(b["pose_sources"], torch.from_numpy(turned[[0, 2]].transpose(0, 3, 1, 2).copy()))
            assert not torch.allclose(b["pose_target"], b["target"], atol=1e-2)
    assert 0 < mirrored < len(plain)
    batch = collate([split[0], split[1]])
    assert batch["pose_sources"].shape == (2, 2, 3, 128, 416) and batch["pose_turn"].shape == (2, 3, 3, 3)
    assert "pose_turn" not in WindowDataset(seqs, 3, 1, seed=2, **turns)[0]  # no augmentation
    assert "pose_turn" not in WindowDataset(seqs, 3, 1, augment=True, turn_pose_only=True)[0]  # no turn


def test_turn_pose_only_turns_the_pose_networks_motion_back(street):
    """The model with ``pose_images`` and ``pose_turn``: the pose network sees the turned frames and
    its motions, turned back (:func:`sfm_ros.core.geometry.unturn_motion`), are the original cameras'
    (``Turn.motion``'s inverse, to float32 rounding); the depth is the plain target's; identity turns
    give the plain model's motions; the true motion of the rendered street survives the round trip
    to float64 rounding."""
    from sfm_ros.core.geometry import unturn_motion
    from sfm_ros.core.model import SfMModel
    from sfm_ros.core.options import ModelOptions

    torch.manual_seed(0)
    model = SfMModel(ModelOptions(width_mult=0.25), output_exp=False).eval()
    imgs = street.images[3:6].astype(np.float32) / 255.0
    turned, _, turn = turn_window(imgs, street.K, np.radians([2.0, 4.0, -1.0]), np.radians([0.3, 0.0, -0.5]))
    t = torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy())[None]
    tt = torch.from_numpy(turned.transpose(0, 3, 1, 2).copy())[None]
    R = torch.from_numpy(turn.R.astype(np.float32))[None]
    with torch.no_grad():
        plain = model(t[:, 1], [t[:, 0], t[:, 2]])
        seen = model(tt[:, 1], [tt[:, 0], tt[:, 2]])
        split = model(t[:, 1], [t[:, 0], t[:, 2]], pose_images=(tt[:, 1], [tt[:, 0], tt[:, 2]]), pose_turn=R)
        same = model(t[:, 1], [t[:, 0], t[:, 2]], pose_images=(t[:, 1], [t[:, 0], t[:, 2]]),
                     pose_turn=torch.eye(3).expand(1, 3, 3, 3))
    assert torch.equal(split[("depth", 0, 0)], plain[("depth", 0, 0)])
    for f, j in ((-1, 0), (1, 2)):
        assert torch.allclose(same[("T", f)], plain[("T", f)], atol=1e-6)
        assert torch.equal(split[("pose_vec", f)], seen[("pose_vec", f)])
        back = turn.motion(split[("T", f)].double().numpy(), [j], 1)[0]  # turned again: what the network saw
        assert np.allclose(back, seen[("T", f)][0].double().numpy(), atol=1e-5)
    T = np.linalg.inv(street.poses[5]) @ street.poses[4]
    T_turned = turn.motion(T[None], [2], 1)
    R64 = torch.from_numpy(turn.R)
    T_back = unturn_motion(torch.from_numpy(T_turned), R64[2:3], R64[1:2])[0].numpy()
    assert np.abs(T_back - T).max() < 1e-12
    with pytest.raises(ValueError, match="pose_turn must have shape"):
        model(t[:, 1], [t[:, 0], t[:, 2]], pose_images=(tt[:, 1], [tt[:, 0], tt[:, 2]]), pose_turn=R[:, :2])
    with pytest.raises(ValueError, match="go together"):
        model(t[:, 1], [t[:, 0], t[:, 2]], pose_turn=R)


def test_unturn_motion_is_float32_under_bf16_autocast():
    """The turn back of the pose network's motion runs in float32 even inside the trainer's bf16
    autocast: the result equals the float32 one to 1e-6 (rounded in bf16 it was off by ~8e-3)."""
    from sfm_ros.core.geometry import pose_vec_to_mat, unturn_motion

    g = torch.Generator().manual_seed(0)
    T = pose_vec_to_mat(torch.cat([torch.randn(64, 3, generator=g), 0.002 * torch.randn(64, 3, generator=g)], 1))
    R = pose_vec_to_mat(torch.cat([torch.zeros(128, 3), 0.05 * torch.randn(128, 3, generator=g)], 1))[:, :3, :3]
    want = unturn_motion(T, R[:64], R[64:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = unturn_motion(T, R[:64], R[64:])
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
