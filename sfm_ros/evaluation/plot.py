"""``sfm_eval pose --plot OUT``: the predicted and the ground-truth trajectories seen from above.

The view is top-down in the ground truth's frame: x-z for a camera's optical frame (x right, y down,
z forward: KITTI's ``poses.txt``, ``sfm_bag from-kitti``'s ``/ground_truth/odom``, 7-Scenes; y,
the first camera's down, is left out) and x-y for a ``base_link`` ground truth (``--gt-frame
base``, REP-103: z up). The prediction is drawn after the Sim(3) alignment the ATE uses and,
when its scale is meant to be metric (a recorded ``/odom``, ``--camera-height``), also after an
SE(3) alignment alone: its scale as published. matplotlib (a dependency of the package, Agg
backend: no display needed); the format follows OUT's suffix (``.png``, ``.svg``, ``.pdf``). ROS-free.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["VIEWS", "check_plot_path", "plot_trajectories"]

def check_plot_path(out: str | Path) -> Path:
    """``--plot``'s file ``out``, checked before anything is computed: not a folder, in a folder that
    exists, and with a suffix matplotlib writes, or none (saved as PNG); ``ValueError`` naming it
    otherwise."""
    p = Path(out)
    if p.is_dir():
        raise ValueError(f"--plot {out} is a folder; expected a file name such as trajectory.png")
    if not p.parent.is_dir():
        raise ValueError(f"--plot {out}: folder {p.parent} does not exist")
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ValueError(f"--plot needs matplotlib ({exc}); install it: pip install matplotlib") from None
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if p.suffix and p.suffix[1:].lower() not in formats:
        raise ValueError(f"--plot {out}: unknown image format {p.suffix!r}; expected one of "
                         f"{', '.join('.' + f for f in formats)}")
    return p

#: the plotted axes (indices into x, y, z) and their description, by the ground truth's frame
VIEWS = {"camera": ((0, 2), "top-down x-z of the ground truth's camera frame (y, down, left out)"),
         "base": ((0, 1), "top-down x-y of the ground truth's base frame (z, up, left out)")}


def plot_trajectories(out: str | Path, gt: np.ndarray, traj: np.ndarray, title: str, gt_frame: str = "camera",
                      as_published: bool = False) -> dict:
    """Write the plot of ``traj`` against ``gt`` ((N, 4, 4) each, the same frames) to ``out``.
    Returns ``{"path", "view", "axes"}``; ``ValueError`` (one line) when it cannot be written."""
    from sfm_ros.evaluation.trajectory import align_trajectory

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ValueError(f"--plot needs matplotlib ({exc}); install it: pip install matplotlib") from None
    p = check_plot_path(out)
    (a, b), view = VIEWS[gt_frame]
    names = "xyz"
    lines = [("ground truth", gt, dict(color="black", lw=2.0))]
    try:
        sim3, s, _, _ = align_trajectory(gt, traj, "sim3")
        lines.append((f"prediction, Sim(3)-aligned (scale {s:.4g})", sim3, dict(color="tab:blue", lw=1.5)))
    except ValueError:  # a prediction that never moves
        sim3 = None
    if as_published or sim3 is None:
        se3, _, _, _ = align_trajectory(gt, traj, "se3")
        lines.append(("prediction, SE(3)-aligned (scale as published)", se3,
                      dict(color="tab:orange", lw=1.5, ls="--")))
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    try:
        for label, T, style in lines:
            ax.plot(T[:, a, 3], T[:, b, 3], label=label, **style)
            ax.plot(T[0, a, 3], T[0, b, 3], "o", color=style["color"], ms=4)
        ax.set_xlabel(f"{names[a]} (m)")
        ax.set_ylabel(f"{names[b]} (m)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.text(0.01, 0.01, view + "; dots: first frame", fontsize=7, color="grey")
        try:
            fig.savefig(p, bbox_inches="tight")
        except (OSError, ValueError) as exc:
            raise ValueError(f"--plot {out}: {exc}") from None
    finally:
        plt.close(fig)
    return {"path": str(p), "view": view, "axes": [names[a], names[b]]}
