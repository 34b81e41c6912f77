"""Rectification of distorted cameras (no ROS imports): :class:`Rectifier` undistorts images and
pixel coordinates of a :class:`sfm_ros.data.camera.CameraModel` with OpenCV (``plumb_bob`` /
``rational_polynomial`` via ``cv2.initUndistortRectifyMap``, ``equidistant`` via
``cv2.fisheye.initUndistortRectifyMap``) and gives the new, distortion-free camera model.
"""
from __future__ import annotations

import cv2
import numpy as np

from sfm_ros.data.camera import CameraError, CameraModel

__all__ = ["Rectifier", "SUPPORTED_DISTORTION_MODELS"]

#: Distortion models :class:`Rectifier` can undo ("fisheye" is accepted as equidistant).
SUPPORTED_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
_PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
_FISHEYE_ALIASES = ("equidistant", "fisheye", "kannala_brandt")


def _model_kind(camera: CameraModel) -> str:
    m = camera.distortion_model.strip().lower()
    if m in _PINHOLE_MODELS or (m == "" and not camera.is_distorted):
        return "pinhole"
    if m in _FISHEYE_ALIASES:
        return "fisheye"
    raise CameraError(
        f"distortion model {camera.distortion_model!r} is not supported; supported models: "
        f"{', '.join(SUPPORTED_DISTORTION_MODELS)}"
    )


class Rectifier:
    """Undistort images of ``camera`` with precomputed OpenCV maps.

    ``new_K``: the output intrinsics; by default OpenCV chooses them
    (``getOptimalNewCameraMatrix`` with ``alpha`` for pinhole models: 0 keeps only valid pixels,
    1 keeps all source pixels; ``estimateNewCameraMatrixForUndistortRectify`` with ``balance`` for
    equidistant). ``new_size``: output (width, height), default the input size. An undistorted
    camera passes images through unchanged. :attr:`camera_model` is the distortion-free result.
    """

    def __init__(self, camera: CameraModel, *, alpha: float = 0.0, balance: float = 0.0,
                 new_K: np.ndarray | None = None, new_size: tuple[int, int] | None = None) -> None:
        if camera.width <= 0 or camera.height <= 0:
            raise CameraError(f"the camera needs a size to rectify, got {camera.width}x{camera.height}")
        self.camera = camera
        self.kind = _model_kind(camera)
        size = (camera.width, camera.height)
        out_size = tuple(int(x) for x in (new_size or size))
        K, D = camera.K, camera.D
        self.identity = not camera.is_distorted and new_K is None and out_size == size
        if self.kind == "fisheye" and camera.is_distorted:
            if D.size != 4:
                raise CameraError(f"equidistant distortion needs 4 coefficients (k1..k4), got {D.size}")
            if new_K is None:
                new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                    K, D.reshape(4, 1), size, np.eye(3), balance=balance, new_size=out_size)
            self._map1, self._map2 = cv2.fisheye.initUndistortRectifyMap(
                K, D.reshape(4, 1), np.eye(3), np.asarray(new_K, np.float64), out_size, cv2.CV_16SC2)
        else:
            if camera.is_distorted and D.size not in (4, 5, 8, 12, 14):
                raise CameraError(
                    f"{camera.distortion_model!r} distortion needs 4, 5, 8, 12 or 14 coefficients, "
                    f"got {D.size}")
            Dp = D if camera.is_distorted else np.zeros(5)
            if new_K is None:
                if camera.is_distorted:
                    new_K, _ = cv2.getOptimalNewCameraMatrix(K, Dp, size, alpha, out_size)
                else:
                    new_K = K.copy()
            self._map1, self._map2 = cv2.initUndistortRectifyMap(
                K, Dp, None, np.asarray(new_K, np.float64), out_size, cv2.CV_16SC2)
        self.new_K = np.asarray(new_K, dtype=np.float64).reshape(3, 3)
        self.out_size = out_size

    @property
    def camera_model(self) -> CameraModel:
        """The rectified camera (new K, no distortion)."""
        return CameraModel(self.out_size[0], self.out_size[1], self.new_K, "plumb_bob", np.zeros(5))

    def rectify(self, img: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Undistort one image (its size must be the camera's)."""
        h, w = img.shape[:2]
        if (w, h) != (self.camera.width, self.camera.height):
            raise CameraError(
                f"image is {w}x{h} but the camera is calibrated for "
                f"{self.camera.width}x{self.camera.height}")
        if self.identity:
            return img
        return cv2.remap(img, self._map1, self._map2, interpolation, borderMode=cv2.BORDER_CONSTANT)

    __call__ = rectify

    def rectify_points(self, pts: np.ndarray) -> np.ndarray:
        """Distorted pixel coordinates ``(N, 2)`` -> rectified pixel coordinates (in new_K)."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 1, 2)
        if not self.camera.is_distorted:
            Dp = np.zeros(5)
            out = cv2.undistortPoints(pts, self.camera.K, Dp, P=self.new_K)
        elif self.kind == "fisheye":
            out = cv2.fisheye.undistortPoints(pts, self.camera.K, self.camera.D.reshape(4, 1),
                                              R=np.eye(3), P=self.new_K)
        else:
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
            out = _undistort_points(pts, self.camera.K, self.camera.D, self.new_K, crit)
        return out.reshape(-1, 2)


def _undistort_points(pts: np.ndarray, K: np.ndarray, D: np.ndarray, P: np.ndarray,
                      criteria: tuple) -> np.ndarray:
    """Iterative undistortion with explicit termination criteria (OpenCV 4's
    ``undistortPointsIter`` is ``undistortPoints(..., criteria=)`` in OpenCV 5)."""
    if hasattr(cv2, "undistortPointsIter"):
        return cv2.undistortPointsIter(pts, K, D, None, P, criteria)
    return cv2.undistortPoints(pts, K, D, R=None, P=P, criteria=criteria)
