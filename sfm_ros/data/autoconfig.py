"""What the trainer chooses when the user does not: the input size and the frame stride.

* **Input size** (:func:`auto_size`): the camera's aspect ratio at a pixel budget near the paper's
  128x416 (53 248 pixels), both sides multiples of 32: a 1241x376 KITTI camera gets the paper's
  128x416, a 640x480 camera 192x256 instead of being squashed into 128x416.
* **Frame stride** (:func:`measure_motion`, :func:`choose_stride`): neighbours in a training window
  must show parallax, not just motion: a hand-held camera mostly rotates, and rotation carries no
  depth. Corners are tracked (pyramidal Lucas-Kanade, forward-backward checked) between frames
  ``s`` apart, on frames spread over the sequence; the motion a homography cannot explain (a
  rotation or a plane it explains exactly) is the parallax. The smallest stride whose parallax
  reaches :data:`MIN_PARALLAX` of the image width is chosen: 10 Hz KITTI driving gets 1, 30 Hz
  hand-held 7-Scenes 5. :func:`auto_stride` chooses one stride for all of a run's sequences.

ROS-free and torch-free: numpy and OpenCV only.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from sfm_ros.data.features import to_grey, track_corners

__all__ = ["PAPER_PIXELS", "auto_size", "MIN_PARALLAX", "MotionProfile", "measure_motion", "choose_stride",
           "auto_stride"]

PAPER_PIXELS = 128 * 416
#: parallax between the frames of a window (motion no homography explains, 75th percentile of the
#: tracked corners, median over frame pairs), fraction of the image width: the smallest stride
#: reaching it is chosen. 10 Hz KITTI driving: 0.33 % at stride 1; 30 Hz hand-held 7-Scenes:
#: 0.09 % at stride 1, 0.49 % at 5, 0.74 % at 10 (measured at the auto size).
MIN_PARALLAX = 0.003
MAX_STRIDE = 30


def auto_size(width: int, height: int, pixels: int = PAPER_PIXELS, multiple: int = 32) -> tuple[int, int]:
    """(H, W) with the camera's aspect ratio, about ``pixels`` pixels, sides multiples of ``multiple``.

    >>> auto_size(1241, 376)
    (128, 416)
    >>> auto_size(640, 480)
    (192, 256)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"camera size must be positive, got {width}x{height}")
    aspect = width / height
    h = math.sqrt(pixels / aspect)
    best = None
    for hh in {max(multiple, multiple * math.floor(h / multiple)), multiple * math.ceil(h / multiple)}:
        ww = max(multiple, multiple * round(hh * aspect / multiple))
        # distance to the pixel budget plus distance to the aspect ratio, both as log ratios
        key = abs(math.log(hh * ww / pixels)) + abs(math.log((ww / hh) / aspect))
        if best is None or key < best[0]:
            best = (key, (int(hh), int(ww)))
    return best[1]


@dataclass
class MotionProfile:
    """Image motion and parallax (fractions of the width) between frames ``stride`` apart."""

    flow: dict[int, float]      # stride -> median image motion (nan where nothing was tracked)
    parallax: dict[int, float]  # stride -> motion no homography explains (see :func:`_track`)

    def describe(self) -> str:
        shown = [f"{s}: {100 * self.flow[s]:.1f} / {100 * p:.2f}" for s, p in sorted(self.parallax.items())
                 if np.isfinite(p) and (s in (1, 2, 3, 5, 10, 15, 20, 30) or p >= MIN_PARALLAX)]
        return "image motion / parallax (% of the width) by stride " + ", ".join(shown)


def _track(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Corners of ``a`` tracked into ``b`` (forward-backward checked): (median displacement, 75th
    percentile of the residual after the best homography (LMedS), corners tracked), in pixels.

    A homography explains a pure rotation (and a plane) exactly: its residual is the parallax
    that carries depth, which rotation-dominated hand-held motion lacks."""
    p, q = track_corners(a, b)
    if len(p) < 12:
        return math.nan, math.nan, int(len(p))
    flow = float(np.median(np.linalg.norm(q - p, axis=1)))
    H, _ = cv2.findHomography(p, q, cv2.LMEDS)
    if H is None:
        return flow, math.nan, int(len(p))
    res = np.linalg.norm(cv2.perspectiveTransform(p[None], H)[0] - q, axis=1)
    return flow, float(np.percentile(res, 75)), int(len(p))


def measure_motion(frames: np.ndarray, max_stride: int = MAX_STRIDE, samples: int = 16) -> MotionProfile:
    """Image motion and parallax between frames ``1..max_stride`` apart, over ``samples`` frames
    spread over the sequence. ``frames``: (N, H, W[, 3]) images at any one size."""
    n = len(frames)
    if n < 2:
        raise ValueError(f"need at least 2 frames to measure motion, got {n}")
    max_stride = max(1, min(max_stride, n - 1))
    width = frames.shape[2]
    grey: dict[int, np.ndarray] = {}

    def g(i: int) -> np.ndarray:
        if i not in grey:
            grey[i] = to_grey(frames[i])
        return grey[i]

    flow: dict[int, float] = {}
    parallax: dict[int, float] = {}
    for s in range(1, max_stride + 1):
        starts = np.unique(np.linspace(0, n - 1 - s, num=min(samples, n - s)).astype(int))
        vals = np.array([_track(g(i), g(i + s)) for i in starts], dtype=np.float64).reshape(-1, 3)
        good = np.isfinite(vals[:, 1])
        flow[s] = float(np.median(vals[good, 0])) / width if good.any() else math.nan
        parallax[s] = float(np.median(vals[good, 1])) / width if good.any() else math.nan
        if good.any() and parallax[s] >= 2 * MIN_PARALLAX:  # further strides only move more
            break
    return MotionProfile(flow, parallax)


def choose_stride(profile: MotionProfile, n_frames: int, seq_len: int = 3,
                  min_parallax: float | None = None) -> tuple[int, str]:
    """The smallest stride whose parallax reaches ``min_parallax`` (default :data:`MIN_PARALLAX`),
    limited so that the sequence keeps most of its frames as targets; returns ``(stride, reason)``."""
    min_parallax = MIN_PARALLAX if min_parallax is None else min_parallax
    limit = max(1, (n_frames - 1) // max(1, seq_len - 1) // 4)
    finite = {s: p for s, p in profile.parallax.items() if np.isfinite(p)}
    if not finite:
        return 1, "no motion could be measured (no trackable texture): stride 1"
    for s in sorted(finite):
        if s > limit:
            break
        if finite[s] >= min_parallax:
            return s, (f"{profile.describe()}; stride {s} is the first with parallax >= "
                       f"{100 * min_parallax:.2f} % of the width")
    s = min(max(finite), limit)
    bound = "the sequence's length allows" if s == limit else "was measured"
    return s, (f"{profile.describe()}; little parallax: stride {s}, the largest the {bound}")


def auto_stride(seqs: list, seq_len: int, stride: int, log=print) -> int:
    """The frame stride of ``sfm_train`` from the measured parallax (:func:`choose_stride`): the
    frame-weighted median of the choices for the (up to 8 longest) sequences
    (:class:`sfm_ros.data.datasets.Sequence`), capped so every sequence keeps a window of ``seq_len``
    frames; ``stride`` when none could be measured. The choice is logged with its reason."""
    t0 = time.monotonic()
    longest = sorted(seqs, key=len, reverse=True)[:8]
    choices, weights, reason = [], [], ""
    for seq in longest:
        if len(seq) < 3:
            continue
        s, why = choose_stride(measure_motion(seq.frames), len(seq), seq_len)
        choices.append(s)
        weights.append(len(seq))
        reason = reason or f"{seq.name}: {why}"
    if not choices:
        return stride
    order = np.argsort(choices)
    cum = np.cumsum(np.asarray(weights)[order])
    stride = int(np.asarray(choices)[order][np.searchsorted(cum, cum[-1] / 2)])
    log(f"frame stride {stride} (chosen from the measured motion, {time.monotonic() - t0:.1f} s: {reason}"
        f"{'; strides by sequence ' + str(choices) if len(choices) > 1 else ''}; --stride to choose)")
    shortest = min(len(s) for s in seqs)
    cap = max(1, (shortest - 1) // (seq_len - 1))  # every input keeps a window
    if stride > cap:
        log(f"frame stride {cap} instead: the shortest input has {shortest} frames")
        stride = cap
    return stride


#: below this many training windows ``sfm_train`` turns augmentation on when the user has not chosen
#: (:func:`auto_augment`). Set between the two real data sets measured (BENCHMARKS.md, "Augmentation
#: chosen by the data's size"): KITTI 00 frames 0-119 (118 windows, 106 after sfm_train's default
#: validation split: snippet ATE 0.018 m with augmentation, 0.057 without) and 7-Scenes frames 0-399
#: at stride 5 (390 windows, 350 after the split: abs rel 0.199 with, 0.138 without).
AUGMENT_BELOW_WINDOWS = 250


def augmentation_text(turn_deg: float, turn_step_deg: float, pose_only: bool = False) -> str:
    """What the augmentation does, in words, for the log line (:mod:`sfm_ros.data.augment`)."""
    if turn_deg <= 0 and turn_step_deg <= 0:
        return "random scale and crop, colour jitter"
    if pose_only:
        return (f"random scale and crop, colour jitter; the pose network sees the camera turned by up to "
                f"{turn_deg:g} deg a window and {turn_step_deg:g} deg a source frame (data.turn_deg, "
                "data.turn_step_deg, data.turn_pose_only)")
    return (f"the camera turned by up to {turn_deg:g} deg a window and {turn_step_deg:g} deg a source frame "
            "(data.turn_deg, data.turn_step_deg), zoomed 1-1.15x or as the turn needs, colour jitter")


#: the fewest frame pairs whose rotation :func:`auto_turn` needs; with fewer it keeps the turns
TURN_MIN_PAIRS = 8


def auto_turn(yaw_deg: np.ndarray, turn_step_deg: float) -> tuple[bool, str]:
    """Whether the augmentation turns the camera (``data.turn_deg``, ``data.turn_step_deg``) for a
    recording whose frame pairs turn by ``yaw_deg`` (the yaw between a window's target and each
    source, degrees: :func:`sfm_ros.training.priors.window_rotations`), and why, in words.

    The turns are there to show the pose network rotations a recording lacks: trained on KITTI 00's
    straight frames 0-89 (0.11° rms of yaw a pair) with the shifted crop, it predicted no rotation
    on the turn it was scored on, and the turns took the plain command's snippet ATE there from 0.0332
    to 0.0287 m (mean of three seeds). A recording that turns by itself needs no more: on hand-held
    7-Scenes frames 0-269 at stride 6 (1.77° rms) with augmentation on, the turns delayed the
    depth's take-off by 200-300 steps in three runs (12 minutes: abs rel 0.290 / 0.281 against
    0.244 / 0.258 with the shifted crop; after the take-off the curves met within their ±0.04
    scatter, at 20 minutes 0.209 against 0.218) and gave the pose nothing (snippet ATE 0.0325-0.0336
    m against 0.0311-0.0321 m; BENCHMARKS.md, sessions 26-28). So the camera is turned when the recording's rms yaw is below
    the source turns' own (``turn_step_deg / √3``, the rms of the uniform draw: 0.87° for the
    ``default`` preset's 1.5°), and with fewer than :data:`TURN_MIN_PAIRS` pairs measured."""
    yaw = np.asarray(yaw_deg, dtype=np.float64).ravel()
    limit = turn_step_deg / np.sqrt(3.0)
    if len(yaw) < TURN_MIN_PAIRS:
        return True, f"the rotation between frames found for {len(yaw)} frame pairs, fewer than {TURN_MIN_PAIRS}"
    rms = float(np.sqrt(np.mean(yaw ** 2)))
    turn = rms < limit
    return turn, (f"the training frames turn {rms:.2f} deg rms in yaw between a window's frames over "
                  f"{len(yaw)} frame pairs, {'below' if turn else 'not below'} the source turns' "
                  f"{limit:.2f} deg")


def augments(n_windows: int) -> bool:
    """The rule of :func:`auto_augment`: a training set of fewer than :data:`AUGMENT_BELOW_WINDOWS`
    windows is augmented."""
    return n_windows < AUGMENT_BELOW_WINDOWS


def auto_augment(n_windows: int, log=print, what: str = "") -> bool:
    """Whether ``sfm_train`` augments (:func:`sfm_ros.data.augment.augment_window`: a random scale
    with a shifted crop or, as the ``default`` preset does, a turn of the camera, and colour jitter;
    ``what`` says which, for the log line) when the user has not said: on for a small training set
    (fewer than :data:`AUGMENT_BELOW_WINDOWS` windows), which a run of a few thousand steps passes
    over so often that the networks learn its frames by heart rather than depth and motion; off for
    a larger one, where augmentation only slows learning in such budgets. The choice is logged with
    its reason."""
    on = augments(n_windows)
    detail = f"{what}; " if on and what else ""
    log(f"augmentation {'on' if on else 'off'} (chosen: {n_windows} training windows, "
        f"{'fewer' if on else 'not fewer'} than {AUGMENT_BELOW_WINDOWS}; {detail}--set data.augment=true|false to choose)")
    return on

