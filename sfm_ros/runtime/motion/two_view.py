"""The motion between two views from their tracked corners: the rotation and the direction of
translation two images fix, with the corners that support it.

Steps (:func:`solve_two_view`): corners of the reference image tracked into the new image
(:func:`sfm_ros.data.features.track_corners`, forward-backward checked); a camera at rest (the
corners did not move, ``still_px``); a camera that only turned (:func:`~sfm_ros.runtime.motion.
rotation_only.rotation_only` leaves less than ``min_parallax_px``); else the essential matrix by
OpenCV's robust five-point solver (Nistér, "An efficient solution to the five-point relative pose
problem", PAMI 2004; ``estimator``) and its decomposition with the cheirality test
(``cv2.recoverPose``: of the four (R, t), the one with the points in front of both cameras;
Hartley & Zisserman, Multiple View Geometry, 2nd ed., Sec. 9.6.2); optionally a prior motion kept
where the corners cannot tell it from the five-point solution (:func:`prior_agrees`); last, the
parallax check (:mod:`sfm_ros.runtime.motion.parallax`): too little, and only the rotation is
trusted. Falls short (``why``) with too few tracks, no essential matrix, or too few inliers.

Convention: grey images (H, W) uint8 of one size, ``K`` (3, 3) their intrinsics, pixel centres at
integer coordinates; the solution is ``x_new = R x_ref + t`` with a unit ``t``
(``T_new_ref``; ``T_ref_new`` its inverse, the pose of the new camera in the reference camera's
frame). Stateless: numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sfm_ros.core.se3 import invert_pose, make_pose, skew
from sfm_ros.data.features import track_corners
from sfm_ros.runtime.motion._checks import matrix
from sfm_ros.runtime.motion.covariance import epipolar_noise_var
from sfm_ros.runtime.motion.parallax import parallax_px
from sfm_ros.runtime.motion.rotation_only import rotation_only
from sfm_ros.runtime.motion.sampson import epipolar_information, sampson_residuals, signed_sampson
from sfm_ros.runtime.motion.spread import robust_spread

__all__ = ["ESTIMATORS", "direction_given_rotation", "essential_matrix", "TwoViewOptions", "TwoViewSolution",
           "solve_two_view", "solve_tracks", "prior_agrees"]

#: the robust essential-matrix estimators: OpenCV's USAC MAGSAC++ (with local optimisation), MAGSAC++
#: scoring without the local optimisation (only its final MAGSAC polish: ~half the time), USAC with
#: graph-cut local optimisation, plain RANSAC
ESTIMATORS = {"magsac": cv2.USAC_MAGSAC, "magsac_polish": "magsac_polish", "accurate": cv2.USAC_ACCURATE,
              "ransac": cv2.RANSAC}


def _usac_polish(threshold: float) -> cv2.UsacParams:
    """OpenCV's USAC with MAGSAC++ scoring, no local optimisation and ten iterations of the MAGSAC
    polish on the best model (Barath et al., "MAGSAC++, a fast, reliable and accurate robust
    estimator", CVPR 2020): the estimator ``magsac_polish``."""
    u = cv2.UsacParams()
    u.confidence, u.threshold, u.maxIterations = 0.999, float(threshold), 1000  # findEssentialMat's own cap
    u.score, u.sampler = cv2.SCORE_METHOD_MAGSAC, cv2.SAMPLING_UNIFORM
    u.loMethod = cv2.LOCAL_OPTIM_NULL
    u.final_polisher, u.final_polisher_iterations = cv2.MAGSAC, 10
    return u


def essential_matrix(p: np.ndarray, q: np.ndarray, K: np.ndarray, estimator: str,
                     threshold_px: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(E, mask)``: OpenCV's robust essential matrix of ``p ↔ q`` (N, 2) float32 pixels with
    intrinsics ``K`` by ``estimator`` (a key of :data:`ESTIMATORS`) at ``threshold_px``, confidence
    0.999, at most 1000 iterations; ``E`` may hold several solutions stacked (the USAC estimators'
    first is the best scored; RANSAC stacks them, unordered, for exactly five pairs)."""
    method = ESTIMATORS[estimator]
    if estimator == "magsac_polish":
        no_dist = np.zeros((1, 5))
        return cv2.findEssentialMat(p, q, K, K, no_dist, no_dist, _usac_polish(threshold_px))
    return cv2.findEssentialMat(p, q, K, method=method, prob=0.999, threshold=threshold_px)


@dataclass
class TwoViewOptions:
    """The options of :func:`solve_two_view` (the :class:`~sfm_ros.runtime.motion.refiner.Refiner`'s
    of the same names).

    Args:
        max_corners: corners detected in the reference frame.
        min_distance_px: least distance between two corners (pixels).
        max_fb_px: forward-backward tracking error (pixels) above which a track is dropped.
        lk_iterations: Lucas-Kanade iterations per pyramid level at most. Measured on the tuning
            frames (snippet ATE, 30 / 20 / 15): KITTI 0-119 0.0170 / 0.0175 / 0.0179, 7-Scenes
            0-399 0.0140 / 0.0112 / 0.0110; 30 for driving, 20 is ~20 % cheaper and better on the
            hand-held frames (at the 21-pixel window).
        lk_window: the Lucas-Kanade window (pixels, square). Measured on the tuning frames (snippet
            ATE, 21 / 17 / 13 / 11 / 9 / 7): KITTI 0-119 0.0170 / 0.0162 / 0.0153 / 0.0152 / 0.0148 /
            0.0152, 7-Scenes 0-399 0.0140 / 0.0105 / 0.0101 / 0.0112 / 0.0114 / 0.0147; 11 is
            better than 21 on both and its tracking costs ~0.4x as much (BENCHMARKS.md).
        min_inliers: fewest corners consistent with the essential matrix to trust it.
        ransac_px: RANSAC threshold (pixels, at the given image size).
        estimator: a key of :data:`ESTIMATORS`.
        min_parallax_px: median corner motion left once the rotation is removed (pixels) below
            which the translation direction is not trusted (only the rotation is taken).
        still_px: median motion of the tracked corners (pixels) below which the camera did not
            move (a sensor's noise and a frozen image move them less; 0 = off, as the training
            priors, whose pairs always move, use it).
        network_chi2: the rise of the Sampson residuals from the five-point solution to a prior
            motion (chi-square, five parameters, in the epipolar covariance's inflated noise)
            below which the prior is "not told apart" (:func:`prior_agrees`); 11.07 is the 95 %
            value (not tuned).
    """

    max_corners: int = 500
    min_distance_px: int = 5
    max_fb_px: float = 1.0
    lk_iterations: int = 30
    lk_window: int = 11
    min_inliers: int = 20
    ransac_px: float = 0.3
    estimator: str = "magsac"
    min_parallax_px: float = 0.5
    still_px: float = 0.1
    network_chi2: float = 11.07

    def __post_init__(self) -> None:
        if int(self.lk_window) < 3:
            raise ValueError(f"lk_window must be >= 3 pixels, got {self.lk_window!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")


@dataclass(kw_only=True)
class TwoViewSolution:
    """What :func:`solve_two_view` found.

    ``why``: empty for a full solution (rotation and direction), else ``few tracks``, ``no
    essential matrix``, ``few inliers`` (nothing found), ``still`` (the corners did not move) or
    ``low parallax`` (only the rotation ``R`` is found); ``reason``: the same in words, with the
    figures. ``tracks``: corners tracked, ``p``/``q`` (N, 2) float32 where they are in the
    reference / new image; ``inliers``: corners consistent with the solution (all tracked ones for
    ``still`` and a rotation alone), ``p_in``/``q_in`` (M, 2) float64 those of the essential
    matrix; ``flow_px``: the tracked corners' median motion; ``residual_px``: the robust spread of
    the Sampson residuals at the solution (for a rotation alone: its median parallax);
    ``parallax_px``: the median motion the rotation leaves. ``R``: ``x_new = R x_ref`` (with a
    rotation found), ``T_new_ref`` (4, 4) with a unit translation and ``T_ref_new`` its inverse
    (full solution); ``info`` (5, 5) and ``across`` (3, 2): :func:`~sfm_ros.runtime.motion.
    sampson.epipolar_information` at the solution; ``prior_kept``: the solution is the prior's;
    ``direction_refit``: the rotation is another's (the refiner's rotation window) and the
    direction was solved again with it (:func:`direction_given_rotation`).
    """

    why: str
    reason: str = ""
    tracks: int = 0
    inliers: int = 0
    p: np.ndarray | None = None
    q: np.ndarray | None = None
    p_in: np.ndarray | None = None
    q_in: np.ndarray | None = None
    flow_px: float = float("nan")
    residual_px: float = float("nan")
    parallax_px: float = float("nan")
    R: np.ndarray | None = None
    T_new_ref: np.ndarray | None = None
    T_ref_new: np.ndarray | None = None
    info: np.ndarray | None = None
    across: np.ndarray | None = None
    prior_kept: bool = False
    direction_refit: bool = False


def solve_two_view(a: np.ndarray, b: np.ndarray, K: np.ndarray, opts: TwoViewOptions,
                   T_prior: np.ndarray | None = None) -> TwoViewSolution:
    """The motion from grey image ``a`` (reference) to ``b`` (new), both (H, W), with intrinsics
    ``K`` (3, 3); see the module doc. ``T_prior``: a motion (4, 4 ``T_ref_new``, e.g. the pose
    network's) kept instead of the five-point solution when :func:`prior_agrees`, or None."""
    if np.ndim(a) != 2 or np.shape(a) != np.shape(b):
        raise ValueError(f"grey images (H, W) of one size expected, got {np.shape(a)} and {np.shape(b)}")
    o = opts
    p, q = track_corners(a, b, max_corners=o.max_corners, min_distance=o.min_distance_px,
                         iterations=o.lk_iterations, window=o.lk_window, max_fb_error=o.max_fb_px)
    return solve_tracks(p, q, K, o, T_prior)


def solve_tracks(p: np.ndarray, q: np.ndarray, K: np.ndarray, opts: TwoViewOptions,
                 T_prior: np.ndarray | None = None, full: bool = True) -> TwoViewSolution:
    """:func:`solve_two_view` from tracked corners: ``p`` (N, 2) where they are in the reference
    image, ``q`` (N, 2) in the new image (e.g. tracks carried over several frames); every step
    after the tracking, with the same options. ``full=False``: the motion alone, for a caller
    that needs no more (no covariance and no test of ``T_prior``: ``info`` and ``across`` None,
    ``residual_px`` NaN; ~2 ms less for 300 corners on one core; ``T_prior`` is refused with it)."""
    K = matrix(K, (3, 3), "K")
    if T_prior is not None:
        if not full:
            raise ValueError("T_prior is tested only by the full solution: give full=True or no T_prior")
        T_prior = matrix(T_prior, (4, 4), "T_prior")
    p = np.ascontiguousarray(np.asarray(p, dtype=np.float32).reshape(-1, 2))
    q = np.ascontiguousarray(np.asarray(q, dtype=np.float32).reshape(-1, 2))
    if p.shape != q.shape:
        raise ValueError(f"p and q must be (N, 2) of one shape, got {p.shape} and {q.shape}")
    o = opts
    n = len(p)
    if n < o.min_inliers:
        return TwoViewSolution(why="few tracks", reason=f"{n} corners tracked (< {o.min_inliers})", tracks=n,
                               p=p, q=q)
    flow = float(np.median(np.linalg.norm(q - p, axis=1)))
    if flow < o.still_px:  # the corners did not move: neither did the camera
        return TwoViewSolution(why="still", reason=f"the tracked corners moved {flow:.2f} px (median, < "
                               f"{o.still_px:g}): no motion", tracks=n, inliers=n, p=p, q=q, flow_px=flow,
                               residual_px=flow, parallax_px=flow)
    R_rot, residual = rotation_only(p, q, K)
    if R_rot is not None and residual < o.min_parallax_px:
        return TwoViewSolution(why="low parallax", reason=f"a rotation explains the motion to {residual:.2f} px "
                               f"(< {o.min_parallax_px:g}): translation from the network", tracks=n, inliers=n,
                               p=p, q=q, flow_px=flow, residual_px=residual, parallax_px=residual, R=R_rot)
    E, mask = essential_matrix(p, q, K, o.estimator, o.ransac_px)
    if E is not None and E.ndim == 2 and E.shape[0] > 3 and E.shape[0] % 3 == 0:
        E = E[:3]  # several solutions stacked: the first is the best scored
    if E is None or E.shape != (3, 3) or mask is None:
        return TwoViewSolution(why="no essential matrix", reason="no essential matrix", tracks=n, p=p, q=q,
                               flow_px=flow)
    inl, R, t, mask = cv2.recoverPose(E, p, q, K, mask=mask.copy())
    inl = int(inl)
    if inl < o.min_inliers:
        return TwoViewSolution(why="few inliers", reason=f"{inl} corners fit the essential matrix (< {o.min_inliers})",
                               tracks=n, inliers=inl, p=p, q=q, flow_px=flow)
    keep = mask.ravel() > 0
    p_in, q_in = p[keep].astype(np.float64), q[keep].astype(np.float64)
    info = across = None
    kept, residual_px = False, float("nan")
    if full:
        info, across, r0 = epipolar_information(p_in, q_in, K, R, t.ravel())  # r0: the Sampson residuals
        kept = T_prior is not None and prior_agrees(p_in, q_in, K, R, t.ravel(), r0,
                                                    epipolar_noise_var(robust_spread(r0), inl), T_prior,
                                                    o.network_chi2)
        if kept:  # the corners cannot tell the prior's motion from the five points': keep it
            T_nr = invert_pose(T_prior)
            R, t = T_nr[:3, :3], T_nr[:3, 3] / np.linalg.norm(T_nr[:3, 3])
            info, across, r0 = epipolar_information(p_in, q_in, K, R, t)  # its residuals and information
        residual_px = robust_spread(r0)
    T_new_ref = make_pose(R, np.asarray(t, dtype=np.float64).reshape(3))
    T_ref_new = invert_pose(T_new_ref)
    parallax = parallax_px(p_in, q_in, K, R)
    out = TwoViewSolution(why="", tracks=n, inliers=inl, p=p, q=q, p_in=p_in, q_in=q_in, flow_px=flow,
                          residual_px=residual_px, parallax_px=parallax, R=R, T_new_ref=T_new_ref,
                          T_ref_new=T_ref_new, info=info, across=across, prior_kept=kept)
    if parallax < o.min_parallax_px:
        out.why = "low parallax"
        out.reason = f"parallax {parallax:.2f} px (< {o.min_parallax_px:g}): translation from the network"
    return out


def prior_agrees(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                 r_epi: np.ndarray, noise_var: float, T_prior: np.ndarray, chi2: float = 11.07) -> bool:
    """Whether the essential matrix's inliers ``p ↔ q`` (N, 2) cannot tell the rotation and
    direction of ``T_prior`` (4, 4 ``T_ref_new``) from the five-point solution ``x_new = R x_ref + t``:
    the rise of the Sampson residuals' sum of squares from the solution's (``r_epi``, (N,)) to the
    prior's motion, over the residual variance of the epipolar covariance (``noise_var``:
    :func:`sfm_ros.runtime.motion.covariance.epipolar_noise_var`, inflated over the image noise),
    is below ``chi2`` (the 95 % chi-square value of five parameters under that inflated noise: a
    loose test on the residuals as measured), and the prior moves the same way (the residuals do
    not see the sign of ``t``). Few or distant corners (a turn against a sideways step: the
    bas-relief ambiguity) then fit a wrong five-point solution as well as the prior's motion, and
    the prior (the pose network's motion) is the better guess (rendered streets); many near
    corners reject a network that is a degree off (KITTI)."""
    T_nr = invert_pose(matrix(T_prior, (4, 4), "T_prior"))
    tn = T_nr[:3, 3]
    if np.linalg.norm(tn) < 1e-12 or not noise_var > 0:
        return False
    dn = tn / np.linalg.norm(tn)
    if float(dn @ t) <= 0.0:
        return False
    r_net = signed_sampson(p, q, K, T_nr[:3, :3], dn)
    rise = (float(r_net @ r_net) - float(r_epi @ r_epi)) / noise_var
    return bool(np.isfinite(rise) and rise < chi2)


def direction_given_rotation(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t_sign: np.ndarray,
                             threshold_px: float = 1.0, hypotheses: int = 64,
                             iterations: int = 3) -> np.ndarray | None:
    """The unit direction ``t`` of the motion ``x_new = R x_ref + t`` that the pairs ``p ↔ q`` (N, 2)
    fit best with the rotation ``R`` (3, 3) held, or None (fewer than 3 pairs, or degenerate).

    Once the rotation is known the epipolar constraint is linear in ``t``: ``q̂ᵀ [t]× R p̂ = t · (R p̂ ×
    q̂) = 0`` (``p̂ = K⁻¹ (p, 1)``), so two pairs fix it (``t = a₁ × a₂`` of their rows ``a = R p̂ ×
    q̂``). Robustly: ``hypotheses`` such pairs (drawn with a fixed seed: the same input, the same
    answer), each scored by its Sampson residuals truncated at ``threshold_px`` (MSAC); then, over
    the pairs within ``threshold_px`` of the best, the smallest right singular vector of their rows,
    reweighted ``iterations`` times by the Sampson denominators (so that it minimises Sampson
    residuals, not algebraic ones). The pairs handed in may hold a few that a wrong rotation fitted
    (the inliers of a five-point solution): a plain least-squares fit was measured 14° off the
    truth on such a set, this one within 1°. The residuals do not see the sign of ``t``: it is
    taken along ``t_sign`` (3,).
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
    K, R, t_sign = matrix(K, (3, 3), "K"), matrix(R, (3, 3), "R"), matrix(t_sign, (3,), "t_sign")
    if p.shape != q.shape:
        raise ValueError(f"p and q must be (N, 2) of one shape, got {p.shape} and {q.shape}")
    n = len(p)
    if n < 3:
        return None
    Kinv = np.linalg.inv(K)
    x1 = np.c_[p, np.ones(n)]
    x2 = np.c_[q, np.ones(n)]
    A = np.cross((x1 @ Kinv.T) @ R.T, x2 @ Kinv.T)  # rows R p̂ × q̂
    rng = np.random.default_rng(0)
    i = rng.integers(0, n, size=hypotheses)
    j = (i + 1 + rng.integers(0, n - 1, size=hypotheses)) % n  # another pair than i
    T = np.cross(A[i], A[j])
    norm = np.linalg.norm(T, axis=1)
    T = T[norm > 1e-12] / norm[norm > 1e-12, None]
    if not len(T):
        return None
    r, _ = sampson_residuals(Kinv.T @ (skew(T) @ R) @ Kinv, x1, x2)  # (hypotheses, pairs)
    cost = np.minimum(r ** 2, threshold_px ** 2).sum(axis=1)
    best = T[int(np.argmin(cost))]
    keep = np.abs(r[int(np.argmin(cost))]) < threshold_px
    if keep.sum() < 3:
        return None
    A, x1, x2 = A[keep], x1[keep], x2[keep]
    w = np.ones(len(A))
    t = best
    for _ in range(max(1, int(iterations))):
        _, sv, Vt = np.linalg.svd(A * np.sqrt(w)[:, None], full_matrices=False)
        if not (np.all(np.isfinite(sv)) and sv[1] > 1e-12 * max(sv[0], 1e-300)):
            return None
        t = Vt[-1]
        w = 1.0 / np.maximum(sampson_residuals(Kinv.T @ (skew(t) @ R) @ Kinv, x1, x2)[1], 1e-18)
        w = w / np.max(w)
    if float(t @ t_sign) < 0.0:
        t = -t
    return t if np.all(np.isfinite(t)) else None
