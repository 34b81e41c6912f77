"""The frames ``sfm_eval`` runs a model on, with the camera intrinsics they carry or are given.

:func:`sfm_ros.data.inputs.select_frames` selects the frames (``--frames``, stride), their stamps
and the ground truth KITTI and 7-Scenes carry, with their intrinsics. For ``--bag`` and ``--images``
the intrinsics come as ``sfm_train`` reads them (:func:`sfm_ros.data.inputs.bag_input` /
:func:`sfm_ros.data.inputs.folder_input`): a bag's CameraInfo (the ``camera_info`` topic next to
the image topic), else ``--calib YAML`` or ``--fx [--fy --cx --cy]``; a distorted camera's frames
are rectified. They are read when something needs them (``--refine``, ``--camera-height``,
``--adapt``) or when they are given; otherwise the frames are as selected, without intrinsics.
Bad input raises ``ValueError`` with a one-line message naming the flags. ROS-free.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator

import numpy as np

from sfm_ros.data.inputs import (Input, InputError, InputOptions, SelectedFrames, bag_input, folder_input,
                                 parse_frames, select_frames)

__all__ = ["intrinsics_given", "input_options", "select_eval_frames"]


def intrinsics_given(args: Any) -> bool:
    """Whether ``--calib YAML`` (``args.camera_calib``) or any of ``--fx/--fy/--cx/--cy`` was given."""
    return getattr(args, "camera_calib", None) is not None or \
        any(getattr(args, k, None) is not None for k in ("fx", "fy", "cx", "cy"))


def input_options(args: Any) -> InputOptions:
    """The :class:`sfm_ros.data.inputs.InputOptions` of the ``sfm_eval`` flags."""
    return InputOptions(topic=args.topic, pattern=args.pattern, fps=getattr(args, "fps", None),
                        calib=getattr(args, "camera_calib", None), fx=getattr(args, "fx", None),
                        fy=getattr(args, "fy", None), cx=getattr(args, "cx", None), cy=getattr(args, "cy", None))


def _open(args: Any) -> Input:
    opts = input_options(args)
    return bag_input(args.bag, opts) if args.bag else folder_input(args.images, opts)


def _intrinsics_note(inp: Input, args: Any) -> str:
    K = inp.K
    given = f"--calib {args.camera_calib}" if getattr(args, "camera_calib", None) else "--fx/--fy/--cx/--cy"
    how = "; ".join(inp.notes[1:]) or f"intrinsics from {given}"  # a folder's notes only give its size
    return (f"intrinsics of {inp.name}: {how} (fx {K[0, 0]:.6g}, fy {K[1, 1]:.6g}, cx {K[0, 2]:.6g}, "
            f"cy {K[1, 2]:.6g} at {inp.image_hw[1]}x{inp.image_hw[0]})")


def select_eval_frames(args: Any, stride: int = 1, needs: list[str] | None = None, raw_images: bool = False
                       ) -> tuple[SelectedFrames, list[str]]:
    """The selected frames (:func:`sfm_ros.data.inputs.select_frames`) with their intrinsics, and
    notes saying where the intrinsics came from.

    ``needs``: the flags that need the intrinsics (e.g. ``["--refine epipolar"]``); a ``--bag`` /
    ``--images`` input without any then fails naming them. Without ``needs`` the intrinsics of a
    bag or folder are read only when given on the command line. ``raw_images``: the ground truth
    is of the raw images (depth maps), so a distorted camera, whose frames would be rectified, is
    refused."""
    frames = select_frames(args, stride)
    if not (args.bag or args.images):
        return frames, (["--calib/--fx ignored: the input carries its intrinsics"] if intrinsics_given(args) else [])
    if not needs and not intrinsics_given(args):
        return frames, []
    try:
        first = _open(args)
    except InputError as exc:
        if needs and not intrinsics_given(args):
            raise InputError(f"{' and '.join(needs)} need{'s' if len(needs) == 1 else ''} the camera "
                             f"intrinsics: {exc}") from None
        raise
    if raw_images and any(n.startswith("rectified") for n in first.notes):  # the note rectified() leaves
        raise InputError(f"{first.name}: its camera is distorted and its frames would be rectified, but the "
                         f"depth ground truth is of the raw images; give undistorted frames")
    notes = [_intrinsics_note(first, args)]
    box = {"first": first}  # the first run reads the stream already open

    def stream() -> Iterator[tuple[np.ndarray, float]]:
        inp = box.pop("first", None) or _open(args)
        return iter(inp.frames)
    if args.bag:
        a, b = parse_frames(args.frames, None)
        stamps: list[float] = []

        def images() -> Iterator[np.ndarray]:
            stamps.clear()
            for image, stamp in itertools.islice(stream(), a, b, stride):
                stamps.append(stamp)
                yield image
        return dataclasses.replace(frames, images=images, K=first.K, stamps=stamps), notes
    wanted = frames.indices

    def images() -> Iterator[np.ndarray]:
        pick = set(wanted)
        for k, (image, _) in enumerate(stream()):
            if k > wanted[-1]:
                return
            if k in pick:
                yield image
    return dataclasses.replace(frames, images=images, K=first.K), notes
