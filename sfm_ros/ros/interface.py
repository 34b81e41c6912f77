"""The node's ROS interface in one table: every topic ``sfm_node`` subscribes to and publishes, with
its message type, QoS and meaning. The node creates its subscriptions and publishers from
:data:`SUBSCRIPTIONS` and :data:`PUBLICATIONS` by name; ``sfm_node --help``, the node's module
documentation and the README's topic table are generated from them (:func:`help_text`,
:func:`topic_sections_rst`, :func:`readme_table`), and ``test/test_interface.py`` fails when a
publisher, the table and the README disagree. To change a topic, change its row here, then
``python -m sfm_ros.ros.interface --readme README.md`` rewrites the README's table.

QoS kinds (:func:`qos_profile`):

==============  ==============================================================================
kind            profile
==============  ==============================================================================
``input``       keep last ``qos_depth``, ``qos_reliability`` (best effort by default: the
                sensor-data QoS), volatile
``output``      keep last ``qos_depth``, reliable, volatile (best-effort subscribers match too)
``tf``          keep last 100, reliable, volatile (tf2_ros' dynamic broadcaster)
``tf_static``   keep last 1, reliable, transient local (tf2_ros' static broadcaster)
``diagnostics`` keep last 10, reliable, volatile (diagnostic_updater)
==============  ==============================================================================
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

NODE_NAME = "sfm_node"
SUMMARY = "SfMLearner monocular depth and visual odometry as a ROS 2 node."
EXAMPLE = ("ros2 run sfm_ros sfm_node --ros-args -r image:=/cam/image_raw -r camera_info:=/cam/camera_info "
           "-p scale:=2.5 [--params-file config/sfm_ros.yaml]")
QOS_KINDS = ("input", "output", "tf", "tf_static", "diagnostics")


@dataclass(frozen=True)
class Topic:
    """One row of the interface table.

    ``name`` is relative (``__ns`` and remapping apply) unless it starts with ``/``; ``msg_type``
    is ``package/Type``; ``encoding`` the image encoding when fixed; ``qos`` one of
    :data:`QOS_KINDS`; ``summary`` the ``--help`` line; ``notes`` the documentation's text;
    ``switch`` the parameter that turns it on or off (``""``: always on)."""

    name: str
    msg_type: str
    qos: str
    summary: str
    notes: str
    encoding: str = ""
    switch: str = ""

    def __post_init__(self):
        if self.qos not in QOS_KINDS:
            raise ValueError(f"topic {self.name}: qos must be one of {QOS_KINDS}, got {self.qos!r}")
        if self.msg_type.count("/") != 1:
            raise ValueError(f"topic {self.name}: msg_type must be package/Type, got {self.msg_type!r}")

    @property
    def type_text(self) -> str:
        return f"{self.msg_type} {self.encoding}".strip()


SUBSCRIPTIONS: tuple[Topic, ...] = (
    Topic("image", "sensor_msgs/Image", "input", "camera frames (compressed:=false)",
          "camera frames (``compressed:=false``, the default); rgb8, bgr8, rgba8, bgra8, mono8, mono16"),
    Topic("image/compressed", "sensor_msgs/CompressedImage", "input", "instead of image when compressed:=true",
          "instead of ``image`` when ``compressed:=true`` (image_transport naming: remap it on its own, "
          "e.g. ``-r image/compressed:=/cam/image_raw/compressed``)"),
    Topic("camera_info", "sensor_msgs/CameraInfo", "input", "intrinsics (else the 'intrinsics' parameter)",
          "intrinsics; each image is read with the camera_info of its stamp (else the latest); until one "
          "arrives the ``intrinsics`` parameter is used (if set)"),
)

PUBLICATIONS: tuple[Topic, ...] = (
    Topic("depth/image", "sensor_msgs/Image", "output", "depth (m; REP 118: -Inf/+Inf/NaN)",
          "depth in metres (REP 118) at the network resolution, ``network units * scale``; -Inf < "
          "``min_depth``, +Inf > ``max_depth``, NaN unknown; frame = camera optical frame", encoding="32FC1"),
    Topic("depth/image/compressedDepth", "sensor_msgs/CompressedImage", "output",
          "depth/image, PNG (publish_compressed_depth)",
          "``depth/image`` as ``compressed_depth_image_transport`` publishes it (format ``32FC1; compressedDepth "
          "png``: quantised inverse depth, ~5x smaller; depths beyond ``max_depth``, +Inf and NaN arrive as NaN, "
          "-Inf as the format's nearest depth, ~0.15 m); "
          "subscribe through image_transport's ``compressedDepth`` transport", switch="publish_compressed_depth"),
    Topic("depth/camera_info", "sensor_msgs/CameraInfo", "output", "intrinsics of depth/image",
          "intrinsics scaled to the depth image, its sibling (image_transport, depth_image_proc, RViz; "
          "needs camera_info or ``intrinsics``)"),
    Topic("depth/colormap", "sensor_msgs/Image", "output", "inverse depth picture (publish_colormap)",
          "inverse depth, magma", encoding="rgb8", switch="publish_colormap"),
    Topic("explainability", "sensor_msgs/Image", "output", "explainability mask (publish_explainability)",
          "mean explainability mask of the window's target (middle) frame, stamped with that frame",
          encoding="mono8", switch="publish_explainability"),
    Topic("points", "sensor_msgs/PointCloud2", "output", "x y z rgb (publish_points)",
          "every ``points_stride``-th finite depth pixel: x y z float32 + rgb (packed float32); frame = "
          "camera optical frame", switch="publish_points"),
    Topic("odom", "nav_msgs/Odometry", "output", "pose + twist of base_frame in odom_frame",
          "pose of ``base_frame`` in ``odom_frame``, twist in ``base_frame``, covariances (see "
          "``sfm_ros/runtime/odometry.py``)"),
    Topic("/tf", "tf2_msgs/TFMessage", "tf", "odom_frame -> base_frame (publish_tf)",
          "``odom_frame`` → ``base_frame``", switch="publish_tf"),
    Topic("/tf_static", "tf2_msgs/TFMessage", "tf_static", "base_frame -> optical frame (publish_static_tf)",
          "``base_frame`` → camera optical frame", switch="publish_static_tf"),
    Topic("/diagnostics", "diagnostic_msgs/DiagnosticArray", "diagnostics", "1 Hz status",
          "1 Hz: frames received / processed / dropped / rejected / skipped, latency p50/p95, inference "
          "time, model, device, scale and its source, the refinement (``refined_motions``, "
          "``refined_lengths``, ``refine_ms_p50`` (the frame pair's own, the window's apart), "
          "``refine_corners``), ``ground_tilt`` (the camera's tilt to the ground in use and its "
          "measurements), ``rotation_window`` (frames in the window, corners carried, rotations that "
          "agreed of those measured, its time, recent frames whose direction of travel was solved again "
          "with the window's rotation, recent frames it measured no baseline for because a newer "
          "frame waited, the published rotation's sd and whether it came from the window's agreement or "
          "the frame pair), ``held_frames`` (frames that "
          "showed no motion, by reason); WARN naming what is missing or held"),
)

_BY_NAME = {t.name: t for t in SUBSCRIPTIONS + PUBLICATIONS}


def topic(name: str) -> Topic:
    """The row of topic ``name`` (KeyError naming the known topics otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no topic {name!r} in the node's interface (known: {', '.join(_BY_NAME)})") from None


# ------------------------------------------------------------------------------------------------ rclpy
def message_class(msg_type: str):
    """The rclpy message class of ``package/Type``; None for ``tf2_msgs`` when it is not installed."""
    import importlib

    package, name = msg_type.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except ImportError:
        if package == "tf2_msgs":
            return None
        raise


def qos_profile(kind: str, depth: int = 5, reliability: str = "best_effort"):
    """The rclpy ``QoSProfile`` of a QoS kind (module table); ``depth`` and ``reliability`` are the
    ``qos_depth`` / ``qos_reliability`` parameters (``reliability`` applies to ``input`` only)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in ("best_effort", "reliable"):
        raise ValueError(f"qos_reliability must be best_effort or reliable, got {reliability!r}")
    rel = ReliabilityPolicy.RELIABLE
    if kind == "input" and reliability == "best_effort":
        rel = ReliabilityPolicy.BEST_EFFORT
    keep = {"input": depth, "output": depth, "tf": 100, "tf_static": 1, "diagnostics": 10}[kind]
    durability = DurabilityPolicy.TRANSIENT_LOCAL if kind == "tf_static" else DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=keep, reliability=rel, durability=durability)


# ------------------------------------------------------------------------------------------------ documents
def _rst_table(title: str, rows: Iterable[Topic], last_column: str) -> list[str]:
    import textwrap

    widths = (22, 40, 58)
    rule = "  ".join("=" * w for w in widths)
    out = [title, "-" * len(title), rule,
           f"{'topic':<{widths[0]}}  {'type (QoS)':<{widths[1]}}  {last_column}", rule]
    for t in rows:
        notes = t.notes + (f" (``{t.switch}``)" if t.switch else "")
        lines = textwrap.wrap(notes, widths[2]) or [""]
        out.append(f"{'``' + t.name + '``':<{widths[0]}}  {t.type_text + ' (' + t.qos + ')':<{widths[1]}}  "
                   f"{lines[0]}")
        out += [" " * (widths[0] + widths[1] + 4) + ln for ln in lines[1:]]
    return out + [rule, ""]


def topic_sections_rst() -> str:
    """The node documentation's topic sections (reStructuredText tables), generated from the table."""
    return "\n".join(_rst_table("Subscribed topics", SUBSCRIPTIONS, "notes")
                     + _rst_table("Published topics (stamped with the input frame's header stamp)",
                                  PUBLICATIONS, "content"))


def readme_table() -> str:
    """The README's topic table (Markdown), generated from the table."""
    rows = ["| direction | topic | type | QoS | content |", "|---|---|---|---|---|"]
    for direction, topics in (("in", SUBSCRIPTIONS), ("out", PUBLICATIONS)):
        for t in topics:
            notes = t.notes.replace("``", "`").replace("|", "\\|")
            switch = f" (`{t.switch}`)" if t.switch else ""
            rows.append(f"| {direction} | `{t.name}` | `{t.type_text}` | {t.qos} | {notes}{switch} |")
    return "\n".join(rows)


README_BEGIN = "<!-- topics: generated by python -m sfm_ros.ros.interface --readme README.md -->"
README_END = "<!-- topics: end -->"


def readme_section(text: str) -> str | None:
    """The generated table between :data:`README_BEGIN` and :data:`README_END` in ``text``."""
    if README_BEGIN not in text or README_END not in text:
        return None
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n")


def write_readme(path: Path) -> bool:
    """Rewrite the table between the markers of the README at ``path``; True if it changed."""
    text = path.read_text()
    if readme_section(text) is None:
        raise ValueError(f"{path} has no {README_BEGIN} ... {README_END} section")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_BEGIN}\n{readme_table()}\n{README_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


def help_text(params: Any) -> str:
    """``sfm_node --help``: topics from the table, parameters from ``params`` (``ParamSpec``-like rows
    with ``name, default, description, dynamic`` and an optional ``shown`` default text)."""
    from sfm_ros.ros.node_params import param_type_name

    lines = [f"usage: {NODE_NAME} [-h] [--ros-args [-r FROM:=TO] [-p NAME:=VALUE] [--params-file FILE] ...]", "",
             SUMMARY, "", "subscribed topics (relative: -r __ns:=/robot1 and remapping apply):"]
    lines += [f"  {t.name:<20} {t.type_text:<32} {t.summary}" for t in SUBSCRIPTIONS]
    lines += ["", "published topics:"]
    lines += [f"  {t.name:<20} {t.type_text:<32} {t.summary}" for t in PUBLICATIONS]
    lines += ["", "parameters (* = can be changed at run time with ros2 param set):"]
    for p in params:
        shown = getattr(p, "shown", None) or (f'"{p.default}"' if isinstance(p.default, str) else
                                              str(p.default).lower() if isinstance(p.default, bool) else
                                              str(p.default))
        lines.append(f"  {p.name + (' *' if p.dynamic else ''):<26} {param_type_name(p.default):<9} "
                     f"default {shown}")
        lines.append(f"      {p.description}")
    lines += ["  use_sim_time               bool      default false (declared by rclpy)", "",
              "example:", f"  {EXAMPLE}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sfm_ros.ros.interface",
                                description="Print the node's topic table, or rewrite a README's.")
    p.add_argument("--readme", type=Path, help="rewrite the generated topic table of this README")
    args = p.parse_args(argv)
    if args.readme is None:
        print(readme_table())
        return 0
    try:
        changed = write_readme(args.readme)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
