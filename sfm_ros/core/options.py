"""Configuration: typed option groups, presets and YAML/command-line overrides.

An :class:`Options` is four groups (``model``, ``loss``, ``data``, ``train``). Three presets exist:

* ``paper``: a faithful SfMLearner configuration (Zhou et al., 2017, and the authors' code):
  L1 photometric loss weighted by the explainability mask, explainability regularisation 0.2,
  second-order smoothness of disparity 0.5 / 2^s, the loss evaluated at 4 scales on down-sampled
  images, mean over the source frames.
* ``default``: what the project measured to train best on real frames (see BENCHMARKS.md and the
  README's "Defaults" section): the paper's networks and L1 view synthesis, no explainability
  mask, second-order smoothness of depth (0.1 / 2.3^s) made scale-free (``loss.smooth_normalize``:
  the map divided by its mean), and the two-view geometry prior on the pose network
  (``loss.epipolar_weight`` 1: each training pair's essential-matrix rotation and direction of
  travel, found from the frames alone). Augmentation and the sparse depth prior are off here;
  ``sfm_train`` turns augmentation on for a small training set when the user has not chosen
  (:func:`sfm_ros.data.autoconfig.auto_augment`).
* ``successors``: the paper's networks with Monodepth2's losses (SSIM + L1, per-pixel minimum,
  auto-masking, edge-aware smoothness, full-resolution warps); in CPU budgets it measured worse
  depth than ``default`` on real frames (7-Scenes abs rel 0.380 vs 0.179; BENCHMARKS.md,
  "Learning on real frames").

The input size, the frame stride and (with the default preset) augmentation are chosen by
``sfm_train`` from the camera, the measured motion and the training set's size when not set
(:mod:`sfm_ros.data.autoconfig`); the values here are what the Trainer API uses.

Overrides use dotted keys, e.g. ``loss.smooth_weight=0.1`` or ``train.batch_size=8``.
"""
from __future__ import annotations

import math
import re

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfm_ros.core.yaml_io import parse_yaml, read_yaml


DEPTH_ARCHS = ("dispnet", "dispnet_sep", "resnet")
POSE_ARCHS = ("posexp", "pair")


@dataclass
class ModelOptions:
    depth_arch: str = "dispnet"      # "dispnet" (the paper's) | "dispnet_sep" (its layout, depthwise-separable
                                     # convolutions) | "resnet" (ResNet-18 + Monodepth2 decoder)
    width_mult: float = 1.0          # channel multiplier of the depth network (1.0 = the paper's
                                     # DispNet / a full-width ResNet-18; 0.5 = the fast half-width one)
    pose_arch: str = "posexp"        # "posexp" (the paper's PoseExpNet) | "pair" (pair-wise ResNet, no masks)
    height: int = 128                # network input size (the paper's 128x416)
    width: int = 416
    seq_len: int = 3                 # frames per window: the target in the middle, seq_len-1 sources
    min_depth: float = 0.1           # the disparity head's range: disparity = alpha sigmoid(x) + beta
    max_depth: float = 100.0         # in [1/max, 1/min]; 0.1 / 100 is the paper's alpha 10, beta 0.01
    init_depth: float = 0.0          # depth the head starts at (0: sigmoid(0), the paper's ~0.2)


@dataclass
class LossOptions:
    photometric: str = "l1"          # "l1" (paper) | "ssim_l1" (0.85 SSIM + 0.15 L1, Monodepth2)
    ssim_weight: float = 0.85
    reduce_sources: str = "mean"     # "mean" over sources (paper) | "min": per-pixel minimum
    automask: bool = False           # drop pixels the unwarped source explains better (Monodepth2)
    exp_weight: float = 0.2          # explainability regularisation (paper: 0.2; 0 disables masks)
    smooth: str = "second_order"     # "second_order" on disparity (paper) | "edge_aware" (Monodepth2)
    smooth_weight: float = 0.5       # divided by smooth_decay^scale (paper: 0.5)
    smooth_on: str = "disp"          # "disp" (paper) | "depth" (what the reference port smooths)
    smooth_decay: float = 2.0        # per-scale divisor of the smoothness weight (paper: 2)
    smooth_normalize: bool = False   # second-order smoothness of the map divided by its mean (scale-free;
                                     # Wang et al. 2018): no pull towards the depth head's ends
                                     # (edge_aware smoothness is mean-normalised already)
    num_scales: int = 4
    full_res: bool = False           # warp at input resolution with up-sampled depth (Monodepth2)
    geometry_weight: float = 0.0     # SC-SfMLearner depth consistency between neighbours (paper: 0)
    geometry_mask: bool = False      # SC-SfMLearner self-discovered mask on the photometric loss
    epipolar_weight: float = 0.0     # pull the pose network towards each pair's two-view geometry
                                     # (essential matrix of tracked corners; rotation + direction)
    sparse_depth_weight: float = 0.0 # pull the target depth's shape towards the corners' depths
                                     # triangulated with each pair's two-view geometry (scale-free)
    sparse_depth_until: float = 1.0  # ... its weight falls linearly to 0 at this share of the budget

    @property
    def needs_source_depth(self) -> bool:
        """The losses need the depth of the source frames too (geometry consistency or its mask)."""
        return self.geometry_weight > 0 or self.geometry_mask

    @property
    def needs_pair_priors(self) -> bool:
        """The losses need each training pair's two-view geometry (the epipolar or the sparse depth prior)."""
        return self.epipolar_weight > 0 or self.sparse_depth_weight > 0


@dataclass
class DataOptions:
    stride: int = 1                  # frames between neighbours in a window (7-Scenes needs ~10)
    static_threshold: float = 0.0    # mean abs grey difference (0-1) below which a frame is static
    val_fraction: float = 0.1        # contiguous final block of each sequence held out
    augment: bool = True             # random scale+crop (intrinsics updated) and colour jitter
    flip: bool = False               # with augment: mirror half the windows (sfm_ros.data.augment)
    turn_deg: float = 0.0            # with augment: turn each window's camera about its centre by up to
                                     # this yaw (a fifth of it in pitch) instead of shifting the crop,
                                     # the motions turned with it (sfm_ros.data.augment); 0 = off
                                     # (the default preset: DEFAULT_TURN_DEG)
    turn_step_deg: float = 0.0       # with augment: also turn each source frame of the window by its own
                                     # yaw up to this (a fifth in pitch): the rotations between frames change
                                     # (the default preset: DEFAULT_TURN_STEP_DEG)
    turn_pose_only: bool = False     # with the turns: only the pose network sees the turned frames; the
                                     # depth network and the losses keep the scale and crop, and the pose
                                     # network's motions are turned back (needs loss.exp_weight 0; 7-Scenes
                                     # with augmentation forced: the depth still left a constant ~200 steps
                                     # after the crop's, the pose no better: off; BENCHMARKS.md, session 28)
    cache_dir: str = ""              # optional on-disk cache of decoded, resized frames
    cache_max_gb: float = 20.0       # the cache's size bound: least recently used entries go first


@dataclass
class TrainOptions:
    lr: float = 2e-4
    lr_tail: float = 0.0             # the learning rate falls linearly to 0 over this last share of the
                                     # budget (sfm_ros.training.lr_schedule); 0 = constant, the paper's
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    batch_size: int = 4
    epochs: int = 20                 # 0 = no limit; sfm_train sets it to 0 when only --max-steps or
                                     # --max-minutes is given (a budget given is the budget that ends the run)
    max_steps: int = 0               # 0 = no limit
    max_minutes: float = 0.0         # 0 = no limit (wall-clock budget)
    average_sigma_rel: float = 0.1   # model.pt: power-function EMA of the weights, this share of the run
                                     # wide (sfm_ros.training.weight_average); 0 = the last weights
    snapshot_every: int = 0          # write the raw weights to snapshots/step_N.pt every N steps (0 = never)
    seed: int = 0
    num_workers: int = -1            # DataLoader workers; -1 = auto: 0 without augmentation (the frames
                                     # are in memory: workers only add their start-up each epoch,
                                     # measured 8-13 % slower on KITTI, 2 cores), 2 with it
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    amp: str = "auto"                # auto (bf16/fp16 on CUDA; on a CPU with bf16 instructions bf16 if
                                     # measured faster, see sfm_ros.core.precision) | off | bf16 | fp16
    log_every: int = 50
    image_every: int = 500


@dataclass
class Options:
    model: ModelOptions = field(default_factory=ModelOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainOptions = field(default_factory=TrainOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Options":
        opts = cls()
        apply_overrides(opts, flatten(d))
        return opts

    def copy(self) -> "Options":
        return copy.deepcopy(self)


def paper_loss() -> LossOptions:
    return LossOptions()


def default_loss() -> LossOptions:
    """The project's default losses: the paper's L1 view synthesis (mean over the sources, no
    explainability mask) with second-order smoothness of *depth* (0.1, divided by 2.3^s), the
    regulariser the reference port found to converge, made scale-free (the depth map divided by its
    mean: unnormalised, it pulled the depth to the head's near end, where 7-Scenes runs sat for 500
    steps or for good; with it and the fused Adam, abs rel 0.173-0.177 → 0.149 with the plain
    12-minute command), plus the two-view geometry prior on the
    pose network (weight 1: KITTI snippet ATE 0.405 → 0.059 m, 7-Scenes abs rel 0.179 → 0.139 at
    equal steps). The sparse depth prior from the same pairs' triangulated corners is off here
    (``--set loss.sparse_depth_weight=1``; faded out over the first half of the budget,
    ``sparse_depth_until`` 0.5): with the plain 12-minute 7-Scenes command it helped one run on a
    2-core AVX2 CPU and cost three on an AVX-512 one, at full and at half width (BENCHMARKS.md,
    sessions 20-21). Measured against the successors' losses on real frames in BENCHMARKS.md; see the
    README's "Defaults"."""
    return LossOptions(
        exp_weight=0.0,
        smooth="second_order",
        smooth_on="depth",
        smooth_weight=0.1,
        smooth_decay=2.3,
        smooth_normalize=True,
        epipolar_weight=1.0,
        sparse_depth_weight=0.0,
        sparse_depth_until=0.5,
    )


def successors_loss() -> LossOptions:
    """Monodepth2's losses on the paper's networks (the ``successors`` preset): SSIM + L1, per-pixel
    minimum, auto-masking, edge-aware smoothness of normalised disparity, full-resolution warps."""
    return LossOptions(
        photometric="ssim_l1",
        reduce_sources="min",
        automask=True,
        exp_weight=0.0,
        smooth="edge_aware",
        smooth_weight=1e-3,
        full_res=True,
    )


#: the ``default`` preset's turn of the camera in augmentation (``data.turn_deg``, ``data.turn_step_deg``;
#: augmentation itself is on only for a small training set: ``sfm_ros.data.autoconfig.auto_augment``).
#: The plain KITTI command on frames 0-99 of KITTI 00 (trained on the straight road of 0-89) and scored
#: on the turn of frames 120-159, seeds 0 / 1 / 2: ``model.pt`` snippet ATE 0.0237 / 0.0326 / 0.0298 m against
#: 0.0325 / 0.0328 / 0.0343 m with the shifted crop (``last.pt`` 0.0292 / 0.0346 / 0.0266 against
#: 0.0323 / 0.0320 / 0.0358; a seed 3 with the turns, session 28: 0.0351 m); the pose network learns
#: part of the rotation (yaw slope 0.35-0.52 against 0.00). Their cost: on 7-Scenes with augmentation
#: forced on, the depth left a constant ~300 steps later (12 minutes: abs rel 0.290 / 0.281 against
#: 0.244 / 0.258, two seeds; endpoints that swing by ±0.04 within 100 steps after the take-off, so
#: the delay is the measured cost), and the pose there gained nothing; so ``sfm_train`` keeps them only
#: for training frames that turn little by themselves (``sfm_ros.data.autoconfig.auto_turn``); 0 and 0
#: keep the shifted crop. BENCHMARKS.md, sessions 26-28.
DEFAULT_TURN_DEG, DEFAULT_TURN_STEP_DEG = 5.0, 1.5
#: the largest ``data.turn_deg`` / ``data.turn_step_deg`` accepted (checked by :func:`validate` and by
#: ``sfm_ros.data.datasets.WindowDataset``)
MAX_TURN_DEG, MAX_TURN_STEP_DEG = 15.0, 5.0


def _default() -> "Options":
    o = Options(loss=default_loss())
    o.data.augment = False
    o.data.turn_deg, o.data.turn_step_deg = DEFAULT_TURN_DEG, DEFAULT_TURN_STEP_DEG
    return o


PRESETS = {
    "paper": lambda: Options(loss=paper_loss()),
    "default": _default,
    "successors": lambda: Options(loss=successors_loss()),
}


def preset(name: str) -> Options:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested options mapping as ``{"group.name": value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def coerce_option(value: Any, current: Any, what: str) -> Any:
    """``value`` (a YAML value or a command-line string) converted to the type of ``current``;
    raises ``ValueError`` "``what`` expects a <type>, got <value>" when it does not convert."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{what} expects a boolean, got {value!r}")
    try:
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(current, float):
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} expects a {type(current).__name__}, got {value!r}") from None
    if isinstance(value, bool):  # YAML reads a bare off/on/no/yes as a boolean
        return "on" if value else "off"
    return str(value)


def apply_overrides(opts: Options, overrides: dict[str, Any]) -> Options:
    """Set dotted keys (``group.name``) on ``opts`` in place, with type checks; returns ``opts``."""
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) != 2 or not hasattr(opts, parts[0]):
            raise ValueError(f"unknown option {key!r}; expected group.name with group in "
                             f"{[f.name for f in dataclasses.fields(Options)]}")
        group = getattr(opts, parts[0])
        if not hasattr(group, parts[1]):
            names = [f.name for f in dataclasses.fields(group)]
            raise ValueError(f"unknown option {key!r}; {parts[0]} has {names}")
        setattr(group, parts[1], coerce_option(value, getattr(group, parts[1]), f"option {key}"))
    validate(opts)
    return opts


def parse_override(text: str) -> tuple[str, Any]:
    """``"loss.smooth_weight=0.1"`` → ``("loss.smooth_weight", 0.1)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like group.name=value")
    key, raw = text.split("=", 1)
    return key.strip(), parse_yaml(raw, f"the value of {key.strip()}")


def load_options(config: str | Path | None = None, overrides: list[str] | None = None) -> Options:
    """Options from a preset name (a key of :data:`PRESETS`) or a YAML file, then overrides.

    A YAML file may name a base preset with a top-level ``preset:`` key.
    """
    if config is None:
        opts = preset("default")
    elif str(config) in PRESETS:
        opts = preset(str(config))
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"config {config!r} is neither a preset {sorted(PRESETS)} nor a file")
        data = read_yaml(path, f"config file {path}") or {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        base = data.pop("preset", "default")
        opts = preset(base)
        apply_overrides(opts, flatten(data))
    for text in overrides or []:
        apply_overrides(opts, dict([parse_override(text)]))
    validate(opts)
    return opts


def validate(opts: Options) -> None:
    m, lo = opts.model, opts.loss
    if m.seq_len < 3 or m.seq_len % 2 == 0:
        raise ValueError(f"model.seq_len must be odd and >= 3 (target in the middle), got {m.seq_len}")
    if m.depth_arch not in DEPTH_ARCHS:
        raise ValueError(f"model.depth_arch must be one of {list(DEPTH_ARCHS)}, got {m.depth_arch!r}")
    if m.pose_arch not in POSE_ARCHS:
        raise ValueError(f"model.pose_arch must be one of {list(POSE_ARCHS)}, got {m.pose_arch!r}")
    if not 0 < m.min_depth < m.max_depth:
        raise ValueError(f"need 0 < model.min_depth < model.max_depth, got {m.min_depth}, {m.max_depth}")
    if m.init_depth and not m.min_depth < m.init_depth < m.max_depth:
        raise ValueError(f"model.init_depth must be 0 or inside (min_depth, max_depth), got {m.init_depth}")
    if not m.width_mult > 0:
        raise ValueError(f"model.width_mult must be positive, got {m.width_mult}")
    if m.height < 16 or m.width < 16:
        raise ValueError(f"model.height/width must be >= 16, got {m.height}x{m.width}")
    if lo.photometric not in ("l1", "ssim_l1"):
        raise ValueError(f"loss.photometric must be 'l1' or 'ssim_l1', got {lo.photometric!r}")
    if lo.reduce_sources not in ("mean", "min"):
        raise ValueError(f"loss.reduce_sources must be 'mean' or 'min', got {lo.reduce_sources!r}")
    if lo.smooth not in ("second_order", "edge_aware"):
        raise ValueError(f"loss.smooth must be 'second_order' or 'edge_aware', got {lo.smooth!r}")
    if lo.smooth_on not in ("disp", "depth"):
        raise ValueError(f"loss.smooth_on must be 'disp' or 'depth', got {lo.smooth_on!r}")
    if not lo.smooth_decay >= 1:
        raise ValueError(f"loss.smooth_decay must be >= 1, got {lo.smooth_decay}")
    if not 1 <= lo.num_scales <= 4:
        raise ValueError(f"loss.num_scales must be 1..4, got {lo.num_scales}")
    if opts.train.num_workers < -1:
        raise ValueError(f"train.num_workers must be >= 0, or -1 for auto, got {opts.train.num_workers}")
    if not (math.isfinite(lo.epipolar_weight) and lo.epipolar_weight >= 0):
        raise ValueError(f"loss.epipolar_weight must be a finite number >= 0, got {lo.epipolar_weight}")
    if not (math.isfinite(lo.sparse_depth_weight) and lo.sparse_depth_weight >= 0):
        raise ValueError(f"loss.sparse_depth_weight must be a finite number >= 0, got {lo.sparse_depth_weight}")
    if not 0 < lo.sparse_depth_until <= 1:
        raise ValueError(f"loss.sparse_depth_until must be in (0, 1], got {lo.sparse_depth_until}")
    if not opts.data.cache_max_gb >= 0:
        raise ValueError(f"data.cache_max_gb must be >= 0, got {opts.data.cache_max_gb}")
    if not 0 <= opts.data.turn_deg <= MAX_TURN_DEG:
        raise ValueError(f"data.turn_deg must be in [0, {MAX_TURN_DEG:g}] degrees, got {opts.data.turn_deg}")
    if not 0 <= opts.data.turn_step_deg <= MAX_TURN_STEP_DEG:
        raise ValueError(f"data.turn_step_deg must be in [0, {MAX_TURN_STEP_DEG:g}] degrees, "
                         f"got {opts.data.turn_step_deg}")
    if opts.data.turn_pose_only and lo.exp_weight > 0:
        raise ValueError("data.turn_pose_only needs loss.exp_weight 0: the pose network's explainability "
                         f"masks would be of the turned frames, got loss.exp_weight {lo.exp_weight}")
    if opts.train.batch_size < 1:
        raise ValueError(f"train.batch_size must be >= 1, got {opts.train.batch_size}")
    if not (math.isfinite(opts.train.lr) and opts.train.lr >= 0):  # 0: the weights stay (tests of --init use it)
        raise ValueError(f"train.lr must be a finite number >= 0, got {opts.train.lr}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(opts.train.device)):  # before any input is decoded
        raise ValueError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {opts.train.device!r}")
    if opts.train.seed < 0:
        raise ValueError(f"train.seed must be an integer >= 0, got {opts.train.seed}")
    if not (math.isfinite(lo.smooth_weight) and lo.smooth_weight >= 0):
        raise ValueError(f"loss.smooth_weight must be a finite number >= 0, got {lo.smooth_weight}")
