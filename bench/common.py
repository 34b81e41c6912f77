"""Shared helpers of the benchmark suite (bench/): machine description, configurations, data paths,
subprocess workers returning JSON, markdown output. Never imported by the tests."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Real data, read in place (never copied into the repository). ``SFM_ROS_DATA`` overrides.
DATA = Path(os.environ.get("SFM_ROS_DATA", REPO.parent / "shared" / "data")).resolve()
KITTI = DATA / "kitti_odom_00"
SEVENSCENES = DATA / "sevenscenes_redkitchen"
BENCH_SIZE = (128, 416)            # (H, W) of every benchmark: the paper's input size
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
HEADER = ("# sfm_ros benchmarks\n\n"
          "Measured numbers only, each section says how it was measured (command, git revision, "
          "machine). Sections are appended, never rewritten.\n\n")
JSON_TAG = "@@BENCH_JSON@@"


def machine_info() -> dict:
    """CPU model, cores, GPU (if any), torch version, bf16 support, git revision."""
    import torch

    from sfm_ros.core.device import cpu_description, cpu_has_bf16_instructions

    cpu = cpu_description()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = "none"
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "memory_gb": round(mem_gb, 1) if mem_gb else None, "torch": torch.__version__,
            "bf16": cpu_has_bf16_instructions(), "git": git_revision(), "python": platform.python_version()}


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_config(spec: str, fixed: dict | None = None):
    """``preset[+group.key=value...]`` (a YAML file may replace the preset) → Options.

    ``fixed`` (dotted keys) is applied between the preset and the spec's overrides, so an
    explicit override in the spec wins over the benchmark's fixed settings."""
    from sfm_ros.cli.common import set_override
    from sfm_ros.core.options import apply_overrides, load_options

    base, *overrides = [s.strip() for s in spec.split("+")]
    opts = load_options(base)
    if fixed:
        apply_overrides(opts, fixed)
    for text in overrides:
        set_override(opts, text)
    return opts


def bench_options(spec: str, minutes: float | None = None, extra: dict | None = None):
    """The options of a benchmark run: the preset, then the bench's fixed settings (128x416, the
    time budget, no epoch limit, data loading in the training process, seed 0, ``extra``), then
    the spec's own overrides."""
    fixed = {"model.height": BENCH_SIZE[0], "model.width": BENCH_SIZE[1], "train.epochs": 10 ** 6,
             "train.num_workers": 0, "train.seed": 0, "train.log_every": 10 ** 6, "train.image_every": 0}
    if minutes is not None:
        fixed["train.max_minutes"] = float(minutes)
    fixed.update(extra or {})
    return parse_config(spec, fixed)


def ros_env(domain: int | None = None) -> dict:
    """Environment for every process that starts rclpy: localhost discovery, the bench's own domain."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain if domain is not None else bench_domain())
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("ROS_STATIC_PEERS", None)
    return env


def bench_domain() -> int:
    """The bench's ROS domain: ``SFM_BENCH_DOMAIN`` or 90-99 from the pid (the tests use 10-89)."""
    return int(os.environ.get("SFM_BENCH_DOMAIN", 90 + os.getpid() % 10))


def run_worker(args: list[str], timeout: float, env: dict | None = None, log=print) -> dict:
    """Run ``python <args>`` and return the JSON it prints after :data:`JSON_TAG` (its stderr goes
    through). A failure returns ``{"error": "..."}`` instead of raising."""
    cmd = [sys.executable, *args]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=env or dict(os.environ))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(JSON_TAG):
            return json.loads(line[len(JSON_TAG):])
    tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:300]}"}


def emit(result: dict) -> None:
    """A worker's result on stdout for :func:`run_worker`."""
    print(JSON_TAG + json.dumps(result), flush=True)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``getrusage``), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def append_markdown(text: str, path: Path = BENCHMARKS_MD) -> None:
    """Append a section to BENCHMARKS.md (created with its header when absent)."""
    path = Path(path)
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as f:
        f.write("\n" + text.rstrip() + "\n")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fmt(v, spec: str = ".4f", none: str = "n/a") -> str:
    if v is None:
        return none
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)
