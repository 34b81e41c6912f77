"""Checkpoint files that cannot be used: one line naming the file and what is wrong, exit 2, in
every tool that loads one (issue 13, item 2)."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from sfm_ros.cli import eval as eval_cli
from sfm_ros.cli import export as export_cli
from sfm_ros.cli import train as train_cli
from sfm_ros.core.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from sfm_ros.core.model import SfMModel
from sfm_ros.core.options import ModelOptions, Options

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NotData:
    """A class: pickling an instance stores code references that data-only loading refuses."""


def _good(path: Path) -> Path:
    mo = ModelOptions(width_mult=0.25, height=32, width=96)
    save_checkpoint(path, SfMModel(mo), Options(model=mo))
    return path


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = _good(tmp_path / "good.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(bytes(range(7, 250)) * 3)
    elif kind == "pickle":  # a plain pickle (not torch.save): torch's long safety explanation
        path.write_bytes(pickle.dumps(NotData, protocol=4))
    elif kind == "pickled_object":  # torch.save of an object holding a class instance
        torch.save({"format": "sfm_ros/1", "options": NotData()}, path)
    return path


EXPECTED = {
    "empty": "is empty (0 bytes)",
    "truncated": "is truncated",
    "random": "is not a PyTorch checkpoint",
    "pickle": "holds pickled Python objects",
    "pickled_object": "holds pickled Python objects",
}


def test_a_folder_given_as_checkpoint_is_named_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path} is a folder; expected a checkpoint file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_read_checkpoint_names_the_file_and_the_fault(tmp_path, kind):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and f"checkpoint {path} {EXPECTED[kind]}" in msg, msg
    assert "\x1b" not in msg  # no terminal escape codes
    if kind in ("empty", "truncated", "random"):  # ours says it all: no advice to load unsafely
        assert "weights_only=False" not in msg and msg.endswith("; expected an sfm_ros checkpoint"), msg
    if kind == "pickle":  # torch's explanation is kept whole, its safety warning included
        assert "Do it only if you got the file from a trusted source." in msg, msg
    if kind == "pickled_object":
        assert "only if you trust the source of the checkpoint" in msg and "NotData" in msg, msg


def _eval(path: Path, tmp_path: Path) -> list[str]:
    return ["depth", "--checkpoint", str(path), "--images", str(tmp_path), "--gt-npy", str(tmp_path)]


def _export(path: Path, tmp_path: Path) -> list[str]:
    return [str(path), "--out", str(tmp_path / "export")]


def _train(path: Path, tmp_path: Path) -> list[str]:
    return ["--resume", str(path), "--out", str(tmp_path / "run"), "--synthetic", "1", "--no-progress",
            "--no-tensorboard"]


TOOLS = {"sfm_eval": (eval_cli.main, _eval), "sfm_export": (export_cli.main, _export),
         "sfm_train": (train_cli.main, _train)}


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "pickle"])
@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_loader_reports_a_bad_checkpoint_on_one_line(tmp_path, capsys, tool, kind):
    main, argv = TOOLS[tool]
    path = _bad_file(tmp_path, kind)
    rc = main(argv(path, tmp_path))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), err
    assert str(path) in lines[0] and EXPECTED[kind] in lines[0], err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_one_architecture_check_for_loading_and_resuming(tmp_path):
    """checkpoint.check_architecture names every differing key; check_resumable also wants an
    optimiser state; an old checkpoint's options with model.min_depth/max_depth still load."""
    from sfm_ros.core.checkpoint import check_architecture, check_resumable, load_model

    saved, other = Options(), Options()
    other.model.width_mult, other.model.seq_len = 0.5, 5
    with pytest.raises(CheckpointError, match=r"cannot resume from x.pt: it is another architecture "
                                              r"\(width_mult: checkpoint 1.0 vs requested 0.5; seq_len: "
                                              r"checkpoint 3 vs requested 5\)"):
        check_architecture("x.pt", saved, other)
    check_architecture("x.pt", saved, Options())
    with pytest.raises(CheckpointError, match="holds no optimiser state"):
        check_resumable("x.pt", {"options": saved.to_dict()}, Options())
    with pytest.raises(CheckpointError, match="invalid options"):
        check_resumable("x.pt", {"options": {"model": {"depth_arch": "vgg"}}}, Options())
    path = _good(tmp_path / "ok.pt")
    state = read_checkpoint(path)
    assert {"min_depth", "max_depth"} <= set(state["options"]["model"])  # used by the disparity head
    model, opts, _ = load_model(path)
    assert opts.model.min_depth == state["options"]["model"]["min_depth"]
