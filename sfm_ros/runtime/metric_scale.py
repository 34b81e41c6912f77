"""Metres per network unit for the node's pipeline, ROS-free: the ``scale`` setting when given,
else the ground plane's scale when ``camera_height`` is set
(:class:`~sfm_ros.runtime.ground_scale.GroundScale`), else 1; and where it came from
(:class:`ScaleSource`, the ``scale_source`` diagnostic)."""
from __future__ import annotations

from enum import StrEnum

import numpy as np

from sfm_ros.data.camera import CameraModel
from sfm_ros.runtime.diagnostics import Log


class ScaleSource(StrEnum):
    """Where the odometry's metres per network unit come from (the ``scale_source`` diagnostic)."""

    NOT_YET = "default"              # no frame processed
    PARAMETER = "scale parameter"
    DEFAULT = "default (1)"          # neither scale nor camera_height set
    CAMERA_HEIGHT = "camera_height"  # the ground plane's
    CAMERA_HEIGHT_NO_INTRINSICS = "camera_height (no intrinsics yet)"  # the last scale kept
    CAMERA_HEIGHT_NO_PLANE = "camera_height (no ground plane yet)"     # 1 until a plane is found


#: the sources of a pipeline whose ``camera_height`` sets the scale (found or not yet)
CAMERA_HEIGHT_SOURCES = frozenset({ScaleSource.CAMERA_HEIGHT, ScaleSource.CAMERA_HEIGHT_NO_INTRINSICS,
                                   ScaleSource.CAMERA_HEIGHT_NO_PLANE})


class MetricScale:
    """The scale of each frame and its source.

    Args:
        T_base_cam: (4, 4) pose of the camera optical frame in ``base_link`` (the ground's normal).
        log: where warnings go (rate-limited per kind).
    """

    def __init__(self, T_base_cam: np.ndarray, log: Log):
        self.T_base_cam = T_base_cam
        self.log = log
        self.ground = None                   # GroundScale while camera_height is set
        self.source = ScaleSource.NOT_YET

    def update(self, manual: float, height: float, depth: np.ndarray, cam: CameraModel | None, last: float,
               measure: bool = True) -> float:
        """Metres per network unit for this frame (``depth`` in network units, ``cam`` at its size
        or None; ``last``: the previous frame's scale): ``manual`` when > 0, else the ground-plane
        scale when ``height`` (the camera's, m) is > 0 (1 until a ground plane is found; ``measure``
        False: not re-measured from this frame), else 1."""
        if manual > 0:
            self.source = ScaleSource.PARAMETER
            return manual
        if height <= 0:
            self.source = ScaleSource.DEFAULT
            return 1.0
        from sfm_ros.runtime.ground_scale import GroundScale

        if self.ground is None or self.ground.camera_height != height:
            self.ground = GroundScale(height, self.T_base_cam)
        if cam is None:
            self.log.warn("scale_intrinsics", "camera_height needs intrinsics to find the ground: the last "
                                              "scale is kept until camera_info arrives")
            self.source = ScaleSource.CAMERA_HEIGHT_NO_INTRINSICS
            return last
        if not measure:  # the last ground scale (or the last scale) is kept
            return last if self.ground.scale is None else self.ground.scale
        s = self.ground.update(depth, cam.K)
        if s is None:
            self.log.warn("scale_ground", "no ground plane found in the lower image yet: scale 1 until one is")
            self.source = ScaleSource.CAMERA_HEIGHT_NO_PLANE
            return 1.0
        self.source = ScaleSource.CAMERA_HEIGHT
        return s

    def ground_down(self) -> tuple | None:
        """``(down, camera_height)`` of the ground for the refiner's metric step length while
        ``camera_height`` sets the scale, else None."""
        g = self.ground  # read once: the worker may replace it
        return (g.down, g.camera_height) if g is not None and self.source in CAMERA_HEIGHT_SOURCES else None
