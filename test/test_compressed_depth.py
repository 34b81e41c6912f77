"""sfm_ros.data.compressed_depth: the compressed_depth_image_transport payload (no ROS needed but
for the last test)."""
import struct

import cv2
import numpy as np
import pytest

from sfm_ros.data.compressed_depth import (
    DEFAULT_DEPTH_MAX,
    DEFAULT_QUANTIZATION,
    decode_compressed_depth,
    encode_compressed_depth,
    near_limit,
)


def independent_decode(fmt: str, data: bytes) -> np.ndarray:
    """The format as documented by the plugin, written out again: 12-byte little-endian
    {int32 format, float32 A, float32 B}, then a 16-bit PNG of v; d = A / (v - B), v == 0 -> NaN."""
    assert fmt == "32FC1; compressedDepth png"
    kind, a, b = struct.unpack("<iff", data[:12])
    assert kind == 0  # INV_DEPTH
    v = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
    assert v is not None and v.dtype == np.uint16 and v.ndim == 2
    with np.errstate(divide="ignore"):
        d = np.float32(a) / (v.astype(np.float32) - np.float32(b))
    return np.where(v == 0, np.float32(np.nan), d).astype(np.float32)


def raw_v(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)


def test_ramp_round_trip_within_the_quantisation_bound():
    depth = np.linspace(0.5, 80.0, 64 * 100, dtype=np.float32).reshape(64, 100)
    fmt, data = encode_compressed_depth(depth)
    assert fmt == "32FC1; compressedDepth png"
    out = decode_compressed_depth(fmt, data)
    assert out.shape == depth.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # v = trunc(A/d + B) rounds the inverse depth down, so d <= d' < A / (A/d - 1):
    # 0 <= d' - d < d^2 / (A - d)  (float32 arithmetic: allow 1e-5 relative either side)
    a = DEFAULT_QUANTIZATION * (DEFAULT_QUANTIZATION + 1)
    d = depth.astype(np.float64)
    err = out.astype(np.float64) - d
    bound = d ** 2 / (a - d)
    assert (err >= -1e-5 * d).all()
    assert (err <= bound + 1e-5 * d).all(), float(np.max(err - bound))
    assert np.max(err / bound) > 0.9  # the bound is tight, so the test is not vacuous
    assert float(np.max(err)) < 0.65  # 0.64 m at 80 m for quantization 100


def test_independent_decoder_reads_encode_output():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 95.0, size=(40, 52)).astype(np.float32)
    depth[0, :5] = [np.nan, np.inf, -np.inf, 150.0, 0.0]
    fmt, data = encode_compressed_depth(depth)
    ours, theirs = decode_compressed_depth(fmt, data), independent_decode(fmt, data)
    np.testing.assert_array_equal(ours, theirs)  # NaN == NaN for assert_array_equal
    # and the stored v is the formula's, from float64 (one step of slack for float32 rounding)
    a, b = 10100.0, 1.0 - 10100.0 / DEFAULT_DEPTH_MAX
    v = raw_v(data).astype(np.int64)
    expect = np.floor(a / depth[1:].astype(np.float64) + b)
    assert np.abs(v[1:] - expect).max() <= 1


def test_header_bytes_by_hand():
    _, data = encode_compressed_depth(np.full((2, 3), 5.0, np.float32), depth_max=100.0, quantization=100.0)
    # A = 100 * 101 = 10100 = 0x461DD000 (float32), B = 1 - 10100/100 = -100 = 0xC2C80000,
    # format INV_DEPTH = 0; each little endian
    assert data[:12] == bytes([0x00, 0x00, 0x00, 0x00,
                               0x00, 0xD0, 0x1D, 0x46,
                               0x00, 0x00, 0xC8, 0xC2])
    assert data[12:20] == b"\x89PNG\r\n\x1a\n"
    # the plugin's defaults: depth_max 10 -> B = 1 - 1010 = -1009 = 0xC47C4000
    _, data = encode_compressed_depth(np.full((2, 3), 5.0, np.float32), depth_max=10.0)
    assert data[8:12] == bytes([0x00, 0x40, 0x7C, 0xC4])
    # 5 m: v = trunc(10100/5 - 1009) = 1011 everywhere
    assert (raw_v(data) == 1011).all()


def test_invalid_values_round_trip():
    depth = np.array([[np.nan, np.inf, -np.inf, 100.0, 250.0, 0.05, 0.0, -3.0, 99.99, 10.0]], np.float32)
    fmt, data = encode_compressed_depth(depth)
    v = raw_v(data)[0]
    out = decode_compressed_depth(fmt, data)[0]
    # NaN, +inf, >= depth_max: v = 0 -> NaN, as the plugin
    assert v[0] == v[1] == v[3] == v[4] == 0 and np.isnan(out[[0, 1, 3, 4]]).all()
    # -inf: v = int(B) mod 65536 = 65436 (what g++ builds of the plugin write on amd64) -> A / 65536
    assert v[2] == 65436 and out[2] == pytest.approx(10100 / 65536, rel=1e-6)
    # finite but nearer than the format's near limit: clamped to v = 65535
    assert v[5] == 65535 and out[5] == pytest.approx(near_limit(), rel=1e-6)
    assert near_limit() == pytest.approx(10100 / 65635, rel=1e-6)
    # zero and negative: not depths -> NaN
    assert v[6] == v[7] == 0 and np.isnan(out[[6, 7]]).all()
    # just below depth_max stays finite (v = 1 decodes to depth_max); 10 m is ordinary
    assert v[8] >= 1 and 99.99 <= out[8] <= 100.0 + 1e-3
    assert 10.0 <= out[9] < 10.0 + 10.0 ** 2 / (10100 - 10.0) + 1e-4


@pytest.mark.parametrize("fmt, match", [
    ("32FC1; compressedDepth rvl", "compressedDepth png"),
    ("rgb8; jpeg compressed bgr8", "compressedDepth png"),
    ("32FC1; png", "compressedDepth png"),
    ("rgb8; compressedDepth png", "32FC1 or 16UC1"),
    ("", "32FC1 or 16UC1"),
])
def test_bad_format_raises(fmt, match):
    _, data = encode_compressed_depth(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match=match) as e:
        decode_compressed_depth(fmt, data)
    assert "\n" not in str(e.value)


def test_truncated_or_foreign_data_raises():
    fmt, data = encode_compressed_depth(np.linspace(1, 50, 400, dtype=np.float32).reshape(20, 20))
    for bad, match in [(data[:12], "12-byte ConfigHeader followed by a PNG"),
                       (data[:5], "12-byte ConfigHeader followed by a PNG"),
                       (data[12:], "12-byte ConfigHeader followed by a PNG"),  # header missing
                       (data[:40], "readable PNG"),
                       (data[:len(data) // 2], "readable PNG")]:
        with pytest.raises(ValueError, match=match) as e:
            decode_compressed_depth(fmt, bad)
        assert "\n" not in str(e.value)
    ok, png8 = cv2.imencode(".png", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="one-channel 16-bit PNG"):
        decode_compressed_depth(fmt, bytes(12) + png8.tobytes())


def test_older_format_strings_and_data_types():
    depth = np.full((3, 4), 7.5, np.float32)
    fmt, data = encode_compressed_depth(depth)
    ref = decode_compressed_depth(fmt, data)
    import array
    for f in ("32FC1; compressedDepth", "32FC1"):
        np.testing.assert_array_equal(decode_compressed_depth(f, data), ref)
    for d in (bytearray(data), array.array("B", data), np.frombuffer(data, np.uint8), list(data)):
        np.testing.assert_array_equal(decode_compressed_depth(fmt, d), ref)


def test_16uc1_payload_decodes_to_the_image():
    mm = np.arange(0, 30000, 250, dtype=np.uint16).reshape(8, 15)
    ok, png = cv2.imencode(".png", mm)
    out = decode_compressed_depth("16UC1; compressedDepth png", struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes())
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, mm)


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="H, W"):
        encode_compressed_depth(np.ones((2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="depth_max"):
        encode_compressed_depth(np.ones((2, 2), np.float32), depth_max=0.0)
    with pytest.raises(ValueError, match="quantization"):
        encode_compressed_depth(np.ones((2, 2), np.float32), quantization=-1.0)


def test_compressed_depth_msg():
    pytest.importorskip("sensor_msgs.msg")
    from sfm_ros.ros.messages import compressed_depth_msg, stamp_from_sec

    depth = np.linspace(1.0, 60.0, 48, dtype=np.float32).reshape(6, 8)
    m = compressed_depth_msg(depth, stamp_from_sec(12.5), "camera_optical")
    assert m.format == "32FC1; compressedDepth png"
    assert m.header.frame_id == "camera_optical" and m.header.stamp.sec == 12 and m.header.stamp.nanosec == 500_000_000
    np.testing.assert_array_equal(decode_compressed_depth(m.format, m.data),
                                  decode_compressed_depth(*encode_compressed_depth(depth)))
