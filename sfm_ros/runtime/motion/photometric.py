"""Direct photometric alignment of two frames over their motion: the solver behind the refiner's
``photometric`` and ``epipolar+photometric`` modes (:mod:`sfm_ros.runtime.motion.refiner`).

Levenberg-Marquardt on SE(3) (``exp(δ) T_new_ref``) with an affine brightness change (gain and
offset), efficient second-order (ESM) Jacobians (the mean of both images' gradients; Benhimane &
Malis, "Real-time image-based tracking of planes using efficient second-order minimization", IROS
2004), Huber weights, coarse to fine over an image pyramid, on sparse high-gradient pixels of the
reference view (the strongest gradient in each small cell: DSO, Engel, Koltun & Cremers, "Direct
sparse odometry", PAMI 2018) with the reference frame's predicted depth; pixels on depth edges
are left out.

Convention: grey images (H, W) uint8 of one size, ``K`` (3, 3) their intrinsics, ``depth`` (H, W)
the reference frame's predicted depth; motions are ``T_ref_new`` (4, 4), optical camera frame,
pixel centres at integer coordinates. ROS-free and torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sfm_ros.core.se3 import invert_pose, pose_vec_to_matrix
from sfm_ros.data.camera import resize_intrinsics
from sfm_ros.runtime.motion._checks import matrix
from sfm_ros.runtime.motion.rotation_angle import angle_between_deg
from sfm_ros.runtime.motion.spread import robust_spread

__all__ = ["PhotometricOptions", "PhotoResult", "photometric_align"]


@dataclass
class PhotometricOptions:
    """The options of :func:`photometric_align` (the :class:`~sfm_ros.runtime.motion.refiner.Refiner`'s
    ``photo_`` + name; ``damping`` is its ``photo_lambda``). Chosen on KITTI 00 frames 0-119 only
    (BENCHMARKS.md).

    Args:
        levels: pyramid levels (each half the size).
        points: most reference pixels at the finest level (one per cell of that many).
        grad_min: a pixel is used when its gradient exceeds the median by this (grey levels per pixel).
        huber: Huber threshold of the residuals (grey levels).
        blur: Gaussian sigma (pixels) applied to every level before the alignment (0: none).
        esm: efficient second-order Jacobians (the mean of both images' gradients).
        block_shrink: the cell size shrinks by this factor per coarser level (1: the same).
        outlier: residuals above this (grey levels) get no weight (default: none).
        iterations: Levenberg-Marquardt iterations per level at most.
        damping: initial Levenberg-Marquardt damping (times the Hessian's diagonal).
        min_pixels: fewest textured reference pixels with depth (and inside the new image at the
            end) to trust the alignment.
        min_valid: least fraction of those pixels inside the new image at the end.
        max_rotation_deg: a rotation further than this from the start is taken as diverged.
        max_depth_step: pixels whose 3x3 depth neighbourhood spans a larger ratio (a depth edge)
            are left out; 0 keeps them.
    """

    levels: int = 3
    points: int = 2000
    grad_min: float = 4.0
    huber: float = 9.0
    blur: float = 0.0
    esm: bool = True
    block_shrink: float = 1.0
    outlier: float = np.inf
    iterations: int = 10
    damping: float = 1e-3
    min_pixels: int = 100
    min_valid: float = 0.5
    max_rotation_deg: float = 5.0
    max_depth_step: float = 1.1

    def __post_init__(self) -> None:
        for name in ("levels", "points", "iterations", "min_pixels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("huber", "max_rotation_deg"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {self.min_valid!r}")


@dataclass
class PhotoResult:
    """What :func:`photometric_align` found: the motion ``T`` (``T_ref_new``) or ``None`` with the
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


def photometric_align(ref: np.ndarray, new: np.ndarray, K: np.ndarray, depth: np.ndarray,
                       T_start: np.ndarray, opts: PhotometricOptions) -> PhotoResult:
    """Direct alignment of ``new`` to ``ref`` (grey uint8 (H, W), one size) over the motion
    ``T_ref_new`` from ``T_start`` (4, 4), with the reference ``depth`` (H, W) and intrinsics ``K``
    (3, 3); see the module doc."""
    if np.ndim(ref) != 2 or np.shape(ref) != np.shape(new) or np.shape(depth) != np.shape(ref):
        raise ValueError(f"grey images and a depth (H, W) of one size expected, got {np.shape(ref)}, "
                         f"{np.shape(new)} and {np.shape(depth)}")
    K, T_start = matrix(K, (3, 3), "K"), matrix(T_start, (4, 4), "T_start")
    depth = np.asarray(depth, dtype=np.float32)
    ok = np.isfinite(depth) & (depth > 0)
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(np.where(ok, depth, 0.0).astype(np.float32), kernel)
    hi = cv2.dilate(np.where(ok, depth, np.inf).astype(np.float32), kernel)
    pr, pn = _pyramid(ref, K, opts.levels), _pyramid(new, K, opts.levels)
    full_hw = ref.shape
    block = max(2, int(round(math.sqrt(ref.size / opts.points))))
    if opts.blur > 0:
        pr = [(cv2.GaussianBlur(a, (0, 0), opts.blur), Kl) for a, Kl in pr]
        pn = [(cv2.GaussianBlur(b, (0, 0), opts.blur), Kl) for b, Kl in pn]
    levels = [_PhotoLevel(a, b, Kl, (depth, lo, hi), full_hw, max(2, int(round(block / opts.block_shrink ** i))),
                          opts.grad_min, opts.max_depth_step, opts.esm)
              for i, ((a, Kl), (b, _)) in enumerate(zip(pr, pn))]
    fine = levels[0]
    if fine.n < opts.min_pixels:
        return PhotoResult(None, "few pixels", f"{fine.n} textured pixels with depth (< {opts.min_pixels})",
                            pixels=fine.n)
    k, cut = opts.huber, opts.outlier
    out_e = float(_huber(np.array([min(2.0 * k, cut)]), k)[0][0])
    P = invert_pose(T_start)
    ab = np.zeros(2)
    start = fine.evaluate(P, ab, k, cut, out_e, jac=False)
    E0 = start["E"]
    r0 = robust_spread(start["r"]) if start["valid"] else float("nan")
    iters = 0
    cur = None
    for lev in reversed(levels):
        if lev.n < 6:
            continue
        cur = lev.evaluate(P, ab, k, cut, out_e)
        lam = opts.damping
        for _ in range(opts.iterations):
            if cur["valid"] < 6:
                break
            iters += 1
            H, g = cur["H"], cur["g"]
            A = H + lam * np.diag(np.diag(H) + 1e-9)
            try:
                delta = -np.linalg.solve(A, g)
            except np.linalg.LinAlgError:
                return PhotoResult(None, "singular", "the photometric normal equations are singular",
                                    pixels=fine.n, iterations=iters)
            if not np.all(np.isfinite(delta)):
                return PhotoResult(None, "non-finite", "non-finite photometric step", pixels=fine.n,
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
    res = PhotoResult(T, pixels=fine.n, valid=end.get("valid", 0), energy=end["E"], energy_start=E0,
                       residual_start=r0, iterations=iters)
    if T is None or not np.isfinite(end["E"]):
        res.T, res.why, res.reason = None, "non-finite", "non-finite photometric solution"
        return res
    if res.valid < opts.min_valid * fine.n or res.valid < opts.min_pixels:
        res.T, res.why = None, "few valid pixels"
        res.reason = f"{res.valid} of {fine.n} pixels inside the new image at the end"
        return res
    res.residual = robust_spread(end["r"])
    if not end["E"] < E0:
        res.T, res.why = None, "residual worse"
        res.reason = f"photometric energy {end['E']:.3g} not below the start's {E0:.3g}"
        return res
    d_rot = angle_between_deg(T_start[:3, :3], T[:3, :3])
    if d_rot > opts.max_rotation_deg:
        res.T, res.why = None, "diverged"
        res.reason = f"photometric rotation {d_rot:.2f}° from the start (> {opts.max_rotation_deg:g}°)"
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
