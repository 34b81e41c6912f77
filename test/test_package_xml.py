"""package.xml declares every runtime dependency of the package's Python code, and the ROS tools'
import arrows point the right way.

Every module under ``sfm_ros/`` is parsed (not imported); every absolute import, at any depth
(imports inside functions count: they are the optional and lazy ones), that is neither the
standard library nor ``sfm_ros`` itself must map to an ``<exec_depend>`` of package.xml. ROS
packages are imported under their package name; Python libraries map through :data:`KEYS`
(import name -> rosdep key; rosdep keys from ros/rosdistro ``rosdep/python.yaml``, ``-pip`` names
for the pip-only ones, see the comments in package.xml). A library that a submodule import brings
in (``torch.utils.tensorboard`` needs the ``tensorboard`` package) is listed in :data:`SUBMODULE_KEYS`.
"""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sfm_ros"

KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "scipy": "python3-scipy",
    "transforms3d": "python3-transforms3d",
    "onnxruntime": "python3-onnxruntime-pip",
    "torch": "python3-torch",
    "rosbags": "python3-rosbags-pip",
    "onnx": "python3-onnx-pip",
}
SUBMODULE_KEYS = {"torch.utils.tensorboard": "python3-tensorboard-pip"}


def exec_depends(path: Path = REPO / "package.xml") -> set[str]:
    root = ET.parse(path).getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag) if e.text}


def imported_modules(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Absolute module names imported anywhere in ``package`` → the files importing them."""
    found: dict[str, set[str]] = {}
    for f in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                found.setdefault(n, set()).add(f.relative_to(package.parent).as_posix())
    return found


def required_keys(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """The package.xml keys ``modules`` need → the files that need them."""
    need: dict[str, set[str]] = {}
    for mod, files in modules.items():
        top = mod.split(".")[0]
        if top in sys.stdlib_module_names or top in ("__future__", "sfm_ros"):
            continue
        keys = {KEYS.get(top, top)}
        keys |= {k for prefix, k in SUBMODULE_KEYS.items() if mod == prefix or mod.startswith(prefix + ".")}
        for k in keys:
            need.setdefault(k, set()).update(files)
    return need


def test_every_third_party_import_is_declared():
    declared = exec_depends()
    need = required_keys(imported_modules())
    assert {"python3-numpy", "python3-torch", "rclpy", "python3-onnxruntime-pip"} <= set(need)  # the scan works
    missing = {k: sorted(v) for k, v in need.items() if k not in declared}
    assert not missing, f"imported but not an <exec_depend> of package.xml: {missing}"


def test_the_check_fails_for_an_undeclared_import(tmp_path):
    pkg = tmp_path / "sfm_ros"
    pkg.mkdir()
    (pkg / "m.py").write_text("import os\nfrom . import x\n\ndef f():\n    import scipy.spatial\n"
                              "    from torch.utils.tensorboard import SummaryWriter\n    import sensor_msgs.msg\n")
    mods = imported_modules(pkg)
    assert set(mods) == {"os", "scipy.spatial", "torch.utils.tensorboard", "sensor_msgs.msg"}
    need = required_keys(mods)
    assert need["python3-scipy"] == {"sfm_ros/m.py"}
    assert set(need) == {"python3-scipy", "python3-torch", "python3-tensorboard-pip", "sensor_msgs"}
    xml = tmp_path / "package.xml"
    xml.write_text("<package format='3'><exec_depend>python3-torch</exec_depend>"
                   "<depend>sensor_msgs</depend></package>")
    assert set(need) - exec_depends(xml) == {"python3-scipy", "python3-tensorboard-pip"}


@pytest.mark.parametrize("tool, forbidden", [("player", "sfm_ros.ros.recorder"), ("recorder", "sfm_ros.ros.player")])
def test_ros_tools_do_not_import_each_other_or_private_bag_names(tool, forbidden):
    """sfm_play and sfm_record share ros/message_types and data/bags, not each other; bags' private names stay private."""
    tree = ast.parse((PACKAGE / "ros" / f"{tool}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = ("sfm_ros.ros." if node.level else "") + (node.module or "")
            assert mod != forbidden, f"{tool}.py imports {forbidden}"
            if mod == "sfm_ros.data.bags":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{tool}.py imports private names of bags: {private}"
