"""Single-image depth metrics of SfMLearner (Zhou et al. 2017) / Eigen et al. (2014), and GT loaders.

Pure numpy + OpenCV (no torch, no ROS).

Metrics (:func:`depth_errors`, on the valid pixels only; ``g`` ground truth, ``p`` prediction)::

    abs_rel  = mean(|g - p| / g)
    sq_rel   = mean((g - p)^2 / g)
    rmse     = sqrt(mean((g - p)^2))
    rmse_log = sqrt(mean((log g - log p)^2))
    a{k}     = mean(max(g/p, p/g) < 1.25^k),  k = 1, 2, 3

exactly as ``compute_errors`` of SfMLearner's ``kitti_eval/depth_evaluation_utils.py``.

Evaluation protocol (:func:`evaluate_depth`), as SfMLearner's ``kitti_eval/eval_depth.py``:
the prediction is resized to the ground-truth size (``cv2.resize``, ``INTER_LINEAR``); valid pixels
are finite ground truth with ``min_depth < g <= max_depth`` (and ``g != invalid_value``), optionally
intersected with the Garg or Eigen crop (fractions of the gt size, truncated to int as the original
``astype(np.int32)``); the prediction is multiplied by ``median(g) / median(p)`` over the valid
pixels (per image median scaling, monocular scale ambiguity) and then clamped to
``[min_depth, max_depth]``. One documented difference: SfMLearner keeps ``g < max_depth`` (strict);
here ``g == max_depth`` is valid.

Crops (row0, row1, col0, col1 as fractions of (H, H, W, W)):

* ``'garg'``  (Garg et al. ECCV16, used by SfMLearner): 0.40810811, 0.99189189, 0.03594771, 0.96405229
* ``'eigen'`` (monodepth's reproduction of Eigen NIPS14): 0.3324324, 0.91351351, 0.0359477, 0.96405229
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "DEPTH_METRIC_KEYS",
    "GARG_CROP",
    "EIGEN_CROP",
    "depth_errors",
    "crop_mask",
    "valid_depth_mask",
    "evaluate_depth",
    "aggregate",
    "load_depth_png",
    "load_depth_npy",
    "project_lidar",
]

DEPTH_METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
EIGEN_CROP = (0.3324324, 0.91351351, 0.0359477, 0.96405229)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def depth_errors(gt, pred) -> dict:
    """The seven standard metrics over 1-D arrays of valid depths (both > 0, finite, same length)."""
    g = np.asarray(gt, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if g.ndim != 1 or p.ndim != 1:
        raise ValueError(f"gt and pred must be 1-D arrays of valid depths, got {g.shape} and {p.shape}")
    if g.shape != p.shape:
        raise ValueError(f"gt and pred must have the same length, got {g.size} and {p.size}")
    if g.size == 0:
        raise ValueError("no valid pixels: gt and pred are empty")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(p))):
        raise ValueError("gt and pred must be finite")
    if np.any(g <= 0) or np.any(p <= 0):
        raise ValueError("gt and pred must be strictly positive (log and ratios)")
    thresh = np.maximum(g / p, p / g)
    diff = g - p
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff ** 2 / g)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25 ** 2)),
        "a3": float(np.mean(thresh < 1.25 ** 3)),
    }


def crop_mask(height: int, width: int, crop) -> np.ndarray:
    """Boolean (H, W) mask of a crop: ``None`` (all True), ``'garg'``, ``'eigen'`` or explicit pixel
    bounds ``(row0, row1, col0, col1)`` (half-open, like slicing)."""
    m = np.zeros((height, width), dtype=bool)
    if crop is None:
        m[:] = True
        return m
    if isinstance(crop, str):
        fr = {"garg": GARG_CROP, "eigen": EIGEN_CROP}.get(crop.lower())
        if fr is None:
            raise ValueError(f"crop must be None, 'garg', 'eigen' or (row0, row1, col0, col1), got {crop!r}")
        b = np.array([fr[0] * height, fr[1] * height, fr[2] * width, fr[3] * width]).astype(np.int32)
    else:
        b = np.asarray(crop)
        if b.shape != (4,):
            raise ValueError(f"crop bounds must be (row0, row1, col0, col1), got {crop!r}")
        b = b.astype(np.int64)
    m[b[0]:b[1], b[2]:b[3]] = True
    return m


def valid_depth_mask(gt_depth, min_depth: float = 1e-3, max_depth: float = 80.0, invalid_value=None) -> np.ndarray:
    """Valid ground-truth pixels: finite, ``min_depth < g <= max_depth`` and ``g != invalid_value``."""
    g = np.asarray(gt_depth, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        m = np.isfinite(g) & (g > min_depth) & (g <= max_depth)
    if invalid_value is not None:
        m &= g != invalid_value
    return m


def evaluate_depth(
    gt_depth,
    pred_depth,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = True,
    crop=None,
    invalid_value=None,
) -> dict:
    """Evaluate one predicted depth map against a (possibly sparse) ground truth.

    ``gt_depth`` (H, W) metres; ``pred_depth`` (h, w) in any units (resized bilinearly to (H, W)).
    Returns the :data:`DEPTH_METRIC_KEYS` metrics plus ``scale`` (the median ratio applied, 1.0 when
    ``median_scaling`` is False) and ``valid_pixels``. Raises ``ValueError`` on bad shapes, when no
    ground-truth pixel is valid, or when the prediction is non-finite on valid pixels.
    """
    gt = np.asarray(gt_depth)
    pred = np.asarray(pred_depth)
    if gt.ndim != 2:
        raise ValueError(f"gt_depth must be (H, W), got {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"pred_depth must be (h, w), got {pred.shape}")
    if gt.size == 0 or pred.size == 0:
        raise ValueError(f"empty depth map: gt {gt.shape}, pred {pred.shape}")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    gt = gt.astype(np.float64)
    H, W = gt.shape
    pred = pred.astype(np.float32 if pred.dtype != np.float64 else np.float64)
    if pred.shape != (H, W):
        import cv2

        pred = cv2.resize(pred, (W, H), interpolation=cv2.INTER_LINEAR)
    pred = pred.astype(np.float64)
    mask = valid_depth_mask(gt, min_depth, max_depth, invalid_value) & crop_mask(H, W, crop)
    n = int(mask.sum())
    if n == 0:
        raise ValueError("no valid ground-truth pixels (after depth range, invalid value and crop)")
    g = gt[mask]
    p = pred[mask]
    bad = int((~np.isfinite(p)).sum())
    if bad:
        raise ValueError(f"pred_depth is non-finite at {bad} valid pixels")
    scale = 1.0
    if median_scaling:
        med = float(np.median(p))
        if not med > 0:
            raise ValueError(f"median of the predicted depth over valid pixels is {med}: cannot scale")
        scale = float(np.median(g)) / med
        p = p * scale
    p = np.clip(p, min_depth if min_depth > 0 else np.finfo(np.float64).tiny, max_depth)
    out = depth_errors(g, p)
    out["scale"] = scale
    out["valid_pixels"] = n
    return out


def aggregate(results: Iterable[Mapping]) -> dict:
    """Mean of every numeric key shared by all result dicts, plus ``count`` (number of dicts).

    Image-level means, as the paper (each image weighs the same regardless of its valid pixels).
    """
    results = list(results)
    if not results:
        raise ValueError("aggregate needs at least one result")
    keys = [k for k in results[0] if all(k in r for r in results)]
    out = {}
    for k in keys:
        vals = [r[k] for r in results]
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
            out[k] = float(np.mean(np.asarray(vals, dtype=np.float64)))
    out["count"] = len(results)
    return out


# --------------------------------------------------------------------------------------------
# Ground-truth loaders
# --------------------------------------------------------------------------------------------
def load_depth_png(path, scale: float = 1000.0, invalid: int | None = 65535, fill_value: float = np.nan) -> np.ndarray:
    """16-bit single-channel depth PNG -> float32 metres ``raw / scale``.

    ``scale`` is raw units per metre: 1000 for millimetres (7-Scenes, RealSense), 5000 for TUM RGB-D,
    256 for KITTI depth-completion maps. Pixels equal to ``invalid`` (65535 in 7-Scenes) and raw 0
    (no measurement everywhere) are set to ``fill_value``: **NaN by default**, which
    :func:`evaluate_depth` masks out; pass ``fill_value=0.0`` for the KITTI-style "0 = no depth".
    """
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"depth png not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"could not read {path} as an image")
    if raw.ndim != 2:
        raise ValueError(f"{path}: depth png must be single-channel, got shape {raw.shape}")
    if raw.dtype not in (np.uint16, np.uint8):
        raise ValueError(f"{path}: expected a 16-bit (or 8-bit) png, got {raw.dtype}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    bad = raw == 0
    if invalid is not None:
        bad |= raw == invalid
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[bad] = fill_value
    return depth


def load_depth_npy(path, scale: float = 1.0) -> np.ndarray:
    """A depth map saved with ``np.save`` -> float32 (H, W) ``array * scale``.

    (1, H, W) and (H, W, 1) are squeezed; values are returned as stored (0/NaN/inf are left for
    :func:`evaluate_depth`'s mask)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"depth npy not found: {path}")
    d = np.load(path, allow_pickle=False)
    if d.ndim == 3 and 1 in (d.shape[0], d.shape[2]):
        d = d.reshape(d.shape[1:] if d.shape[0] == 1 else d.shape[:2])
    if d.ndim != 2:
        raise ValueError(f"{path}: depth must be (H, W), got {d.shape}")
    return (d.astype(np.float64) * scale).astype(np.float32)


def project_lidar(points_xyz, T_cam_lidar, K, height: int, width: int, min_depth: float = 1e-3) -> np.ndarray:
    """Sparse depth map (H, W) float32 from LiDAR points; 0 where no point falls.

    ``p_cam = T_cam_lidar @ p_lidar``; depth = ``z`` in the camera optical frame; points with
    ``z <= min_depth`` (behind the camera) are dropped. Pixel ``(u, v) = K p / z`` uses the project's
    pixel-centre convention (integer coordinates are pixel centres), so the pixel index is
    ``floor(u + 0.5)``; points outside ``[-0.5, W-0.5) x [-0.5, H-0.5)`` are dropped. When several
    points hit the same pixel the nearest (smallest z) is kept. (The KITTI devkit / monodepth code
    uses ``round(u) - 1``, a MATLAB 1-based leftover; this function follows the project's convention.)
    """
    P = np.asarray(points_xyz, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 3:
        raise ValueError(f"points_xyz must be (N, 3) (extra columns ignored), got {P.shape}")
    P = P[:, :3]
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    if T.shape == (3, 4):
        T = np.vstack([T, [0, 0, 0, 1]])
    if T.shape != (4, 4):
        raise ValueError(f"T_cam_lidar must be (4, 4) or (3, 4), got {T.shape}")
    Km = np.asarray(K, dtype=np.float64)
    if Km.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {Km.shape}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}, {width}")
    depth = np.zeros((int(height), int(width)), dtype=np.float32)
    P = P[np.all(np.isfinite(P), axis=1)]
    if P.shape[0] == 0:
        return depth
    pc = P @ T[:3, :3].T + T[:3, 3]
    pc = pc[pc[:, 2] > min_depth]
    if pc.shape[0] == 0:
        return depth
    uvw = pc @ Km.T
    u = uvw[:, 0] / uvw[:, 2]
    v = uvw[:, 1] / uvw[:, 2]
    ui = np.floor(u + 0.5).astype(np.int64)
    vi = np.floor(v + 0.5).astype(np.int64)
    ok = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    ui, vi, z = ui[ok], vi[ok], pc[ok, 2]
    # Nearest point per pixel (np.minimum.at is well defined for repeated indices).
    best = np.full(depth.shape, np.inf)
    np.minimum.at(best, (vi, ui), z)
    hit = np.isfinite(best)
    depth[hit] = best[hit]
    return depth
