"""ROS 2 node `camera_info_publisher`: publishes a camera_info YAML as sensor_msgs/CameraInfo.

For cameras whose driver publishes no (or an uncalibrated) CameraInfo. Parameters:
  camera_info_file (string, required): camera_calibration_parsers YAML (docs/frames.md)
  frame_id (string): header.frame_id, default = the file's camera_name + "_optical_frame"
  rate (double, Hz, 0.1..1000): publish rate, default 10
Topic: ~/camera_info remapped by the user (e.g. camera_info:=/cam0/camera_info).
A missing or invalid file is a clear error at start (exit code 2), not a crash later.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo

from ..geometry import CalibrationFileError, read_camera_info_yaml
from .conversions import calibration_to_camera_info
from .node_main import run_node
from .params import declare_params, ros_param


@dataclass(frozen=True)
class CameraInfoParams:
    camera_info_file: str = ros_param("", "camera_info YAML (camera_calibration_parsers format)")
    frame_id: str = ros_param("", "header.frame_id (default: <camera_name>_optical_frame)")
    rate: float = ros_param(10.0, "publish rate in Hz", 0.1, 1000.0)


class CameraInfoPublisher(Node):
    def __init__(self, **kwargs):
        super().__init__("camera_info_publisher", **kwargs)
        p = declare_params(self, CameraInfoParams)
        path, frame_id, rate = p.camera_info_file, p.frame_id, p.rate
        if not path:
            raise CalibrationFileError("parameter camera_info_file is required")
        calib = read_camera_info_yaml(path)
        self._msg = calibration_to_camera_info(calib, frame_id or f"{calib.camera_name}_optical_frame")
        self._pub = self.create_publisher(CameraInfo, "camera_info", 10)
        self.create_timer(1.0 / rate, self._publish)
        self.get_logger().info(f"publishing {path} ({calib.width}x{calib.height}) on "
                               f"{self._pub.topic_name} at {rate} Hz, frame {self._msg.header.frame_id}")

    def _publish(self):
        self._msg.header.stamp = self.get_clock().now().to_msg()
        self._pub.publish(self._msg)


def main(args=None) -> int:
    return run_node(CameraInfoPublisher, "camera_info_publisher", args)


if __name__ == "__main__":
    sys.exit(main())
