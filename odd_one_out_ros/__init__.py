"""odd_one_out_ros: multi-view anomaly detection by comparing objects with their neighbours.

Pure modules (geometry, data, ...) never import rclpy; ROS nodes live in odd_one_out_ros.ros.
Frames and units: docs/frames.md.
"""
__version__ = "0.1.0"
