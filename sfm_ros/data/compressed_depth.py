"""``compressedDepth`` payloads of a depth image: what ``compressed_depth_image_transport`` publishes and reads.

ROS-free (numpy + OpenCV): :func:`encode_compressed_depth` gives the ``sensor_msgs/CompressedImage``
``format`` and ``data`` for a ``32FC1`` depth image (metres), :func:`decode_compressed_depth` turns
such a pair back into an array, so a subscriber with ``image_transport`` (``republish``, RViz, the
``compressedDepth`` transport) reads our topic and we read theirs.

Source read
-----------
github.com/ros-perception/image_transport_plugins, ``rolling`` branch (the ROS 2 layout that
``jazzy`` and ``kilted`` share), package ``compressed_depth_image_transport``: ``src/codec.cpp``
(``encodeCompressedDepthImage``, ``decodeCompressedDepthImage``),
``include/compressed_depth_image_transport/compression_common.hpp`` (``ConfigHeader``),
``include/compressed_depth_image_transport/codec.hpp`` and ``src/compressed_depth_publisher.cpp``
(the parameters and their defaults). Nothing here is copied from it; this is the format as it is
described below.

Format
------
``format`` is the raw image's encoding, then ``"; compressedDepth "`` and the compression, so a
``32FC1`` image with PNG compression gives ``"32FC1; compressedDepth png"``. (Older publishers wrote
``"32FC1; compressedDepth"`` or the encoding alone; the plugin's decoder reads both as PNG, and so
does :func:`decode_compressed_depth`. ``"... compressedDepth rvl"`` is the plugin's other
compression, not read here.)

``data`` is a 12-byte ``ConfigHeader`` followed by a PNG file. The header is the C struct
``{int32 format; float32 depthParam[2]}`` copied byte for byte, so in the machine's byte order:
little endian on every platform ROS 2 ships for (``struct`` format ``"<iff"``). ``format`` is
``INV_DEPTH`` = 0; ``depthParam`` holds the quantisation constants ``A`` and ``B`` of a ``32FC1``
image (a ``16UC1`` image does not use them: the rolling encoder leaves them uninitialised).

A ``32FC1`` image is stored as a 16-bit PNG of quantised *inverse* depth. With ``z0`` the
``depth_quantization`` parameter and ``d_max`` the ``depth_max`` parameter, all in float32::

    A = z0 * (z0 + 1)          B = 1 - A / d_max
    v = uint16(A / d + B)      if d < d_max, else v = 0        (C++ float -> uint16: truncation)
    d = A / (v - B)            if v != 0,   else d = NaN       (decoding)

so ``v = 0`` is the only invalid value: NaN, ``+inf`` and every depth ``>= d_max`` become 0. ``v``
runs from 1 (``d = d_max``) to 65535 (``d_near = A / (65535 - B)``, the nearest depth the format
holds: 0.154 m for ``z0 = 100``). Truncation rounds the inverse depth down, so a decoded depth ``d'``
is never below the true ``d`` and less than one step above it::

    d <= d' < A / (A / d - 1),  i.e.  0 <= d' - d < d**2 / (A - d)

(0.64 m at 80 m, 1 m at 100 m for ``z0 = 100``: about ``d / z0`` relative.)

A ``16UC1`` image (millimetres) is the PNG of the image itself, values above ``1000 * d_max`` set
to 0; decoding gives the ``uint16`` image back.

The plugin's parameters (``<topic>.compressedDepth.*``) default to ``depth_max`` 10 m (range
1-100), ``depth_quantization`` 100 (range 1-150), ``png_level`` 3 (0-9) and ``format`` ``png``.
:func:`encode_compressed_depth` keeps ``depth_quantization`` 100 and ``png_level`` 3 but defaults
``depth_max`` to 100 m (the top of the plugin's range, and :class:`sfm_ros.runtime.pipeline`'s
``max_depth``), since with 10 m every depth of an outdoor scene beyond 10 m would arrive as NaN.
The decoder needs no parameters: ``A`` and ``B`` travel in the header.

REP 118 markers
---------------
A ``32FC1`` depth image marks ``-inf`` (closer than the sensor's minimum), ``+inf`` (farther than
its maximum) and NaN (unknown). The format keeps only one marker, ``v = 0``, so after a round trip:

* NaN -> NaN, as the plugin does.
* ``+inf`` -> NaN, as the plugin does (``+inf < d_max`` is false); so is any depth ``>= d_max``.
* ``-inf`` -> the format's near limit, a finite depth of about ``A / 65536`` (0.1541 m at the
  defaults). The plugin evaluates ``A / -inf + B = B``, a negative number, and stores it in a
  ``uint16``: undefined in C++; an amd64 build (g++ -O0 and -O2, checked) truncates to int32 and keeps
  the low 16 bits, ``v = int(B) mod 65536`` (65436 at the defaults). The encoder here writes the
  same ``v``, so "too close" arrives as "at the nearest representable depth", not as unknown.
  (On other CPUs the plugin's value may differ; not checked.)
* A finite depth in ``(0, d_near)`` (too near for 16 bits) -> ``d_near`` (``v = 65535``). Here the
  plugin's conversion is undefined too and on amd64 wraps around to a wrong, larger depth (0.15 m
  -> 5.6 m at the defaults); the encoder clamps instead.
* 0 and negative depths -> NaN (``v = 0``): not depths. The plugin gives 0 for ``+-0`` on amd64
  too; negative depths wrap there.
"""
from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DEFAULT_DEPTH_MAX",
    "DEFAULT_QUANTIZATION",
    "DEFAULT_PNG_LEVEL",
    "PLUGIN_DEFAULT_DEPTH_MAX",
    "HEADER",
    "INV_DEPTH",
    "quantization_constants",
    "near_limit",
    "encode_compressed_depth",
    "decode_compressed_depth",
]

#: the plugin's own ``depth_max`` default (metres); :data:`DEFAULT_DEPTH_MAX` is ours
PLUGIN_DEFAULT_DEPTH_MAX = 10.0
#: ``depth_max`` of :func:`encode_compressed_depth` (metres): depths at or beyond it decode as NaN
DEFAULT_DEPTH_MAX = 100.0
#: ``depth_quantization`` (the plugin's default): the depth at which one step is about 1 m
DEFAULT_QUANTIZATION = 100.0
#: ``png_level`` (the plugin's default, OpenCV's too)
DEFAULT_PNG_LEVEL = 3
#: ``ConfigHeader``: int32 compression format, float32 depthParam[2], little endian
HEADER = struct.Struct("<iff")
#: ``ConfigHeader.format`` of every compressedDepth payload
INV_DEPTH = 0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ENCODINGS = ("32FC1", "16UC1")


def quantization_constants(depth_max: float = DEFAULT_DEPTH_MAX,
                           quantization: float = DEFAULT_QUANTIZATION) -> tuple[np.float32, np.float32]:
    """``(A, B)`` of the format, computed in float32 as the plugin does."""
    if not (np.isfinite(depth_max) and depth_max > 0):
        raise ValueError(f"depth_max must be a positive number of metres, got {depth_max!r}")
    if not (np.isfinite(quantization) and quantization > 0):
        raise ValueError(f"quantization must be positive, got {quantization!r}")
    z0, one = np.float32(quantization), np.float32(1.0)
    a = np.float32(z0 * (z0 + one))
    b = np.float32(one - a / np.float32(depth_max))
    return a, b


def near_limit(depth_max: float = DEFAULT_DEPTH_MAX, quantization: float = DEFAULT_QUANTIZATION) -> float:
    """The nearest depth the format holds (``v = 65535``), metres."""
    a, b = quantization_constants(depth_max, quantization)
    return float(a / (np.float32(65535.0) - b))


def _neg_inf_value(b: np.float32) -> int:
    """What an amd64 build of the plugin stores for ``-inf`` (``B`` to int32 by truncation, low 16
    bits; out of int32 range gives int32's minimum, whose low 16 bits are 0)."""
    if not -2.0**31 <= float(b) < 2.0**31:
        return 0
    return int(np.trunc(b)) & 0xFFFF


def encode_compressed_depth(depth: np.ndarray, depth_max: float = DEFAULT_DEPTH_MAX,
                            quantization: float = DEFAULT_QUANTIZATION,
                            png_level: int = DEFAULT_PNG_LEVEL) -> tuple[str, bytes]:
    """A ``(H, W)`` ``32FC1`` depth image (metres, REP 118 markers allowed) → the CompressedImage
    ``(format, data)`` that ``compressed_depth_image_transport`` publishes for it with PNG
    compression (module docstring: the format, and what ``-inf``/``+inf``/NaN become)."""
    d = np.asarray(depth)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0 or d.dtype.kind != "f":
        raise ValueError(f"depth must be a non-empty (H, W) float image, got {d.dtype} {d.shape}")
    if not 0 <= int(png_level) <= 9:
        raise ValueError(f"png_level must be 0-9, got {png_level!r}")
    d = d.astype(np.float32, copy=False)
    a, b = quantization_constants(depth_max, quantization)
    inv = np.zeros(d.shape, dtype=np.uint16)
    valid = (d > 0) & (d < np.float32(depth_max))  # NaN compares false
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        v = np.trunc(a / d[valid] + b)  # float32 as in C++; trunc: the float -> uint16 conversion
    inv[valid] = np.clip(v, 0, 65535).astype(np.uint16)  # > 65535: too near, clamped to d_near
    inv[d == -np.inf] = _neg_inf_value(b)
    ok, png = cv2.imencode(".png", inv, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:  # pragma: no cover - OpenCV writes any uint16 image
        raise ValueError("cv2.imencode failed on the quantised inverse depth image")
    return "32FC1; compressedDepth png", HEADER.pack(INV_DEPTH, a, b) + png.tobytes()


def _parse_format(fmt: str) -> str:
    """The raw encoding of a compressedDepth ``format`` string (PNG compression only)."""
    if not isinstance(fmt, str):
        raise ValueError(f"format must be a str like '32FC1; compressedDepth png', got {type(fmt).__name__}")
    encoding, sep, tail = fmt.partition(";")
    if sep and "compressedDepth png" not in tail and not (
            "compressedDepth" in tail and "compressedDepth " not in tail):
        raise ValueError(f"format {fmt!r}: expected '<encoding>; compressedDepth png' (or the older "
                         f"'<encoding>; compressedDepth'); rvl and other compressions are not supported")
    encoding = encoding.strip()
    if encoding not in _ENCODINGS:
        raise ValueError(f"format {fmt!r}: expected encoding 32FC1 or 16UC1 before ';', got {encoding!r}")
    return encoding


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).tobytes()
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "tobytes"):
        return bytes(data)
    return bytes(bytearray(data))  # a list of ints


def decode_compressed_depth(format: str, data: Any) -> np.ndarray:  # noqa: A002 (the ROS field name)
    """CompressedImage ``format`` and ``data`` of a compressedDepth PNG payload → the image:
    ``(H, W)`` float32 metres for ``32FC1`` (NaN where invalid), ``(H, W)`` uint16 for ``16UC1``.
    ``data`` may be bytes, ``array.array`` (rclpy), a uint8 numpy array or a list of ints.
    Raises ValueError naming what was expected when the format or the data do not fit."""
    encoding = _parse_format(format)
    raw = _as_bytes(data)
    if len(raw) <= HEADER.size or raw[HEADER.size:HEADER.size + 8] != _PNG_SIGNATURE:
        raise ValueError(f"compressedDepth data: expected a {HEADER.size}-byte ConfigHeader followed by a PNG, "
                         f"got {len(raw)} bytes starting {raw[:HEADER.size + 8].hex()}")
    _, a, b = HEADER.unpack_from(raw, 0)
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8, offset=HEADER.size), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"compressedDepth data: expected a readable PNG after the header, "
                         f"{len(raw) - HEADER.size} bytes do not decode (truncated?)")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(f"compressedDepth data: expected a one-channel 16-bit PNG, got {img.dtype} {img.shape}")
    if encoding == "16UC1":
        return img
    a, b = np.float32(a), np.float32(b)
    out = np.full(img.shape, np.nan, dtype=np.float32)
    nz = img != 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out[nz] = a / (img[nz].astype(np.float32) - b)
    return out
