"""The shipped parameters and launch file, run for real.

* ``config/sfm_ros.yaml`` applies to a node started in a namespace (``-r __ns:=/robot1``): its key
  is ``/**`` (a ``sfm_node:`` key would leave every value at the node's default there).
* ``launch/camera.launch.py`` runs through ``launch.LaunchService`` (what ``ros2 launch`` does) in a
  child process, from the ``launch`` / ``launch_ros`` sources of ``../shared/vendor`` (skipped when
  that folder or one of their PyPI dependencies, osrf-pycommon and lark, is absent). A session
  fixture generates ``composition_interfaces`` (tools/build_composition_interfaces.sh, ~15 s) and an
  ament prefix for sfm_ros into a temporary folder; nothing generated lives in the repository.

Parameter values are read through the node's own ``get_parameters`` service.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402

from conftest import REPO, ros_env  # noqa: E402
from ros_client import RosClient  # noqa: E402
from sfm_ros.core.checkpoint import save_checkpoint  # noqa: E402
from sfm_ros.core.model import SfMModel  # noqa: E402
from sfm_ros.core.options import ModelOptions, Options  # noqa: E402

pytestmark = pytest.mark.slow  # make test-fast leaves it out

PARAMS = REPO / "config" / "sfm_ros.yaml"
LAUNCH = REPO / "launch" / "camera.launch.py"
VENDOR = (REPO.parent / "shared" / "vendor").resolve()
LAUNCH_SRC = VENDOR / "ros2_launch" / "launch"
LAUNCH_ROS_SRC = VENDOR / "ros2_launch_ros" / "launch_ros"
COMPOSITION_SRC = VENDOR / "ros2_rcl_interfaces" / "composition_interfaces"
PYVER = "python%d.%d" % sys.version_info[:2]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
class Client(RosClient):
    """The test-side node (:class:`ros_client.RosClient`) with a parameter-service call."""

    def get_parameters(self, node: str, names: list[str], timeout: float = 60.0) -> dict:
        """``names`` of ``node`` (fully qualified) through its get_parameters service."""
        cli = self.node.create_client(GetParameters, f"{node}/get_parameters")
        try:
            assert cli.wait_for_service(timeout_sec=timeout), f"{node}/get_parameters never appeared"
            future = cli.call_async(GetParameters.Request(names=names))
            end = time.monotonic() + 10.0
            while not future.done() and time.monotonic() < end:
                time.sleep(0.02)
            assert future.done(), f"{node}/get_parameters did not answer"
            return {n: _value(v) for n, v in zip(names, future.result().values)}
        finally:
            self.node.destroy_client(cli)

    def topics(self) -> dict[str, list[str]]:
        return dict(self.node.get_topic_names_and_types())

    def wait_topics(self, names: set[str], timeout: float = 30.0) -> dict[str, list[str]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not names <= set(self.topics()):
            time.sleep(0.1)
        return self.topics()


def _value(v):
    """The Python value of an rcl_interfaces/ParameterValue (None when unset)."""
    return {
        ParameterType.PARAMETER_NOT_SET: lambda: None,
        ParameterType.PARAMETER_BOOL: lambda: v.bool_value,
        ParameterType.PARAMETER_INTEGER: lambda: v.integer_value,
        ParameterType.PARAMETER_DOUBLE: lambda: v.double_value,
        ParameterType.PARAMETER_STRING: lambda: v.string_value,
        ParameterType.PARAMETER_DOUBLE_ARRAY: lambda: list(v.double_array_value),
    }[v.type]()


class Child:
    """A child process with its output collected by a reader thread; stopped with SIGINT.

    ``group=True`` starts it in a process group of its own and stops it as Ctrl-C in a terminal
    does: SIGINT to the whole group. ``launch`` relies on that: after a SIGINT it does not signal its
    processes itself (they got the Ctrl-C too) and only escalates to SIGTERM 5 s later.
    """

    def __init__(self, cmd: list[str], env: dict[str, str], group: bool = False):
        self.group = group
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=group)
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (Ctrl-C); SIGKILL only as a last resort (and the test then fails on the code)."""
        if self.proc.poll() is None:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGINT)
            else:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if self.group:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(timeout=5)
                return -9
        return self.proc.returncode


def _tiny_checkpoint(path: Path) -> Path:
    opts = Options()
    opts.model = ModelOptions(width_mult=0.25, height=64, width=96)
    save_checkpoint(path, SfMModel(opts.model), opts)
    return path


def _processes_with(marker: str) -> list[str]:
    """Command lines of the running processes that mention ``marker`` (leftover check)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def client():
    c = Client("sfm_launch_test_client")
    yield c
    c.close()


# ------------------------------------------------------------------------------------------------
# The shipped parameters file under a namespace (no launch needed)
# ------------------------------------------------------------------------------------------------
def test_params_file_applies_under_a_namespace(client, tiny_ckpt):
    """``--params-file config/sfm_ros.yaml`` with ``-r __ns:=/robot1``: the file's values are used."""
    node = Child([sys.executable, "-m", "sfm_ros.ros.node", "--ros-args", "-r", "__ns:=/robot1",
                  "--params-file", str(PARAMS), "-p", f"checkpoint:={tiny_ckpt}"], ros_env())
    try:
        got = client.get_parameters("/robot1/sfm_node", ["publish_colormap", "points_stride", "checkpoint"])
        assert node.proc.poll() is None, node.output
    finally:
        code = node.stop()
    # The node's own defaults are publish_colormap false and points_stride 1: the file says true, 4.
    assert got == {"publish_colormap": True, "points_stride": 4, "checkpoint": str(tiny_ckpt)}, node.output
    assert code == 0, node.output


# ------------------------------------------------------------------------------------------------
# camera.launch.py through launch.LaunchService
# ------------------------------------------------------------------------------------------------
RUNNER = textwrap.dedent("""
    import sys
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    args = [a.split(":=", 1) for a in sys.argv[2:]]
    ls = LaunchService()
    ls.include_launch_description(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[tuple(a) for a in args]))
    sys.exit(ls.run())
""")


@pytest.fixture(scope="session")
def launch_env(tmp_path_factory) -> dict[str, str]:
    """Environment for running camera.launch.py: vendored launch sources, composition_interfaces
    and an ament prefix for sfm_ros, all generated into a temporary folder."""
    if not VENDOR.is_dir():
        pytest.skip(f"{VENDOR} is absent: launch/launch_ros sources are needed to run the launch file")
    for src in (LAUNCH_SRC / "launch", LAUNCH_ROS_SRC / "launch_ros", COMPOSITION_SRC / "srv"):
        if not src.is_dir():
            pytest.skip(f"{src} is absent (see {VENDOR}/README.md)")
    for module, pip_name in (("osrf_pycommon", "osrf-pycommon"), ("lark", "lark"), ("yaml", "PyYAML"),
                             ("ament_index_python", "ros-ament-index-python"),
                             ("lifecycle_msgs", "ros-lifecycle-msgs")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"launch needs the Python module {module!r}: pip install {pip_name}")
    root = tmp_path_factory.mktemp("launch_prefix")
    interfaces = root / "interfaces"
    build = subprocess.run(["bash", str(REPO / "tools" / "build_composition_interfaces.sh"), sys.prefix,
                            str(interfaces), str(COMPOSITION_SRC)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-4000:]
    # The ament prefix of an installed sfm_ros (setup.py's data_files + the console script).
    pkg = root / "sfm_ros"
    (pkg / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (pkg / "share" / "ament_index" / "resource_index" / "packages" / "sfm_ros").write_text("")
    (pkg / "share" / "sfm_ros").mkdir()
    (pkg / "share" / "sfm_ros" / "package.xml").symlink_to(REPO / "package.xml")
    for folder in ("launch", "config", "models"):
        (pkg / "share" / "sfm_ros" / folder).symlink_to(REPO / folder, target_is_directory=True)
    exe = pkg / "lib" / "sfm_ros" / "sfm_node"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!{sys.executable}\nimport sys\nfrom sfm_ros.ros.node import main\nsys.exit(main())\n")
    exe.chmod(0o755)
    site = interfaces / "lib" / PYVER / "site-packages"
    return ros_env(
        PYTHONPATH=os.pathsep.join(str(p) for p in (LAUNCH_SRC, LAUNCH_ROS_SRC, site, REPO)),
        LD_LIBRARY_PATH=os.pathsep.join(p for p in (str(interfaces / "lib"), os.environ.get("LD_LIBRARY_PATH", ""))
                                        if p),
        AMENT_PREFIX_PATH=os.pathsep.join((str(pkg), str(interfaces), sys.prefix)),
        ROS_LOG_DIR=str(root / "log"),  # launch's log files stay in the temporary folder
    )


def _launch(env: dict[str, str], *args: str) -> Child:
    return Child([sys.executable, "-c", RUNNER, str(LAUNCH), *args], env, group=True)


def test_launch_file_runs(launch_env, client, tiny_ckpt, tmp_path):
    """Namespace, a partial params file over the package defaults, checkpoint / scale / log_level
    arguments and remapped inputs; then Ctrl-C (SIGINT to the group) shuts everything down cleanly."""
    user_params = tmp_path / "robot1.yaml"
    user_params.write_text("/**:\n  ros__parameters:\n    points_stride: 7\n    max_depth: 50.0\n")
    marker = str(Path(launch_env["AMENT_PREFIX_PATH"].split(os.pathsep)[0]) / "lib" / "sfm_ros" / "sfm_node")
    run = _launch(launch_env, "namespace:=robot1", f"params_file:={user_params}", f"checkpoint:={tiny_ckpt}",
                  "scale:=2.5", "log_level:=debug", "image:=/cam1/image_raw", "camera_info:=/cam1/info")
    try:
        names = ["points_stride", "max_depth", "publish_colormap", "scale", "checkpoint", "use_sim_time",
                 "odom_frame"]
        got = client.get_parameters("/robot1/sfm_node", names)
        topics = client.wait_topics({"/robot1/odom", "/robot1/points", "/cam1/image_raw", "/cam1/info",
                                      "/robot1/depth/image", "/robot1/depth/camera_info"})
        subs_image = client.node.count_subscribers("/cam1/image_raw")
        subs_info = client.node.count_subscribers("/cam1/info")
        assert run.proc.poll() is None, run.output
        assert _processes_with(marker), f"sfm_node not found running\n{run.output}"
    finally:
        code = run.stop()
    assert got == {
        "points_stride": 7, "max_depth": 50.0,  # the user's file
        "publish_colormap": True, "odom_frame": "odom",  # the package defaults (node default: false)
        "scale": 2.5, "checkpoint": str(tiny_ckpt),  # launch arguments
        "use_sim_time": False,
    }, run.output
    assert topics["/robot1/odom"] == ["nav_msgs/msg/Odometry"], topics
    assert topics["/robot1/points"] == ["sensor_msgs/msg/PointCloud2"], topics
    # depth/image and its sibling camera_info (image_transport / depth_image_proc naming)
    assert topics["/robot1/depth/image"] == ["sensor_msgs/msg/Image"], topics
    assert topics["/robot1/depth/camera_info"] == ["sensor_msgs/msg/CameraInfo"], topics
    assert "/robot1/depth" not in topics, topics
    assert subs_image >= 1 and subs_info >= 1, (topics, run.output)
    assert "/image_raw" not in topics and "/robot1/image" not in topics, topics  # remapped, not default
    assert "[DEBUG]" in run.output, "log_level:=debug did not reach the node"
    assert code == 0, run.output
    assert "process has finished cleanly" in run.output, run.output
    assert "SIGTERM" not in run.output, run.output  # the node stopped on the Ctrl-C, not escalated
    assert not _processes_with(marker), "leftover sfm_node after the launch service stopped"


def test_launch_rejects_a_bad_scale(launch_env):
    run = _launch(launch_env, "scale:=fast")
    try:
        run.proc.wait(timeout=60)
    finally:
        run.stop()
    assert run.proc.returncode != 0, run.output
    assert "scale:='fast' is not a number" in run.output, run.output


def test_rviz_remaps_the_configs_topics_into_the_namespace(launch_env):
    """``rviz:=true`` (rviz2 is not needed to check this): the shipped RViz config's absolute topics
    are remapped to relative names, so that they follow ``namespace``; /tf stays global."""
    code = ("import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
            "print(sorted(ns['_rviz_topics'](sys.argv[2])))")
    out = subprocess.run([sys.executable, "-c", code, str(LAUNCH), str(REPO / "config" / "sfm_ros.rviz")],
                         env=launch_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    topics = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert "/odom" in topics and "/points" in topics, topics
    assert not set(topics) & {"/tf", "/tf_static"}, topics
