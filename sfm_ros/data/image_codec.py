"""Decode and encode the *fields* of ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage``.

Shared by the bag loader (:mod:`sfm_ros.data.bags`, messages deserialised by ``rosbags``) and the live
ROS 2 node (messages from ``rclpy``), so it takes plain fields, never a message class, and does not
import ``rclpy``.

Conventions
-----------
* Colour images are returned (and taken by :func:`encode_image`) as **RGB** ``uint8`` ``(H, W, 3)``
  whatever the wire layout (``bgr8``/``rgba8``/``bgra8`` are reordered, alpha is dropped).
* Grey images are ``(H, W)``: ``uint8`` for ``mono8``/``8UC1``, ``uint16`` for ``mono16``/``16UC1``
  (native byte order; ``is_bigendian`` is honoured), ``float32`` for ``32FC1`` (depth).
* ``data`` may be ``bytes``, ``bytearray``, ``memoryview``, ``array.array`` (rclpy), a ``uint8``
  ``numpy`` array (rosbags) or a list of ints. Rows may be padded (``step > width * bpp``);
  trailing bytes past ``step * height`` are ignored.

mono16 to 8 bit rule (:func:`to_rgb_uint8`, ``decode_image(..., mono16_to_uint8=True)``):
``out = clip(round(v * 255 / mono16_max), 0, 255)`` with ``mono16_max = 65535`` by default (the
full 16-bit range; pass 4095 for a 12-bit sensor). A fixed linear rule, not a per-image stretch, so
the brightness of a sequence does not flicker from frame to frame.
"""
from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ImageCodecError",
    "ImageDecodeError",
    "ImageEncodeError",
    "SUPPORTED_ENCODINGS",
    "ENCODABLE_ENCODINGS",
    "COMPRESSED_FORMATS",
    "bytes_per_pixel",
    "decode_image",
    "decode_compressed",
    "encode_image",
    "to_rgb_uint8",
    "to_float01",
    "to_rgb_float",
]


class ImageCodecError(ValueError):
    """Base class of the codec's errors (a ``ValueError``).

    ``kind`` names the problem with a fixed word of this module (``"encoding"``, ``"size"``, ...),
    never with text from the message being decoded: a key for rate-limited warnings."""

    def __init__(self, message: str, kind: str = "codec"):
        super().__init__(message)
        self.kind = kind


class ImageDecodeError(ImageCodecError):
    """An Image / CompressedImage message cannot be decoded; the message names the field."""


class ImageEncodeError(ImageCodecError):
    """An array cannot be encoded with the requested encoding."""


# encoding -> (channels, numpy dtype of one channel (little-endian), layout of the channels)
_LAYOUT: dict[str, tuple[int, str, str]] = {
    "rgb8": (3, "u1", "rgb"),
    "bgr8": (3, "u1", "bgr"),
    "rgba8": (4, "u1", "rgba"),
    "bgra8": (4, "u1", "bgra"),
    "mono8": (1, "u1", "grey"),
    "8UC1": (1, "u1", "grey"),
    "mono16": (1, "u2", "grey"),
    "16UC1": (1, "u2", "grey"),
    "32FC1": (1, "f4", "grey"),
}

#: Encodings :func:`decode_image` accepts.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)
#: Encodings :func:`encode_image` produces.
ENCODABLE_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8", "mono16", "32FC1")
#: Compressed formats :func:`decode_compressed` accepts (matched as words of the format string).
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "jpg", "png")


def bytes_per_pixel(encoding: str) -> int:
    """Bytes of one pixel for a supported encoding (raises :class:`ImageDecodeError` otherwise)."""
    ch, dt, _ = _layout(encoding)
    return ch * np.dtype(dt).itemsize


def _layout(encoding: str) -> tuple[int, str, str]:
    if not isinstance(encoding, str) or encoding not in _LAYOUT:
        raise ImageDecodeError(
            f"Image.encoding={encoding!r} is not supported; supported encodings: "
            f"{', '.join(SUPPORTED_ENCODINGS)}",
            kind="encoding",
        )
    return _LAYOUT[encoding]


def _as_uint8_buffer(data: Any, field: str = "Image.data") -> np.ndarray:
    """View ``data`` (bytes-like, array.array, ndarray or list of ints) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ImageDecodeError(f"{field} is a sequence that is not bytes (0..255): {exc}",
                                   kind="data") from None
    raise ImageDecodeError(
        f"{field} has type {type(data).__name__}; expected bytes, array.array, a uint8 numpy array "
        "or a list of ints",
        kind="data",
    )


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: int | bool = 0,
    *,
    mono16_to_uint8: bool = False,
    mono16_max: float = 65535.0,
) -> np.ndarray:
    """Decode the fields of a ``sensor_msgs/Image`` into a numpy array (see the module doc).

    Returns RGB ``uint8`` ``(H, W, 3)`` for colour encodings, ``(H, W)`` for grey ones (``uint8``,
    ``uint16`` or ``float32``); with ``mono16_to_uint8`` a 16-bit image is scaled to ``uint8`` by
    the module's stated rule. The result never shares memory with ``data``.

    Raises :class:`ImageDecodeError` for an unsupported encoding, a zero/negative size, a ``step``
    smaller than ``width * bytes_per_pixel`` and ``data`` shorter than ``step * height``.
    """
    ch, dt, order = _layout(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            f"Image has zero size: height={height}, width={width} (both must be > 0)",
            kind="size",
        )
    bpp = ch * np.dtype(dt).itemsize
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            f"Image.step={step} is smaller than width*bytes_per_pixel = {width}*{bpp} = {row_bytes} "
            f"for encoding {encoding!r}",
            kind="step",
        )
    buf = _as_uint8_buffer(data)
    need = step * height
    if buf.size < need:
        raise ImageDecodeError(
            f"Image.data is truncated: {buf.size} bytes, expected step*height = {step}*{height} = "
            f"{need} bytes for a {width}x{height} {encoding!r} image",
            kind="truncated",
        )
    rows = buf[:need].reshape(height, step)[:, :row_bytes]
    if dt == "u1":
        img = np.array(rows, dtype=np.uint8, copy=True).reshape(height, width, ch)
    else:
        endian = ">" if is_bigendian else "<"
        img = np.ascontiguousarray(rows).view(endian + dt).reshape(height, width, ch)
        img = img.astype(np.dtype(dt).newbyteorder("="), copy=True)
    if order == "grey":
        img = img[:, :, 0]
        if mono16_to_uint8 and img.dtype == np.uint16:
            img = _mono16_to_uint8(img, mono16_max)
        return np.ascontiguousarray(img)
    if order == "bgr":
        img = img[:, :, ::-1]
    elif order == "rgba":
        img = img[:, :, :3]
    elif order == "bgra":
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img)


def _mono16_to_uint8(img: np.ndarray, mono16_max: float = 65535.0) -> np.ndarray:
    if mono16_max <= 0:
        raise ValueError(f"mono16_max must be > 0, got {mono16_max}")
    scaled = np.rint(img.astype(np.float32) * (255.0 / float(mono16_max)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def to_rgb_uint8(img: np.ndarray, mono16_max: float = 65535.0) -> np.ndarray:
    """Any decoded image -> RGB ``uint8`` ``(H, W, 3)``.

    Grey ``(H, W)`` or ``(H, W, 1)`` becomes three identical channels; ``uint16`` is first scaled
    to 8 bit by ``round(v * 255 / mono16_max)`` clipped to 0..255 (default ``mono16_max`` 65535);
    ``float`` images are taken as 0..1 and scaled by 255; RGBA drops alpha.
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint16:
        img = _mono16_to_uint8(img, mono16_max)
    elif np.issubdtype(img.dtype, np.floating):
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageCodecError(f"cannot convert an image of dtype {img.dtype} to RGB uint8")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return np.ascontiguousarray(img[:, :, :3])
    raise ImageCodecError(f"cannot convert an image of shape {img.shape} to RGB uint8")


def decode_compressed(format: str, data: Any) -> np.ndarray:  # noqa: A002 (the ROS field name)
    """Decode the fields of a ``sensor_msgs/CompressedImage`` (jpeg or png, via ``cv2.imdecode``).

    ``format`` is the message's field, e.g. ``"jpeg"``, ``"png"`` or image_transport's
    ``"rgb8; jpeg compressed bgr8"``; an empty format lets OpenCV sniff the data. Colour comes back
    RGB ``uint8`` ``(H, W, 3)``; grey stays ``(H, W)`` (16-bit png stays ``uint16``).

    Raises :class:`ImageDecodeError` for an unsupported format (e.g. ``compressedDepth``), empty
    data, or data OpenCV cannot decode.
    """
    fmt = (format or "").strip().lower()
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ImageDecodeError(
            f"CompressedImage.format={format!r} (compressedDepth) is not supported; supported "
            f"formats: {', '.join(COMPRESSED_FORMATS)}",
            kind="format",
        )
    words = set(fmt.replace(";", " ").replace(",", " ").split())
    if fmt and not words & set(COMPRESSED_FORMATS):
        raise ImageDecodeError(
            f"CompressedImage.format={format!r} is not supported; supported formats: "
            f"{', '.join(COMPRESSED_FORMATS)}",
            kind="format",
        )
    buf = _as_uint8_buffer(data, "CompressedImage.data")
    if buf.size == 0:
        raise ImageDecodeError("CompressedImage.data is empty (0 bytes)", kind="empty")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageDecodeError(
            f"CompressedImage.data ({buf.size} bytes) could not be decoded as {format or 'an image'!r}"
            " (corrupt or truncated?)",
            kind="undecodable",
        )
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return np.ascontiguousarray(img[:, :, 0])
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_image(img: np.ndarray, encoding: str) -> tuple[str, int, int, int, bytes]:
    """Encode an array as ``sensor_msgs/Image`` fields ``(encoding, height, width, step, data)``.

    ``is_bigendian`` is always 0 (little-endian data). Rows are not padded
    (``step = width * bytes_per_pixel``). Input conventions:

    * ``rgb8`` / ``bgr8``: RGB ``uint8`` ``(H, W, 3)`` (``bgr8`` reorders on the wire); a grey
      ``uint8`` image is replicated to three channels.
    * ``mono8``: ``uint8`` ``(H, W)`` (or ``(H, W, 1)``); an RGB image is converted to luma
      (OpenCV's RGB2GRAY).
    * ``mono16``: ``uint16`` ``(H, W)``.
    * ``32FC1``: any real ``(H, W)`` array, stored as ``float32`` (depth in metres).
    """
    if encoding not in ENCODABLE_ENCODINGS:
        raise ImageEncodeError(
            f"cannot encode as {encoding!r}; encodable encodings: {', '.join(ENCODABLE_ENCODINGS)}"
        )
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageEncodeError(f"cannot encode an array of shape {a.shape} as an image")
    if encoding in ("rgb8", "bgr8", "mono8"):
        if a.dtype != np.uint8:
            raise ImageEncodeError(f"{encoding!r} needs a uint8 array, got {a.dtype}")
        if encoding == "mono8":
            if a.ndim == 3:
                if a.shape[2] not in (3, 4):
                    raise ImageEncodeError(f"cannot encode shape {a.shape} as 'mono8'")
                a = cv2.cvtColor(np.ascontiguousarray(a[:, :, :3]), cv2.COLOR_RGB2GRAY)
            out = np.ascontiguousarray(a)
        else:
            if a.ndim == 2:
                a = np.repeat(a[:, :, None], 3, axis=2)
            elif a.shape[2] == 4:
                a = a[:, :, :3]
            elif a.shape[2] != 3:
                raise ImageEncodeError(f"cannot encode shape {a.shape} as {encoding!r}")
            out = np.ascontiguousarray(a[:, :, ::-1] if encoding == "bgr8" else a)
    elif encoding == "mono16":
        if a.ndim != 2 or a.dtype != np.uint16:
            raise ImageEncodeError(
                f"'mono16' needs a uint16 (H, W) array, got {a.dtype} of shape {a.shape}"
            )
        out = np.ascontiguousarray(a.astype("<u2", copy=False))
    else:  # 32FC1
        if a.ndim != 2 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ImageEncodeError(
                f"'32FC1' needs a real (H, W) array, got {a.dtype} of shape {a.shape}"
            )
        out = np.ascontiguousarray(a.astype("<f4", copy=False))
    h, w = out.shape[:2]
    step = w * bytes_per_pixel(encoding)
    return encoding, int(h), int(w), int(step), out.tobytes()


def to_float01(image: np.ndarray) -> np.ndarray:
    """The value rule of every image the networks see: uint8 / 255, uint16 / 65535, float clipped
    to [0, 1]; float32 of the same shape."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB uint8/uint16/float image → (H, W, 3) float32 in [0, 1]
    (:func:`to_float01`)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    return to_float01(image[:, :, :3])
