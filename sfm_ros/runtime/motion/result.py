"""What a refinement of one frame-to-frame motion found: :class:`Refinement`, with enums for what
its motion is made of (:class:`Used`) and where its length's scale came from (:class:`ScaleFrom`).

Convention: as :mod:`sfm_ros.core.geometry`: optical camera frame (x right, y down, z forward),
``T_a_b`` maps points of frame ``b`` into frame ``a``. ``Refinement.T`` is ``T_ref_new`` (the new
camera's pose in the reference camera's frame) in the network's depth units.

Both enums are :class:`enum.StrEnum`: a member is its text (``f"{Used.EPIPOLAR}" == "epipolar"``,
equal to and hashed as that string), so diagnostics, counters and JSON read as plain words. This
module imports nothing from the package: every other part of :mod:`sfm_ros.runtime.motion` may
import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["EPIPOLAR_MODES", "Used", "ScaleFrom", "EpipolarCovariance", "Refinement", "WindowFusion", "UNTRACKED",
           "NO_SOLUTION"]

#: the refinement modes that run the epipolar solution (and with ``ground`` the ground's metres and tilt)
EPIPOLAR_MODES = ("epipolar", "epipolar+photometric")


class Used(StrEnum):
    """What a refined motion is made of."""

    NETWORK = "network"          # the pose network's motion (refinement off, or a fallback)
    EPIPOLAR = "epipolar"        # the two-view (essential matrix) rotation and direction
    ROTATION = "rotation"        # the two-view rotation with the network's translation
    PHOTOMETRIC = "photometric"  # the direct alignment's motion
    STILL = "still"              # the corners did not move: no motion


class ScaleFrom(StrEnum):
    """Where a refined translation's length (its scale) came from."""

    NONE = ""                     # no length was set by the refiner
    DEPTH = "depth"               # the depth comparison held on this frame and updated the filter
    GROUND = "ground"             # the ground's homography (metres) held on this frame
    TRACKED = "tracked"           # the previous length times the three-view ratio
    DEPTH_RATIO = "depth ratio"   # the network's length on the depth's scale of recent frames
    GROUND_RATIO = "ground ratio"  # the network's length on the ground's scale of recent frames
    NETWORK = "network"           # the network's own length
    STILL = "still"               # no motion


#: The ``why`` of a two-view solution that failed: the network's motion is kept.
NO_SOLUTION = ("few tracks", "no essential matrix", "few inliers")
#: The ``why`` of a refinement with too few corners tracked at all (:attr:`Refinement.untracked`).
UNTRACKED = ("few tracks",)


@dataclass(frozen=True)
class EpipolarCovariance:
    """The covariance of a two-view solution over the five parameters the two views fix
    (:func:`sfm_ros.runtime.motion.sampson.epipolar_information`): ``cov`` (5, 5) over a rotation
    ``ω`` of ``T_new_ref`` (``R exp(ω)``, rad) and the direction ``β`` of its unit translation along
    the two unit vectors ``across`` (3, 2) (rad); ``R`` (3, 3) the solution's rotation
    (``x_new = R x_ref + t``)."""

    cov: np.ndarray
    across: np.ndarray
    R: np.ndarray


@dataclass
class WindowFusion:
    """What :meth:`sfm_ros.runtime.motion.rotation_window.RotationWindow.push` found for one frame:
    ``R`` the step's rotation to use (``R_ref_new``); ``predictions``: the orientations predicted
    (the step's own and one per baseline that measured a rotation), ``agreeing``: those averaged,
    ``step_kept``: the step's own prediction is among them; ``tracks``: corners carried into this
    frame; ``frames``: frames in the window (this one included); ``ms``: the time it took (set by
    the refiner; NaN otherwise); ``solved``: false where the caller was behind and the window only
    carried its corners (the step's own rotation, no baseline measured).

    How far the predictions fell from the fused rotation (rotation vectors of ``R_fusedᵀ P``, rad,
    in the new camera's frame, right-multiplied as the refinement's rotation errors): ``spread``
    (3, 3) the mean of their outer products per degree of freedom over the recent frames with at
    least two agreeing predictions (the window's ``spread_frames``; each frame's ``agreeing - 1``
    degrees, ``spread_dof`` in all; None before any), ``set_aside`` (3, 3) the sum of the outer
    products of this frame's predictions that were not averaged (zeros when all agreed), and
    ``set_aside_before`` (3, 3) the previous frame's ``set_aside`` over its predictions, in this
    step's axes (zeros when the window starts: the step's rotation is measured from that frame's
    orientation, whose doubt it carries); ``after_own``: the previous frame's orientation was not
    fused from two or more agreeing predictions (the window's first frame, a frame with one
    prediction or none measured, one whose published rotation was another: a still camera's, a
    photometric polish's), so this step's rotation may undo that frame's own error, which the
    window's agreement does not measure.
    :func:`sfm_ros.runtime.motion.covariance.motion_covariance` makes the fused rotation's
    covariance of them."""

    R: np.ndarray
    predictions: int
    agreeing: int
    step_kept: bool
    tracks: int
    frames: int
    ms: float = float("nan")
    solved: bool = True
    spread: np.ndarray | None = None
    spread_dof: int = 0
    set_aside: np.ndarray | None = None
    set_aside_before: np.ndarray | None = None
    after_own: bool = False


@dataclass(kw_only=True)
class Refinement:
    """The outcome of one refinement (keyword construction only).

    ``T``: the motion to use (4x4 ``T_ref_new``); ``used``: what it is made of (:class:`Used`);
    ``reason``: why the network's (or, chained, the epipolar) estimate was (partly) kept, empty
    otherwise; ``tracks``/``inliers``: corners tracked and consistent with the essential matrix;
    ``scale_from``: where the length's scale came from (:class:`ScaleFrom`);
    ``length_rel_sd``: the length filter's standard deviation of the length, relative, at least the
    calibrated floor of its measurements and their recent wander
    (:meth:`sfm_ros.runtime.motion.length_filter.LengthFilter.wander`; NaN when the length is the
    network's); ``step_ratio``: the three-view ratio of this length to the previous one (NaN when
    not measured); ``unit_motion``: the epipolar ``T_new_ref`` with a unit translation;
    ``rotation_change_deg``: the angle between the network's rotation and the refined one; ``why``:
    a short key of ``reason`` (``off``, ``few tracks``, ``no essential matrix``, ``few inliers``,
    ``low parallax``, ``still``; ``photometric: `` + ``no depth``, ``few pixels``, ``few valid
    pixels``, ``residual worse``, ``diverged``, ``singular``, ``degenerate``, ``non-finite``) for
    counting. ``start`` and ``photo_*``: what the photometric alignment started from and measured
    (pixels, pixels inside the new image at the end, robust residual spread at the start and the
    end in grey levels, iterations, the pose information matrix its covariance is made of).
    """

    T: np.ndarray
    used: Used = Used.NETWORK
    reason: str = ""
    tracks: int = 0
    inliers: int = 0
    scale_from: ScaleFrom = ScaleFrom.NONE
    rotation_change_deg: float = 0.0
    why: str = ""
    residual_px: float = float("nan")   # robust spread of the Sampson residuals (or the corners' motion)
    parallax_px: float = float("nan")   # median corner motion once the rotation is removed
    covariance: np.ndarray | None = None  # (6, 6) of ``T`` (:func:`sfm_ros.runtime.motion.covariance.motion_covariance`)
    length_spread: float = float("nan")  # the depth ratios' spread (NaN unless measured on this frame)
    length_rel_sd: float = float("nan")
    step_ratio: float = float("nan")
    unit_motion: np.ndarray | None = None
    ground_length: float = float("nan")  # metres, the ground homography's (with ``ground``)
    still_length: float = float("nan")   # ``still``: the largest step the corners' stillness allows
    ground_reason: str = ""              # why the ground's homography failed
    motion_cov: EpipolarCovariance | None = None  # the two-view solution's covariance
    network_kept: bool = False  # the network's rotation and direction kept (``prefer_network``)
    start: str = ""  # what the photometric alignment started from: a :class:`Used`
    photo_pixels: int = 0  # reference pixels of the photometric alignment (finest level)
    photo_valid: int = 0   # of which inside the new image at the end
    photo_residual: float = float("nan")        # robust residual spread at the end (grey levels)
    photo_residual_start: float = float("nan")  # the same at the start
    photo_iterations: int = 0
    photo_info: np.ndarray | None = None  # (6, 6) pose information JᵀWJ of the final residuals
    window: WindowFusion | None = None  # the rotation window's fusion (``rotation_window``), or None
    direction_refit: bool = False  # the direction re-solved with the window's rotation (``window_direction``)

    @property
    def refined(self) -> bool:
        return self.used != Used.NETWORK

    @property
    def untracked(self) -> bool:
        """Too few corners could be tracked at all (a covered lens, a scene without texture, a
        blur): the network's motion, kept here, is then a guess; the node and
        :func:`sfm_ros.runtime.motion.sequence.refine_sequence` integrate no motion instead
        (:mod:`sfm_ros.runtime.motion_evidence`). Too few corners fitting the essential matrix is
        not this: small or repetitive images give it while the camera moves, and the network's
        motion is kept."""
        return self.why in UNTRACKED
