"""Run-time refinement of the pose network's frame-to-frame motion against the images.

The pose network is the first estimate; a geometric solver on the two images refines it, and the
network's estimate stays the fallback whenever the solver cannot be trusted. One refiner serves
the node (:mod:`sfm_ros.ros.node`, parameter ``refine_pose``) and the evaluation
(``sfm_eval pose --refine``), through the same :meth:`Refiner.refine` call.

Modes
-----
``none``
    The network's motion, unchanged.
``epipolar`` (DF-VO, Zhan et al. 2020)
    Corners tracked from the reference frame into the new frame (:func:`sfm_ros.data.features.track_corners`),
    the essential matrix by RANSAC (five-point solver) and its decomposition (cheirality) give the
    rotation and the direction of translation; the translation's length comes from the learned
    depth of the reference frame (the corners are triangulated with a unit baseline and compared
    with the predicted depth at the same pixels: the median ratio is the baseline), or from the
    network's translation when the depth is not given or disagrees with itself.
    Falls back to the network's motion when too few corners are tracked or agree with one
    essential matrix; keeps the network's translation and only takes the rotation when the motion
    shows too little parallax to fix a translation direction (a rotation, or a camera at rest).
``photometric`` (direct alignment: DSO, Engel et al. 2018; D3VO, Yang et al. 2020)
    The photometric error of warping the new frame onto the reference frame's sparse high-gradient
    pixels (DSO-style: the strongest gradient of every small cell, up to ``photo_points``) with the
    reference frame's predicted depth, minimised over the 6 pose parameters (and an affine change
    of brightness) from the network's motion: Levenberg-Marquardt on SE(3) (``exp(δ) T_new_ref``),
    efficient second-order (ESM) Jacobians, Huber weights, coarse to fine over ``photo_levels``
    image halvings. Pixels on depth edges are left out (``photo_max_depth_step``). The step's
    length is in the depth's units. Falls back to the starting motion (with the reason) without
    depth, with too few textured pixels, when too few stay inside the new image, when the energy
    ends no lower than at the start, when the rotation moves more than ``photo_max_rotation_deg``
    from the start (diverged), or on a singular or non-finite solution. Only as good as the
    learned depth: with the exact depth of the rendered streets it is more accurate than
    ``epipolar``, with the shipped model's depth on KITTI it is not (BENCHMARKS.md).
``epipolar+photometric``
    ``epipolar`` first, then the photometric alignment from its outcome (from the network's motion
    where the epipolar refinement fell back); a failed photometric alignment keeps the epipolar
    outcome, with the photometric reason appended.

Convention
----------
As :mod:`sfm_ros.core.geometry`: optical camera frame (x right, y down, z forward), pixel centres at
integer coordinates, ``T_a_b`` maps points of frame ``b`` into frame ``a``. The motion refined
here is ``T_ref_new``: the pose of the new camera in the reference camera's frame (what
:func:`sfm_ros.runtime.odometry.window_increment` returns), in the network's depth units. The images are
refined at their own aspect ratio and a fixed pixel budget (:meth:`Refiner.view`), not at the
network's input size.

ROS-free and torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from sfm_ros.data.autoconfig import auto_size
from sfm_ros.data.camera import CameraModel, resize_intrinsics
from sfm_ros.data.features import to_grey, track_corners
from sfm_ros.core.se3 import (axis_angle_to_matrix, invert_pose, make_pose, matrix_to_axis_angle,
                              pose_vec_to_matrix)

__all__ = ["REFINE_MODES", "RefineView", "Refinement", "Refiner", "refine_sequence", "motion_covariance"]

REFINE_MODES = ("none", "epipolar", "photometric", "epipolar+photometric")
_ESTIMATORS = {"magsac": cv2.USAC_MAGSAC, "accurate": cv2.USAC_ACCURATE, "ransac": cv2.RANSAC}


@dataclass
class RefineView:
    """One frame as the refiner sees it: ``grey`` (h, w) uint8 at the refinement size and ``K``,
    the intrinsics of that size. Build it with :meth:`Refiner.view`."""

    grey: np.ndarray
    K: np.ndarray


@dataclass
class Refinement:
    """The outcome of one refinement.

    ``T``: the motion to use (4x4 ``T_ref_new``); ``used``: what it is made of (``network``,
    ``epipolar``, ``rotation`` = epipolar rotation with the network's translation, ``photometric``
    = the direct alignment's); ``reason``: why the network's (or, chained, the epipolar) estimate
    was (partly) kept, empty otherwise; ``tracks``/``inliers``: corners tracked and consistent with
    the essential matrix; ``scale_from``: ``depth`` | ``network`` | ``""``;
    ``rotation_change_deg``: the angle between the network's rotation and the refined one; ``why``:
    a short key of ``reason`` (``off``, ``few tracks``, ``no essential matrix``, ``few inliers``,
    ``low parallax``; ``photometric: `` + ``no depth``, ``few pixels``, ``few valid pixels``,
    ``residual worse``, ``diverged``, ``singular``, ``degenerate``, ``non-finite``) for counting.
    ``start`` and ``photo_*``: what the photometric alignment started from and measured (pixels,
    pixels inside the new image at the end, robust residual spread at the start and the end in grey
    levels, iterations, the pose information matrix its covariance is made of).
    """

    T: np.ndarray
    used: str = "network"
    reason: str = ""
    tracks: int = 0
    inliers: int = 0
    scale_from: str = ""
    rotation_change_deg: float = 0.0
    why: str = ""
    residual_px: float = float("nan")
    parallax_px: float = float("nan")
    covariance: np.ndarray | None = None
    length_spread: float = float("nan")
    motion_info: tuple | None = None  # (JᵀJ, B, R) of :func:`_epipolar_information`
    start: str = ""  # what the photometric alignment started from: network | epipolar | rotation
    photo_pixels: int = 0  # reference pixels of the photometric alignment (finest level)
    photo_valid: int = 0   # of which inside the new image at the end
    photo_residual: float = float("nan")        # robust residual spread at the end (grey levels)
    photo_residual_start: float = float("nan")  # the same at the start
    photo_iterations: int = 0
    photo_info: np.ndarray | None = None  # (6, 6) pose information JᵀWJ of the final residuals

    @property
    def refined(self) -> bool:
        return self.used != "network"


@dataclass
class Refiner:
    """Refines ``T_ref_new`` between two frames; see the module doc.

    Args:
        mode: one of :data:`REFINE_MODES`.
        max_corners: corners detected in the reference frame.
        min_distance_px: least distance between two corners (pixels).
        max_fb_px: forward-backward tracking error (pixels) above which a track is dropped.
        min_inliers: fewest corners consistent with the essential matrix to trust it.
        ransac_px: RANSAC threshold (pixels, at the given image size).
        estimator: the robust essential-matrix estimator: ``magsac`` (OpenCV's USAC MAGSAC++,
            with local optimisation), ``accurate`` (USAC with graph-cut local optimisation),
            ``ransac`` (plain RANSAC).
        min_parallax_px: median corner motion left once the rotation is removed (pixels) below
            which the translation direction is not trusted (only the rotation is taken).
        max_scale_spread: the depth-derived baseline is used only when the inter-quartile range of
            the per-corner ratios is below this fraction of their median.
        max_depth_step: corners whose 3x3 neighbourhood spans a larger depth ratio (a depth edge)
            are left out of the baseline.
        photo_levels: pyramid levels of the photometric alignment (each half the size).
        photo_points: most reference pixels at the finest level (one per cell of that many).
        photo_grad_min: a pixel is used when its gradient exceeds the median by this (grey
            levels per pixel).
        photo_huber: Huber threshold of the photometric residuals (grey levels).
        photo_blur: Gaussian sigma (pixels) applied to every level before the alignment (0: none).
        photo_esm: efficient second-order Jacobians (the mean of both images' gradients).
        photo_block_shrink: the cell size shrinks by this factor per coarser level (1: the same).
        photo_outlier: residuals above this (grey levels) get no weight (default: none).
        photo_iterations: Levenberg-Marquardt iterations per level at most.
        photo_lambda: initial Levenberg-Marquardt damping (times the Hessian's diagonal).
        photo_min_pixels: fewest textured reference pixels with depth (and inside the new image at
            the end) to trust the alignment.
        photo_min_valid: least fraction of those pixels inside the new image at the end.
        photo_max_rotation_deg: a rotation further than this from the start is taken as diverged.
        photo_max_depth_step: pixels whose 3x3 depth neighbourhood spans a larger ratio (a depth
            edge) are left out; 0 keeps them.
        The photometric constants were chosen on KITTI 00 frames 0-119 only (BENCHMARKS.md).
    """

    mode: str = "epipolar"
    max_corners: int = 500
    min_distance_px: int = 5
    max_fb_px: float = 1.0
    min_inliers: int = 20
    ransac_px: float = 0.3
    estimator: str = "magsac"
    min_parallax_px: float = 0.5
    max_scale_spread: float = 0.5
    max_depth_step: float = 1.1
    photo_levels: int = 3
    photo_points: int = 2000
    photo_grad_min: float = 4.0
    photo_huber: float = 9.0
    photo_blur: float = 0.0
    photo_esm: bool = True
    photo_block_shrink: float = 1.0
    photo_outlier: float = np.inf
    photo_iterations: int = 10
    photo_lambda: float = 1e-3
    photo_min_pixels: int = 100
    photo_min_valid: float = 0.5
    photo_max_rotation_deg: float = 5.0
    photo_max_depth_step: float = 1.1
    counts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in REFINE_MODES:
            raise ValueError(f"refine mode must be one of {', '.join(REFINE_MODES)}, got {self.mode!r}")
        if self.estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(_ESTIMATORS)}, got {self.estimator!r}")
        for name in ("photo_levels", "photo_points", "photo_iterations", "photo_min_pixels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("photo_huber", "photo_max_rotation_deg"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.photo_min_valid <= 1.0:
            raise ValueError(f"photo_min_valid must be in [0, 1], got {self.photo_min_valid!r}")

    def view(self, image: np.ndarray, K: np.ndarray) -> RefineView:
        """A camera image ((H, W[, 3]), uint8 or float in [0, 1]) with its intrinsics ``K`` → the
        refiner's view of it: grey, resized to the paper's pixel budget at the image's aspect ratio
        (:func:`sfm_ros.data.autoconfig.auto_size`: 128x416 for KITTI, 192x256 for 640x480), whatever the
        network's input size, so that the cost per frame is bounded and a small network input
        does not cost accuracy."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got {K.shape}")
        h, w = image.shape[:2]
        rh, rw = auto_size(w, h)
        grey = to_grey(image)
        if (rh, rw) != (h, w):
            grey = cv2.resize(grey, (rw, rh), interpolation=cv2.INTER_AREA)
            K = CameraModel(w, h, K).scaled(rw, rh).K
        return RefineView(grey, K)

    def refine(self, ref: RefineView, new: RefineView, T_net: np.ndarray,
               depth_ref: np.ndarray | None = None) -> Refinement:
        """Refine the network's ``T_net`` (4x4 ``T_ref_new``) between the views ``ref`` and ``new``
        (:meth:`view`, one size) with, optionally, the predicted depth of ``ref`` ((H, W) at any
        size, network units) for the translation's length."""
        T_net = np.asarray(T_net, dtype=np.float64)
        if T_net.shape != (4, 4):
            raise ValueError(f"T_net must be 4x4, got {T_net.shape}")
        if not np.all(np.isfinite(T_net)):
            raise ValueError("T_net must be finite")
        if depth_ref is not None and np.ndim(depth_ref) != 2:
            raise ValueError(f"depth_ref must be (H, W), got shape {np.shape(depth_ref)}")
        if ref.grey.shape != new.grey.shape:
            raise ValueError(f"views of one size expected, got {ref.grey.shape} and {new.grey.shape}")
        if self.mode == "none":
            out = Refinement(T_net.copy(), reason="refinement off", why="off")
        else:
            if depth_ref is not None and depth_ref.shape != ref.grey.shape:
                depth_ref = cv2.resize(np.asarray(depth_ref, np.float32), ref.grey.shape[::-1],
                                       interpolation=cv2.INTER_NEAREST)
            out = None
            if self.mode in ("epipolar", "epipolar+photometric"):
                out = self._epipolar(ref.grey, new.grey, ref.K, T_net, depth_ref)
            if self.mode in ("photometric", "epipolar+photometric"):
                out = self._photometric(ref.grey, new.grey, ref.K, T_net, depth_ref, out)
        out.covariance = motion_covariance(out, 0.5 * (ref.K[0, 0] + ref.K[1, 1]))
        self.counts[out.used] = self.counts.get(out.used, 0) + 1
        return out

    # ------------------------------------------------------------------ epipolar
    def _epipolar(self, a: np.ndarray, b: np.ndarray, K: np.ndarray, T_net: np.ndarray,
                  depth: np.ndarray | None) -> Refinement:
        p, q = track_corners(a, b, max_corners=self.max_corners, min_distance=self.min_distance_px,
                             max_fb_error=self.max_fb_px)
        n = len(p)
        if n < self.min_inliers:
            return Refinement(T_net.copy(), reason=f"{n} corners tracked (< {self.min_inliers})", tracks=n,
                              why="few tracks")
        R_rot, residual = _rotation_only(p, q, K)
        if R_rot is not None and residual < self.min_parallax_px:
            T = T_net.copy()
            T[:3, :3] = R_rot.T
            d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ T[:3, :3]))))
            return Refinement(T, "rotation", f"a rotation explains the motion to {residual:.2f} px "
                              f"(< {self.min_parallax_px:g}): translation from the network", n, n, "network",
                              d_rot, "low parallax", residual_px=residual, parallax_px=residual)
        E, mask = cv2.findEssentialMat(p, q, K, method=_ESTIMATORS[self.estimator], prob=0.999,
                                       threshold=self.ransac_px)
        if E is not None and E.ndim == 2 and E.shape[0] > 3 and E.shape[0] % 3 == 0:
            E = E[:3]  # several solutions stacked: the first is the best scored
        if E is None or E.shape != (3, 3) or mask is None:
            return Refinement(T_net.copy(), reason="no essential matrix", tracks=n, why="no essential matrix")
        inl, R, t, mask = cv2.recoverPose(E, p, q, K, mask=mask.copy())
        inl = int(inl)
        if inl < self.min_inliers:
            return Refinement(T_net.copy(), reason=f"{inl} corners fit the essential matrix (< {self.min_inliers})",
                              tracks=n, inliers=inl, why="few inliers")
        keep = mask.ravel() > 0
        p_in, q_in = p[keep].astype(np.float64), q[keep].astype(np.float64)
        # T_new_ref = [R | t]: x_new = R x_ref + t, |t| = 1
        T_new_ref = make_pose(R, t.ravel())
        T_epi = invert_pose(T_new_ref)
        d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ T_epi[:3, :3]))))
        parallax = _parallax_px(p_in, q_in, K, R)
        if parallax < self.min_parallax_px:
            T = T_net.copy()
            T[:3, :3] = T_epi[:3, :3]
            return Refinement(T, "rotation", f"parallax {parallax:.2f} px (< {self.min_parallax_px:g}): "
                              "translation from the network", n, inl, "network", d_rot, "low parallax",
                              residual_px=_robust_px(_signed_sampson(p_in, q_in, K, R, t.ravel())),
                              parallax_px=parallax)
        baseline, spread, scale_from = None, float("nan"), "network"
        if depth is not None:
            found = self._depth_baseline(p_in, q_in, K, T_new_ref, depth)
            if found is not None:
                (baseline, spread), scale_from = found, "depth"
        if baseline is None:
            baseline = float(np.linalg.norm(T_net[:3, 3]))
        T = T_epi.copy()
        T[:3, 3] *= baseline
        info, r0 = _epipolar_information(p_in, q_in, K, T_new_ref[:3, :3], T_new_ref[:3, 3])
        return Refinement(T, "epipolar", "", n, inl, scale_from, d_rot, residual_px=_robust_px(r0),
                          parallax_px=parallax, length_spread=spread, motion_info=info)

    def _photometric(self, a: np.ndarray, b: np.ndarray, K: np.ndarray, T_net: np.ndarray,
                     depth: np.ndarray | None, before: Refinement | None) -> Refinement:
        """Direct photometric polish of ``before`` (the epipolar outcome, chained mode) or of the
        network's motion; on failure ``before`` (or the network's motion) is kept, with the reason."""
        keep = before if before is not None else Refinement(T_net.copy())
        start = keep.used
        if depth is None:
            res = _PhotoResult(None, "no depth", "no depth for the photometric alignment")
        else:
            res = _photometric_align(a, b, K, depth, keep.T, self)
        if res.T is None:
            why = f"photometric: {res.why}"
            reason = f"photometric alignment failed ({res.reason}): {start}'s motion kept"
            if before is not None and before.reason:
                reason = f"{before.reason}; {reason}"
            keep.why = f"{keep.why}, {why}" if keep.why else why
            keep.reason = reason
            keep.start, keep.photo_pixels, keep.photo_valid = start, res.pixels, res.valid
            keep.photo_residual_start, keep.photo_iterations = res.residual_start, res.iterations
            return keep
        d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_net[:3, :3].T @ res.T[:3, :3]))))
        return Refinement(res.T, "photometric", "", keep.tracks, keep.inliers, "depth", d_rot,
                          residual_px=keep.residual_px, parallax_px=keep.parallax_px, start=start,
                          photo_pixels=res.pixels, photo_valid=res.valid, photo_residual=res.residual,
                          photo_residual_start=res.residual_start, photo_iterations=res.iterations,
                          photo_info=res.info)

    def _depth_baseline(self, p: np.ndarray, q: np.ndarray, K: np.ndarray, T_new_ref: np.ndarray,
                        depth: np.ndarray) -> tuple[float, float] | None:
        """Baseline that makes the corners triangulated with a unit baseline agree with the
        predicted depth of the reference frame (median ratio) and the ratios' spread (inter-quartile
        range / median / sqrt(corners)), or None when they disagree."""
        depth = np.asarray(depth, dtype=np.float64)
        h, w = depth.shape
        P0 = K @ np.eye(3, 4)
        P1 = K @ T_new_ref[:3, :]
        X = cv2.triangulatePoints(P0, P1, p.T, q.T)
        z_tri = X[2] / X[3]
        X1 = T_new_ref[:3, :3] @ (X[:3] / X[3]) + T_new_ref[:3, 3:4]
        u = np.clip(np.rint(p[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.rint(p[:, 1]).astype(int), 0, h - 1)
        d = depth[v, u]
        # Corners sit on depth edges: keep those whose 3x3 neighbourhood has one depth.
        kernel = np.ones((3, 3), np.uint8)
        d32 = depth.astype(np.float32)
        lo, hi = cv2.erode(d32, kernel)[v, u], cv2.dilate(d32, kernel)[v, u]
        ok = np.isfinite(z_tri) & (z_tri > 1e-6) & (X1[2] > 1e-6) & np.isfinite(d) & (lo > 0) & \
            (hi <= self.max_depth_step * lo)
        if int(ok.sum()) < self.min_inliers // 2:
            return None
        ratio = d[ok] / z_tri[ok]
        q25, med, q75 = np.percentile(ratio, [25, 50, 75])
        if not np.isfinite(med) or med <= 0 or (q75 - q25) > self.max_scale_spread * med:
            return None
        return float(med), float((q75 - q25) / med / math.sqrt(ratio.size))


def _rotation_only(p: np.ndarray, q: np.ndarray, K: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The rotation ``R`` (x_new = R x_ref) that best explains ``p → q`` as a pure rotation, and the
    median residual of that rotation's homography (pixels); ``(None, inf)`` when nothing fits.

    The corners a robust homography keeps are aligned as unit bearing vectors (Kabsch: the
    least-squares rotation between the two bundles of rays)."""
    H, mask = cv2.findHomography(p, q, cv2.USAC_MAGSAC, 1.0)
    if H is None or mask is None or int(mask.sum()) < 3:
        return None, float("inf")
    keep = mask.ravel() > 0
    Kinv = np.linalg.inv(K)
    f0 = np.c_[p[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f1 = np.c_[q[keep], np.ones(int(keep.sum()))] @ Kinv.T
    f0 /= np.linalg.norm(f0, axis=1, keepdims=True)
    f1 /= np.linalg.norm(f1, axis=1, keepdims=True)
    U, _, Vt = np.linalg.svd(f1.T @ f0)
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return R, _parallax_px(p.astype(np.float64), q.astype(np.float64), K, R)


# ------------------------------------------------------------------ photometric
@dataclass
class _PhotoResult:
    """What :func:`_photometric_align` found: the motion ``T`` (``T_ref_new``) or ``None`` with the
    reason why not, and the measured quantities the covariance is made of."""

    T: np.ndarray | None
    why: str = ""
    reason: str = ""
    pixels: int = 0          # selected reference pixels at the finest level
    valid: int = 0           # of which inside the new image at the end
    residual: float = float("nan")        # robust spread of the final residuals (grey levels)
    residual_start: float = float("nan")  # the same at the start (finest level)
    energy: float = float("nan")
    energy_start: float = float("nan")
    iterations: int = 0
    info: np.ndarray | None = None        # (6, 6) pose information JᵀWJ (grey levels² per unit²)


def _pyramid(img: np.ndarray, K: np.ndarray, levels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``levels`` (image float32, K) pairs, finest first; each level half the size of the one
    before (box filter; intrinsics by the pixel-centre rule)."""
    out = [(img.astype(np.float32), K)]
    for _ in range(1, levels):
        prev, _ = out[-1]
        h, w = prev.shape
        if h < 16 or w < 16:
            break
        h2, w2 = h // 2, w // 2
        out.append((cv2.resize(prev, (w2, h2), interpolation=cv2.INTER_AREA),
                    resize_intrinsics(K, (img.shape[0], img.shape[1]), (h2, w2))))
    return out


def _gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference image gradients (grey levels per pixel), Sobel-smoothed across."""
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return gx, gy


def _select_pixels(gx: np.ndarray, gy: np.ndarray, block: int, grad_min: float, border: int = 2) -> np.ndarray:
    """DSO-style sparse pixels of an image with gradients ``gx``, ``gy``: in every ``block`` x
    ``block`` cell the pixel of largest gradient, kept when its gradient exceeds the image's median
    gradient by ``grad_min`` grey levels per pixel. Returns (N, 2) integer ``(u, v)``."""
    mag = np.sqrt(gx * gx + gy * gy)
    h, w = mag.shape
    inner = mag[border:h - border, border:w - border]
    bh, bw = inner.shape[0] // block, inner.shape[1] // block
    if bh < 1 or bw < 1:
        return np.zeros((0, 2), int)
    cells = inner[:bh * block, :bw * block].reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, -1)
    k = cells.argmax(axis=2)
    best = np.take_along_axis(cells, k[..., None], axis=2)[..., 0]
    keep = best > float(np.median(mag)) + grad_min
    by, bx = np.nonzero(keep)
    kk = k[by, bx]
    v = border + by * block + kk // block
    u = border + bx * block + kk % block
    return np.stack([u, v], axis=1)


def _huber(r: np.ndarray, k: float, cut: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Huber energies and IRLS weights of residuals ``r`` at threshold ``k``; beyond ``cut`` a
    residual is an outlier (occlusion, a moving object): constant energy, no weight."""
    a = np.abs(r)
    inl = a <= k
    e = np.where(inl, 0.5 * r * r, k * (a - 0.5 * k))
    w = np.where(inl, 1.0, k / np.maximum(a, 1e-12))
    if np.isfinite(cut):
        far = a > cut
        e = np.where(far, k * (cut - 0.5 * k), e)
        w = np.where(far, 0.0, w)
    return e, w


class _PhotoLevel:
    """One pyramid level of a direct alignment: the reference pixels back-projected with the
    reference depth, their intensities, and the new image with its gradients for sampling."""

    def __init__(self, ref: np.ndarray, new: np.ndarray, K: np.ndarray, depths: tuple, full_hw,
                 block: int, grad_min: float, max_depth_step: float, esm: bool = False):
        depth, lo_d, hi_d = depths  # the depth and its 3x3 minimum and maximum
        self.K = K
        self.h, self.w = new.shape
        rgx, rgy = _gradients(ref)
        uv = _select_pixels(rgx, rgy, block, grad_min)
        # depth at the pixel (full resolution, nearest), without the pixels on depth edges
        sy, sx = full_hw[0] / self.h, full_hw[1] / self.w
        u0 = np.clip(np.rint((uv[:, 0] + 0.5) * sx - 0.5).astype(int), 0, full_hw[1] - 1)
        v0 = np.clip(np.rint((uv[:, 1] + 0.5) * sy - 0.5).astype(int), 0, full_hw[0] - 1)
        d = depth[v0, u0]
        ok = np.isfinite(d) & (d > 0)
        if max_depth_step > 0 and uv.size:
            lo, hi = lo_d[v0, u0], hi_d[v0, u0]
            ok &= (lo > 0) & (hi <= max_depth_step * lo)
        uv, d = uv[ok], d[ok]
        self.n = len(uv)
        Kinv = np.linalg.inv(K)
        rays = np.c_[uv.astype(np.float64), np.ones(self.n)] @ Kinv.T
        self.X = (rays * d[:, None]).T  # (3, N) in the reference camera
        self.I_ref = ref[uv[:, 1], uv[:, 0]].astype(np.float64)
        self.I_c = self.I_ref - (self.I_ref.mean() if self.n else 0.0)
        self.g_ref = np.stack([rgx[uv[:, 1], uv[:, 0]], rgy[uv[:, 1], uv[:, 0]]], axis=1).astype(np.float64)
        self.esm = esm
        gx, gy = _gradients(new)
        self.stack = cv2.merge([new, gx, gy])

    def evaluate(self, P: np.ndarray, ab: np.ndarray, k: float, cut: float, out_energy: float, jac: bool = True):
        """Residuals of the pose ``P`` (``T_new_ref``) and brightness ``ab``: the robust energy
        (mean over every pixel; a pixel leaving the image counts ``out_energy``), and with ``jac``
        the normal equations over ``[v, ω, a, b]`` (``exp(δ) P``, δ in the new camera)."""
        X = P[:3, :3] @ self.X + P[:3, 3:4]
        z = X[2]
        good = z > 1e-6
        iz = np.where(good, 1.0 / np.where(good, z, 1.0), 0.0)
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        u = fx * X[0] * iz + cx
        v = fy * X[1] * iz + cy
        good &= (u >= 0.0) & (u <= self.w - 1.0) & (v >= 0.0) & (v <= self.h - 1.0)
        idx = np.nonzero(good)[0]
        n_out = self.n - idx.size
        if idx.size == 0:
            return dict(E=out_energy, valid=0)
        m = np.stack([u[idx], v[idx]], axis=1).astype(np.float32)[:, None, :]
        s = cv2.remap(self.stack, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0, :]
        r = s[:, 0] - self.I_ref[idx] - ab[0] * self.I_c[idx] - ab[1]
        e, w = _huber(r, k, cut)
        E = (float(e.sum()) + n_out * out_energy) / max(self.n, 1)
        res = dict(E=E, valid=int(idx.size), r=r, w=w)
        if not jac:
            return res
        x, y, iz = X[0, idx], X[1, idx], iz[idx]
        xz, yz = x * iz, y * iz
        if self.esm:  # efficient second-order minimisation: the mean of both images' gradients
            gx, gy = 0.5 * (s[:, 1] + self.g_ref[idx, 0]) * fx, 0.5 * (s[:, 2] + self.g_ref[idx, 1]) * fy
        else:
            gx, gy = s[:, 1] * fx, s[:, 2] * fy
        J = np.empty((idx.size, 8))
        J[:, 0] = gx * iz
        J[:, 1] = gy * iz
        J[:, 2] = -(gx * xz + gy * yz) * iz
        J[:, 3] = -gx * xz * yz - gy * (1.0 + yz * yz)
        J[:, 4] = gx * (1.0 + xz * xz) + gy * xz * yz
        J[:, 5] = -gx * yz + gy * xz
        J[:, 6] = -self.I_c[idx]
        J[:, 7] = -1.0
        Jw = J * w[:, None]
        res["H"] = Jw.T @ J
        res["g"] = Jw.T @ r
        return res


def _photometric_align(ref: np.ndarray, new: np.ndarray, K: np.ndarray, depth: np.ndarray,
                       T_start: np.ndarray, cfg: "Refiner") -> _PhotoResult:
    """Direct alignment of ``new`` to ``ref`` (grey uint8, one size) over the motion ``T_ref_new``
    from ``T_start``, with the reference depth: Levenberg-Marquardt on SE(3) with an affine
    brightness change, Huber weights, coarse to fine, on sparse high-gradient reference pixels."""
    depth = np.asarray(depth, dtype=np.float32)
    ok = np.isfinite(depth) & (depth > 0)
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(np.where(ok, depth, 0.0).astype(np.float32), kernel)
    hi = cv2.dilate(np.where(ok, depth, np.inf).astype(np.float32), kernel)
    pr, pn = _pyramid(ref, K, cfg.photo_levels), _pyramid(new, K, cfg.photo_levels)
    full_hw = ref.shape
    block = max(2, int(round(math.sqrt(ref.size / cfg.photo_points))))
    if cfg.photo_blur > 0:
        pr = [(cv2.GaussianBlur(a, (0, 0), cfg.photo_blur), Kl) for a, Kl in pr]
        pn = [(cv2.GaussianBlur(b, (0, 0), cfg.photo_blur), Kl) for b, Kl in pn]
    levels = [_PhotoLevel(a, b, Kl, (depth, lo, hi), full_hw, max(2, int(round(block / cfg.photo_block_shrink ** i))),
                          cfg.photo_grad_min, cfg.photo_max_depth_step, cfg.photo_esm)
              for i, ((a, Kl), (b, _)) in enumerate(zip(pr, pn))]
    fine = levels[0]
    if fine.n < cfg.photo_min_pixels:
        return _PhotoResult(None, "few pixels", f"{fine.n} textured pixels with depth (< {cfg.photo_min_pixels})",
                            pixels=fine.n)
    k, cut = cfg.photo_huber, cfg.photo_outlier
    out_e = float(_huber(np.array([min(2.0 * k, cut)]), k)[0][0])
    P = invert_pose(T_start)
    ab = np.zeros(2)
    start = fine.evaluate(P, ab, k, cut, out_e, jac=False)
    E0 = start["E"]
    r0 = _robust_px(start["r"]) if start["valid"] else float("nan")
    iters = 0
    cur = None
    for lev in reversed(levels):
        if lev.n < 6:
            continue
        cur = lev.evaluate(P, ab, k, cut, out_e)
        lam = cfg.photo_lambda
        for _ in range(cfg.photo_iterations):
            if cur["valid"] < 6:
                break
            iters += 1
            H, g = cur["H"], cur["g"]
            A = H + lam * np.diag(np.diag(H) + 1e-9)
            try:
                delta = -np.linalg.solve(A, g)
            except np.linalg.LinAlgError:
                return _PhotoResult(None, "singular", "the photometric normal equations are singular",
                                    pixels=fine.n, iterations=iters)
            if not np.all(np.isfinite(delta)):
                return _PhotoResult(None, "non-finite", "non-finite photometric step", pixels=fine.n,
                                    iterations=iters)
            P_new = pose_vec_to_matrix(delta[:6]) @ P
            ab_new = ab + delta[6:]
            cand = lev.evaluate(P_new, ab_new, k, cut, out_e)
            if cand["E"] < cur["E"]:
                P, ab, cur = P_new, ab_new, cand
                lam = max(lam * 0.5, 1e-6)
                small = np.linalg.norm(delta[3:6]) < 1e-5 and \
                    np.linalg.norm(delta[:3]) < 1e-5 * max(float(np.median(lev.X[2])), 1e-9)
                if small:
                    break
            else:
                lam *= 4.0
                if lam > 1e4:
                    break
    end = fine.evaluate(P, ab, k, cut, out_e)
    T = invert_pose(P) if np.all(np.isfinite(P)) else None
    res = _PhotoResult(T, pixels=fine.n, valid=end.get("valid", 0), energy=end["E"], energy_start=E0,
                       residual_start=r0, iterations=iters)
    if T is None or not np.isfinite(end["E"]):
        res.T, res.why, res.reason = None, "non-finite", "non-finite photometric solution"
        return res
    if res.valid < cfg.photo_min_valid * fine.n or res.valid < cfg.photo_min_pixels:
        res.T, res.why = None, "few valid pixels"
        res.reason = f"{res.valid} of {fine.n} pixels inside the new image at the end"
        return res
    res.residual = _robust_px(end["r"])
    if not end["E"] < E0:
        res.T, res.why = None, "residual worse"
        res.reason = f"photometric energy {end['E']:.3g} not below the start's {E0:.3g}"
        return res
    d_rot = float(np.degrees(np.linalg.norm(matrix_to_axis_angle(T_start[:3, :3].T @ T[:3, :3]))))
    if d_rot > cfg.photo_max_rotation_deg:
        res.T, res.why = None, "diverged"
        res.reason = f"photometric rotation {d_rot:.2f}° from the start (> {cfg.photo_max_rotation_deg:g}°)"
        return res
    H = end["H"]
    # information of the pose alone: the brightness parameters marginalised (Schur complement)
    try:
        info = H[:6, :6] - H[:6, 6:] @ np.linalg.solve(H[6:, 6:], H[6:, :6])
    except np.linalg.LinAlgError:
        info = None
    if info is None or not np.all(np.isfinite(info)) or np.linalg.matrix_rank(info) < 6:
        res.T, res.why, res.reason = None, "degenerate", "the photometric information matrix is rank deficient"
        return res
    res.info = info
    return res

# Per-motion uncertainty (:func:`motion_covariance`), calibrated on KITTI 00 frames 0-119 against
# ground truth (a model trained on those frames; reported frames 120-159 and 7-Scenes never used):
#: rotation error of a rotation-only refinement = K_ROT x residual / (focal x sqrt(inliers)) per axis
#: (measured 30-34 for epipolar refinements)
K_ROT = 32.0
#: relative error of a step length from the learned depth = K_LEN x the spread of the per-corner
#: depth ratios (inter-quartile range / median / sqrt(corners)) (measured 12.3 and 14.5 for two models)
K_LEN = 13.0
MIN_LEN_REL = 0.05
#: the pose network's own motion: rotation per camera axis x, y, z (rad; measured rms 0.0027, 0.019-0.022,
#: 0.0028 for two models: the turn about the vertical y is what it gets most wrong), direction
#: (rad; measured 14-15° mean), length (relative)
NETWORK_ROT = (0.004, 0.025, 0.004)
NETWORK_DIR = 0.3
NETWORK_LEN_REL = 0.5
#: the Gauss-Newton covariance of a refined motion is K_GN² x residual² x (JᵀJ)⁻¹
K_GN = 6.0
#: below this many inliers the covariance grows as 1/n² rather than 1/n (unmodelled errors dominate)
FEW_INLIERS = 100
MIN_RESIDUAL_PX = 0.05
MIN_ROT = 2e-4   # floors (rad): no motion is known better than this
MIN_DIR = 5e-3
#: the covariance of a photometric motion is K_PHOTO² x residual² x (JᵀWJ)⁻¹ (the pixels' errors
#: are neither independent nor only image noise: the learned depth's errors dominate)
K_PHOTO = 9.0
#: relative error of a photometric step length (the learned depth's scale between frames)
PHOTO_LEN_REL = 0.2
MIN_PHOTO_RESIDUAL = 0.5  # grey levels


def motion_covariance(r: Refinement, focal_px: float) -> np.ndarray:
    """(6, 6) covariance of ``r.T`` (camera frame, ``[tx, ty, tz, rx, ry, rz]``, translation in the
    network's units) from what the refinement measured: the epipolar residual, the inliers and the
    parallax for a refined motion, the network's calibrated errors otherwise (constants above).
    Translation: the length's error along the motion, the direction's error across it."""
    t = r.T[:3, 3]
    L = float(np.linalg.norm(t))
    d = t / L if L > 1e-12 else np.array([0.0, 0.0, 1.0])
    n = max(r.inliers, 1)
    if r.used == "photometric" and r.photo_info is not None:
        C = _photometric_covariance(r, L, d)
        if C is not None:
            return C
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    elif r.used == "epipolar" and r.motion_info is not None:
        s_len = (max(MIN_LEN_REL, K_LEN * r.length_spread) if r.scale_from == "depth" else NETWORK_LEN_REL) * L
        info, B, R = r.motion_info
        S = (K_GN * max(r.residual_px, MIN_RESIDUAL_PX)) ** 2 * max(1.0, FEW_INLIERS / n) * np.linalg.pinv(info)
        C = np.zeros((6, 6))
        C[3:, 3:] = R @ S[:3, :3] @ R.T + MIN_ROT ** 2 * np.eye(3)
        Bt = R.T @ B  # directions across the motion, in the reference frame
        P = np.outer(d, d)
        C[:3, :3] = s_len ** 2 * P + L ** 2 * (Bt @ S[3:, 3:] @ Bt.T) + (MIN_DIR * L) ** 2 * (np.eye(3) - P)
        if np.all(np.isfinite(C)):
            return C
        s_rot, s_dir = NETWORK_ROT, NETWORK_DIR
    elif r.used == "rotation":
        s_rot = max(MIN_ROT, K_ROT * r.residual_px / (focal_px * math.sqrt(n)))
        s_dir, s_len = NETWORK_DIR, NETWORK_LEN_REL * L
    else:
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    if not all(np.all(np.isfinite(x)) for x in (s_rot, s_dir, s_len)):
        s_rot, s_dir, s_len = NETWORK_ROT, NETWORK_DIR, NETWORK_LEN_REL * L
    C = np.zeros((6, 6))
    P = np.outer(d, d)
    C[:3, :3] = s_len ** 2 * P + (s_dir * L) ** 2 * (np.eye(3) - P)
    C[3:, 3:] = np.diag(np.broadcast_to(np.square(s_rot), (3,)))
    return C


def _photometric_covariance(r: Refinement, L: float, d: np.ndarray) -> np.ndarray | None:
    """:func:`motion_covariance` of a photometric motion: the Gauss-Newton covariance of the pose
    (``K_PHOTO² σ² (JᵀWJ)⁻¹`` over ``exp(δ) T_new_ref``, δ in the new camera), moved to ``T_ref_new``'s
    translation and right-multiplied rotation, plus the step length's error along the motion and
    the floors; None when it is not finite."""
    sigma = max(float(r.photo_residual), MIN_PHOTO_RESIDUAL)
    try:
        S = (K_PHOTO * sigma) ** 2 * np.linalg.inv(r.photo_info)
    except np.linalg.LinAlgError:
        return None
    # T_ref_new' = T_ref_new exp(-δ): translation error -R v, rotation error -ω
    A = np.zeros((6, 6))
    A[:3, :3] = -r.T[:3, :3]
    A[3:, 3:] = -np.eye(3)
    C = A @ S @ A.T
    C = 0.5 * (C + C.T)
    P = np.outer(d, d)
    C[:3, :3] += (PHOTO_LEN_REL * L) ** 2 * P + (MIN_DIR * L) ** 2 * (np.eye(3) - P)
    C[3:, 3:] += MIN_ROT ** 2 * np.eye(3)
    return C if np.all(np.isfinite(C)) else None


def _robust_px(residuals: np.ndarray) -> float:
    """Robust spread (1.4826 x median absolute value) of residuals in pixels."""
    return float(1.4826 * np.median(np.abs(residuals)))


def _signed_sampson(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Signed Sampson distances (pixels) of ``p ↔ q`` to the motion ``x_new = R x_ref + t``."""
    tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ (tx @ R) @ Kinv
    x1 = np.c_[p, np.ones(len(p))]
    x2 = np.c_[q, np.ones(len(q))]
    Fx1 = x1 @ F.T
    Ftx2 = x2 @ F
    den = Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2
    return np.sum(x2 * Fx1, axis=1) / np.sqrt(np.maximum(den, 1e-18))


def _epipolar_information(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray,
                          t: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Gauss-Newton information ``JᵀJ`` (5x5, pixels² per unit²) of the Sampson residuals over the
    five motion parameters the two views fix: a rotation ``ω`` (``R exp(ω)``, rad) and the direction
    of ``t`` along the two unit vectors ``B`` (3x2) across it (rad); numerical derivatives. Returns
    ``((JᵀJ, B, R), residuals)``. Its inverse times the residual variance is the motion's
    covariance, correlations (bas-relief: a turn against a sideways step) included."""
    t = t / np.linalg.norm(t)
    a = np.array([1.0, 0.0, 0.0]) if abs(t[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b1 = np.cross(t, a)
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(t, b1)
    r0 = _signed_sampson(p, q, K, R, t)
    eps = 1e-6
    J = np.empty((len(p), 5))
    for k in range(3):
        w = np.zeros(3)
        w[k] = eps
        Rk = axis_angle_to_matrix(w)
        J[:, k] = (_signed_sampson(p, q, K, R @ Rk, t) - r0) / eps
    for k, b in enumerate((b1, b2)):
        tk = t + eps * b
        J[:, 3 + k] = (_signed_sampson(p, q, K, R, tk / np.linalg.norm(tk)) - r0) / eps
    return (J.T @ J, np.stack([b1, b2], axis=1), R), r0


def _parallax_px(p: np.ndarray, q: np.ndarray, K: np.ndarray, R: np.ndarray) -> float:
    """Median image motion (pixels) of ``p → q`` once the rotation ``R`` (x_new = R x_ref + t) is
    removed: the part of the motion that only a translation makes."""
    H = K @ R @ np.linalg.inv(K)
    ph = np.c_[p, np.ones(len(p))] @ H.T
    rot = ph[:, :2] / ph[:, 2:3]
    return float(np.median(np.linalg.norm(q - rot, axis=1)))


def refine_sequence(refiner: Refiner, views: list[RefineView], depths: list[np.ndarray] | None,
                    increments: np.ndarray) -> tuple[np.ndarray, list[Refinement]]:
    """Refine every frame-to-frame increment of a sequence: ``increments[i]`` (``T_i_{i+1}``, from the
    network) between ``views[i]`` and ``views[i + 1]`` (:meth:`Refiner.view`), with ``depths[i]`` for
    the scale. Returns the refined (N-1, 4, 4) increments and each :class:`Refinement`."""
    inc = np.asarray(increments, dtype=np.float64)
    if inc.ndim != 3 or inc.shape[1:] != (4, 4) or len(inc) != len(views) - 1:
        raise ValueError(f"increments must be ({len(views) - 1}, 4, 4) for {len(views)} views, got {inc.shape}")
    if depths is not None and len(depths) < len(views) - 1:
        raise ValueError(f"{len(depths)} depth maps for {len(views)} views")
    results = [refiner.refine(views[i], views[i + 1], inc[i], None if depths is None else depths[i])
               for i in range(len(inc))]
    return np.asarray([r.T for r in results]), results
