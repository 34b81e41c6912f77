"""Static checks of launch/camera.launch.py, config/sfm_ros.yaml and config/sfm_ros.rviz.

``launch`` / ``launch_ros`` are on no registry here, so the launch file is parsed with ``ast``; it is
run for real by test/test_launch_run.py where ``../shared/vendor`` holds their sources.
"""
from __future__ import annotations

import ast

import pytest
import yaml

from conftest import REPO

LAUNCH = REPO / "launch" / "camera.launch.py"
PARAMS = REPO / "config" / "sfm_ros.yaml"
RVIZ = REPO / "config" / "sfm_ros.rviz"


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == name]


def _kw(call: ast.Call, key: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _const(node: ast.expr | None):
    return node.value if isinstance(node, ast.Constant) else None


def _launch_config_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call) and _name(node.func) == "LaunchConfiguration" and node.args:
        return _const(node.args[0])
    return None


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    src = LAUNCH.read_text()
    compile(src, str(LAUNCH), "exec")
    return ast.parse(src)


def test_defines_generate_launch_description(tree):
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs


def test_node_action(tree):
    nodes = [c for c in _calls(tree, "Node") if _const(_kw(c, "package")) == "sfm_ros"]
    assert len(nodes) == 1
    node = nodes[0]
    assert _const(_kw(node, "executable")) == "sfm_node"
    assert _const(_kw(node, "name")) == "sfm_node"
    assert _launch_config_name(_kw(node, "namespace")) == "namespace"
    assert _const(_kw(node, "output")) == "screen"
    params = _kw(node, "parameters")
    assert isinstance(params, ast.List) and len(params.elts) == 3
    # The package defaults first, the user's file over them, the launch arguments last.
    assert isinstance(params.elts[0], ast.Name) and params.elts[0].id == "default_params"
    assert _launch_config_name(params.elts[1]) == "params_file"
    assert isinstance(params.elts[2], ast.Call) and _name(params.elts[2].func) == "_overrides"
    overrides = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_overrides")
    sim = [d for d in ast.walk(overrides) if isinstance(d, ast.Dict)]
    assert sim and any(_const(k) == "use_sim_time" for k in sim[0].keys)
    used = {_launch_config_name(n) for n in ast.walk(overrides)}
    assert {"use_sim_time", "checkpoint", "scale"} <= used
    ros_args = _kw(node, "ros_arguments")
    assert isinstance(ros_args, ast.List) and _const(ros_args.elts[0]) == "--log-level"
    assert _launch_config_name(ros_args.elts[1]) == "log_level"
    remaps = _kw(node, "remappings")
    assert isinstance(remaps, ast.List)
    pairs = {}
    for e in remaps.elts:
        assert isinstance(e, ast.Tuple) and len(e.elts) == 2
        pairs[_const(e.elts[0])] = e.elts[1]
    assert _launch_config_name(pairs["image"]) == "image"
    assert _launch_config_name(pairs["camera_info"]) == "camera_info"
    assert "image/compressed" in pairs


def test_rviz_action(tree):
    nodes = [c for c in _calls(tree, "Node") if _const(_kw(c, "package")) == "rviz2"]
    assert len(nodes) == 1
    rviz = nodes[0]
    assert _const(_kw(rviz, "executable")) == "rviz2"
    cond = _kw(rviz, "condition")
    assert isinstance(cond, ast.Call) and _name(cond.func) == "IfCondition"
    assert _launch_config_name(cond.args[0]) == "rviz"
    args = _kw(rviz, "arguments")
    assert isinstance(args, ast.List) and _const(args.elts[0]) == "-d"
    joins = [c for c in _calls(tree, "join") if any(_const(a) == "sfm_ros.rviz" for a in c.args)]
    assert joins and any(_const(a) == "config" for a in joins[0].args)
    decl = next(c for c in _calls(tree, "DeclareLaunchArgument") if _const(c.args[0]) == "rviz")
    assert _const(_kw(decl, "default_value")) == "false"


def test_every_launch_configuration_is_declared(tree):
    declared = {_const(c.args[0]) for c in _calls(tree, "DeclareLaunchArgument")}
    used = {_launch_config_name(n) for n in ast.walk(tree)} - {None}
    assert used, "no LaunchConfiguration found"
    assert used <= declared, f"undeclared: {used - declared}"
    assert {"image", "camera_info", "params_file", "namespace", "use_sim_time",
            "checkpoint", "scale", "log_level", "rviz"} <= declared


def test_params_file_default_is_package_share_config(tree):
    share = _calls(tree, "get_package_share_directory")
    assert share and _const(share[0].args[0]) == "sfm_ros"
    joins = [c for c in _calls(tree, "join") if any(_const(a) == "sfm_ros.yaml" for a in c.args)]
    assert joins and any(_const(a) == "config" for a in joins[0].args)
    decl = next(c for c in _calls(tree, "DeclareLaunchArgument") if _const(c.args[0]) == "params_file")
    default = _kw(decl, "default_value")
    assert isinstance(default, ast.Name)  # the os.path.join(...) result above


def test_params_yaml_matches_node_parameters():
    from sfm_ros.ros.node import NODE_NAME
    from sfm_ros.ros.node_params import PARAMETERS

    doc = yaml.safe_load(PARAMS.read_text())
    # "/**": the file applies whatever the namespace or node name (a "sfm_node" key is ignored
    # under `-r __ns:=/robot1`: test_launch_run.py runs it).
    assert NODE_NAME == "sfm_node" and list(doc) == ["/**"]
    params = doc["/**"]["ros__parameters"]
    declared = {p.name: p.default for p in PARAMETERS}
    # The mount (and so publish_static_tf, on once camera_xyz / camera_rpy is given) is left to the
    # URDF: those keys are there as comments only.
    optional = {"camera_xyz", "camera_rpy", "publish_static_tf"}
    assert set(params) == set(declared) - optional
    text = PARAMS.read_text()
    assert all(f"# {name}: " in text for name in optional), "document the commented-out mount keys"
    for name, value in params.items():
        default = declared[name]
        if isinstance(default, bool):
            assert isinstance(value, bool), name
        elif isinstance(default, float):
            assert isinstance(value, float), f"{name}: write {value} as a float (e.g. {float(value)})"
        elif isinstance(default, int):
            assert isinstance(value, int) and not isinstance(value, bool), name
        elif isinstance(default, str):
            assert isinstance(value, str), name
        elif isinstance(default, list):
            assert isinstance(value, list) and len(value) == len(default), name
            assert all(isinstance(v, float) for v in value), f"{name}: list of floats"


def test_node_docstring_documents_every_parameter():
    """The parameter table lives in the docstring of :mod:`sfm_ros.ros.node_params`, which the
    node's own docstring points to."""
    import sfm_ros.ros.node as node
    import sfm_ros.ros.node_params as node_params

    assert ":mod:`sfm_ros.ros.node_params`" in node.__doc__
    for p in node_params.PARAMETERS:
        assert f"``{p.name}``" in node_params.__doc__, p.name


def test_rviz_config():
    doc = yaml.safe_load(RVIZ.read_text())
    vm = doc["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "odom"
    displays = {d["Class"]: d for d in vm["Displays"]}
    for cls in ("rviz_default_plugins/TF", "rviz_default_plugins/Odometry",
                "rviz_default_plugins/PointCloud2", "rviz_default_plugins/Image"):
        assert cls in displays, cls
    topics = {d.get("Topic", {}).get("Value") for d in vm["Displays"]}
    assert {"/odom", "/points", "/depth/colormap"} <= topics
