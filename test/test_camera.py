"""sfm_ros.data.camera: CameraModel constructors; sfm_ros.data.rectify: Rectifier (plumb_bob, rational_polynomial,
equidistant)."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from sfm_ros.data.camera import CameraError, CameraModel
from sfm_ros.data.rectify import Rectifier, _undistort_points

W, H = 320, 240
K = np.array([[250.0, 0.0, 159.5], [0.0, 252.0, 119.5], [0.0, 0.0, 1.0]])
D_PLUMB = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.01])
D_RATIONAL = np.array([-0.2, 0.05, 0.001, -0.001, 0.0, 0.02, 0.001, 0.0])
D_FISHEYE = np.array([0.05, -0.01, 0.002, -0.0005])


def _board(u: np.ndarray, v: np.ndarray, sq: float = 16.0) -> np.ndarray:
    """Ideal checkerboard at ideal (undistorted) pixel coordinates."""
    return (((np.floor(u / sq) + np.floor(v / sq)) % 2) * 255).astype(np.uint8)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))


# ------------------------------------------------------------------------------ constructors
def test_from_camera_info_ros2_ros1_and_dict():
    k = K.reshape(-1).tolist()
    ros2 = SimpleNamespace(k=k, d=list(D_PLUMB), distortion_model="plumb_bob", width=W, height=H)
    ros1 = SimpleNamespace(K=np.array(k), D=np.array(D_PLUMB), distortion_model="plumb_bob", width=W, height=H)
    as_dict = {"k": k, "d": list(D_PLUMB), "distortion_model": "plumb_bob", "width": W, "height": H}
    for msg in (ros2, ros1, as_dict):
        cam = CameraModel.from_camera_info(msg)
        assert (cam.width, cam.height, cam.distortion_model) == (W, H, "plumb_bob")
        np.testing.assert_allclose(cam.K, K)
        np.testing.assert_allclose(cam.D, D_PLUMB)
        assert cam.is_distorted
        assert (cam.fx, cam.fy, cam.cx, cam.cy) == (250.0, 252.0, 159.5, 119.5)


def test_from_camera_info_rosbags_ros1_message():
    from rosbags.typesys import Stores, get_typestore

    T = get_typestore(Stores.ROS1_NOETIC).types
    msg = T["sensor_msgs/msg/CameraInfo"](
        header=T["std_msgs/msg/Header"](seq=0, stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"),
        height=H, width=W, distortion_model="plumb_bob", D=D_PLUMB.copy(), K=K.reshape(-1).copy(),
        R=np.eye(3).reshape(-1), P=np.zeros(12), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    cam = CameraModel.from_camera_info(msg)
    np.testing.assert_allclose(cam.K, K)
    assert cam.D.size == 5


def test_from_camera_info_errors():
    with pytest.raises(CameraError, match="no 'k'.*or 'K'"):
        CameraModel.from_camera_info(SimpleNamespace(width=1, height=1))
    with pytest.raises(CameraError, match="all zeros"):
        CameraModel.from_camera_info({"k": [0.0] * 9, "width": W, "height": H})
    with pytest.raises(CameraError, match="9 elements, got 4"):
        CameraModel.from_camera_info({"k": [1.0] * 4})


def test_from_yaml_round_trip_and_standard_file(tmp_path):
    # the layout camera_calibration writes (ost.yaml)
    text = f"""image_width: {W}
image_height: {H}
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [{', '.join(map(str, K.reshape(-1)))}]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [{', '.join(map(str, D_PLUMB))}]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [250, 0, 159.5, 0, 0, 252, 119.5, 0, 0, 0, 1, 0]
"""
    p = tmp_path / "ost.yaml"
    p.write_text(text)
    cam = CameraModel.from_yaml(p)
    np.testing.assert_allclose(cam.K, K)
    np.testing.assert_allclose(cam.D, D_PLUMB)
    assert (cam.width, cam.height) == (W, H)
    cam.save_yaml(tmp_path / "again.yaml")
    again = CameraModel.from_yaml(tmp_path / "again.yaml")
    np.testing.assert_allclose(again.K, K)
    np.testing.assert_allclose(again.D, D_PLUMB)


def test_from_yaml_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        CameraModel.from_yaml(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"image_width": 10, "image_height": 10}))
    with pytest.raises(CameraError, match="has no 'camera_matrix'"):
        CameraModel.from_yaml(p)
    p.write_text(yaml.safe_dump({"image_width": 10, "image_height": 10, "camera_matrix": {"data": [1, 2, 3]}}))
    with pytest.raises(CameraError, match=r"'camera_matrix.data' has 3 numbers, expected 9"):
        CameraModel.from_yaml(p)
    p.write_text(yaml.safe_dump({"camera_matrix": {"data": [1] * 9}}))
    with pytest.raises(CameraError, match="has no 'image_width'"):
        CameraModel.from_yaml(p)
    p.write_text("a: [unclosed")
    with pytest.raises(CameraError, match="not valid YAML"):
        CameraModel.from_yaml(p)


def test_from_kitti_calib_synthetic(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text("P0: 700 0 600 0 0 700 180 0 0 0 1 0\nP2: 710 0 610 45 0 710 181 0.2 0 0 1 0.003\n")
    cam = CameraModel.from_kitti_calib(p, "P2", width=1242, height=375)
    np.testing.assert_allclose(cam.K, [[710, 0, 610], [0, 710, 181], [0, 0, 1]])
    assert not cam.is_distorted
    with pytest.raises(CameraError, match=r"no 'P3:' line \(found: P0, P2\)"):
        CameraModel.from_kitti_calib(p, "P3", width=1, height=1)
    with pytest.raises(CameraError, match="give width/height"):
        CameraModel.from_kitti_calib(p, "P0")


def test_from_kitti_calib_real(kitti_dir):
    cam = CameraModel.from_kitti_calib(kitti_dir / "calib.txt")
    assert (cam.width, cam.height) == (1241, 376)
    assert cam.fx == pytest.approx(718.856) and cam.cy == pytest.approx(185.2157)
    small = cam.scaled(416, 128)
    assert small.fx == pytest.approx(718.856 * 416 / 1241)
    assert small.fy == pytest.approx(718.856 * 128 / 376)
    assert small.cx == pytest.approx((607.1928 + 0.5) * 416 / 1241 - 0.5)


def test_camera_info_fields():
    cam = CameraModel(W, H, K)
    f = cam.camera_info_fields()
    assert f["distortion_model"] == "plumb_bob" and len(f["d"]) == 5 and not np.any(f["d"])
    np.testing.assert_allclose(np.reshape(f["p"], (3, 4))[:, :3], K)


# ------------------------------------------------------------------------------ rectification
def test_plumb_bob_checkerboard_rectifies_back():
    cam = CameraModel(W, H, K, "plumb_bob", D_PLUMB)
    u, v = _grid()
    # Render the distorted view: each distorted pixel looks up the ideal board at its undistorted
    # position (cv2's iterative inverse of the plumb_bob model) ...
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    pix = np.stack([u, v], -1).reshape(-1, 1, 2)
    ideal = _undistort_points(pix, K, D_PLUMB, K, crit).reshape(H, W, 2)
    distorted = _board(ideal[..., 0], ideal[..., 1])
    # ... whose forward model (cv2.projectPoints) takes the ideal positions back to the pixels.
    sample = ideal.reshape(-1, 2)[:: 97]
    rays = cv2.undistortPoints(sample.reshape(-1, 1, 2), K, None).reshape(-1, 2)
    obj = np.c_[rays, np.ones(len(rays))]
    reproj, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), K, D_PLUMB)
    np.testing.assert_allclose(reproj.reshape(-1, 2), pix.reshape(-1, 2)[:: 97], atol=1e-3)

    rect = Rectifier(cam, new_K=K)
    out = rect.rectify(distorted)
    truth = _board(u, v)
    # Compare away from square edges (the distorted rendering is aliased by up to half a pixel,
    # which rectification stretches) and from the black border outside the distorted view.
    k = np.ones((5, 5), np.uint8)
    interior = cv2.erode(truth, k) == cv2.dilate(truth, k)
    interior &= cv2.erode((out > 0).astype(np.uint8) | (truth == 0), k) > 0
    interior[:8], interior[-8:], interior[:, :8], interior[:, -8:] = False, False, False, False
    assert interior.mean() > 0.4
    bad_rect = (np.abs(out.astype(int) - truth) > 127)[interior].mean()
    bad_raw = (np.abs(distorted.astype(int) - truth) > 127)[interior].mean()
    assert bad_rect < 0.002, bad_rect
    assert bad_raw > 0.1, bad_raw
    np.testing.assert_allclose(rect.camera_model.K, K)
    assert not rect.camera_model.is_distorted


@pytest.mark.parametrize("model,D", [("plumb_bob", D_PLUMB), ("rational_polynomial", D_RATIONAL)])
def test_pinhole_models_points(model, D):
    cam = CameraModel(W, H, K, model, D)
    rect = Rectifier(cam, alpha=0.0)
    assert rect.new_K.shape == (3, 3) and rect.out_size == (W, H)
    xs, ys = np.meshgrid(np.linspace(-0.5, 0.5, 7), np.linspace(-0.4, 0.4, 5))
    obj = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)]
    dist_px, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), K, D)
    back = rect.rectify_points(dist_px.reshape(-1, 2))
    expect = (rect.new_K @ obj.T).T
    np.testing.assert_allclose(back, expect[:, :2] / expect[:, 2:], atol=1e-3)
    img = np.full((H, W, 3), 200, np.uint8)
    out = rect(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[H // 2, W // 2] == 200).all()


def test_equidistant_fisheye():
    cam = CameraModel(W, H, K, "equidistant", D_FISHEYE)
    rect = Rectifier(cam, balance=0.0)
    xs, ys = np.meshgrid(np.linspace(-0.6, 0.6, 5), np.linspace(-0.4, 0.4, 5))
    obj = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)].reshape(-1, 1, 3)
    dist_px, _ = cv2.fisheye.projectPoints(obj, np.zeros(3), np.zeros(3), K, D_FISHEYE)
    back = rect.rectify_points(dist_px.reshape(-1, 2))
    expect = (rect.new_K @ obj.reshape(-1, 3).T).T
    np.testing.assert_allclose(back, expect[:, :2] / expect[:, 2:], atol=1e-2)
    out = rect.rectify(np.full((H, W), 100, np.uint8))
    assert out.shape == (H, W) and out[H // 2, W // 2] == 100
    with pytest.raises(CameraError, match="equidistant distortion needs 4 coefficients"):
        Rectifier(CameraModel(W, H, K, "equidistant", D_PLUMB))


def test_undistorted_camera_passes_through():
    cam = CameraModel(W, H, K, "plumb_bob", np.zeros(5))
    assert not cam.is_distorted
    img = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    r = Rectifier(cam)
    assert r.identity and r.rectify(img) is img
    np.testing.assert_allclose(r.camera_model.K, K)


def test_rectifier_errors():
    with pytest.raises(CameraError) as ei:
        Rectifier(CameraModel(W, H, K, "double_sphere", np.array([0.1, 0.2])))
    msg = str(ei.value)
    assert "'double_sphere' is not supported" in msg
    assert "plumb_bob" in msg and "rational_polynomial" in msg and "equidistant" in msg
    with pytest.raises(CameraError, match="needs 4, 5, 8, 12 or 14 coefficients, got 3"):
        Rectifier(CameraModel(W, H, K, "plumb_bob", np.array([0.1, 0.0, 0.0])))
    rect = Rectifier(CameraModel(W, H, K, "plumb_bob", D_PLUMB))
    with pytest.raises(CameraError, match=r"image is 10x10 but the camera is calibrated for 320x240"):
        rect.rectify(np.zeros((10, 10), np.uint8))
    with pytest.raises(CameraError, match="needs a size"):
        Rectifier(CameraModel(0, 0, K, "plumb_bob", D_PLUMB))


def test_backproject_grid_is_the_numpy_twin_of_geometry_backproject():
    import torch

    from sfm_ros.data.camera import backproject_grid
    from sfm_ros.core.geometry import backproject

    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (6, 8)).astype(np.float32)
    K = np.array([[50.0, 0, 3.7], [0, 40.0, 2.4], [0, 0, 1]])
    x, y, z, v, u = backproject_grid(depth, K)
    ref = backproject(torch.from_numpy(depth)[None, None].double(), torch.from_numpy(K)[None])[0].numpy()
    np.testing.assert_allclose(np.stack([x, y, z]).reshape(3, -1), ref.reshape(3, -1), rtol=1e-12)
    x2, _, z2, v2, u2 = backproject_grid(depth, K, stride=3, top=2)
    assert z2.shape == (2, 3) and v2[0, 0] == 2 and u2[0, 1] == 3 and z2[0, 1] == depth[2, 3]
    assert x2[0, 1] == pytest.approx((3 - 3.7) / 50.0 * depth[2, 3])


def test_kitti_lidar_calib_odometry_file_and_raw_folder_agree(tmp_path):
    """One KITTI calibration reader: a raw date folder (cam_to_cam + velo_to_cam) and the odometry
    calib.txt of the same rig give the same T_cam_lidar and K; missing rows are named."""
    from sfm_ros.data.camera import kitti_lidar_calib, read_kitti_calib_rows

    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    b = np.array([-0.5, 0.0, 0.0])
    P2 = np.hstack([K, (K @ b)[:, None]])
    R = cv2.Rodrigues(np.array([0.05, -0.02, 0.01]))[0]
    Tr = np.hstack([R, [[0.1], [-0.2], [0.3]]])
    row = lambda a: " ".join(map(str, np.ravel(a)))  # noqa: E731
    odo = tmp_path / "calib.txt"
    odo.write_text(f"P0: {row(np.hstack([K, np.zeros((3, 1))]))}\nP2: {row(P2)}\nTr: {row(Tr)}\n")
    raw = tmp_path / "2011_09_26"
    raw.mkdir()
    (raw / "calib_cam_to_cam.txt").write_text(f"calib_time: 09-Jan-2012 13:57:47\nR_rect_00: {row(np.eye(3))}\n"
                                              f"P_rect_02: {row(P2)}\n")
    (raw / "calib_velo_to_cam.txt").write_text(f"calib_time: 15-Mar-2012 11:37:16\nR: {row(R)}\nT: {row(Tr[:, 3])}\n")
    assert "calib_time" not in read_kitti_calib_rows(raw / "calib_cam_to_cam.txt")
    T1, K1 = kitti_lidar_calib(odo, "P2")
    T2, K2 = kitti_lidar_calib(raw, "P2")
    np.testing.assert_allclose(T1, T2, atol=1e-12)
    np.testing.assert_allclose(K1, K2)
    expect = np.eye(4)
    expect[:3, 3] = b
    np.testing.assert_allclose(T1[:3, 3], (expect @ np.vstack([Tr, [0, 0, 0, 1]]))[:3, 3], atol=1e-12)
    with pytest.raises(CameraError, match="no 'Tr:' line"):
        odo.write_text(f"P2: {row(P2)}\n")
        kitti_lidar_calib(odo, "P2")
    with pytest.raises(CameraError, match="need P_rect_03"):
        kitti_lidar_calib(raw, "P3")
    # the camera model reads the same file through the same reader
    odo.write_text(f"P0: {row(np.hstack([K, np.zeros((3, 1))]))}\n")
    assert np.allclose(CameraModel.from_kitti_calib(odo, "P0", width=1242, height=375).K, K)
