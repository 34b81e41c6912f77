#!/usr/bin/env python3
"""Pack the benchmark's real data at the benchmark size, for a machine the raw data cannot reach.

The accuracy benchmark (``bench/bench_accuracy.py``) resizes every frame to 128x416 before it
trains; this writes the frames it uses already resized (with :func:`sfm_ros.data.datasets.resize_frame`,
the pipeline's own function, and the intrinsics scaled by :func:`sfm_ros.data.camera.resize_intrinsics`),
so a copy fits in a few tens of MB. Training then sees the same pixels as from the raw data (KITTI: PNG,
lossless; 7-Scenes colour: JPEG at ``--jpeg-quality``, the raw frames being JPEGs already). The
ground truth is copied as is: KITTI ``poses.txt``, 7-Scenes poses and the depth PNGs of the
evaluated frames (400-499) at their full 640x480.

    .venv/bin/python bench/pack_data.py OUT_DIR          # then: SFM_ROS_DATA=OUT_DIR bench/run_all.py ...

The output is research data under its own licence (../shared/data/README.md): keep it out of the
repository (write it to an ignored folder) and delete it after use.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_SIZE, KITTI, SEVENSCENES  # noqa: E402

from bench_accuracy import KITTI_TEST, SEVEN_TEST  # noqa: E402


def pack_kitti(src: Path, dst: Path) -> int:
    from sfm_ros.data.camera import resize_intrinsics
    from sfm_ros.data.datasets import resize_frame
    from sfm_ros.data.sources import read_image, read_kitti_odometry

    seq = read_kitti_odometry(src, camera="image_0")
    n = min(len(seq.image_paths), KITTI_TEST[1])
    (dst / "image_0").mkdir(parents=True, exist_ok=True)
    for f in seq.image_paths[:n]:
        img = resize_frame(read_image(f), BENCH_SIZE)[:, :, 0]  # grey in, grey out
        cv2.imwrite(str(dst / "image_0" / f.name), img)
    K = resize_intrinsics(seq.camera.K, (seq.camera.height, seq.camera.width), BENCH_SIZE)
    P = np.zeros((3, 4))
    P[:, :3] = K
    (dst / "calib.txt").write_text("P0: " + " ".join(f"{v:.12e}" for v in P.ravel()) + "\n")
    lines = (src / "poses.txt").read_text().splitlines()[:n]
    (dst / "poses.txt").write_text("\n".join(lines) + "\n")
    return n


def pack_sevenscenes(src: Path, dst: Path, quality: int) -> int:
    from sfm_ros.data.camera import resize_intrinsics
    from sfm_ros.data.datasets import resize_frame
    from sfm_ros.data.sevenscenes import read_sevenscenes
    from sfm_ros.data.sources import read_image

    ss = read_sevenscenes(src)
    n = min(len(ss.color), SEVEN_TEST[1])
    dst.mkdir(parents=True, exist_ok=True)
    hw = None
    for i in range(n):
        img = read_image(ss.color[i])
        hw = img.shape[:2]
        rgb = resize_frame(img, BENCH_SIZE)
        stem = ss.color[i].name.split(".color.")[0]
        cv2.imwrite(str(dst / f"{stem}.color.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        shutil.copy2(ss.pose_files[i], dst / f"{stem}.pose.txt")
        if SEVEN_TEST[0] <= i < SEVEN_TEST[1]:
            shutil.copy2(ss.depth[i], dst / f"{stem}.depth.png")
    K = resize_intrinsics(ss.K, hw, BENCH_SIZE)
    np.savetxt(dst / "camera-intrinsics.txt", K, fmt="%.12e")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("out", help="output folder (gets kitti_odom_00/ and sevenscenes_redkitchen/)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="7-Scenes colour JPEG quality (default 95)")
    args = p.parse_args(argv)
    out = Path(args.out)
    for src, name in ((KITTI, "KITTI"), (SEVENSCENES, "7-Scenes")):
        if not src.is_dir():
            p.error(f"{name} folder {src} does not exist (set SFM_ROS_DATA)")
    nk = pack_kitti(KITTI, out / KITTI.name)
    ns = pack_sevenscenes(SEVENSCENES, out / SEVENSCENES.name, args.jpeg_quality)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2 ** 20
    print(f"packed {nk} KITTI frames and {ns} 7-Scenes frames at {BENCH_SIZE[1]}x{BENCH_SIZE[0]} into {out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
