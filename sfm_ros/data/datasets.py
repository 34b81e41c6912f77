"""Training data: frame sequences at the training size, windows, splits and augmentation.

A :class:`Sequence` holds decoded frames already resized to the network input (uint8 RGB), their
intrinsics at that size and their timestamps. :func:`prepare_sequence` builds one from any frame
source (bags, image folders, videos, the synthetic renderer), removing static frames; a file
cache (``data.cache_dir``) keeps the decoded, resized frames so a second run does not decode again
(entries keyed on the input files' sizes and modification times, checked before use, the oldest
removed beyond ``data.cache_max_gb``).

Windows are ``seq_len`` frames ``stride`` apart with the target in the middle. Train/validation
splits are contiguous time blocks (never random frames: neighbours would leak), and no window
crosses the boundary.

Augmentation (training only; :mod:`sfm_ros.data.augment`) is the same for all frames of a window:
a random scale and crop (the intrinsics follow) or, with ``turn_deg`` (on in the ``default`` preset:
:data:`sfm_ros.core.options.DEFAULT_TURN_DEG`), a random turn of the camera
about its centre (the intrinsics and the two-view priors follow; with ``turn_step_deg`` each source
frame turned by its own turn as well), colour jitter and, with ``flip``, a horizontal mirror of half
the windows (the two-view priors' motions and corners mirrored with them). The randomness is
a pure function of ``(seed, epoch, index)``, so a resumed run sees exactly the batches the interrupted
one would have seen; the flip is drawn last, so the other draws are the same with it on or off.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from sfm_ros.core.options import MAX_TURN_DEG, MAX_TURN_STEP_DEG
from sfm_ros.data.augment import (Turn, augment_window, mirror_motion, mirror_rotation, mirror_window,
                                  prior_points)
from sfm_ros.data.camera import resize_intrinsics
from sfm_ros.data.image_codec import to_float01, to_rgb_float

STATIC_DOWNSAMPLE = (32, 104)  # size at which frames are compared for static-frame removal


@dataclass
class Sequence:
    """Frames of one recording at the training size.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB (grey cameras are replicated to 3 channels).
        K: (3, 3) float64 intrinsics at (H, W).
        stamps: (N,) float64 seconds.
        name: where it came from (for messages).
    """

    frames: np.ndarray
    K: np.ndarray
    stamps: np.ndarray
    name: str = "sequence"

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[3] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"{self.name}: frames must be (N, H, W, 3) uint8, got "
                             f"{self.frames.shape} {self.frames.dtype}")
        if len(self.stamps) != len(self.frames):
            raise ValueError(f"{self.name}: {len(self.frames)} frames but {len(self.stamps)} stamps")
        if np.asarray(self.K).shape != (3, 3):
            raise ValueError(f"{self.name}: K must be 3x3, got {np.asarray(self.K).shape}")

    def __len__(self) -> int:
        return len(self.frames)

    def slice(self, start: int, stop: int, suffix: str = "") -> "Sequence":
        return Sequence(self.frames[start:stop], self.K, self.stamps[start:stop], self.name + suffix)


def resize_float01(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Any camera image (grey (H, W) or (H, W, 1), RGB(A); uint8/uint16/float) → float32 in [0, 1]
    (:func:`~sfm_ros.data.image_codec.to_float01`) at ``size_hw`` by area averaging: (h, w) for a
    grey image, which is resized as one channel (3x less work than its RGB copy, the same values to
    a float32 step), else (h, w, 3)."""
    h, w = size_hw
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    f = to_float01(image) if image.ndim == 2 else to_rgb_float(image)
    if f.shape[:2] != (h, w):
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
    return f


def resize_frame(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Any camera image (grey/RGB, uint8/uint16/float) → (H, W, 3) uint8 RGB at ``size_hw``."""
    f = np.clip(resize_float01(image, size_hw) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(f[:, :, None], 3, axis=2) if f.ndim == 2 else f


def static_mask(frames: np.ndarray, threshold: float) -> np.ndarray:
    """Keep-mask removing static frames.

    A frame is kept when its mean absolute grey-level difference (in [0, 1], compared at 32x104)
    to the last *kept* frame exceeds ``threshold``; the first frame is always kept. ``0`` keeps all.
    A camera standing still gives differences at the sensor-noise level (~0.002-0.005); a moving
    camera at 10 Hz gives 0.03-0.15 (KITTI, the synthetic scenes).
    """
    keep = np.ones(len(frames), dtype=bool)
    if threshold <= 0 or len(frames) < 2:
        return keep
    small = [cv2.resize(f.mean(axis=2).astype(np.float32) / 255.0, STATIC_DOWNSAMPLE[::-1],
                        interpolation=cv2.INTER_AREA) for f in frames]
    last = small[0]
    for i in range(1, len(frames)):
        if float(np.abs(small[i] - last).mean()) > threshold:
            last = small[i]
        else:
            keep[i] = False
    return keep


def prepare_sequence(
    frames: Iterable[tuple[np.ndarray, float]],
    K: np.ndarray,
    size_hw: tuple[int, int],
    name: str = "sequence",
    static_threshold: float = 0.0,
    cache_dir: str | Path | None = None,
    cache_key: dict | None = None,
    cache_max_bytes: int | None = None,
) -> Sequence:
    """Decode, resize and filter a stream of ``(image, stamp)`` into a :class:`Sequence`.

    Args:
        frames: iterable of ``(image, stamp_seconds)``; images at the camera resolution.
        K: (3, 3) intrinsics of the camera images (already rectified).
        size_hw: training size (H, W).
        static_threshold: see :func:`static_mask`.
        cache_dir/cache_key: when both are given, the resized frames are stored under
            ``cache_dir/<hash of cache_key and size>.npz`` and reused by later runs. The key must
            identify the input's content (sizes and modification times of its files); an entry is
            used only when it holds that key, frames of that size and the intrinsics that follow
            from ``K`` (anything else, e.g. a foreign file under the name, is decoded again).
        cache_max_bytes: after writing an entry, the oldest entries (by last use) are removed
            until the cache's ``.npz`` entries take at most this many bytes (the new one stays).
    Raises:
        ValueError: on an empty stream, timestamps going backwards, or the image size changing.
    """
    cache_path = key_text = None
    if cache_dir and cache_key is not None:
        key_text = json.dumps({**cache_key, "size": list(size_hw)}, sort_keys=True, default=str)
        cache_path = Path(cache_dir) / f"{hashlib.sha1(key_text.encode()).hexdigest()[:16]}.npz"
        seq = _read_cache_entry(cache_path, key_text, K, size_hw, name)
        if seq is not None:
            return _drop_static(seq, static_threshold)
    out, stamps = [], []
    src_hw = None
    for i, (image, stamp) in enumerate(frames):
        hw = tuple(image.shape[:2])
        if src_hw is None:
            src_hw = hw
        elif hw != src_hw:
            raise ValueError(f"{name}: image size changed at frame {i}: {hw[1]}x{hw[0]} after "
                             f"{src_hw[1]}x{src_hw[0]}; expected every frame at the same resolution")
        if stamps and stamp < stamps[-1]:
            raise ValueError(f"{name}: timestamps go backwards at frame {i}: {stamp:.6f} s after "
                             f"{stamps[-1]:.6f} s; expected non-decreasing stamps")
        out.append(resize_frame(image, size_hw))
        stamps.append(float(stamp))
    if not out:
        raise ValueError(f"{name}: no frames")
    seq = Sequence(np.stack(out), resize_intrinsics(K, src_hw, size_hw), np.asarray(stamps, dtype=np.float64),
                   name)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file of its own (several processes, e.g. DDP ranks, may fill the same
        # entry at once), renamed over the entry: readers never see a partial file.
        fd, tmp = tempfile.mkstemp(prefix=f".{cache_path.stem}.", suffix=".tmp", dir=cache_path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, frames=seq.frames, K=seq.K, stamps=seq.stamps, key=np.array(key_text),
                         n=np.array(len(seq)), src_hw=np.array(src_hw))
            os.replace(tmp, cache_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if cache_max_bytes is not None:
            evict_cache(cache_path.parent, cache_max_bytes, keep=cache_path)
    return _drop_static(seq, static_threshold)


_CACHE_ENTRY = re.compile(r"[0-9a-f]{16}\.npz")


def _read_cache_entry(path: Path, key_text: str, K: np.ndarray, size_hw: tuple[int, int],
                      name: str) -> Sequence | None:
    """The cached sequence at ``path`` if it is what the key describes, else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            n, src_hw = int(z["n"]), tuple(int(v) for v in z["src_hw"])
            frames, stamps, K_cached = z["frames"], z["stamps"], z["K"]
            ok = (str(z["key"]) == key_text and frames.dtype == np.uint8
                  and frames.shape == (n, *size_hw, 3) and stamps.shape == (n,)
                  and np.allclose(K_cached, resize_intrinsics(K, src_hw, size_hw), rtol=1e-9, atol=1e-9))
    except Exception:  # unreadable, an older format, a foreign file: decode again
        return None
    if not ok:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # last use: eviction removes the least recently used entries first
    return Sequence(frames, K_cached, stamps, name)


def evict_cache(cache_dir: str | Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Remove frame-cache entries (``<16 hex digits>.npz``; nothing else in the folder), oldest
    modification (= last use) first, until they take at most ``max_bytes``; ``keep`` is never
    removed. Returns the removed paths."""
    entries = []
    for p in Path(cache_dir).iterdir():
        if _CACHE_ENTRY.fullmatch(p.name):
            with contextlib.suppress(OSError):
                st = p.stat()
                entries.append((st.st_mtime_ns, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if keep is not None and p == keep:
            continue
        with contextlib.suppress(FileNotFoundError):  # another process evicted it first
            p.unlink()
        total -= size
        removed.append(p)
    return removed


def _drop_static(seq: Sequence, threshold: float) -> Sequence:
    keep = static_mask(seq.frames, threshold)
    if keep.all():
        return seq
    return Sequence(seq.frames[keep], seq.K, seq.stamps[keep], seq.name)


def window_indices(n: int, seq_len: int, stride: int) -> list[list[int]]:
    """Frame indices of every complete window (target in the middle) in a sequence of ``n``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    half = (seq_len // 2) * stride
    return [[t + o * stride for o in range(-(seq_len // 2), seq_len // 2 + 1)] for t in range(half, n - half)]


def split_sequence(seq: Sequence, val_fraction: float) -> tuple[Sequence, Sequence | None]:
    """Contiguous split: the first ``1 - val_fraction`` of the frames train, the rest validate."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(seq) * val_fraction))
    if n_val == 0:
        return seq, None
    cut = len(seq) - n_val
    return seq.slice(0, cut, ":train"), seq.slice(cut, len(seq), ":val")


def split_sequences(seqs: list, val_fraction: float, seq_len: int, stride: int,
                    log=print) -> tuple[list, list]:
    """Contiguous train/validation split of every sequence (no window crosses the cut); a
    sequence too short to give both a training and a validation window (``seq_len`` frames
    ``stride`` apart) trains whole, which is logged."""
    need = (seq_len - 1) * stride + 1
    train, val = [], []
    for s in seqs:
        tr, va = split_sequence(s, val_fraction)
        if va is not None and (len(va) < need or len(tr) < need):
            log(f"{s.name}: too short to hold out {val_fraction:.0%} for validation; training on all of it")
            tr, va = s, None
        train.append(tr)
        if va is not None:
            val.append(va)
    return train, val


class WindowDataset(Dataset):
    """Windows over one or more sequences.

    Items are dicts: ``target`` (3, H, W) float in [0, 1], ``sources`` (N, 3, H, W) ordered as
    :func:`sfm_ros.core.model.source_offsets`, ``K`` (3, 3) float32, ``stamp`` (float64 seconds of the
    target), ``seq`` and ``index`` (target frame index); with ``priors``, each (target, source) pair's
    ``prior_T`` (N, 4, 4), ``prior_w`` (N, 2) and its triangulated corners ``prior_pts`` (N, P, 2),
    ``prior_depth`` (N, P) (:func:`_prior_points`). With ``turn_pose_only`` (and a turn), the
    frames above are those of the turns off (the same scale, crop, colour and flip) and the turned ones
    come as well: ``pose_target``, ``pose_sources`` and each frame's turn ``pose_turn`` (F, 3, 3), for
    the pose network alone (:meth:`sfm_ros.core.model.SfMModel.forward`); the priors are of the
    frames above.
    """

    def __init__(self, sequences: list[Sequence], seq_len: int, stride: int = 1,
                 augment: bool = False, seed: int = 0, priors: dict | None = None, flip: bool = False,
                 turn_deg: float = 0.0, turn_step_deg: float = 0.0, turn_pose_only: bool = False):
        self.sequences = sequences
        self.seq_len = seq_len
        self.augment = augment
        self.flip = bool(flip)  # with augment: mirror half the windows
        if not 0.0 <= turn_deg <= MAX_TURN_DEG:
            raise ValueError(f"turn_deg must be in [0, {MAX_TURN_DEG:g}] degrees, got {turn_deg}")
        if not 0.0 <= turn_step_deg <= MAX_TURN_STEP_DEG:
            raise ValueError(f"turn_step_deg must be in [0, {MAX_TURN_STEP_DEG:g}] degrees, got {turn_step_deg}")
        self.turn_deg = float(turn_deg)  # with augment: turn the camera instead of shifting the crop
        self.turn_step_deg = float(turn_step_deg)  # ... and each source frame by its own turn
        self.turn_pose_only = bool(turn_pose_only)  # ... for the pose network alone
        self.seed = seed
        self.epoch = 0
        self.items: list[tuple[int, list[int]]] = []
        for si, seq in enumerate(sequences):
            self.items += [(si, w) for w in window_indices(len(seq), seq_len, stride)]
        if not self.items:
            lens = {s.name: len(s) for s in sequences}
            raise ValueError(f"no complete window of {seq_len} frames with stride {stride} in {lens}; "
                             f"expected at least {(seq_len - 1) * stride + 1} frames per sequence")
        # (sequence, target, source) -> sfm_ros.training.priors.EpipolarPrior of every pair of self.items, when
        # given (the trainer computes them from self.items): items then carry prior_T / prior_w.
        self.priors = priors

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        si, idx = self.items[i]
        seq = self.sequences[si]
        imgs = seq.frames[idx].astype(np.float32) / 255.0  # (T, H, W, 3)
        K = seq.K.copy()
        crop, mirrored, turned = None, False, None
        mid = self.seq_len // 2
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            split = self.turn_pose_only and (self.turn_deg > 0 or self.turn_step_deg > 0)
            if split:  # the crop's window and flip drawn as with the turns off; the turn from a copy of the draws
                turn_rng, rng = rng, copy.deepcopy(rng)
                turned_imgs, _, turn = augment_window(imgs, K, turn_rng, self.turn_deg, self.turn_step_deg,
                                                      target=mid)
                imgs, K, crop = augment_window(imgs, K, rng, target=mid)
                turned = turned_imgs, turn.R
            else:
                imgs, K, crop = augment_window(imgs, K, rng, self.turn_deg, self.turn_step_deg, target=mid)
            if self.flip and rng.random() < 0.5:
                (imgs, K), mirrored = mirror_window(imgs, K), True
                if turned is not None:  # both views mirrored; the mirrored camera's turn is M R M
                    turned = mirror_window(turned[0], K)[0], mirror_rotation(turned[1])
        t = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))
        item = {
            "target": t[mid],
            "sources": torch.cat([t[:mid], t[mid + 1:]], 0),
            "K": torch.from_numpy(K.astype(np.float32)),
            "stamp": float(seq.stamps[idx[mid]]),
            "seq": si,
            "index": idx[mid],
        }
        if turned is not None:
            tp = torch.from_numpy(np.ascontiguousarray(turned[0].transpose(0, 3, 1, 2)))
            item["pose_target"], item["pose_sources"] = tp[mid], torch.cat([tp[:mid], tp[mid + 1:]], 0)
            item["pose_turn"] = torch.from_numpy(turned[1].astype(np.float32))
        if self.priors is not None:  # scale, crop and colour leave the motion unchanged; a turn turns it, a mirror mirrors it
            pr = [self.priors[(si, idx[mid], j)] for j in idx[:mid] + idx[mid + 1:]]
            T = np.stack([p.T_src_tgt for p in pr])
            if isinstance(crop, Turn):
                T = crop.motion(T, [*range(mid), *range(mid + 1, self.seq_len)], mid)
            item["prior_T"] = torch.from_numpy((mirror_motion(T) if mirrored else T).astype(np.float32))
            item["prior_w"] = torch.tensor([[p.w_rot, p.w_dir] for p in pr], dtype=torch.float32)
            item["prior_pts"], item["prior_depth"] = prior_points(pr, imgs.shape[1:3], crop, mirrored=mirrored,
                                                                 target=mid)
        return item


def collate(items: list[dict]) -> dict:
    extra = {k: torch.stack([it[k] for it in items])
             for k in ("prior_T", "prior_w", "prior_pts", "prior_depth", "pose_target", "pose_sources", "pose_turn")
             if k in items[0]}
    return extra | {
        "target": torch.stack([it["target"] for it in items]),
        "sources": torch.stack([it["sources"] for it in items]),
        "K": torch.stack([it["K"] for it in items]),
        "stamp": torch.tensor([it["stamp"] for it in items], dtype=torch.float64),
        "seq": torch.tensor([it["seq"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }
