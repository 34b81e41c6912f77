"""Launch sfm_node on a camera: depth, point cloud and visual odometry (optionally RViz).

    ros2 launch sfm_ros camera.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch sfm_ros camera.launch.py namespace:=robot1 params_file:=my.yaml scale:=2.5 rviz:=true

Arguments:

- ``image`` (camera topic; ``<image>/compressed`` is used when the parameters set ``compressed: true``)
  and ``camera_info``: what the node's ``image`` / ``camera_info`` inputs are remapped to.
- ``params_file``: a parameters YAML applied *over* the package defaults
  (share/sfm_ros/config/sfm_ros.yaml, always loaded first), so it needs only the keys it changes.
  Use the ``/**:`` key (as the package file does) so it applies under any namespace and node name.
- ``checkpoint``, ``scale``: set these two parameters over both files; ``""`` (the default) leaves
  them to the files.
- ``namespace``: namespace of the node (its topics and parameter services move under it;
  ``/tf``, ``/tf_static`` and ``/diagnostics`` stay absolute).
- ``use_sim_time``: true when playing a bag with ``sfm_play --clock``.
- ``log_level``: ``--log-level`` of the node (debug | info | warn | error | fatal, or ``name:=level``).
- ``rviz``: true starts ``rviz2`` with share/sfm_ros/config/sfm_ros.rviz, in the node's namespace
  (the absolute topics of that config are remapped into it); default false.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

#: Topics of the RViz config that ``rviz`` moves into ``namespace`` (absolute ones that are global in
#: ROS stay as they are).
GLOBAL_TOPICS = ("/tf", "/tf_static", "/diagnostics", "/clock")


def _rviz_topics(rviz_file: str) -> list[str]:
    """The absolute topic names an RViz config subscribes (``Topic: {Value: ...}`` of its displays)."""
    with open(rviz_file) as f:
        doc = yaml.safe_load(f)
    topics = []
    for display in doc.get("Visualization Manager", {}).get("Displays", []):
        value = (display.get("Topic") or {}).get("Value", "")
        if isinstance(value, str) and value.startswith("/") and value not in GLOBAL_TOPICS:
            topics.append(value)
    return topics


def _overrides(context) -> dict:
    """Parameters given as launch arguments: ``use_sim_time`` always, ``checkpoint``/``scale`` if set."""
    params = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    if checkpoint:
        params["checkpoint"] = checkpoint
    scale = LaunchConfiguration("scale").perform(context)
    if scale:
        try:
            params["scale"] = float(scale)
        except ValueError:
            raise ValueError(f"camera.launch.py: scale:={scale!r} is not a number (metres per "
                             "network unit, e.g. scale:=2.5)") from None
    return params


def _actions(context, default_params: str, rviz_config: str) -> list:
    """The node (and RViz): built once the launch arguments are known."""
    sfm_node = Node(
        package="sfm_ros",
        executable="sfm_node",
        name="sfm_node",
        namespace=LaunchConfiguration("namespace"),
        # Later entries win: package defaults, the user's file, then the launch arguments.
        parameters=[default_params, LaunchConfiguration("params_file"), _overrides(context)],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", rviz_config],
        parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
        remappings=[(topic, topic[1:]) for topic in _rviz_topics(rviz_config)],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return [sfm_node, rviz]


def generate_launch_description():
    share = get_package_share_directory("sfm_ros")
    default_params = os.path.join(share, "config", "sfm_ros.yaml")
    rviz_config = os.path.join(share, "config", "sfm_ros.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="camera info topic (sensor_msgs/CameraInfo)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="sfm_node parameters (YAML), applied over the package defaults"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="sfm_ros checkpoint (.pt); empty: from the parameter files"),
        DeclareLaunchArgument("scale", default_value="",
                              description="metres per network unit; empty: from the parameter files"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (e.g. from sfm_play --clock)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="node log level: debug | info | warn | error | fatal"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start rviz2 with config/sfm_ros.rviz"),
        OpaqueFunction(function=_actions, args=[default_params, rviz_config]),
    ])
