"""7-Scenes (Microsoft RGB-D Dataset 7-Scenes) sequence folders: colour frames, depth PNGs and
camera-to-world poses, as ``sfm_eval`` and the benchmarks read them.

Layout: ``frame-NNNNNN.color.jpg|png``, ``frame-NNNNNN.depth.png`` (mm, 65535 = no depth, not
registered to the colour camera), ``frame-NNNNNN.pose.txt`` (4x4 ``T_w_c``); optional
``camera-intrinsics.txt`` (3x3), else :data:`SEVENSCENES_K`. Frames are 30 Hz
(:data:`SEVENSCENES_FPS`) and ordered naturally by name. Errors are
:class:`sfm_ros.data.sources.SourceError` naming the file. ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfm_ros.data.sources import SourceError, natural_key

__all__ = ["SEVENSCENES_FPS", "SEVENSCENES_K", "SevenScenes", "read_sevenscenes"]

SEVENSCENES_FPS = 30.0
SEVENSCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


@dataclass
class SevenScenes:
    """A 7-Scenes sequence folder: colour frames, depth PNGs (mm, 65535 invalid), camera-to-world poses."""

    root: Path
    color: list[Path]
    depth: list[Path]
    pose_files: list[Path]
    K: np.ndarray = field(default_factory=lambda: SEVENSCENES_K.copy())

    def __len__(self) -> int:
        return len(self.color)

    @property
    def stamps(self) -> np.ndarray:
        return np.arange(len(self.color)) / SEVENSCENES_FPS

    def poses(self, indices=None) -> np.ndarray:
        idx = range(len(self)) if indices is None else indices
        out = []
        for i in idx:
            try:
                T = np.loadtxt(self.pose_files[i], dtype=np.float64)
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot read pose {self.pose_files[i]}: {exc}") from None
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise SourceError(f"{self.pose_files[i]}: expected a finite 4x4 matrix, got shape {T.shape}")
            out.append(T)
        return np.asarray(out)


def read_sevenscenes(root: str | Path) -> SevenScenes:
    """Index a 7-Scenes folder (``frame-NNNNNN.color.png|jpg``, ``.depth.png``, ``.pose.txt``)."""
    d = Path(root)
    if not d.is_dir():
        raise SourceError(f"7-Scenes folder {d} does not exist")
    color = sorted(list(d.glob("frame-*.color.jpg")) + list(d.glob("frame-*.color.png")), key=natural_key)
    if not color:
        raise SourceError(f"{d} has no frame-*.color.jpg/png files (not a 7-Scenes sequence?)")
    stems = [c.name.split(".color.")[0] for c in color]
    depth = [d / f"{s}.depth.png" for s in stems]
    poses = [d / f"{s}.pose.txt" for s in stems]
    K = SEVENSCENES_K.copy()
    intr = d / "camera-intrinsics.txt"
    if intr.is_file():
        try:
            K = np.loadtxt(intr, dtype=np.float64).reshape(3, 3)
        except ValueError:
            pass
    return SevenScenes(d, color, depth, poses, K)
