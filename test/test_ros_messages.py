"""ROS messages from pipeline results (sfm_ros/ros/messages.py); needs the ROS message packages, no DDS."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from sfm_ros.ros import messages as rm  # noqa: E402
from sfm_ros.data.camera import CameraModel  # noqa: E402
from sfm_ros.data.image_codec import decode_image  # noqa: E402
from sfm_ros.core.se3 import quat_to_matrix, rpy_to_matrix  # noqa: E402
from sfm_ros.runtime.frames import FrameResult, cloud_points  # noqa: E402


def _result(**kw) -> FrameResult:
    depth = np.linspace(1.0, 4.0, 6 * 8, dtype=np.float32).reshape(6, 8)
    values = dict(stamp=rm.stamp_from_sec(12.5), t=12.5, frame_id="cam", recv=0.0, depth=depth,
                  camera=CameraModel.from_intrinsics(5.0, 6.0, 3.5, 2.5, 8, 6), points=None, odometry=None,
                  explainability=None, explainability_t=None, scale=1.0, infer_ms=1.0)
    values.update(kw)
    return FrameResult(**values)


def test_stamps_round_trip():
    s = rm.stamp_from_sec(1700000000.123456789)
    assert s.sec == 1700000000 and abs(s.nanosec - 123456789) < 300  # float64 resolution at 1.7e9 s
    s = rm.stamp_from_sec(0.9999999999)
    assert (s.sec, s.nanosec) == (1, 0)  # rounded, never nanosec == 1e9
    assert rm.stamp_to_sec(rm.stamp_from_sec(3.25)) == 3.25


def test_depth_colormap_and_explainability_images():
    r = _result(explainability=np.full((6, 8), 0.5), explainability_t=12.4)
    d = rm.depth_image(r, "opt")
    assert (d.encoding, d.height, d.width, d.header.frame_id) == ("32FC1", 6, 8, "opt")
    np.testing.assert_array_equal(decode_image(d.encoding, d.height, d.width, d.step, d.data), r.depth)
    c = rm.colormap_image(r, "opt")
    assert c.encoding == "rgb8" and (c.height, c.width) == (6, 8)
    rgb = decode_image(c.encoding, c.height, c.width, c.step, c.data)
    assert rgb[0].astype(int).sum() > rgb[-1].astype(int).sum()  # near (top row) is brighter
    e = rm.explainability_image(r, "opt")
    assert e.encoding == "mono8" and bytes(e.data)[0] == 128
    assert rm.stamp_to_sec(e.header.stamp) == pytest.approx(12.4)  # the mask's own frame
    with pytest.raises(ValueError, match="no explainability"):
        rm.explainability_image(_result(), "opt")


def test_camera_info_round_trips_through_camera_model():
    cam = CameraModel.from_intrinsics(5.0, 6.0, 3.5, 2.5, 8, 6)
    info = rm.camera_info(cam, rm.stamp_from_sec(1.0), "opt")
    assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
    assert list(info.p) == [5.0, 0.0, 3.5, 0.0, 0.0, 6.0, 2.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    back = CameraModel.from_camera_info(info)
    assert (back.width, back.height) == (8, 6)
    np.testing.assert_array_equal(back.K, cam.K)


def test_point_cloud_layout():
    depth = np.full((4, 4), 2.0, np.float32)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    pts = cloud_points(depth, rgb, CameraModel.from_intrinsics(2.0, 2.0, 1.5, 1.5, 4, 4).K, 2)
    msg = rm.point_cloud(pts, rm.stamp_from_sec(1.0), "opt")
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
    assert msg.width == 4 and msg.row_step == 64 and len(msg.data) == 64
    arr = np.frombuffer(bytes(msg.data), dtype=pts.dtype)
    assert np.all(arr["z"] == 2.0) and np.all(arr["rgb"] == 0xFF0000)
    with pytest.raises(ValueError, match="16-byte structured array"):
        rm.point_cloud(np.zeros(3, np.float32), msg.header.stamp, "opt")


def test_transform_stamped_is_the_pose_of_child_in_parent():
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(0.1, -0.2, 0.3)
    T[:3, 3] = [1.0, 2.0, 3.0]
    tf = rm.transform_stamped(T, rm.stamp_from_sec(2.0), "base_link", "cam")
    assert (tf.header.frame_id, tf.child_frame_id) == ("base_link", "cam")
    tr, q = tf.transform.translation, tf.transform.rotation
    assert [tr.x, tr.y, tr.z] == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(quat_to_matrix([q.x, q.y, q.z, q.w]), T[:3, :3], atol=1e-12)
    with pytest.raises(ValueError, match="must be 4x4"):
        rm.transform_stamped(np.eye(3), tf.header.stamp, "a", "b")


def test_diagnostics_level():
    from diagnostic_msgs.msg import DiagnosticStatus

    stamp = rm.stamp_from_sec(1.0)
    assert rm.diagnostics("n", "cpu", {"processed": 0}, {}, stamp).status[0].level == DiagnosticStatus.WARN
    ok = rm.diagnostics("n", "cpu", {"processed": 3, "rejected": 0}, {"scale": 1.5}, stamp).status[0]
    assert ok.level == DiagnosticStatus.OK and [(v.key, v.value) for v in ok.values] == [("scale", "1.5")]
    bad = rm.diagnostics("n", "cpu", {"processed": 3, "rejected": 1}, {}, stamp).status[0]
    assert bad.level == DiagnosticStatus.WARN and "rejected" in bad.message


def test_diagnostics_warnings_make_it_warn():
    from diagnostic_msgs.msg import DiagnosticStatus

    st = rm.diagnostics("n", "cpu", {"processed": 3}, {}, rm.stamp_from_sec(1.0),
                        ["no intrinsics (no points)", "scale not calibrated"]).status[0]
    assert st.level == DiagnosticStatus.WARN and st.message == "no intrinsics (no points); scale not calibrated"
    st = rm.diagnostics("n", "cpu", {"processed": 0}, {}, rm.stamp_from_sec(1.0), ["scale not calibrated"]).status[0]
    assert st.message == "no frame processed yet; scale not calibrated"


def test_colormap_of_rep118_markers():
    from sfm_ros.runtime.visualize import colorize_depth

    d = np.array([[1.0, 2.0, 4.0, -np.inf, np.inf, np.nan]], np.float32)
    rgb = colorize_depth(d).astype(int)
    bright = rgb.sum(axis=-1)[0]
    assert bright[3] >= bright[0] > bright[2] >= bright[4]  # -inf: nearest colour, +inf: farthest
    assert bright[5] == 0  # unknown: black
    d32 = rm.depth_image(_result(depth=d), "opt")
    back = decode_image(d32.encoding, d32.height, d32.width, d32.step, d32.data)
    assert back[0, 3] == -np.inf and back[0, 4] == np.inf and np.isnan(back[0, 5])
