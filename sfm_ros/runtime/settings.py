"""The node pipeline's run-time settings (:class:`Settings`): the node's dynamic parameters and
the checks of a change; :data:`SETTINGS` their names. ROS-free."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Settings:
    """The run-time settings of the pipeline; the names are the node's parameters. Assign a field
    to change it (the worker reads each one once a frame)."""

    scale: float = 0.0                 # metres per network unit; 0: from camera_height, else 1
    camera_height: float = 0.0         # > 0: the scale from the ground plane
    ground_tilt: bool = True           # with camera_height: the tilt to the ground from the travel
    min_depth: float = 0.1
    max_depth: float = 100.0
    max_gap: float = 1.0
    refine_pose: str = "epipolar"
    rotation_window: bool = True       # with an epipolar refine_pose: each rotation fused over 2, 4, 8 steps
    window_hurry: bool = True          # no baselines for a frame while a newer one waits (FramePipeline.behind)
    pose_flip: bool = True             # average the pose network's motion with the mirrored window's
    publish_points: bool = True
    points_stride: int = 4
    publish_explainability: bool = False
    intrinsics: tuple = (0.0, 0.0, 0.0, 0.0)   # fallback fx, fy, cx, cy of the input image
    adapt: bool = False                # online adaptation on (FramePipeline.adaptation must be set)

    def check(self, **changes: Any) -> None:
        """Raise ValueError (one line) if these settings with ``changes`` applied are invalid."""
        from sfm_ros.runtime.motion import REFINE_MODES

        new = {f.name: changes.get(f.name, getattr(self, f.name)) for f in fields(self)}
        if new["min_depth"] >= new["max_depth"]:
            raise ValueError(f"min_depth {new['min_depth']} must be < max_depth {new['max_depth']}")
        if new["refine_pose"] not in REFINE_MODES:
            raise ValueError(f"refine_pose must be one of {', '.join(REFINE_MODES)}, got {new['refine_pose']!r}")
        given = new["intrinsics"]
        try:
            k = [] if isinstance(given, (str, bytes)) else [float(v) for v in given]
        except (TypeError, ValueError):
            k = []
        unset = len(k) == 4 and k[0] == 0 and k[1] == 0  # as the pipeline reads it: no focal length
        if len(k) != 4 or not all(math.isfinite(v) for v in k) or not (unset or (k[0] > 0 and k[1] > 0)):
            shown = list(given) if isinstance(given, (tuple, list)) else given
            raise ValueError(f"intrinsics must be 4 numbers fx, fy, cx, cy with fx, fy > 0 (fx = fy = 0: unset), "
                             f"got {shown!r}")


SETTINGS = tuple(f.name for f in fields(Settings))
