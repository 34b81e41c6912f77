#!/usr/bin/env python3
"""Which file of a training run generalises best: every candidate scored on frames the run never saw.

A run trained with ``--set train.snapshot_every=N`` leaves ``snapshots/step_*.pt`` (its raw weights
every N steps) beside ``model.pt`` and ``last.pt``. This scores, on the held-out frames:

* ``model.pt`` (the file the run hands over) and ``last.pt`` (the last weights);
* the learning curve: every ``--curve-every``-th snapshot;
* averages rebuilt from the snapshots: power-function EMAs of several widths (the profile
  ``s ** gamma`` of :mod:`sfm_ros.training.weight_average`, sampled at the snapshots' steps) and
  uniform averages of the last 25 % / 50 % (SWA);
* the file a lowest-validation-loss rule would hand over: the snapshot nearest the step of the lowest
  validation loss in ``last.pt``'s history (validation is computed at epoch ends, so this is the
  nearest snapshot to it, not that exact step).

Scores: 7-Scenes depth abs rel (median-scaled, ``sfm_eval depth``) or KITTI 5-frame snippet ATE
(network alone, ``sfm_eval pose``). Used by ``bench_vs_peer.py --candidates``; runnable alone::

    .venv/bin/python bench/checkpoint_candidates.py RUN_DIR 7scenes --frames 400:500
    .venv/bin/python bench/checkpoint_candidates.py RUN_DIR kitti --frames 120:160 --train-frames 0:100
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KITTI, SEVENSCENES  # noqa: E402

SIGMAS = (0.05, 0.1, 0.2)


def score(checkpoint: Path, dataset: str, frames: str, train_frames: str | None) -> dict:
    """The unseen-frame score of one checkpoint: ``{"score": float, ...}`` (lower is better)."""
    from sfm_ros.cli import eval as eval_cli

    if dataset == "7scenes":
        r = eval_cli.run(["depth", "--checkpoint", str(checkpoint), "--sevenscenes", str(SEVENSCENES),
                          "--frames", frames, "--max-depth", "10"])
        return {"score": r["metrics"]["abs_rel"], "delta1": r["metrics"]["a1"] if "a1" in r["metrics"] else None,
                "constant": r["baseline_constant"]["abs_rel"] if r.get("baseline_constant") else None}
    argv = ["pose", "--checkpoint", str(checkpoint), "--kitti", str(KITTI), "--frames", frames, "--snippet", "5"]
    if train_frames:
        argv += ["--train-frames", train_frames]
    m = eval_cli.run(argv)["methods"]
    return {"score": m["model"]["snippet_ate"]["mean"], "constant_velocity": m["mean_odometry"]["snippet_ate"]["mean"]}


def snapshots(run: Path) -> list[tuple[int, Path]]:
    out = []
    for p in (run / "snapshots").glob("step_*.pt"):
        m = re.fullmatch(r"step_(\d+)\.pt", p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def averaged(snaps: list[tuple[int, Path]], profiles: dict[str, list[float]], work: Path) -> dict[str, Path]:
    """Checkpoints of weighted averages of the snapshots (one pass over them; weights per profile)."""
    import torch

    from sfm_ros.core.checkpoint import read_checkpoint

    sums: dict[str, dict] = {}
    first = None
    for i, (_, path) in enumerate(snaps):
        if not any(w[i] for w in profiles.values()):
            continue
        state = read_checkpoint(path)
        first = first or state
        for name, weights in profiles.items():
            w = weights[i] / sum(weights)
            if not w:
                continue
            acc = sums.setdefault(name, {"depth_net": {}, "pose_net": {}})
            for net in ("depth_net", "pose_net"):
                for k, v in state[net].items():
                    if not v.is_floating_point():
                        acc[net][k] = v.clone()
                    elif k in acc[net]:
                        acc[net][k] += w * v.double()
                    else:
                        acc[net][k] = w * v.double()
    out = {}
    for name, acc in sums.items():
        state = {k: v for k, v in first.items() if k in ("format", "options", "step")}
        for net in ("depth_net", "pose_net"):
            state[net] = {k: (v.float() if v.is_floating_point() else v) for k, v in acc[net].items()}
        path = work / f"{name}.pt"
        torch.save(state, path)
        out[name] = path
    return out


def profiles_for(steps: list[int], val_history: list[dict]) -> dict[str, list[float]]:
    from sfm_ros.training.weight_average import gamma_from_sigma_rel

    t = steps[-1]
    prof = {}
    for s in SIGMAS:
        g = gamma_from_sigma_rel(s)
        prof[f"power EMA sigma_rel {s:g} (from snapshots)"] = [(k / t) ** g for k in steps]
    for share in (0.25, 0.5):
        prof[f"uniform average of the last {100 * share:.0f} % (SWA)"] = [1.0 if k > (1 - share) * t else 0.0
                                                                           for k in steps]
    vals = [h for h in val_history if "val_loss" in h]
    if vals:
        best = min(vals, key=lambda h: h["val_loss"])
        near = min(range(len(steps)), key=lambda i: abs(steps[i] - best["step"]))
        prof[f"lowest validation loss (step {best['step']}: snapshot {steps[near]}; the old best.pt)"] = \
            [1.0 if i == near else 0.0 for i in range(len(steps))]
    return prof


def evaluate_run(run: Path, dataset: str, frames: str, train_frames: str | None, curve_every: int = 2,
                 log=print) -> dict:
    from sfm_ros.core.checkpoint import read_checkpoint

    res: dict = {"run": str(run), "dataset": dataset, "frames": frames, "train_frames": train_frames,
                 "lower_is_better": "abs rel" if dataset == "7scenes" else "snippet ATE (m)", "files": {},
                 "curve": [], "averages": {}}
    for name in ("model.pt", "last.pt"):
        if (run / name).is_file():
            res["files"][name] = score(run / name, dataset, frames, train_frames)
            log(f"{name}: {res['files'][name]['score']:.4f}")
    snaps = snapshots(run)
    if not snaps:
        return res
    steps = [s for s, _ in snaps]
    for i, (s, p) in enumerate(snaps):
        if i % max(1, curve_every) == 0 or i == len(snaps) - 1:
            r = score(p, dataset, frames, train_frames)
            res["curve"].append({"step": s, **r})
            log(f"snapshot step {s}: {r['score']:.4f}")
    history = read_checkpoint(run / "last.pt").get("history", []) if (run / "last.pt").is_file() else []
    with tempfile.TemporaryDirectory(prefix="sfm_candidates_") as tmp:
        for name, path in averaged(snaps, profiles_for(steps, history), Path(tmp)).items():
            res["averages"][name] = score(path, dataset, frames, train_frames)
            log(f"{name}: {res['averages'][name]['score']:.4f}")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("dataset", choices=("7scenes", "kitti"))
    p.add_argument("--frames", required=True)
    p.add_argument("--train-frames")
    p.add_argument("--curve-every", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    res = evaluate_run(a.run, a.dataset, a.frames, a.train_frames, a.curve_every)
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
