"""sfm_ros.data.image_codec: Image / CompressedImage field decoding and encoding."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from sfm_ros.data.image_codec import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    ImageEncodeError,
    bytes_per_pixel,
    decode_compressed,
    decode_image,
    encode_image,
    to_rgb_uint8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 11, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (7, 11), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (7, 11), dtype=np.uint16)


def test_no_rclpy_import():
    import subprocess
    import sys

    code = ("import sys, sfm_ros.data.image_codec, sfm_ros.data.camera, sfm_ros.data.sources, sfm_ros.data.bags, "
            "sfm_ros.cli.bag; sys.exit(1 if 'rclpy' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("enc,img", [
    ("rgb8", RGB), ("bgr8", RGB), ("mono8", GREY), ("mono16", GREY16),
    ("32FC1", RNG.random((7, 11)).astype(np.float32) * 80),
])
def test_round_trip(enc, img):
    e, h, w, step, data = encode_image(img, enc)
    assert (e, h, w) == (enc, 7, 11)
    assert step == 11 * bytes_per_pixel(enc)
    assert isinstance(data, bytes) and len(data) == step * h
    out = decode_image(e, h, w, step, data)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def test_bgr8_wire_order_and_rgba_bgra():
    _, h, w, step, data = encode_image(RGB, "bgr8")
    wire = np.frombuffer(data, np.uint8).reshape(h, w, 3)
    np.testing.assert_array_equal(wire, RGB[:, :, ::-1])
    rgba = np.dstack([RGB, np.full((7, 11), 9, np.uint8)])
    np.testing.assert_array_equal(decode_image("rgba8", 7, 11, 44, rgba.tobytes()), RGB)
    bgra = np.dstack([RGB[:, :, ::-1], np.full((7, 11), 9, np.uint8)])
    np.testing.assert_array_equal(decode_image("bgra8", 7, 11, 44, bgra.tobytes()), RGB)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: array.array("B", b),
                                  lambda b: np.frombuffer(b, np.uint8), list])
def test_data_container_types(wrap):
    _, h, w, step, data = encode_image(RGB, "rgb8")
    np.testing.assert_array_equal(decode_image("rgb8", h, w, step, wrap(data)), RGB)


@pytest.mark.parametrize("enc,img", [("rgb8", RGB), ("mono8", GREY), ("mono16", GREY16)])
def test_padded_step(enc, img):
    bpp = bytes_per_pixel(enc)
    step = 11 * bpp + 5
    raw = img.astype("<u2").view(np.uint8) if img.dtype == np.uint16 else img
    rows = raw.reshape(7, -1)
    padded = np.zeros((7, step), np.uint8)
    padded[:, : rows.shape[1]] = rows
    padded[:, rows.shape[1]:] = 0xAB
    out = decode_image(enc, 7, 11, step, padded.tobytes() + b"extra")  # trailing bytes ignored
    np.testing.assert_array_equal(out, img)


def test_mono16_big_endian_and_16uc1():
    be = GREY16.astype(">u2").tobytes()
    out = decode_image("mono16", 7, 11, 22, be, is_bigendian=1)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, GREY16)
    np.testing.assert_array_equal(decode_image("16UC1", 7, 11, 22, GREY16.astype("<u2").tobytes()), GREY16)


def test_mono16_to_uint8_rule():
    img = np.array([[0, 257, 65535, 32768]], np.uint16)
    out = decode_image("mono16", 1, 4, 8, img.tobytes(), mono16_to_uint8=True)
    np.testing.assert_array_equal(out, [[0, 1, 255, 128]])
    rgb = to_rgb_uint8(img)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], [[0, 1, 255, 128]])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[4095, 2048]], np.uint16), mono16_max=4095)[..., 1],
                                  [[255, 128]])


def test_to_rgb_uint8_grey_and_colour():
    out = to_rgb_uint8(GREY)
    assert out.shape == (7, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], GREY)
    assert to_rgb_uint8(RGB) is not None and np.array_equal(to_rgb_uint8(RGB), RGB)


def test_encode_conversions():
    _, h, w, step, data = encode_image(RGB, "mono8")
    np.testing.assert_array_equal(decode_image("mono8", h, w, step, data), cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY))
    _, h, w, step, data = encode_image(GREY, "rgb8")
    assert decode_image("rgb8", h, w, step, data).shape == (7, 11, 3)


# ---------------------------------------------------------------------------------- errors
def test_unsupported_encoding_lists_supported():
    with pytest.raises(ImageDecodeError) as ei:
        decode_image("bayer_rggb8", 2, 2, 2, bytes(4))
    msg = str(ei.value)
    assert "Image.encoding='bayer_rggb8'" in msg
    for enc in ("rgb8", "bgr8", "mono8", "mono16"):
        assert enc in msg
    assert set(SUPPORTED_ENCODINGS) >= {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1"}
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("h,w", [(0, 4), (4, 0)])
def test_zero_size(h, w):
    with pytest.raises(ImageDecodeError, match=r"zero size: height=\d+, width=\d+"):
        decode_image("mono8", h, w, max(w, 1), b"")


def test_truncated_data():
    with pytest.raises(ImageDecodeError) as ei:
        decode_image("rgb8", 7, 11, 33, bytes(33 * 7 - 1))
    msg = str(ei.value)
    assert "Image.data is truncated" in msg and "230 bytes" in msg and "33*7 = 231" in msg


def test_step_too_small():
    with pytest.raises(ImageDecodeError) as ei:
        decode_image("rgb8", 7, 11, 30, bytes(33 * 7))
    assert "Image.step=30" in str(ei.value) and "11*3 = 33" in str(ei.value)


def test_bad_data_type():
    with pytest.raises(ImageDecodeError, match="Image.data has type"):
        decode_image("mono8", 1, 1, 1, 3.0)


def test_encode_errors():
    with pytest.raises(ImageEncodeError, match="encodable encodings: rgb8"):
        encode_image(RGB, "yuv422")
    with pytest.raises(ImageEncodeError, match="'mono16' needs a uint16"):
        encode_image(GREY, "mono16")
    with pytest.raises(ImageEncodeError, match="'rgb8' needs a uint8"):
        encode_image(RGB.astype(np.float32), "rgb8")


# ------------------------------------------------------------------------------ compressed
@pytest.mark.parametrize("fmt,ext", [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; jpeg compressed bgr8", ".jpg"),
                                     ("", ".png")])
def test_compressed_colour(fmt, ext):
    smooth = cv2.resize(RGB, (88, 56), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR))
    assert ok
    out = decode_compressed(fmt, buf.tobytes())
    assert out.shape == (56, 88, 3) and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, smooth)
    else:  # lossy: close on average, and the channel order is right (not BGR)
        err = np.abs(out.astype(int) - smooth).mean()
        assert err < 25 and err < np.abs(out.astype(int) - smooth[:, :, ::-1]).mean()


def test_compressed_grey_stays_grey():
    ok, buf = cv2.imencode(".png", GREY)
    out = decode_compressed("mono8; png compressed mono8", np.frombuffer(buf.tobytes(), np.uint8))
    assert out.shape == (7, 11)
    np.testing.assert_array_equal(out, GREY)
    ok, buf = cv2.imencode(".jpg", GREY)
    assert decode_compressed("jpeg", array.array("B", buf.tobytes())).ndim == 2


def test_compressed_errors():
    with pytest.raises(ImageDecodeError, match="CompressedImage.data is empty"):
        decode_compressed("jpeg", b"")
    with pytest.raises(ImageDecodeError, match=r"CompressedImage.data \(9 bytes\) could not be decoded"):
        decode_compressed("jpeg", b"not a jpg")
    with pytest.raises(ImageDecodeError, match="compressedDepth.*not supported.*jpeg"):
        decode_compressed("16UC1; compressedDepth", b"\x00" * 20)
    with pytest.raises(ImageDecodeError, match="format='tiff' is not supported; supported formats: jpeg"):
        decode_compressed("tiff", b"\x00" * 20)


def test_rclpy_message_fields():
    """The live node passes rclpy message fields (data is array.array there)."""
    msgs = pytest.importorskip("sensor_msgs.msg")
    m = msgs.Image()
    m.encoding, m.height, m.width, m.step, m.data = encode_image(RGB, "bgr8")
    np.testing.assert_array_equal(decode_image(m.encoding, m.height, m.width, m.step, m.data, m.is_bigendian), RGB)
    c = msgs.CompressedImage()
    c.format = "png"
    c.data = cv2.imencode(".png", GREY)[1].tobytes()
    np.testing.assert_array_equal(decode_compressed(c.format, c.data), GREY)


def test_to_rgb_float_value_rule():
    """uint8 / 255, uint16 / 65535, float clipped to [0, 1]; grey replicated, alpha dropped."""
    from sfm_ros.data.image_codec import to_rgb_float

    g = np.array([[0, 255]], np.uint8)
    out = to_rgb_float(g)
    assert out.shape == (1, 2, 3) and out.dtype == np.float32 and np.allclose(out[0, 1], 1.0)
    assert np.allclose(to_rgb_float(np.full((1, 1, 3), 65535, np.uint16)), 1.0)
    assert np.allclose(to_rgb_float(np.array([[[2.0, -1.0, 0.5, 9.0]]])), [[[1.0, 0.0, 0.5]]])
    with pytest.raises(ValueError, match="image must be"):
        to_rgb_float(np.zeros((2, 2, 2), np.uint8))
