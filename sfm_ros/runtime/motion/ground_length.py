"""Metric step length from the ground plane seen in two frames (the camera's height above it).

Once the rotation ``R`` and the direction ``t`` of a frame-to-frame motion are known (the
two-view solution, :mod:`sfm_ros.runtime.motion.two_view`), only the step's length ``s`` is missing. The
ground in the lower image is a plane ``n · X = h`` (``n`` the camera's "down", ``h`` its height in
metres): its pixels move between the frames by the homography ``K (R + s t nᵀ / h) K⁻¹``, so the
length that best aligns the ground of the new frame with the reference frame's is the step's
length in metres, whatever the learned depth's scale (the classic ground-plane scale of monocular
visual odometry; e.g. Song & Chandraker 2014, Zhou et al. 2019; the plane-induced homography:
Hartley & Zisserman, Multiple View Geometry, 2nd ed., Sec. 13.1). The search is one-dimensional:
a log grid over ``[min_len, max_len]`` × ``height`` (or first a narrow one around a guess), then
golden-section refinement around the best grid point, on the photometric error (truncated L1,
grey levels) of the reference frame's strongest-gradient pixels of the lower ``region`` of the
image.

It fails (returns a reason) when too few of those pixels see the ground ahead, when too many
leave the new image, when the best length is at an end of the grid, or when the error has no
clear minimum (``min_contrast``: the best error must be this far below the grid's median error).
A kerb, a car or a shadow in the lower image bias it: the length filter
(:mod:`sfm_ros.runtime.motion.length_filter`) weighs it with its calibrated spread and gates it.

Convention: as :mod:`sfm_ros.core.geometry`; grey images (H, W) of one size, ``K`` (3, 3) their
intrinsics; ``R`` (3, 3), ``t`` (3,) of ``x_new = R x_ref + t`` (``t`` unit); ``down`` (3,) a unit
vector in the reference camera's optical frame. ROS-free and torch-free: numpy and
OpenCV only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["GroundLength", "GroundPixels", "ground_pixels", "ground_step_length", "search_step_length", "checked_ground"]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass
class GroundLength:
    """The outcome of :func:`ground_step_length`: ``length`` (metres, None when it failed),
    ``reason`` (why it failed, empty otherwise), ``pixels`` used, ``error`` at the best length and
    ``contrast`` (best error / the grid's median error)."""

    length: float | None
    reason: str = ""
    pixels: int = 0
    error: float = float("nan")
    contrast: float = float("nan")


@dataclass
class GroundPixels:
    """The reference frame's strongest-gradient pixels of the lower image (homogeneous ``px`` (M, 3)
    and their grey levels ``ref``) and the blurred new frame ``B`` they are looked up in: prepared
    once per frame pair (:func:`ground_pixels`), searched for any normal and length."""

    px: np.ndarray
    ref: np.ndarray
    B: np.ndarray


def ground_pixels(a: np.ndarray, b: np.ndarray, region: float = 0.25, points: int = 2000,
                  blur: float = 1.0) -> GroundPixels:
    """The :class:`GroundPixels` of grey images ``a`` (reference) and ``b`` (new), one size."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"grey images of one size expected, got {a.shape} and {b.shape}")
    if not 0.0 < region <= 1.0:
        raise ValueError(f"region must be in (0, 1], got {region!r}")
    h, w = a.shape
    A = a.astype(np.float32)
    B = b.astype(np.float32)
    if blur > 0:
        A = cv2.GaussianBlur(A, (0, 0), blur)
        B = cv2.GaussianBlur(B, (0, 0), blur)
    top = min(h - 1, int(round(h * (1.0 - region))))
    grad = np.hypot(cv2.Sobel(A, cv2.CV_32F, 1, 0), cv2.Sobel(A, cv2.CV_32F, 0, 1))[top:]
    order = np.argsort(grad.ravel())[-int(points):]
    v, u = np.unravel_index(order, grad.shape)
    v = v + top
    px = np.stack([u, v, np.ones(len(u))], axis=1).astype(np.float64)
    return GroundPixels(px, A[v, u], B)


def ground_step_length(a: np.ndarray, b: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                       down: np.ndarray, height: float, region: float = 0.25, points: int = 2000,
                       blur: float = 1.0, truncate: float = 20.0, min_len: float = 0.03,
                       max_len: float = 3.0, steps: int = 25, refine_steps: int = 8,
                       min_pixels: int = 200, min_inside: float = 0.5, min_contrast: float = 0.8,
                       guess: float | None = None, guess_range: float = 2.0,
                       guess_steps: int = 9) -> GroundLength:
    """The step length (metres) that aligns the ground of grey image ``b`` (new frame) with that of
    ``a`` (reference frame) under the motion ``R``, ``t`` (unit) for a camera ``height`` metres above
    a ground whose normal is ``down``; see the module doc. ``min_len``/``max_len`` are in units of
    ``height``; ``steps`` grid points between them, ``refine_steps`` golden-section steps. With a
    ``guess`` (metres; e.g. the previous step's length) the grid is first ``guess_steps`` points over
    ``guess / guess_range .. guess * guess_range``, and the full grid only when that one's best
    length is at its end or has no clear minimum (half the cost on a steady drive)."""
    pix = ground_pixels(a, b, region, points, blur)
    return search_step_length(pix, K, R, t, down, height, truncate=truncate, min_len=min_len, max_len=max_len,
                              steps=steps, refine_steps=refine_steps, min_pixels=min_pixels,
                              min_inside=min_inside, min_contrast=min_contrast, guess=guess,
                              guess_range=guess_range, guess_steps=guess_steps)


def search_step_length(pix: GroundPixels, K: np.ndarray, R: np.ndarray, t: np.ndarray, down: np.ndarray,
                       height: float, truncate: float = 20.0, min_len: float = 0.03, max_len: float = 3.0,
                       steps: int = 25, refine_steps: int = 8, min_pixels: int = 200, min_inside: float = 0.5,
                       min_contrast: float = 0.8, guess: float | None = None, guess_range: float = 2.0,
                       guess_steps: int = 9) -> GroundLength:
    """:func:`ground_step_length` on prepared :class:`GroundPixels` (the same arguments)."""
    K = np.asarray(K, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(3)
    n = np.asarray(down, dtype=np.float64).reshape(3)
    if K.shape != (3, 3) or R.shape != (3, 3):
        raise ValueError(f"K and R must be 3x3, got {K.shape} and {R.shape}")
    if not (math.isfinite(height) and height > 0):
        raise ValueError(f"height must be a positive number of metres, got {height!r}")
    tn, nn = float(np.linalg.norm(t)), float(np.linalg.norm(n))
    if tn < 1e-12 or nn < 1e-12:
        raise ValueError("t and down must be non-zero vectors")
    t, n = t / tn, n / nn
    B = pix.B
    h, w = B.shape
    Kinv = np.linalg.inv(K)
    ahead = (pix.px @ Kinv.T) @ n > 1e-3  # rays that meet the ground in front of the camera
    px, ref = pix.px[ahead], pix.ref[ahead]
    if len(px) < min_pixels:
        return GroundLength(None, f"{len(px)} textured pixels see the ground (< {min_pixels})", len(px))
    tn_h = np.outer(t, n) / float(height)

    def error(s: float) -> float:
        x = px @ (K @ (R + s * tn_h) @ Kinv).T
        front = x[:, 2] > 1e-9  # the ground point in front of the new camera
        x = x[:, :2] / np.where(front, x[:, 2], 1.0)[:, None]
        ok = front & (x[:, 0] >= 0) & (x[:, 0] <= w - 1) & (x[:, 1] >= 0) & (x[:, 1] <= h - 1)
        if ok.mean() < min_inside:
            return float("inf")
        val = cv2.remap(B, x[:, 0].astype(np.float32)[None], x[:, 1].astype(np.float32)[None],
                        cv2.INTER_LINEAR)[0]
        return float(np.mean(np.minimum(np.abs(val - ref)[ok], truncate)))

    def search(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float, str]:
        errs = np.array([error(s) for s in grid])
        k = int(np.argmin(errs))
        if not np.isfinite(errs[k]):
            return grid, errs, k, float("nan"), "the ground leaves the new image at every length"
        finite = errs[np.isfinite(errs)]
        contrast = float(errs[k] / max(float(np.median(finite)), 1e-9))
        if k == 0 or k == len(grid) - 1:
            return grid, errs, k, contrast, f"best length at the end of the search ({grid[k]:.3g} m)"
        if contrast > min_contrast:
            return grid, errs, k, contrast, f"no clear minimum (best error {contrast:.2f} of the median)"
        return grid, errs, k, contrast, ""

    why = "no guess"
    if guess is not None and math.isfinite(guess) and guess > 0:
        guess = min(max(guess, min_len * float(height) * guess_range), max_len * float(height) / guess_range)
        grid, errs, k, contrast, why = search(
            guess * np.exp(np.linspace(-math.log(guess_range), math.log(guess_range), int(guess_steps))))
    if why:
        grid, errs, k, contrast, why = search(
            np.exp(np.linspace(math.log(min_len), math.log(max_len), int(steps))) * float(height))
    if why:
        return GroundLength(None, why, len(px), float(errs[k]), contrast)
    lo, hi = math.log(grid[k - 1]), math.log(grid[k + 1])
    x1, x2 = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    f1, f2 = error(math.exp(x1)), error(math.exp(x2))
    for _ in range(int(refine_steps)):
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - _GOLDEN * (hi - lo)
            f1 = error(math.exp(x1))
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + _GOLDEN * (hi - lo)
            f2 = error(math.exp(x2))
    best = math.exp(0.5 * (lo + hi))
    return GroundLength(best, "", len(px), min(f1, f2), contrast)


def checked_ground(ground) -> tuple[np.ndarray, float] | None:
    """``ground`` = ``(down, height)`` (the ground's normal, any length, and the camera's height
    in metres) with ``down`` as a unit (3,) vector, or None; bad values are named (ValueError)."""
    if ground is None:
        return None
    down, height = np.asarray(ground[0], dtype=np.float64).reshape(-1), float(ground[1])
    if down.shape != (3,) or not np.all(np.isfinite(down)) or np.linalg.norm(down) < 1e-9:
        raise ValueError(f"ground's down must be a non-zero 3-vector, got {ground[0]!r}")
    if not (math.isfinite(height) and height > 0):
        raise ValueError(f"ground's height must be a positive number of metres, got {ground[1]!r}")
    return down / np.linalg.norm(down), height
