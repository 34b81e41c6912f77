"""Faults and how they are met, each as a repro:

* A full disk during an adaptation save (torch reports it as a RuntimeError): adaptation goes on,
  the save error is reported, shutdown does not raise, the previous file is intact.
* ``sfm_eval --adapt --adapt-save``: the folder is checked before the evaluation; a failed save at
  the end still prints the figures (exit 1).
* Temporary files of a killed save are removed by the next run.
* Unusable intrinsics in the node are refused with a warning; the 'intrinsics' parameter of
  another resolution is warned about.
* Images under 16 pixels a side or over 8K are rejected and counted.
* A missing or broken ``--params-file`` is one line and exit 2.

``sfm_train``'s lock on ``--out`` is tested in test_run_folder.py.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sfm_ros.core import checkpoint
from sfm_ros.core.checkpoint import atomic_torch_save, read_checkpoint, remove_stale_temp_files
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import Options, apply_overrides, preset
from sfm_ros.runtime.frames import InputFrame
from sfm_ros.runtime.diagnostics import FRAME_COUNTS, Counters, Log
from sfm_ros.runtime.model_loading import load_estimator
from sfm_ros.runtime.odometry import camera_extrinsic
from sfm_ros.runtime.pipeline import FramePipeline, Settings

REPO = Path(__file__).resolve().parents[1]
TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 3712 vs 3600"


def _torch_full_disk(monkeypatch):
    real = torch.save

    def full(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 a part")
        raise RuntimeError(TORCH_FULL_DISK)
    monkeypatch.setattr(checkpoint.torch, "save", full)
    return real


def test_a_torch_write_failure_is_an_oserror_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "a.pt"
    atomic_torch_save({"x": 1}, target)
    before = target.read_bytes()
    _torch_full_disk(monkeypatch)
    with pytest.raises(OSError, match="unexpected pos") as info:
        atomic_torch_save({"x": 2}, target)
    assert info.value.errno == errno.EIO and "disk may be full" in str(info.value)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def _adapter(**kw):
    from sfm_ros.training.adapt import Adapter, AdaptOptions

    torch.manual_seed(0)
    opts = preset("default")
    apply_overrides(opts, {"model.height": 64, "model.width": 208, "model.width_mult": 0.25})
    return Adapter(SfMModel(opts.model, output_exp=True), opts, AdaptOptions(**kw), started_from="init")


def test_a_full_disk_during_an_adaptation_save_is_reported_not_raised(tmp_path, monkeypatch):
    from sfm_ros.training.online import AdaptWorker

    adapter = _adapter()
    path = tmp_path / "adapted.pt"
    adapter.save(path)
    before = path.read_bytes()
    adapter.accepted_updates = 1  # as after an accepted update
    logs = []
    w = AdaptWorker(adapter, lambda m, v: None, save_path=path, log=logs.append)
    _torch_full_disk(monkeypatch)
    assert w.stop() is None  # the thread never ran: stop saves, the save fails, nothing raises
    s = w.stats()
    assert s["accepted_updates"] == 1 and "could not write" in s["save_error"] and "unexpected pos" in s["save_error"]
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["adapted.pt"]
    assert any("could not write" in m for m in logs)


def test_online_adaptation_close_survives_a_failed_save_and_warns(tmp_path, monkeypatch):
    from sfm_ros.training.online import AdaptWorker, OnlineAdaptation

    online = OnlineAdaptation(estimator=None, started_from="x", save_path=tmp_path / "adapted.pt")
    adapter = _adapter()
    adapter.accepted_updates = 1
    logs = []
    online.log = logs.append
    online.worker = AdaptWorker(adapter, lambda m, v: None, save_path=online.save_path, log=logs.append)
    online.worker.save_error = "could not write X (No space left on device); the previous file is intact"
    assert any("not saved" in w for w in online.warnings())
    _torch_full_disk(monkeypatch)
    assert online.close(final=True) is None
    assert any("the adapted weights are not saved" in m for m in logs), logs


def test_stale_temporary_files_of_a_killed_save_are_removed(tmp_path):
    target = tmp_path / "adapted.pt"
    old = tmp_path / ".adapted.pt.abc123.tmp"
    young = tmp_path / ".adapted.pt.def456.tmp"
    other = tmp_path / ".other.pt.abc.tmp"
    for f in (old, young, other):
        f.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temp_files(target) == [old]
    assert not old.exists() and young.exists() and other.exists()


def test_sfm_eval_adapt_save_is_checked_first_and_a_failed_save_keeps_the_figures(tmp_path, capsys, monkeypatch):
    from conftest import SHARED_DATA
    from sfm_ros.cli import eval as eval_cli
    from sfm_ros.core.checkpoint import save_checkpoint
    from sfm_ros.training.adapt import Adapter

    seven = SHARED_DATA / "sevenscenes_redkitchen"
    if not seven.is_dir():
        pytest.skip("../shared/data/sevenscenes_redkitchen is absent")
    opts = Options()
    apply_overrides(opts, {"model.height": 64, "model.width": 96, "model.width_mult": 0.25})
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, SfMModel(opts.model), opts)
    argv = ["depth", "--checkpoint", str(ckpt), "--sevenscenes", str(seven), "--frames", "0:6", "--device", "cpu",
            "--adapt", "--adapt-save"]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = eval_cli.main(argv + [str(blocker / "adapted.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "--adapt-save" in err and "is not a folder" in err and "abs rel" not in err

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Adapter, "save", full_disk)
    out = tmp_path / "r.json"
    rc = eval_cli.main(argv + [str(tmp_path / "adapted.pt"), "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 1 and "abs rel" in cap.out and "NOT saved" in cap.out
    assert "No space left on device" in cap.err and len([ln for ln in cap.err.splitlines() if ln.strip()]) == 1
    assert out.is_file()


class _Sink:
    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(("info", msg))

    def warning(self, msg):
        self.lines.append(("warning", msg))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sfm_ros.core.checkpoint import save_checkpoint
    from sfm_ros.core.options import ModelOptions

    mo = ModelOptions(width_mult=0.25, height=64, width=96)
    opts = Options()
    opts.model = mo
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, SfMModel(mo), opts)
    return load_estimator(str(path), device="cpu", backend="torch")[0]


def _frame(img, t):
    return InputFrame(stamp=("s", t), t=t, frame_id="cam", recv=time.monotonic(), image=img)


def test_unusable_intrinsics_are_refused_in_the_node(tiny):
    sink = _Sink()
    pl = FramePipeline(tiny, camera_extrinsic(), Settings(), Log(sink), Counters(*FRAME_COUNTS))
    pl.camera_info({"k": [1e12, 0, 320, 0, 1e12, 240, 0, 0, 1], "width": 640, "height": 480})
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    r = pl.process(_frame(img, 1.0))
    assert r is not None and r.camera is None and r.points is None
    assert any("unusable intrinsics fx=1e+12" in m for lv, m in sink.lines if lv == "warning"), sink.lines
    assert pl.diagnostic_values()["intrinsics"] == "unusable"
    assert any("intrinsics unusable" in w for w in pl.diagnostic_warnings())


def test_the_intrinsics_parameter_of_another_resolution_is_warned_about(tiny):
    sink = _Sink()
    kitti = (718.856, 718.856, 607.1928, 185.2157)  # for 1241x376
    pl = FramePipeline(tiny, camera_extrinsic(), Settings(intrinsics=kitti), Log(sink), Counters(*FRAME_COUNTS))
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert pl.process(_frame(img, 1.0)) is not None
    assert any("far from the centre of the 640x480 images" in m for lv, m in sink.lines if lv == "warning")
    sink.lines.clear()
    pl2 = FramePipeline(tiny, camera_extrinsic(), Settings(intrinsics=kitti), Log(sink), Counters(*FRAME_COUNTS))
    pl2.process(_frame(np.random.default_rng(0).integers(0, 255, (376, 1241, 3), dtype=np.uint8), 1.0))
    assert not any("far from the centre" in m for _, m in sink.lines)


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 640), (6001, 8000)])
def test_tiny_and_huge_images_are_rejected_and_counted(tiny, shape):
    sink = _Sink()
    counts = Counters(*FRAME_COUNTS)
    pl = FramePipeline(tiny, camera_extrinsic(), Settings(), Log(sink), counts)
    assert pl.process(_frame(np.zeros(shape, dtype=np.uint8), 1.0)) is None
    assert counts.snapshot()["rejected"] == 1
    assert any("expected at least 16 pixels a side and at most 33.2 megapixels" in m for _, m in sink.lines)


@pytest.mark.parametrize("content", [None, "/**: [unbalanced\n"])
def test_a_missing_or_broken_params_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", "42"))
    proc = subprocess.run([sys.executable, "-m", "sfm_ros.node", "--ros-args", "--params-file", str(path)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr and f"--params-file {path}" in lines[0], proc.stderr
