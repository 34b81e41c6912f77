"""sfm_ros.training.run_folder: one sfm_train writes to a run folder at a time (the lock dies with
its process, kill -9 included), and a folder another run holds is refused on one line, exit 2,
with nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfm_ros.training.errors import SetupError
from sfm_ros.training.run_folder import OutLock, claim

pytestmark = pytest.mark.slow  # runs sfm_train and a subprocess

REPO = Path(__file__).resolve().parents[1]


def test_sfm_train_refuses_a_second_trainer_on_the_same_out(tmp_path, capsys):
    from sfm_ros.cli import train as train_cli

    lock = OutLock(tmp_path / "run")
    try:
        with pytest.raises(SetupError, match="another sfm_train"):
            OutLock(tmp_path / "run")
        rc = train_cli.main(["--synthetic", "1", "--synthetic-frames", "10", "--out", str(tmp_path / "run"),
                             "--height", "32", "--width", "96", "--width-mult", "0.25", "--max-steps", "1",
                             "--device", "cpu", "--amp", "off", "--no-progress", "--no-tensorboard"])
        err = capsys.readouterr().err
        assert rc == 2 and f"another sfm_train (pid {os.getpid()}) is writing to this folder" in err
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
        assert not (tmp_path / "run" / "last.pt").exists()
    finally:
        lock.release()
    OutLock(tmp_path / "run").release()  # free again once released


def test_the_out_lock_dies_with_its_process(tmp_path):
    """kill -9 of a trainer must not leave a lock that blocks the next run."""
    code = (f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path; "
            f"from sfm_ros.training.run_folder import OutLock; lock = OutLock(Path({str(tmp_path)!r})); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(SetupError):
            OutLock(tmp_path)
        proc.kill()
        proc.wait(10)
        OutLock(tmp_path).release()
    finally:
        proc.kill()


def test_claim_refuses_a_last_pt_written_meanwhile_and_lets_the_lock_go(tmp_path):
    """A new run checks again under the lock that no other run wrote last.pt since its set-up;
    refused, it holds no lock. A resumed or overwriting run takes the folder and loses the
    temporary files a killed save left."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"another run's")
    with pytest.raises(SetupError, match="last.pt exists: pass --resume"):
        claim(out, new_run=True)
    stale = out / ".last.pt.abc123.tmp"
    stale.write_bytes(b"partial")
    lock = claim(out, new_run=False)  # free: the refused claim let it go
    try:
        assert not stale.exists() and (out / "last.pt").exists()
    finally:
        lock.release()
