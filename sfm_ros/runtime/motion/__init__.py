"""Run-time refinement of the pose network's frame-to-frame motion against the images.

The pose network is the first estimate; a solver on the two images refines it, and the network's
estimate stays the fallback whenever the solver cannot be trusted. One :class:`Refiner` serves the
node (:mod:`sfm_ros.ros.node`, parameter ``refine_pose``) and the evaluation (``sfm_eval pose
--refine``), through the same :meth:`Refiner.refine` call.

Modes
-----
``none``
    The network's motion, unchanged.
``epipolar`` (DF-VO, Zhan et al. 2020)
    The two-view solution of tracked corners (:mod:`.two_view`): rotation and direction of
    translation (or the network's, where the corners cannot tell them apart: ``prefer_network``).
    Its length is on the learned depth's scale (with ``ground``: in metres), filtered over time
    (:mod:`.length_filter`): measured by the depth comparison (:mod:`.depth_length`) or with
    ``ground`` by the ground's homography (:mod:`.ground_length`, its normal turned by the
    camera's tilt to the ground measured from the direction of travel over chords of 8 frame steps:
    :mod:`.ground_tilt`, :mod:`.travel_chord`), predicted by the three-view
    ratio (``scale_tracking``, :mod:`.three_view`) or from the network's length on the scale of
    recent measurements; before any measurement held, the network's length. The rotation is also
    measured against the frames 2, 4 and 8 steps back and the measurements that agree averaged
    (``rotation_window``, :mod:`.rotation_window`): less rotation drift, ~21 ms a frame (KITTI, one core).
    :meth:`Refiner.reset_scale` forgets the filter (the node calls it when the weights change).
    Falls back to the network's motion when too few corners are tracked or agree with one
    essential matrix; takes only the rotation (the network's translation, on the recent
    measurements' scale) when the motion shows too little parallax; gives no motion (``still``)
    when the corners did not move.
``photometric`` (direct alignment: DSO, Engel et al. 2018; D3VO, Yang et al. 2020)
    :mod:`.photometric` from the network's motion with the reference frame's predicted depth; the
    step's length is in the depth's units. Falls back to the starting motion (with the reason).
    Only as good as the learned depth: with the exact depth of the rendered streets it is more
    accurate than ``epipolar``, with the shipped model's depth on KITTI it is not (BENCHMARKS.md).
``epipolar+photometric``
    ``epipolar`` first, then the photometric alignment from its outcome; a failed photometric
    alignment keeps the epipolar outcome, with the photometric reason appended.

Every outcome (:class:`Refinement`, :mod:`.result`) carries its covariance (:mod:`.covariance`).

Layout, each module importing only those above it: :mod:`.result` (the outcome and its enums),
:mod:`.spread`, :mod:`.rotation_angle`, :mod:`.parallax`, :mod:`.triangulation`,
:mod:`.rotation_only`, :mod:`.sampson` (stateless two-view functions), :mod:`.covariance`,
:mod:`.two_view`, :mod:`.depth_length`, :mod:`.three_view`, :mod:`.ground_length`,
:mod:`.ground_tilt`, :mod:`.length_filter`, :mod:`.photometric`, :mod:`.view`,
:mod:`.travel_chord`, :mod:`.rotation_window`, :mod:`.corner_budget`, :mod:`.refiner`, :mod:`.sequence`.

Convention: as :mod:`sfm_ros.core.geometry`: optical camera frame (x right, y down, z forward),
pixel centres at integer coordinates, ``T_a_b`` maps points of frame ``b`` into frame ``a``; the
motion refined is ``T_ref_new``, in the network's depth units. ROS-free and torch-free: numpy and
OpenCV only.
"""
from sfm_ros.runtime.motion.corner_budget import CornerBudget
from sfm_ros.runtime.motion.covariance import motion_covariance
from sfm_ros.runtime.motion.refiner import EPIPOLAR_MODES, REFINE_MODES, Refiner
from sfm_ros.runtime.motion.result import UNTRACKED, EpipolarCovariance, Refinement, ScaleFrom, Used
from sfm_ros.runtime.motion.sequence import refine_sequence
from sfm_ros.runtime.motion.view import RefineView

__all__ = ["REFINE_MODES", "EPIPOLAR_MODES", "RefineView", "Refinement", "Refiner", "CornerBudget", "refine_sequence",
           "motion_covariance", "UNTRACKED", "Used", "ScaleFrom", "EpipolarCovariance"]
