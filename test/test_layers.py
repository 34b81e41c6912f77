"""The package's layers: every import points down (or sideways within a layer), never up.

Layers, lowest first (README "Layout"): ``core`` → ``data`` → ``runtime`` → ``training`` →
``evaluation`` → ``ros`` → ``cli``. Below ``ros`` nothing imports rclpy or a ROS message package; nothing imports a command-line module except ``sfm_ros/node.py``,
the ``python -m sfm_ros.node`` entry point. No import circle among the package's modules. Read
from the source (ast), so a function-level import counts too.
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sfm_ros"
RANK = {"core": 0, "data": 1, "runtime": 2, "training": 3, "evaluation": 4, "ros": 5, "cli": 6}
ROS_MODULES = ("rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "tf2_msgs", "diagnostic_msgs",
               "visualization_msgs", "rcl_interfaces", "builtin_interfaces", "rosidl_runtime_py", "rosidl_parser")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _modules():
    return sorted(p for p in PKG.rglob("*.py"))


def test_every_module_is_in_a_layer():
    loose = [p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "node.py")]
    assert not loose, f"modules outside the layer folders: {loose}"
    assert {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(RANK)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path):
    rel = path.relative_to(PKG).parts
    layer = rel[0] if len(rel) > 1 else None
    wrong = []
    for line, name in _imports(path):
        parts = name.split(".")
        if parts[0] in ROS_MODULES and layer not in ("ros", "cli", None):
            wrong.append(f"line {line}: {name} (ROS in the ROS-free {layer} layer)")
        if parts[0] != "sfm_ros" or len(parts) < 2 or layer is None:
            continue
        target = parts[1]
        assert target in RANK, f"{path}: line {line} imports {name}, which is in no layer"
        if RANK[target] > RANK[layer] or (RANK[target] == RANK[layer] and target != layer):
            wrong.append(f"line {line}: {name} ({layer} must not import {target})")
    assert not wrong, f"{path.relative_to(PKG)}: " + "; ".join(wrong)


def test_relative_imports_are_not_used_across_layers():
    """Imports name their layer (``from sfm_ros.core.geometry import …``): a reader sees the direction."""
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                found.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert not found, found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the sfm_ros modules it imports (module- and function-level, ``TYPE_CHECKING``
    blocks too). ``from a.b import c`` names the module ``a.b.c`` where that is a module, else
    ``a.b``; a package's ``__init__`` is the package's name. Importing ``a.b.c`` also runs ``a.b``'s
    ``__init__``, which is not counted: a package re-exporting its modules is not a circle."""
    modules = {_module_name(p): p for p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_circle():
    """No module imports, directly or through others, a module that imports it back."""
    graph = _import_graph()
    assert "sfm_ros.runtime.motion.refiner" in graph["sfm_ros.runtime.motion"]  # the graph sees packages
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join((path + [node])[(path + [node]).index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not circles, "import circles: " + "; ".join(circles)
