"""One rank of the DDP test (test_trainer.py::test_ddp_two_ranks_cpu), started by torchrun.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 ... test/ddp_worker.py TMP_DIR``.
Each rank trains a tiny model on synthetic frames with its own output folder ``TMP_DIR/out<rank>``
(so the test can tell which rank wrote files) and then writes, itself (not the trainer), its final
flat parameters to ``TMP_DIR/params<rank>.pt`` and a summary to ``TMP_DIR/summary<rank>.json``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from sfm_ros.data.datasets import prepare_sequence  # noqa: E402
from sfm_ros.core.options import load_options  # noqa: E402
from sfm_ros.data.synthetic import render_sequence  # noqa: E402
from sfm_ros.training.trainer import Trainer  # noqa: E402


def main() -> None:
    tmp = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    device = os.environ.get("SFM_DDP_DEVICE", "cpu")  # test_cuda.py runs it on a GPU with NCCL
    opts = load_options("paper", ["model.height=32", "model.width=96", "model.width_mult=0.25",
                                  "train.batch_size=2", "train.max_steps=3", "train.num_workers=0",
                                  f"train.device={device}", "train.log_every=1", "train.image_every=0"])
    opts.train.amp = "off"
    seqs = []
    for seed in (0, 1):
        s = render_sequence(10, 32, 96, seed=seed)
        seqs.append(prepare_sequence(zip(s.images, s.timestamps), s.K, (32, 96), name=f"synthetic{seed}"))
    trainer = Trainer(opts, seqs, None, tmp / f"out{rank}", progress=False, ckpt_every=2)
    summary = trainer.fit()
    flat = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
    torch.save(flat, tmp / f"params{rank}.pt")
    (tmp / f"summary{rank}.json").write_text(json.dumps({
        "rank": rank, "world": trainer.world, "steps": summary["steps"],
        "steps_per_epoch": trainer.steps_per_epoch, "backend": torch.distributed.get_backend(),
        "history": summary["history"]}))
    trainer.close()


if __name__ == "__main__":
    main()
