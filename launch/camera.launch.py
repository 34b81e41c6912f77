"""Launch sfm_node on a camera: depth, point cloud and visual odometry.

    ros2 launch sfm_ros camera.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info

Arguments: ``image`` (camera topic; ``<image>/compressed`` is used when the parameters set
``compressed: true``), ``camera_info``, ``params_file`` (default: share/sfm_ros/config/sfm_ros.yaml),
``namespace`` and ``use_sim_time`` (true when playing a bag with ``sfm_play --clock``).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("sfm_ros"), "config", "sfm_ros.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="camera info topic (sensor_msgs/CameraInfo)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="sfm_node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (e.g. from sfm_play --clock)"),
        Node(
            package="sfm_ros",
            executable="sfm_node",
            name="sfm_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[
                LaunchConfiguration("params_file"),
                {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
            ],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
            output="screen",
        ),
    ])
