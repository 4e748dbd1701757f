"""The ROS 2 nodes (wiring only) and message conversions. Importing this package sets the ROS environment
defaults (odd_one_out_ros.env: discovery on loopback, the venv on AMENT_PREFIX_PATH) before any node calls
rclpy.init, which is when rcl reads them."""
from ..env import apply_ros_env_defaults

apply_ros_env_defaults()
