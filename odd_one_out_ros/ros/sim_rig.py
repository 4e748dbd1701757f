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
from dataclasses import dataclass, fields

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ..geometry import CameraCalibration
from ..inspection.sim import SimConfig, SimRig
from .conversions import calibration_to_camera_info, rgb_to_image, rigid_to_pose
from .node_main import run_node
from .params import declare_params, ros_param

_SIM = SimConfig()  # the simulation's defaults: each parameter named after a SimConfig field takes its default


@dataclass(frozen=True)
class SimRigParams:
    """The sim rig's parameters: the SimConfig fields of the same names (sim_config), then the publishing ones."""

    kind: str = ros_param(_SIM.kind, "toys or parts", choices=("toys", "parts"))
    seed: int = ros_param(_SIM.seed, "scene seed", 0, 2**31 - 1)
    objects: tuple = ros_param(_SIM.objects, "[min, max] objects on the tray (0..12)")
    category: str = ros_param(_SIM.category, "toy category (empty = random)")
    mode: str = ros_param(_SIM.mode, "rig (N fixed cameras) or orbit (one moving)", choices=("rig", "orbit"))
    cameras: int = ros_param(_SIM.cameras, "fixed cameras in rig mode", 1, 64)
    image_size: int = ros_param(_SIM.image_size, "square image size (px)", 32, 2048)
    distance: float = ros_param(_SIM.distance, "camera distance from the tray centre (m)", 0.2, 5.0)
    elevation_deg: float = ros_param(_SIM.elevation_deg, "camera elevation above the tray (degrees)", 5.0, 89.0)
    azimuth0_deg: float = ros_param(_SIM.azimuth0_deg, "azimuth of camera 0 / the orbit start (degrees)",
                                    -360.0, 360.0)
    orbit_steps: int = ros_param(_SIM.orbit_steps, "orbit mode: camera positions per revolution", 3, 3600)
    apriltag_board: bool = ros_param(_SIM.apriltag_board, "put the AprilTag tray board on the floor (for "
                                                          "pose_source apriltag)")
    board_file: str = ros_param(_SIM.board_file, "board YAML (empty = calibration/tray_board_12tags.yaml)")
    rate: float = ros_param(2.0, "rig: cycles per second; orbit: camera steps per second", 0.01, 100.0)
    frame_id: str = ros_param("world", "world (board) frame of the poses")
    prefix: str = ros_param("cameras", "topic prefix of the cameras")
    encoding: str = ros_param("rgb8", "image encoding", choices=("rgb8", "bgr8"))
    publish_poses: bool = ros_param(True, "publish <prefix>/<camera>/pose (for pose_source topic)")


def sim_config(p: SimRigParams) -> SimConfig:
    """The simulation of the parameters: every SimConfig field that is a parameter. ValueError (one line) for a
    value SimConfig refuses."""
    if len(p.objects) != 2:
        raise ValueError(f"parameter objects must be [min, max], got {list(p.objects)}")
    values = {f.name: getattr(p, f.name) for f in fields(SimConfig) if hasattr(p, f.name)}
    return SimConfig(**{**values, "objects": (int(p.objects[0]), int(p.objects[1]))})


class SimRigNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_rig", **kwargs)
        p = declare_params(self, SimRigParams)
        cfg = sim_config(p)
        rate, prefix = p.rate, p.prefix
        self.frame_id, self.encoding, self.publish_poses = p.frame_id, p.encoding, p.publish_poses

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
