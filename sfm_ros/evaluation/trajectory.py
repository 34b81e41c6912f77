"""Trajectory evaluation for SfMLearner ego-motion: Umeyama alignment, ATE/RPE, the paper's snippet ATE.

Pure numpy (no torch, no ROS); ``evo`` is *not* a dependency, but the whole-trajectory metrics
are written to agree with ``evo`` 1.38 to numerical precision (checked in ``test/test_trajectory.py``).

Conventions
-----------
* **Poses** are 4x4 float64 homogeneous matrices ``T_a_b`` (``p_a = T_a_b @ p_b``). A trajectory is
  an ``(N, 4, 4)`` array of camera-to-world poses ``T_w_c`` in the camera optical frame
  (x right, y down, z forward). Positions are ``T[:, :3, 3]``.
* **Relative poses** (:func:`relative_poses`): ``rel[i] = inv(T_w_i) @ T_w_{i+1} = T_{c_i}_{c_{i+1}}``,
  the pose of camera ``i+1`` in camera ``i`` (the "odometry increment"). :func:`chain` is its exact
  inverse: ``T_0 = start``, ``T_{i+1} = T_i @ rel[i]``. Note that the pose network's *target→source*
  output ``T_s_t = inv(T_w_s) @ T_w_t`` is, for ``s = t + 1``, ``inv(rel[t])``.
* **Pose vectors** ``[tx, ty, tz, rx, ry, rz]`` (axis-angle rotation, ``p' = R p + t``), quaternions
  and every other rotation/pose conversion: :mod:`sfm_ros.core.se3`; TUM / KITTI files:
  :mod:`sfm_ros.data.pose_files`.
* **Alignment** (:func:`align_trajectory`, used by :func:`ate` / :func:`rpe`), as ``evo``:
  ``'sim3'`` = Umeyama with scale (``evo_ape -as``), ``'se3'`` = Umeyama without scale (``-a``),
  ``'scale'`` = only the scale of the Sim(3) Umeyama fit applied to the estimated positions about the
  origin (``-s``), ``'none'``. The alignment maps the *estimate* onto the ground truth:
  ``T_est' = [R_a R | s R_a t + t_a]``.

The snippet protocol of SfMLearner (:func:`snippet_ate`)
--------------------------------------------------------
Zhou et al. (CVPR 2017), Table 3, evaluate the pose network on every window of ``L = 5`` (or 3)
consecutive frames (stride 1): both the ground truth and the prediction of the window are expressed
relative to the window's first frame (``inv(T_0) @ T_j``, so no rotational alignment is needed), a
single scale is fitted by least squares on the positions, and the per-window "ATE" is averaged over
all windows (``mean ± std``, ``np.std`` i.e. population std). Reference implementation:
``kitti_eval/pose_evaluation_utils.py::compute_ate`` of tinghuiz/SfMLearner::

    offset = gtruth_xyz[0] - pred_xyz[0]          # 0 here: both start at the origin
    pred_xyz += offset[None, :]
    scale = np.sum(gtruth_xyz * pred_xyz) / np.sum(pred_xyz ** 2)
    alignment_error = pred_xyz * scale - gtruth_xyz
    rmse = np.sqrt(np.sum(alignment_error ** 2)) / len(matches)

**The default ``formula='sfmlearner'`` reproduces exactly this expression,**
``sqrt(sum_j ||s p_j - g_j||^2) / L`` (all ``L`` positions, including the first, enter both the scale
fit and the error). It is *not* a root-mean-square: a true RMSE ``sqrt(sum_j ||e_j||^2 / L)`` is
``sqrt(L)`` times larger; ``formula='rmse'`` gives that one. Numbers comparable with the paper
(0.0210 ± 0.0170 on KITTI odometry seq. 09) need the default. Differences from the original code,
documented: (1) the original writes the predicted snippets with ``'%f'`` (6 decimals) to TUM files and
matches them by time stamp, here the arrays are used directly; (2) for an all-zero prediction (the
zero-motion baseline) the original scale is ``0/0 = nan``; here the scale is defined as 0 so that the
error is ``-g_j`` and the ATE is ``sqrt(sum_j ||g_j||^2) / L`` (any scale gives the same error).
"""
from __future__ import annotations

import math

import numpy as np

from sfm_ros.data.pose_files import as_poses
from sfm_ros.core.se3 import axis_angle_to_matrix, invert_pose, make_pose, matrix_to_axis_angle, pose_vec_to_matrix

__all__ = [
    "ALIGN_MODES",
    "relative_poses",
    "chain",
    "umeyama",
    "align_trajectory",
    "ate",
    "rpe",
    "snippets_from_poses",
    "snippets_from_relative",
    "snippet_from_network",
    "snippet_ate_single",
    "snippet_ate",
    "zero_motion_poses",
    "mean_relative_motion",
    "mean_odometry_poses",
]

ALIGN_MODES = ("sim3", "se3", "scale", "none")


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _check_same_len(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{na} and {nb} must have the same length, got {a.shape[0]} and {b.shape[0]}")


def _stats(err: np.ndarray) -> dict:
    err = np.asarray(err, dtype=np.float64)
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mean": float(np.mean(err)),
        "median": float(np.median(err)),
        "std": float(np.std(err)),
        "min": float(np.min(err)),
        "max": float(np.max(err)),
    }


def relative_poses(poses) -> np.ndarray:
    """Odometry increments ``rel[i] = inv(T_i) @ T_{i+1}`` (pose of frame i+1 in frame i): (N-1, 4, 4)."""
    P = as_poses(poses, "poses", min_len=1)
    return invert_pose(P[:-1]) @ P[1:]


def chain(rel_poses, start=None) -> np.ndarray:
    """Integrate increments: ``T_0 = start`` (identity), ``T_{i+1} = T_i @ rel[i]``; (len(rel)+1, 4, 4)."""
    rel = np.asarray(rel_poses, dtype=np.float64)
    if rel.ndim != 3 or rel.shape[1:] != (4, 4):
        raise ValueError(f"rel_poses must have shape (M, 4, 4), got {rel.shape}")
    T = np.eye(4) if start is None else np.asarray(start, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"start must be (4, 4), got {T.shape}")
    out = np.empty((rel.shape[0] + 1, 4, 4))
    out[0] = T
    for i in range(rel.shape[0]):
        out[i + 1] = out[i] @ rel[i]
    return out


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------
def umeyama(src, dst, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) minimising ``sum ||dst_i - (s R src_i + t)||^2``.

    ``src``, ``dst``: (N, 3) corresponding points. Returns ``(s, R, t)`` with ``R`` a proper rotation
    (det +1) and ``s = 1`` when ``with_scale`` is False. Same algorithm (1/N covariance, Kabsch sign
    fix) as ``evo.core.geometry.umeyama_alignment``; unlike evo it does not refuse collinear points
    (the minimiser is then not unique, but the returned one is optimal).
    """
    x = np.asarray(src, dtype=np.float64)
    y = np.asarray(dst, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"src and dst must both be (N, 3), got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"umeyama needs at least 2 points, got {x.shape[0]}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("umeyama: non-finite input")
    n = x.shape[0]
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    sigma_x = np.sum(xc ** 2) / n
    cov = yc.T @ xc / n
    U, d, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0.0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    if with_scale:
        if sigma_x <= 0.0:
            raise ValueError("umeyama: all source points coincide, the scale is undefined")
        s = float(np.trace(np.diag(d) @ S) / sigma_x)
    else:
        s = 1.0
    t = my - s * R @ mx
    return s, R, t


def align_trajectory(gt_poses, est_poses, align: str = "sim3"):
    """Align ``est_poses`` onto ``gt_poses`` (positions); returns ``(aligned_est, s, R, t)``.

    See the module doc for the modes. ``aligned_est[i] = [R R_i | s R t_i + t]``.
    """
    gt = as_poses(gt_poses, "gt_poses")
    est = as_poses(est_poses, "est_poses")
    _check_same_len(gt, est, "gt_poses", "est_poses")
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    s, R, t = 1.0, np.eye(3), np.zeros(3)
    if align == "sim3":
        s, R, t = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=True)
    elif align == "se3":
        s, R, t = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=False)
    elif align == "scale":
        s = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=True)[0]
    out = est.copy()
    out[:, :3, :3] = R @ est[:, :3, :3]
    out[:, :3, 3] = s * est[:, :3, 3] @ R.T + t
    return out, float(s), R, t


def ate(gt_poses, est_poses, align: str = "sim3") -> dict:
    """Absolute trajectory error on positions after alignment (``evo_ape tum ... -as`` by default).

    Returns ``rmse, mean, median, std, min, max`` of ``||p_gt_i - p_est_aligned_i||``, the alignment
    ``scale`` and ``n`` (number of poses). ``std`` is the population std, as evo.
    """
    gt = as_poses(gt_poses, "gt_poses", min_len=2 if align != "none" else 1)
    aligned, s, _, _ = align_trajectory(gt, est_poses, align)
    err = np.linalg.norm(gt[:, :3, 3] - aligned[:, :3, 3], axis=1)
    out = _stats(err)
    out["scale"] = s
    out["n"] = int(len(err))
    return out


def _rotation_angle(R: np.ndarray) -> np.ndarray:
    return np.linalg.norm(matrix_to_axis_angle(R), axis=-1)


def rpe(gt_poses, est_poses, delta: int = 1, align: str = "sim3") -> dict:
    """Relative pose error over frame pairs ``(i, i + delta)`` (``evo_rpe --delta d --delta_unit f``).

    ``E_i = inv(inv(Q_i) Q_{i+d}) @ inv(P_i) P_{i+d}`` (Q ground truth, P the estimate after
    :func:`align_trajectory`; only the scale of the alignment matters here). Returns the statistics
    of the translational error ``||t(E_i)||`` as ``trans_*`` (``rmse`` is an alias of ``trans_rmse``)
    and of the rotation angle of ``E_i`` in degrees as ``rot_*_deg``, plus ``scale`` and ``pairs``.
    """
    if int(delta) != delta or delta < 1:
        raise ValueError(f"delta must be a positive integer (frames), got {delta!r}")
    delta = int(delta)
    gt = as_poses(gt_poses, "gt_poses", min_len=2)
    aligned, s, _, _ = align_trajectory(gt, est_poses, align)
    if gt.shape[0] <= delta:
        raise ValueError(f"delta={delta} needs more than {delta} poses, got {gt.shape[0]}")
    q_rel = invert_pose(gt[:-delta]) @ gt[delta:]
    p_rel = invert_pose(aligned[:-delta]) @ aligned[delta:]
    E = invert_pose(q_rel) @ p_rel
    t_err = np.linalg.norm(E[:, :3, 3], axis=1)
    r_err = np.degrees(_rotation_angle(E[:, :3, :3]))
    out = {f"trans_{k}": v for k, v in _stats(t_err).items()}
    out.update({f"rot_{k}_deg": v for k, v in _stats(r_err).items()})
    out["rmse"] = out["trans_rmse"]
    out["scale"] = s
    out["pairs"] = int(len(t_err))
    return out


# --------------------------------------------------------------------------------------------
# SfMLearner snippet protocol
# --------------------------------------------------------------------------------------------
def _check_snippet_len(snippet_len: int, stride: int) -> None:
    if int(snippet_len) != snippet_len or snippet_len < 2:
        raise ValueError(f"snippet_len must be an integer >= 2, got {snippet_len!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")


def snippets_from_poses(poses, snippet_len: int = 5, stride: int = 1) -> np.ndarray:
    """Windows of ``snippet_len`` consecutive poses (start every ``stride`` frames), each expressed
    relative to its first frame: ``out[k, j] = inv(T_{ks}) @ T_{ks+j}``. Shape (M, L, 4, 4) with
    ``M = (N - L) // stride + 1``."""
    _check_snippet_len(snippet_len, stride)
    P = as_poses(poses, "poses")
    n = P.shape[0]
    if n < snippet_len:
        raise ValueError(f"need at least snippet_len={snippet_len} poses, got {n}")
    starts = np.arange(0, n - snippet_len + 1, stride)
    idx = starts[:, None] + np.arange(snippet_len)[None, :]
    return invert_pose(P[starts])[:, None] @ P[idx]


def snippets_from_relative(rel_poses, snippet_len: int = 5, stride: int = 1) -> np.ndarray:
    """Same windows as :func:`snippets_from_poses` built from a chain of increments
    ``rel[i] = inv(T_i) @ T_{i+1}`` (N-1 of them): ``out[k, j] = rel[ks] @ ... @ rel[ks+j-1]``.
    Products are taken inside each window only, so no drift from the start of the sequence enters."""
    _check_snippet_len(snippet_len, stride)
    rel = np.asarray(rel_poses, dtype=np.float64)
    if rel.ndim != 3 or rel.shape[1:] != (4, 4):
        raise ValueError(f"rel_poses must have shape (N-1, 4, 4), got {rel.shape}")
    n = rel.shape[0] + 1
    if n < snippet_len:
        raise ValueError(f"need at least snippet_len-1={snippet_len - 1} relative poses, got {n - 1}")
    starts = np.arange(0, n - snippet_len + 1, stride)
    out = np.empty((len(starts), snippet_len, 4, 4))
    out[:, 0] = np.eye(4)
    for j in range(1, snippet_len):
        out[:, j] = out[:, j - 1] @ rel[starts + j - 1]
    return out


def snippet_from_network(src_poses, tgt_index: int) -> np.ndarray:
    """Snippet poses (relative to the snippet's first frame) from one pose-network prediction.

    ``src_poses``: the ``L-1`` *target→source* transforms ``T_s_t`` (as (L-1, 4, 4) matrices or
    (L-1, 6) pose vectors) of the source frames in temporal order, the target frame omitted;
    ``tgt_index``: the target's position in the snippet (``(L-1)//2`` for SfMLearner's centred
    target). As SfMLearner's ``dump_pose_seq_TUM``: identity is inserted for the target and
    ``out[j] = T_{s_0}_t @ inv(T_{s_j}_t) = T_{c_0}_{c_j}``. Returns (L, 4, 4).
    """
    src = np.asarray(src_poses, dtype=np.float64)
    if src.ndim == 2 and src.shape[1] == 6:
        src = pose_vec_to_matrix(src)
    if src.ndim != 3 or src.shape[1:] != (4, 4):
        raise ValueError(f"src_poses must be (L-1, 4, 4) or (L-1, 6), got {np.shape(src_poses)}")
    L = src.shape[0] + 1
    if not 0 <= tgt_index < L:
        raise ValueError(f"tgt_index must be in [0, {L - 1}], got {tgt_index}")
    T_s_t = np.insert(src, tgt_index, np.eye(4), axis=0)
    # T_s_t may not be exactly rigid (network output): use the general inverse.
    return T_s_t[0][None] @ np.linalg.inv(T_s_t)


def snippet_ate_single(gt_snippet, pred_snippet, formula: str = "sfmlearner") -> tuple[float, float]:
    """SfMLearner's ``compute_ate`` on one snippet; returns ``(ate, scale)``.

    Both inputs are (L, 4, 4) poses or (L, 3) positions. As the original: the prediction is shifted so
    its first position equals the ground truth's, ``scale = sum(g*p) / sum(p*p)`` (defined as 0 when
    the prediction is all zeros), ``e = scale * p - g`` and ``ate = sqrt(sum ||e||^2) / L``
    (``formula='sfmlearner'``) or ``sqrt(sum ||e||^2 / L)`` (``formula='rmse'``).
    """
    g = np.asarray(gt_snippet, dtype=np.float64)
    p = np.asarray(pred_snippet, dtype=np.float64)
    if g.ndim == 3:
        g = g[:, :3, 3]
    if p.ndim == 3:
        p = p[:, :3, 3]
    if g.ndim != 2 or g.shape[1] != 3 or g.shape != p.shape:
        raise ValueError(f"snippets must be (L, 4, 4) or (L, 3) with equal L, got {g.shape} and {p.shape}")
    if formula not in ("sfmlearner", "rmse"):
        raise ValueError(f"formula must be 'sfmlearner' or 'rmse', got {formula!r}")
    p = p + (g[0] - p[0])[None, :]
    denom = float(np.sum(p * p))
    scale = float(np.sum(g * p) / denom) if denom > 0.0 else 0.0
    sq = float(np.sum((p * scale - g) ** 2))
    L = g.shape[0]
    val = math.sqrt(sq) / L if formula == "sfmlearner" else math.sqrt(sq / L)
    return val, scale


def snippet_ate(
    gt_poses,
    est,
    snippet_len: int = 5,
    stride: int = 1,
    est_is_relative: bool | None = None,
    formula: str = "sfmlearner",
) -> dict:
    """The paper's snippet ATE (Zhou et al. 2017, Table 3; see the module doc for the formula).

    ``gt_poses``: (N, 4, 4) ground-truth camera-to-world poses. ``est`` is one of

    * (N, 4, 4) an estimated trajectory (camera-to-world, any world frame and scale);
    * (N-1, 4, 4) a chain of increments ``inv(T_i) @ T_{i+1}`` (see :func:`relative_poses`);
    * (M, L, 4, 4) per-snippet poses, already one window each (e.g. from :func:`snippet_from_network`
      for every target frame, the paper's actual protocol where each window is predicted independently);
      each window is re-expressed relative to its own first pose.

    For (N, 4, 4) vs (N-1, 4, 4) the length decides unless ``est_is_relative`` is given. Windows are
    every ``snippet_len`` consecutive frames starting every ``stride`` frames. Returns
    ``mean``, ``std`` (population), ``median``, ``count`` and the arrays ``per_snippet`` and ``scales``.
    """
    _check_snippet_len(snippet_len, stride)
    gt = as_poses(gt_poses, "gt_poses")
    gt_snips = snippets_from_poses(gt, snippet_len, stride)
    e = np.asarray(est, dtype=np.float64)
    if e.ndim == 4:
        if e.shape[1:] != (snippet_len, 4, 4):
            raise ValueError(f"per-snippet est must be (M, {snippet_len}, 4, 4), got {e.shape}")
        if e.shape[0] != gt_snips.shape[0]:
            raise ValueError(f"est has {e.shape[0]} snippets, the ground truth {gt_snips.shape[0]}")
        # General inverse: predicted poses need not be exactly rigid.
        est_snips = np.linalg.inv(e[:, :1]) @ e
    elif e.ndim == 3 and e.shape[1:] == (4, 4):
        n = gt.shape[0]
        if est_is_relative is None:
            if e.shape[0] == n:
                est_is_relative = False
            elif e.shape[0] == n - 1:
                est_is_relative = True
            else:
                raise ValueError(
                    f"est has {e.shape[0]} poses: expected {n} (trajectory) or {n - 1} (relative) for {n} gt poses"
                )
        if est_is_relative:
            if e.shape[0] != n - 1:
                raise ValueError(f"relative est must have {n - 1} poses, got {e.shape[0]}")
            est_snips = snippets_from_relative(e, snippet_len, stride)
        else:
            if e.shape[0] != n:
                raise ValueError(f"est trajectory must have {n} poses, got {e.shape[0]}")
            est_snips = snippets_from_poses(e, snippet_len, stride)
    else:
        raise ValueError(f"est must be (N, 4, 4), (N-1, 4, 4) or (M, L, 4, 4), got {e.shape}")
    if not np.all(np.isfinite(est_snips)):
        raise ValueError("est contains non-finite values")
    res = [snippet_ate_single(g, p, formula) for g, p in zip(gt_snips, est_snips)]
    per = np.array([r[0] for r in res])
    scales = np.array([r[1] for r in res])
    return {
        "mean": float(np.mean(per)),
        "std": float(np.std(per)),
        "median": float(np.median(per)),
        "count": int(per.size),
        "per_snippet": per,
        "scales": scales,
    }


# --------------------------------------------------------------------------------------------
# Baselines (Table 3 of the paper)
# --------------------------------------------------------------------------------------------
def zero_motion_poses(n: int) -> np.ndarray:
    """``n`` identity poses: the camera never moves."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return np.tile(np.eye(4), (int(n), 1, 1))


def mean_relative_motion(train_gt_poses) -> np.ndarray:
    """Mean ground-truth increment ``inv(T_i) @ T_{i+1}`` over training trajectories: (4, 4).

    ``train_gt_poses``: one (N, 4, 4) trajectory or a sequence of them. Translation = arithmetic mean
    of the increments' translations; rotation = ``exp`` of the mean of their axis-angle vectors (the
    rotations are small, so this is the Lie-algebra mean about the identity).
    """
    arr = train_gt_poses
    if isinstance(arr, np.ndarray) and arr.ndim == 3:
        trajs = [arr]
    else:
        trajs = list(arr)
        if trajs and np.asarray(trajs[0]).ndim == 2:  # a list of (4, 4) poses = one trajectory
            trajs = [np.asarray(trajs)]
    rels = [relative_poses(as_poses(t, "train_gt_poses", min_len=2)) for t in trajs]
    if not rels:
        raise ValueError("train_gt_poses is empty")
    rel = np.concatenate(rels, axis=0)
    t_mean = rel[:, :3, 3].mean(axis=0)
    r_mean = matrix_to_axis_angle(rel[:, :3, :3]).mean(axis=0)
    return make_pose(axis_angle_to_matrix(r_mean), t_mean)


def mean_odometry_poses(train_gt_poses, n: int, start=None) -> np.ndarray:
    """``n`` poses obtained by applying :func:`mean_relative_motion` at every step from ``start``."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    M = mean_relative_motion(train_gt_poses)
    return chain(np.tile(M, (int(n) - 1, 1, 1)), start=start)
