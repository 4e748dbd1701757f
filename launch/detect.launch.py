"""The detector, optionally with the simulated rig and RViz.

ros2 launch odd_one_out_ros detect.launch.py                          # detector only (your cameras)
ros2 launch odd_one_out_ros detect.launch.py sim:=true rviz:=true     # simulated cell + RViz
ros2 launch odd_one_out_ros detect.launch.py params_file:=/path/my_cell.yaml
Parameters (both nodes) come from params_file (default: config/odd_one_out.yaml); docs/ros.md.
The detector is a lifecycle node started with autostart false: this file requests configure at once and activate
when configure has reached inactive (a failed configure leaves it unconfigured, its reason in the log;
`ros2 lifecycle set /detector configure` tries again, and this file then activates it).
"""
import os

import lifecycle_msgs.msg
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState


def generate_launch_description():
    share = get_package_share_directory("odd_one_out_ros")
    params = LaunchConfiguration("params_file")
    detector = LifecycleNode(package="odd_one_out_ros", executable="detector", name="detector", namespace="",
                             output="screen", parameters=[params, {"autostart": False}])
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "odd_one_out.yaml"),
                              description="ROS 2 parameters file for the detector and sim_rig nodes"),
        DeclareLaunchArgument("sim", default_value="false", description="also start the simulated rig"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with the shipped view"),
        # configured (inactive) after its configure request: activate, once (not after a later deactivate)
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=detector, start_state="configuring", goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(detector),
                                                  transition_id=lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE))])),
        detector,
        EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(detector),
                                    transition_id=lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE)),
        Node(package="odd_one_out_ros", executable="sim_rig", name="sim_rig", output="screen",
             parameters=[params], condition=IfCondition(LaunchConfiguration("sim"))),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "rviz", "odd_one_out.rviz")],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
