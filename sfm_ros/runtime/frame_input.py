"""The input side of the node's pipeline, ROS-free: what a received frame must pass before the
networks see it, and which intrinsics it is read with.

:class:`FrameInputs` holds the zero-stamp policy (:meth:`~FrameInputs.zero_stamp`), the latest
camera_info (:meth:`~FrameInputs.camera_info`), the image checks (:meth:`~FrameInputs.decode`:
shape, size, compressed decoding) and the choice of intrinsics for an image size
(:meth:`~FrameInputs.intrinsics`: the camera_info with the image's stamp, else the latest one,
else the ``intrinsics`` setting). A bad input is
counted (``rejected`` / ``skipped``) and warned, rate-limited per kind of problem, never per input
string (:class:`~sfm_ros.runtime.diagnostics.Log`).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from sfm_ros.data.camera import CameraModel
from sfm_ros.runtime.diagnostics import Counters, Log
from sfm_ros.runtime.frames import InputFrame

ZERO_STAMP_RUN = 2  # zero header stamps in a row from which the driver is taken not to stamp
MIN_IMAGE_SIDE = 16  # pixels: a smaller image shows nothing to estimate depth or motion from
MAX_IMAGE_PIXELS = 7680 * 4320  # 8K: a larger frame is a driver or a configuration error
INFO_KEPT = 16  # camera_infos kept to pair with images by stamp
INFO_STAMP_TOLERANCE_S = 1e-3  # a camera_info within this of an image's stamp is that image's


def _stamp_seconds(msg: Any) -> float | None:
    """The header stamp of a CameraInfo message in seconds; None without one (a dict, a zero stamp)."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    if stamp is None or not (stamp.sec or stamp.nanosec):
        return None
    return stamp.sec + stamp.nanosec * 1e-9


class FrameInputs:
    """Checks of received frames and the intrinsics they are read with.

    Args:
        settings: the pipeline's settings (its ``intrinsics`` field is read once a frame).
        log: where warnings go; ``counts``: the frame counters (``rejected``, ``skipped`` are added).
    """

    def __init__(self, settings: Any, log: Log, counts: Counters):
        self.settings = settings
        self.log = log
        self.counts = counts
        self.camera: CameraModel | None = None   # from camera_info
        self.camera_source: str | None = None    # "camera_info" | "intrinsics" | "unusable" | None
        self._zero_stamps = 0
        self._infos: deque = deque(maxlen=INFO_KEPT)  # (stamp s or None, CameraModel), newest last

    def reject(self, kind: str, msg: str) -> None:
        """Count a bad input frame and warn, rate-limited per ``kind`` (a fixed word, or the
        codec's :attr:`~sfm_ros.data.image_codec.ImageCodecError.kind`: never the input's text)."""
        self.counts.add("rejected")
        self.log.warn("reject:" + kind, msg)

    def zero_stamp(self, is_zero: bool) -> str:
        """The zero-stamp policy for a received frame: ``"keep"`` its stamp, ``"skip"`` the frame
        (counted, warned: one odd frame must not look like a time jump) or, from the
        :data:`ZERO_STAMP_RUN`-th zero stamp in a row (a driver that never stamps), stamp it with the
        ``"reception"`` time (warned)."""
        if not is_zero:
            self._zero_stamps = 0
            return "keep"
        self._zero_stamps += 1
        if self._zero_stamps < ZERO_STAMP_RUN:
            self.counts.add("skipped")
            self.log.warn("zero_stamp_skip", "input header stamp is zero: frame skipped (if zero stamps "
                                             "go on, the reception time is used)")
            return "skip"
        self.log.warn("zero_stamp", "input header stamp is zero: using the reception time instead "
                                    "(outputs are stamped with it)")
        return "reception"

    def camera_info(self, msg: Any) -> None:
        """Use the intrinsics of a CameraInfo message (or dict, :meth:`CameraModel.from_camera_info`)
        from now on; a bad one is ignored, warned."""
        try:
            cam = CameraModel.from_camera_info(msg)
            if cam.fx <= 0 or cam.fy <= 0:
                raise ValueError(f"fx={cam.fx}, fy={cam.fy} must be > 0")
        except ValueError as exc:
            self.log.warn("camera_info", f"ignoring a bad camera_info: {exc}")
            return
        first = self.camera is None
        self.camera = cam
        self._infos.append((_stamp_seconds(msg), cam))
        if first:
            self.log.info(
                f"using camera_info intrinsics fx={cam.fx:.1f} fy={cam.fy:.1f} cx={cam.cx:.1f} "
                f"cy={cam.cy:.1f} ({cam.width}x{cam.height})"
                + (" [distortion is ignored: feed rectified images (image_rect)]" if cam.is_distorted else ""))

    def decode(self, frame: InputFrame) -> np.ndarray | None:
        """The frame's image (compressed ones decoded here), or None (rejected, warned)."""
        if frame.image is not None:
            img = frame.image
        else:
            from sfm_ros.data.image_codec import ImageDecodeError, decode_compressed

            fmt, data = frame.compressed
            try:
                img = decode_compressed(fmt, data)
            except (ImageDecodeError, ValueError) as exc:
                self.reject(f"compressed:{getattr(exc, 'kind', 'decode')}", f"dropping a bad compressed image: {exc}")
                return None
            if img.ndim == 2 and img.dtype not in (np.uint8, np.uint16):
                self.reject("compressed:dtype", f"dropping a compressed image of type {img.dtype}")
                return None
        img = np.asarray(img)
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))) or 0 in img.shape:
            self.reject("image:shape", f"dropping an image of shape {img.shape}: expected (H, W), (H, W, 3) "
                                       "or (H, W, 4) with H, W > 0")
            return None
        h, w = img.shape[:2]
        if min(h, w) < MIN_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
            self.reject("image:size", f"dropping a {w}x{h} image: expected at least {MIN_IMAGE_SIDE} pixels a "
                                      f"side and at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels (8K); resize "
                                      "it upstream")
            return None
        return img

    def camera_for(self, t: float | None) -> CameraModel | None:
        """The camera_info stamped ``t`` (within :data:`INFO_STAMP_TOLERANCE_S`, among the last
        :data:`INFO_KEPT`), else the latest: a camera whose intrinsics change (zoom, a new
        calibration) pairs each image with its own."""
        if t is not None:
            for ti, cam in reversed(list(self._infos)):  # a copy: camera_info appends from another thread
                if ti is not None and abs(ti - t) <= INFO_STAMP_TOLERANCE_S:
                    return cam
        return self.camera

    def intrinsics(self, image_hw: tuple[int, int], t: float | None = None) -> CameraModel | None:
        """CameraModel at the *input* image size for the image stamped ``t`` (:meth:`camera_for`),
        or None (logs which source is used)."""
        h, w = image_hw
        cam, source = None, None
        if self.camera is not None:
            cam, source = self.camera_for(t), "camera_info"
            if (cam.width, cam.height) != (w, h):
                if cam.width > 0 and cam.height > 0:
                    self.log.warn("info_size", f"camera_info is for {cam.width}x{cam.height} but images are "
                                               f"{w}x{h}: intrinsics scaled to the image size")
                    cam = cam.scaled(w, h)
                else:
                    cam = CameraModel(w, h, cam.K)
        else:
            fx, fy, cx, cy = (list(self.settings.intrinsics) + [0.0] * 4)[:4]
            if fx > 0 and fy > 0:
                cam, source = CameraModel.from_intrinsics(fx, fy, cx, cy, w, h), "intrinsics"
                if abs(cam.cx - 0.5 * (w - 1)) > 0.25 * w or abs(cam.cy - 0.5 * (h - 1)) > 0.25 * h:
                    self.log.warn("intrinsics_size", f"the 'intrinsics' parameter's principal point ({cam.cx:g}, "
                                                     f"{cam.cy:g}) is far from the centre of the {w}x{h} images: "
                                                     "is it for another resolution?")
        if cam is not None:
            from sfm_ros.data.camera import CameraError

            try:
                cam.check_intrinsics(w, h, f"{source} for {w}x{h} images")
            except CameraError as exc:
                self.log.warn("intrinsics_unusable", f"{exc}: ignored (no points, no refinement)")
                cam, source = None, "unusable"
        if source != self.camera_source:
            if source == "intrinsics":
                self.log.info("no camera_info yet: using the 'intrinsics' parameter "
                              f"fx={cam.fx:g} fy={cam.fy:g} cx={cam.cx:g} cy={cam.cy:g} until one arrives")
            elif source == "camera_info" and self.camera_source == "intrinsics":
                self.log.info("camera_info arrived: now using its intrinsics")
            self.camera_source = source
        if cam is None and source is None:
            self.log.warn("no_intrinsics", "no camera_info received and the 'intrinsics' parameter is unset: "
                                           "publishing depth and odometry only (no points, no "
                                           "depth/camera_info) until camera_info arrives")
        return cam
