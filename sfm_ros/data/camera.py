"""Camera intrinsics and distortion parameters, KITTI calibration (no ROS imports).

:class:`CameraModel` holds what a ``sensor_msgs/CameraInfo`` says about the pinhole camera
(size, ``K``, distortion model and coefficients ``D``) and reads it from a CameraInfo message
(ROS 2 ``k``/``d`` or ROS 1 ``K``/``D`` fields, or a dict), a camera_calibration /
camera_info_manager YAML file, a KITTI ``calib.txt`` or plain numbers. Undistorting images of a
distorted camera: :class:`sfm_ros.data.rectify.Rectifier`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from sfm_ros.core.yaml_io import read_yaml

__all__ = ["CameraError", "CameraModel", "backproject_grid", "read_kitti_calib_rows", "kitti_lidar_calib",
           "resize_intrinsics", "resize_pixels"]

#: Usable focal lengths, as multiples of the image's larger side (CameraModel.check_intrinsics).
FOCAL_RANGE = (0.01, 1000.0)


class CameraError(ValueError):
    """Bad or unsupported calibration (names the file / field and what was expected)."""


def resize_intrinsics(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics (..., 3, 3) of an image resized from ``from_hw = (H, W)`` to ``to_hw = (H', W')``.

    Pixel-centre convention (README "Conventions"): resizing by ``s`` maps ``u -> (u + 0.5) s - 0.5``,
    so ``fx, skew *= sx``, ``fy *= sy``, ``c' = (c + 0.5) s - 0.5`` with ``sx = W'/W``, ``sy = H'/H``.
    The numpy home of the rule; :func:`sfm_ros.core.geometry.scale_intrinsics` is its torch twin.
    """
    sx, sy = _resize_factors(from_hw, to_hw)
    K = np.array(K, dtype=np.float64, copy=True)
    if K.ndim < 2 or K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got shape {K.shape}")
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def resize_pixels(uv: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates (..., 2) ``(u, v)`` of an image resized from ``from_hw = (H, W)`` to
    ``to_hw``: ``u -> (u + 0.5) W'/W - 0.5`` (pixel centres, as :func:`resize_intrinsics`), float64."""
    sx, sy = _resize_factors(from_hw, to_hw)
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim < 1 or uv.shape[-1] != 2:
        raise ValueError(f"pixel coordinates must be (..., 2), got shape {uv.shape}")
    return (uv + 0.5) * np.array([sx, sy]) - 0.5


def _resize_factors(from_hw: tuple[int, int], to_hw: tuple[int, int]) -> tuple[float, float]:
    """``(W'/W, H'/H)`` of a resize from ``from_hw = (H, W)`` to ``to_hw``; sizes must be positive."""
    (h0, w0), (h1, w1) = from_hw, to_hw
    if min(h0, w0, h1, w1) <= 0:
        raise ValueError(f"image sizes (H, W) must be positive, got {from_hw} -> {to_hw}")
    return w1 / w0, h1 / h0


def _get(msg: Any, *names: str, default: Any = None) -> Any:
    """First present field among ``names`` of an object or a mapping."""
    for n in names:
        if isinstance(msg, dict):
            if n in msg:
                return msg[n]
        elif hasattr(msg, n):
            return getattr(msg, n)
    return default


@dataclass
class CameraModel:
    """A pinhole camera: image size, 3x3 ``K``, distortion model name and coefficients ``D``."""

    width: int
    height: int
    K: np.ndarray
    distortion_model: str = "plumb_bob"
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.size != 9:
            raise CameraError(f"K must have 9 elements (3x3), got {K.size}")
        self.K = K.reshape(3, 3).copy()
        self.D = np.asarray(self.D if self.D is not None else [], dtype=np.float64).reshape(-1).copy()
        self.width, self.height = int(self.width), int(self.height)
        self.distortion_model = str(self.distortion_model or "")
        if self.width < 0 or self.height < 0:
            raise CameraError(f"camera size must be >= 0, got {self.width}x{self.height}")
        if not np.all(np.isfinite(self.K)):
            raise CameraError(f"K has non-finite values: {self.K.tolist()}")

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def from_intrinsics(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                        distortion_model: str = "plumb_bob", D: Any = None) -> CameraModel:
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width, height, K, distortion_model, np.zeros(0) if D is None else D)

    @classmethod
    def from_camera_info(cls, msg: Any) -> CameraModel:
        """From a CameraInfo message (rclpy, rosbags ROS 2 ``k``/``d`` or ROS 1 ``K``/``D``) or dict."""
        k = _get(msg, "k", "K")
        if k is None:
            raise CameraError("CameraInfo has no 'k' (ROS 2) or 'K' (ROS 1) field")
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise CameraError(f"CameraInfo.k must have 9 elements, got {k.size}")
        if not np.any(k):
            raise CameraError("CameraInfo.k is all zeros (the camera is not calibrated)")
        d = _get(msg, "d", "D", default=[])
        return cls(
            width=int(_get(msg, "width", default=0)),
            height=int(_get(msg, "height", default=0)),
            K=k.reshape(3, 3),
            distortion_model=str(_get(msg, "distortion_model", default="") or ""),
            D=np.asarray(d if d is not None else [], dtype=np.float64),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> CameraModel:
        """From a camera_calibration / camera_info_manager YAML file."""
        p = Path(path)
        if not p.is_file():
            raise CameraError(f"calibration file {p} does not exist")
        doc = read_yaml(p, f"calibration file {p}", CameraError)
        if not isinstance(doc, dict):
            raise CameraError(f"calibration file {p}: expected a mapping at the top level")

        def matrix(key: str, n: int | None) -> np.ndarray:
            node = doc.get(key)
            if node is None:
                raise CameraError(f"calibration file {p} has no '{key}'")
            data = node.get("data") if isinstance(node, dict) else node
            try:
                arr = np.asarray(data, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise CameraError(f"calibration file {p}: '{key}.data' is not a list of numbers") from None
            if n is not None and arr.size != n:
                raise CameraError(f"calibration file {p}: '{key}.data' has {arr.size} numbers, expected {n}")
            return arr

        for key in ("image_width", "image_height"):
            if key not in doc:
                raise CameraError(f"calibration file {p} has no '{key}'")
        K = matrix("camera_matrix", 9)
        D = matrix("distortion_coefficients", None) if "distortion_coefficients" in doc else np.zeros(0)
        return cls(int(doc["image_width"]), int(doc["image_height"]), K.reshape(3, 3),
                   str(doc.get("distortion_model", "plumb_bob") or "plumb_bob"), D)

    @classmethod
    def from_kitti_calib(cls, path: str | Path, camera: str = "P0", width: int | None = None,
                         height: int | None = None) -> CameraModel:
        """From a KITTI odometry ``calib.txt`` (``P0:`` .. ``P3:`` lines, 12 numbers each).

        KITTI images are already rectified (no distortion). The size is taken from ``width`` /
        ``height`` or else from the first image of the sibling ``image_<N>`` folder.
        """
        p = Path(path)
        if not p.is_file():
            raise CameraError(f"KITTI calibration file {p} does not exist")
        rows = read_kitti_calib_rows(p)
        if camera not in rows:
            raise CameraError(f"{p} has no '{camera}:' line (found: {', '.join(sorted(rows)) or 'none'})")
        P = rows[camera]
        if P.size != 12:
            raise CameraError(f"{p}: '{camera}' has {P.size} numbers, expected 12 (a 3x4 matrix)")
        K = P.reshape(3, 4)[:, :3]
        if width is None or height is None:
            img_dir = p.parent / f"image_{camera[1:]}"
            first = sorted(x for x in img_dir.glob("*.png")) if img_dir.is_dir() else []
            if not first:
                raise CameraError(f"{p}: give width/height (no images in {img_dir} to take the size from)")
            im = cv2.imread(str(first[0]), cv2.IMREAD_UNCHANGED)
            if im is None:
                raise CameraError(f"cannot read {first[0]} to take the image size from")
            height, width = im.shape[:2]
        return cls(int(width), int(height), K, "plumb_bob", np.zeros(5))

    # ----------------------------------------------------------------------------- properties
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def check_intrinsics(self, width: int, height: int, what: str = "camera") -> None:
        """Raise :class:`CameraError` unless ``K`` is usable for ``width`` x ``height`` images:
        focal lengths :data:`FOCAL_RANGE` times the image's larger side (a field of view from
        about 178 degrees down to 0.06) and the principal point at most half an image outside
        it. Catches typos (``--fx 1e300``) before they overflow a training run."""
        side = max(width, height)
        lo, hi = FOCAL_RANGE[0] * side, FOCAL_RANGE[1] * side
        problems = []
        if not (lo <= self.fx <= hi and lo <= self.fy <= hi):
            problems.append(f"focal lengths {lo:g}..{hi:g} px ({FOCAL_RANGE[0]:g} to {FOCAL_RANGE[1]:g} "
                            f"times the {side}-pixel image side)")
        if not (-0.5 * width <= self.cx <= 1.5 * width and -0.5 * height <= self.cy <= 1.5 * height):
            problems.append(f"the principal point within half an image of the {width}x{height} image "
                            f"(cx {-0.5 * width:g}..{1.5 * width:g}, cy {-0.5 * height:g}..{1.5 * height:g})")
        if problems:
            raise CameraError(f"{what}: unusable intrinsics fx={self.fx:g} fy={self.fy:g} cx={self.cx:g} "
                              f"cy={self.cy:g}; expected {' and '.join(problems)}")

    @property
    def is_distorted(self) -> bool:
        """True when there are non-zero distortion coefficients."""
        return bool(self.D.size and np.any(self.D != 0.0))

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for the image resized to ``width`` x ``height`` (pixel-centre convention
        ``u' = (u + 0.5) * s - 0.5``); only meaningful for an undistorted camera."""
        if self.width <= 0 or self.height <= 0:
            raise CameraError("cannot scale a camera of unknown size")
        K = resize_intrinsics(self.K, (self.height, self.width), (height, width))
        return CameraModel(width, height, K, self.distortion_model, self.D.copy())

    def camera_info_fields(self) -> dict[str, Any]:
        """The ROS 2 CameraInfo fields (``height, width, distortion_model, d, k, r, p``)."""
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        model = self.distortion_model or "plumb_bob"
        d = self.D.astype(np.float64).copy()
        if model == "plumb_bob" and d.size == 0:
            d = np.zeros(5)
        return {
            "height": self.height,
            "width": self.width,
            "distortion_model": model,
            "d": d,
            "k": self.K.reshape(-1).astype(np.float64).copy(),
            "r": np.eye(3).reshape(-1),
            "p": P.reshape(-1),
        }

    def to_yaml_dict(self, camera_name: str = "camera") -> dict[str, Any]:
        """A camera_calibration-style dict (what :meth:`from_yaml` reads)."""
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        return {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": camera_name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": self.K.reshape(-1).tolist()},
            "distortion_model": self.distortion_model or "plumb_bob",
            "distortion_coefficients": {"rows": 1, "cols": int(self.D.size), "data": self.D.tolist()},
            "rectification_matrix": {"rows": 3, "cols": 3, "data": np.eye(3).reshape(-1).tolist()},
            "projection_matrix": {"rows": 3, "cols": 4, "data": P.reshape(-1).tolist()},
        }

    def save_yaml(self, path: str | Path, camera_name: str = "camera") -> None:
        Path(path).write_text(yaml.safe_dump(self.to_yaml_dict(camera_name), sort_keys=False))


def backproject_grid(depth: np.ndarray, K: np.ndarray, stride: int = 1, top: int = 0):
    """Every ``stride``-th pixel from row ``top`` down of a z-depth map back-projected with the
    pinhole ``K`` (pixel centres at integer coordinates): ``(x, y, z, v, u)``, arrays of the
    sampled grid's shape, ``x, y, z`` float64 in the depth's units (non-finite where the depth is),
    ``v, u`` the pixel rows and columns. The numpy twin of :func:`sfm_ros.core.geometry.backproject`."""
    h, w = depth.shape
    v, u = np.mgrid[top:h:stride, 0:w:stride]
    z = depth[v, u].astype(np.float64)
    return (u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, v, u


# ------------------------------------------------------------------------------ KITTI calibration
def read_kitti_calib_rows(path: str | Path) -> dict[str, np.ndarray]:
    """The one reader of KITTI calibration text (odometry ``calib.txt``, raw ``calib_cam_to_cam.txt``
    / ``calib_velo_to_cam.txt``): every ``KEY: numbers`` line as a flat float64 array; lines
    without ``:`` or with non-numeric values (``calib_time: ...``) are skipped."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CameraError(f"cannot read KITTI calibration {p}: {exc.strerror or exc}") from None
    rows: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            rows[key.strip()] = np.array([float(x) for x in rest.split()])
        except ValueError:
            continue
    return rows


def _offset_from_P(P: np.ndarray) -> np.ndarray:
    """``P = K [I | b]`` → the 4x4 ``[I | b]`` (rectified reference camera → this camera)."""
    T = np.eye(4)
    T[:3, 3] = np.linalg.solve(P[:, :3], P[:, 3])
    return T


def kitti_lidar_calib(calib: str | Path, camera: str = "P0") -> tuple[np.ndarray, np.ndarray]:
    """``(T_cam_lidar 4x4, K 3x3)`` of KITTI camera ``camera`` (``P0`` .. ``P3``) from

    * an odometry ``calib.txt`` (``Tr``, ``P0..P3``): ``P_velo2im = P @ Tr``;
    * a KITTI object benchmark calibration ``calib/NNNNNN.txt`` (``P0..P3``, ``R0_rect``,
      ``Tr_velo_to_cam``; one file per frame): ``P @ R0_rect @ Tr_velo_to_cam``;
    * a raw date folder (``calib_velo_to_cam.txt`` R, T; ``calib_cam_to_cam.txt`` R_rect_00,
      P_rect_0N): ``P_rect @ R_rect @ [R | T]``,

    as the devkits. Raises :class:`CameraError` naming the file and the missing rows."""
    p = Path(calib)
    if p.is_dir():
        c2c, v2c = p / "calib_cam_to_cam.txt", p / "calib_velo_to_cam.txt"
        if not (c2c.is_file() and v2c.is_file()):
            raise CameraError(f"KITTI calibration folder {p} lacks calib_cam_to_cam.txt / calib_velo_to_cam.txt")
        cc, vc = read_kitti_calib_rows(c2c), read_kitti_calib_rows(v2c)
        key = f"P_rect_0{camera[1]}"
        if key not in cc or "R_rect_00" not in cc or "R" not in vc or "T" not in vc:
            raise CameraError(f"KITTI calibration {p}: need {key}, R_rect_00 (cam_to_cam) and R, T (velo_to_cam)")
        P = cc[key].reshape(3, 4)
        R_rect = np.eye(4)
        R_rect[:3, :3] = cc["R_rect_00"].reshape(3, 3)
        velo = np.eye(4)
        velo[:3, :3] = vc["R"].reshape(3, 3)
        velo[:3, 3] = vc["T"].reshape(3)
        return _offset_from_P(P) @ R_rect @ velo, P[:, :3].copy()
    if not p.is_file():
        raise CameraError(f"KITTI calibration {p} does not exist")
    rows = read_kitti_calib_rows(p)
    if camera not in rows or rows[camera].size != 12:
        raise CameraError(f"KITTI calibration {p} has no 12-number '{camera}:' line")
    if "Tr_velo_to_cam" in rows:  # the object benchmark's per-frame file
        if rows["Tr_velo_to_cam"].size != 12 or rows.get("R0_rect", np.zeros(0)).size != 9:
            raise CameraError(f"KITTI object calibration {p}: need a 12-number 'Tr_velo_to_cam:' and a "
                              f"9-number 'R0_rect:' line")
        P = rows[camera].reshape(3, 4)
        R0 = np.eye(4)
        R0[:3, :3] = rows["R0_rect"].reshape(3, 3)
        Tr = np.eye(4)
        Tr[:3, :4] = rows["Tr_velo_to_cam"].reshape(3, 4)
        return _offset_from_P(P) @ R0 @ Tr, P[:, :3].copy()
    if "Tr" not in rows or rows["Tr"].size != 12:
        raise CameraError(f"KITTI calibration {p} has no 'Tr:' line (Velodyne to camera 0; or "
                          f"'Tr_velo_to_cam:' and 'R0_rect:' in an object benchmark file)")
    P = rows[camera].reshape(3, 4)
    Tr = np.eye(4)
    Tr[:3, :4] = rows["Tr"].reshape(3, 4)
    return _offset_from_P(P) @ Tr, P[:, :3].copy()
