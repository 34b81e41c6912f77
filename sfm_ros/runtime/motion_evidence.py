"""Whether two frames can show a motion at all, and what the odometry integrates when they cannot.

A camera that repeats its last frame (a frozen driver), a black or saturated image (a lens cap, a
tunnel exit) or noise (a broken link) carries no evidence of motion. The pose network still
predicts one (it has only ever seen moving cameras), and integrating it drives the odometry while
the robot stands still. :func:`frame_evidence` tells such frames apart, cheaply and before any
network runs on the pair:

* ``textureless``: the newest image's contrast (the 2nd to 98th percentile range of its grey
  levels) is below ``MIN_CONTRAST`` grey levels of 255: nothing in it can be tracked;
* ``noise``: neighbouring pixels are unrelated (their correlation along the rows is below
  ``MIN_NEIGHBOUR_CORRELATION``; a camera image, even a dark or blurred one, measures 0.8-1.0): a
  broken link or a sensor that shows no scene;
* ``frozen``: the decoded frame is bit for bit the previous one (a driver repeating its last
  frame; a live camera's sensor noise never gives two equal frames, so a camera that really stands
  still reaches the refiner's ``still`` measurement instead).

The refiner adds what only tracking can tell (:mod:`sfm_ros.runtime.motion`): ``still`` (corners
tracked, none of them moved: zero motion, a measurement) and too few corners tracked at all.

For a frame without evidence the odometry integrates no motion with the covariance of the motion
it cannot see (:class:`HoldNoise`: per axis the recent steps' typical translation and rotation),
so that the pose's covariance grows while the robot might be moving, and a navigation filter
leans on its other sensors. The ground-plane scale is not re-measured from such frames.

Convention: images are (H, W) grey or (H, W, 3) in ``[0, 1]`` floats or ``uint8``; covariances are
``[tx, ty, tz, rx, ry, rz]`` in the camera's optical frame, translation in network units, as
:mod:`sfm_ros.runtime.odometry` takes an increment's.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sfm_ros.core.se3 import matrix_to_axis_angle

__all__ = ["MIN_CONTRAST", "MIN_NEIGHBOUR_CORRELATION", "frame_evidence", "HoldNoise"]

#: Grey levels (of 255): an image whose 2-98 % percentile range is below this shows nothing.
MIN_CONTRAST = 8.0
#: Correlation of horizontally neighbouring grey levels below which an image is noise, not a scene.
MIN_NEIGHBOUR_CORRELATION = 0.3



def _grey255(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3:
        a = a.mean(axis=2) if a.shape[2] in (3, 4) else a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {np.shape(img)}")
    a = a.astype(np.float32)
    return a * 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else a


def frame_evidence(new: np.ndarray, prev: np.ndarray | None, content: np.ndarray | None = None) -> str | None:
    """Why ``new`` cannot show a motion from ``prev`` (``"frozen"``, ``"textureless"`` or
    ``"noise"``; module doc), or None when it can. ``new`` and ``prev`` are the decoded frames
    (``prev`` None: no previous frame, the frame alone is checked); ``content``: ``new`` already
    resized (the node's network input, a tenth of the pixels of a VGA frame) for the contrast and
    noise checks, default ``new`` itself."""
    new = np.asarray(new)
    g = _grey255(new if content is None else content)
    lo, hi = np.percentile(g, [2.0, 98.0])
    if hi - lo < MIN_CONTRAST:
        return "textureless"
    a, b = g[:, :-1].ravel(), g[:, 1:].ravel()
    a, b = a - a.mean(), b - b.mean()
    corr = float(a @ b) / max(float(np.sqrt((a @ a) * (b @ b))), 1e-12)
    if corr < MIN_NEIGHBOUR_CORRELATION:
        return "noise"
    if prev is not None and np.shape(prev) == new.shape and np.array_equal(prev, new):
        return "frozen"
    return None


@dataclass
class HoldNoise:
    """The covariance of a motion the images cannot show: the recent motions' typical size.

    Args:
        window: recent measured increments the typical size is taken over (median).
        min_rot: rotation standard deviation floor (rad) per axis.
        default_length: translation standard deviation (network units) before any motion was seen.
    """

    window: int = 20
    min_rot: float = 0.01
    default_length: float = 1.0
    lengths: deque = field(default_factory=deque)
    angles: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.lengths = deque(maxlen=self.window)
        self.angles = deque(maxlen=self.window)

    def observe(self, T: np.ndarray) -> None:
        """A measured increment (4x4, network units)."""
        T = np.asarray(T, dtype=np.float64)
        self.lengths.append(float(np.linalg.norm(T[:3, 3])))
        self.angles.append(float(np.linalg.norm(matrix_to_axis_angle(T[:3, :3]))))

    def covariance(self) -> np.ndarray:
        """(6, 6): per axis the median recent translation (network units) and rotation (rad)."""
        length = float(np.median(self.lengths)) if self.lengths else self.default_length
        rot = max(self.min_rot, float(np.median(self.angles)) if self.angles else self.min_rot)
        length = max(length, 1e-3)
        return np.diag([length ** 2] * 3 + [rot ** 2] * 3)
