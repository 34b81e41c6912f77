"""The benchmarks run the user's command: bench/bench_vs_peer.py trains the project with exactly
the README's sfm_train command for the same data, and every setting it adds is listed (and printed
beside the figures)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from conftest import load_bench

REPO = Path(__file__).resolve().parents[1]


def _bench():
    return load_bench("bench_vs_peer")


def test_the_harness_commands_are_the_readmes():
    bench = _bench()
    readme = (REPO / "README.md").read_text()
    for dataset, command in bench.USER_COMMANDS.items():
        assert command in readme, f"{dataset}: README.md does not give {command!r}"
    assert f"runs/redkitchen/{bench.USER_FILE}" in readme and f"runs/kitti00/{bench.USER_FILE}" in readme


def test_the_harness_adds_only_what_it_lists(tmp_path):
    bench = _bench()
    for dataset, command in bench.USER_COMMANDS.items():
        for extra in ({}, {"minutes": 3.0, "steps": 10, "candidates": 50, "set": ["train.lr=1e-4"]}):
            args = argparse.Namespace(minutes=0.0, steps=0, config="default", size=None, stride=None,
                                      threads=None, candidates=0, set=None)
            vars(args).update(extra)
            argv, added = bench.project_command(dataset, tmp_path, args)
            words = shlex.split(command)
            assert argv[1:3] == ["-m", "sfm_ros.cli.train"]
            head = argv[3:3 + len(words) - 1]
            want = [w.replace("../shared/data", str(bench.DATA)) for w in words[1:]]
            want[want.index("--out") + 1] = str(tmp_path / "project")
            if "minutes" in extra:
                want[want.index("--max-minutes") + 1] = "3"
            assert head == want
            tail = " ".join(argv[3 + len(words) - 1:])
            for flag in tail.split(" "):
                if flag.startswith("--"):
                    assert any(a.startswith(flag) for a in added), (flag, added)
            if "minutes" in extra:
                assert any("not the README's" in a for a in added)
