"""Publish a camera_info YAML for a camera whose driver has no calibration.

ros2 launch odd_one_out_ros camera_info.launch.py camera_info_file:=/path/cam.yaml \
    topic:=/cam0/camera_info frame_id:=cam0_optical_frame
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_file = os.path.join(get_package_share_directory("odd_one_out_ros"), "calibration", "toysad_camera.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("camera_info_file", default_value=default_file,
                              description="camera_info YAML (camera_calibration_parsers format)"),
        DeclareLaunchArgument("topic", default_value="camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("frame_id", default_value="", description="header.frame_id"),
        DeclareLaunchArgument("rate", default_value="10.0", description="publish rate (Hz)"),
        Node(
            package="odd_one_out_ros",
            executable="camera_info_publisher",
            name="camera_info_publisher",
            output="screen",
            parameters=[{
                "camera_info_file": LaunchConfiguration("camera_info_file"),
                "frame_id": LaunchConfiguration("frame_id"),
                "rate": LaunchConfiguration("rate"),
            }],
            remappings=[("camera_info", LaunchConfiguration("topic"))],
        ),
    ])
