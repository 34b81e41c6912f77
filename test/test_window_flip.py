"""The training windows' horizontal mirror (``data.flip``, :mod:`sfm_ros.data.datasets`): the mirrored
camera's intrinsics and motions make the view synthesis as exact as the original's, the mirror is
drawn after the other augmentation (so it leaves every other draw alone), and the two-view priors
follow it."""
import numpy as np
import pytest
import torch

from sfm_ros.data.augment import mirror_motion, mirror_window
from sfm_ros.data.datasets import WindowDataset, prepare_sequence
from sfm_ros.data.synthetic import render_sequence
from warp_check import warp_error

H, W = 64, 208


@pytest.fixture(scope="module")
def street():
    return render_sequence(9, H, W, seed=3, yaw_rate=0.2)


def test_mirror_is_an_involution_and_checks_shapes():
    imgs = np.random.default_rng(0).random((3, 4, 5, 3)).astype(np.float32)
    K = np.array([[100.0, 0.5, 1.7], [0.0, 90.0, 2.0], [0, 0, 1]])
    m, K1 = mirror_window(imgs, K)
    assert np.array_equal(m[:, :, 0], imgs[:, :, -1]) and K1[0, 2] == pytest.approx(5 - 1 - 1.7)
    back, K2 = mirror_window(m, K1)
    assert np.array_equal(back, imgs) and np.allclose(K2, K)
    T = np.eye(4)
    T[:3, 3] = [0.3, -0.1, 1.0]
    assert np.allclose(mirror_motion(mirror_motion(T)), T)
    assert mirror_motion(T)[0, 3] == pytest.approx(-0.3) and mirror_motion(T)[2, 3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="frames"):
        mirror_window(imgs[0], K)
    with pytest.raises(ValueError, match="motions"):
        mirror_motion(np.eye(3))


def test_mirrored_camera_synthesises_the_mirrored_view_as_well(street):
    """Warping a rendered frame into its neighbour with the true depth and motion: the mirrored
    frames with the mirrored intrinsics and motion reconstruct exactly as well as the originals
    (bilinear sampling is symmetric: within 1e-4; measured equal to 1e-8), while the unmirrored
    motion on them (a turning street: the rotation's sign) is clearly worse (measured: 0.0098
    against 0.043; no motion at all 0.033)."""
    s = street
    tgt, src = 4, 5
    T = np.linalg.inv(s.poses[src]) @ s.poses[tgt]  # T_src_tgt
    imgs = s.images[[tgt, src]].astype(np.float32) / 255.0
    e0 = warp_error(imgs[1], imgs[0], s.depths[tgt], T, s.K)
    m, Km = mirror_window(imgs, s.K)
    depth_m = np.ascontiguousarray(s.depths[tgt][:, ::-1])
    e1 = warp_error(m[1], m[0], depth_m, mirror_motion(T), Km)
    wrong = warp_error(m[1], m[0], depth_m, T, Km)
    assert abs(e1 - e0) < 1e-4, (e0, e1)
    assert wrong > 2.0 * e1, (e1, wrong)


def test_dataset_flip_mirrors_about_half_and_changes_nothing_else(street):
    """``flip``: about half the windows mirrored over epochs; a mirrored item is exactly the mirror of
    the same item without ``flip`` (scale, crop and colour drawn alike), its priors' motions and
    corners mirrored with it; without ``flip`` the items are as they were."""
    from sfm_ros.training.priors import epipolar_priors

    s = render_sequence(9, 128, 416, seed=3)
    seqs = [prepare_sequence(zip(s.images, s.timestamps), s.K, (128, 416), name="synthetic")]
    plain = WindowDataset(seqs, 3, 1, augment=True, seed=1)
    flip = WindowDataset(seqs, 3, 1, augment=True, seed=1, flip=True)
    plain.priors = flip.priors = epipolar_priors(seqs, plain.items, 3)
    mirrored = 0
    for epoch in range(6):
        plain.set_epoch(epoch)
        flip.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], flip[i]
            if torch.equal(a["target"], b["target"]):
                assert torch.equal(a["K"], b["K"]) and torch.equal(a["prior_T"], b["prior_T"])
                continue
            mirrored += 1
            assert torch.equal(b["target"], a["target"].flip(-1)) and torch.equal(b["sources"], a["sources"].flip(-1))
            assert b["K"][0, 2] == pytest.approx(416 - 1 - float(a["K"][0, 2]), abs=1e-4)
            assert torch.allclose(b["prior_T"], torch.from_numpy(mirror_motion(a["prior_T"].double().numpy())).float())
            has = a["prior_depth"] > 0
            assert torch.equal(has, b["prior_depth"] > 0)
            assert torch.allclose(b["prior_pts"][..., 0][has], 416 - 1 - a["prior_pts"][..., 0][has], atol=1e-4)
    n = 6 * len(plain)
    assert 0.25 * n <= mirrored <= 0.75 * n, (mirrored, n)
    unaugmented = WindowDataset(seqs, 3, 1, flip=True)  # the mirror is part of the augmentation
    assert torch.equal(unaugmented[0]["target"], WindowDataset(seqs, 3, 1)[0]["target"])
