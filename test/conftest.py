"""Shared pytest fixtures.

Every process a test starts that touches DDS must stay on this machine and in a domain of its own:
this module sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a per-run ``ROS_DOMAIN_ID`` in the
environment before any test runs, so child processes (started with ``ros_env()``) inherit them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, runs nodes or subprocesses; `make test-fast` leaves these out")


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain of our own: derived from the pid so concurrent runs (a developer and CI) do not meet.
os.environ.setdefault("SFM_ROS_TEST_DOMAIN", str(10 + os.getpid() % 80))
os.environ["ROS_DOMAIN_ID"] = os.environ["SFM_ROS_TEST_DOMAIN"]
# Measured precision choices (sfm_ros.core.precision) go to a cache of this run, not the user's.
if "SFM_ROS_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["SFM_ROS_CACHE"] = tempfile.mkdtemp(prefix="sfm_ros_test_cache_")
    # Removed when this run ends (child processes inherit the variable and never create one).
    atexit.register(shutil.rmtree, os.environ["SFM_ROS_CACHE"], ignore_errors=True)


def save_tiny_checkpoint(path: Path, height: int = 64, width: int = 96, seq_len: int = 3, seed: int | None = None,
                         nan: bool = False) -> Path:
    """An untrained quarter-width checkpoint at ``path`` (fast to load and run; the tests' model);
    ``seed``: torch's seed first; ``nan``: the depth network's weights NaN."""
    import torch

    from sfm_ros.core.checkpoint import save_checkpoint
    from sfm_ros.core.model import SfMModel
    from sfm_ros.core.options import ModelOptions, Options

    if seed is not None:
        torch.manual_seed(seed)
    mo = ModelOptions(width_mult=0.25, height=height, width=width, seq_len=seq_len)
    model = SfMModel(mo)
    if nan:
        for p in model.depth_net.parameters():
            p.data.fill_(float("nan"))
    save_checkpoint(path, model, Options(model=mo))
    return path


def load_bench(name: str):
    """The benchmark script ``bench/<name>.py`` as a module (its own imports of ``bench/`` resolve)."""
    import importlib.util

    bench = str(Path(__file__).resolve().parents[1] / "bench")
    sys.path.insert(0, bench)
    try:
        spec = importlib.util.spec_from_file_location(name, Path(bench) / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(bench)


def wait_until(pred, timeout: float, step: float = 0.05) -> bool:
    """Poll ``pred()`` every ``step`` seconds until it holds or ``timeout`` seconds passed; its last value."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def ros_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that starts rclpy (localhost discovery, own domain)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = os.environ["SFM_ROS_TEST_DOMAIN"]
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_ddp_worker(out_dir: Path, device: str = "cpu", nproc: int = 2,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc test/ddp_worker.py out_dir`` on ``device`` (a free local port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1", "SFM_DDP_DEVICE": device,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(port), str(REPO / "test" / "ddp_worker.py"), str(out_dir)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def default_sigint() -> None:
    """SIGINT back to its default disposition (a child's ``preexec_fn``; Python then installs its
    KeyboardInterrupt handler). A job started in the background (``make test &``) inherits SIGINT
    ignored, which the trainer rightly leaves alone: a test of Ctrl-C needs the interactive default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_default():
    """Python's own SIGINT handler in this process for the test (:func:`default_sigint`'s reason)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (tiny models), restoring the count after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def python_exe() -> str:
    """The venv's own python (the rclpy wheels re-exec it with LD_LIBRARY_PATH set)."""
    return sys.executable


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; skips the test cleanly when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kitti_dir(shared_data: Path) -> Path:
    d = shared_data / "kitti_odom_00"
    if not (d / "image_0").is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(scope="session")
def sevenscenes_dir(shared_data: Path) -> Path:
    d = shared_data / "sevenscenes_redkitchen"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(scope="session")
def t265_bag(shared_data: Path) -> Path:
    p = shared_data / "t265_ros1_bag" / "trimmed_locoffice.bag"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p
