"""ROS 2 node `sim_rig`: a simulated inspection cell. Publishes views of a generated scene
(odd_one_out_ros.inspection.sim) as N fixed cameras (`mode: rig`) or one camera moving on a circular
orbit (`mode: orbit`), with CameraInfo, the camera poses, optionally an AprilTag board on the floor,
and the ground truth on a side topic for tests and the demo.

Per camera <name> (cam0, cam1, ...; one camera cam0 in orbit mode), on <prefix>/<name>/:
  image_raw (sensor_msgs/Image, `encoding`), camera_info (sensor_msgs/CameraInfo),
  pose (geometry_msgs/PoseStamped: the optical frame's pose in frame_id, camera-to-world; if publish_poses)
All cameras of one rig cycle share one stamp. ~/ground_truth (std_msgs/String, JSON, transient local).
Rig views are rendered once at start; orbit views on first use (then cached).
"""
from __future__ import annotations

import json
import sys

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ..geometry import CameraCalibration
from ..inspection.sim import SimConfig, SimRig
from .conversions import calibration_to_camera_info, rgb_to_image, rigid_to_pose
from .node_main import param_desc as _desc  # noqa: I001  (first: sets the ROS environment before rclpy loads)
from .node_main import run_node


class SimRigNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_rig", **kwargs)
        objects = list(self.declare_parameter("objects", [4, 6], _desc(
            "[min, max] objects on the tray (0..12)")).value)
        if len(objects) != 2:
            raise ValueError(f"parameter objects must be [min, max], got {objects}")
        cfg = SimConfig(
            kind=self.declare_parameter("kind", "toys", _desc("toys or parts")).value,
            seed=self.declare_parameter("seed", 0, _desc("scene seed", 0, 2**31 - 1)).value,
            objects=(int(objects[0]), int(objects[1])),
            category=self.declare_parameter("category", "", _desc("toy category (empty = random)")).value,
            mode=self.declare_parameter("mode", "rig", _desc("rig (N fixed cameras) or orbit (one moving)")).value,
            cameras=self.declare_parameter("cameras", 5, _desc("fixed cameras in rig mode", 1, 64)).value,
            image_size=self.declare_parameter("image_size", 256, _desc("square image size (px)", 32, 2048)).value,
            distance=self.declare_parameter("distance", SimConfig.distance, _desc(
                "camera distance from the tray centre (m)", 0.2, 5.0)).value,
            elevation_deg=self.declare_parameter("elevation_deg", SimConfig.elevation_deg, _desc(
                "camera elevation above the tray (degrees)", 5.0, 89.0)).value,
            azimuth0_deg=self.declare_parameter("azimuth0_deg", 18.0, _desc(
                "azimuth of camera 0 / the orbit start (degrees)", -360.0, 360.0)).value,
            orbit_steps=self.declare_parameter("orbit_steps", 36, _desc(
                "orbit mode: camera positions per revolution", 3, 3600)).value,
            apriltag_board=self.declare_parameter("apriltag_board", False, _desc(
                "put the AprilTag tray board on the floor (for pose_source apriltag)")).value,
            board_file=self.declare_parameter("board_file", "", _desc(
                "board YAML (empty = calibration/tray_board_12tags.yaml)")).value)
        rate = self.declare_parameter("rate", 2.0, _desc(
            "rig: cycles per second; orbit: camera steps per second", 0.01, 100.0)).value
        self.frame_id = self.declare_parameter("frame_id", "world", _desc("world (board) frame of the poses")).value
        prefix = self.declare_parameter("prefix", "cameras", _desc("topic prefix of the cameras")).value
        self.encoding = self.declare_parameter("encoding", "rgb8", _desc("rgb8 or bgr8")).value
        self.publish_poses = self.declare_parameter("publish_poses", True, _desc(
            "publish <prefix>/<camera>/pose (for pose_source topic)")).value
        if self.encoding not in ("rgb8", "bgr8"):
            raise ValueError(f"parameter encoding must be rgb8 or bgr8, got {self.encoding!r}")

        self.sim = SimRig(cfg)
        n_pub = cfg.cameras if cfg.mode == "rig" else 1
        self.names = [f"cam{i}" for i in range(n_pub)]
        base = (prefix + "/") if prefix else ""
        self.pubs = [(self.create_publisher(Image, f"{base}{n}/image_raw", 5),
                      self.create_publisher(CameraInfo, f"{base}{n}/camera_info", 5),
                      self.create_publisher(PoseStamped, f"{base}{n}/pose", 5)) for n in self.names]
        if cfg.mode == "rig":
            for i in range(cfg.cameras):
                self.sim.view(i)  # render now, publish copies later
        self.step = 0
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.truth = self.sim.ground_truth(self.frame_id)
        self.create_publisher(String, "~/ground_truth", latched).publish(String(data=json.dumps(self.truth)))
        self.create_timer(1.0 / rate, self.publish_views)
        self.get_logger().info(
            f"{cfg.kind} scene seed {cfg.seed} ({self.truth['category']}, {len(self.truth['objects'])} objects, "
            f"{sum(o['anomalous'] for o in self.truth['objects'])} anomalous), {cfg.mode} mode, "
            f"{n_pub} camera(s) on {base}cam*/ at {rate} Hz")

    def _publish(self, k: int, rgb, cam, stamp) -> None:
        name = self.names[k]
        image_pub, info_pub, pose_pub = self.pubs[k]
        frame = f"{name}_optical_frame"
        info = calibration_to_camera_info(CameraCalibration.from_camera(cam, name), frame, stamp)
        info_pub.publish(info)  # before the image: a detector drops images of cameras without CameraInfo
        if self.publish_poses:
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = stamp, self.frame_id
            pose.pose = rigid_to_pose(cam.T_wc)
            pose_pub.publish(pose)
        image_pub.publish(rgb_to_image(rgb, frame, stamp, self.encoding))

    def publish_views(self) -> None:
        stamp = self.get_clock().now().to_msg()
        if self.sim.cfg.mode == "rig":
            for k in range(len(self.names)):
                rgb, cam = self.sim.view(k)
                self._publish(k, rgb, cam, stamp)
        else:
            rgb, cam = self.sim.view(self.step)
            self._publish(0, rgb, cam, stamp)
            self.step += 1


def main(args=None) -> int:
    return run_node(SimRigNode, "sim_rig", args)


if __name__ == "__main__":
    sys.exit(main())
