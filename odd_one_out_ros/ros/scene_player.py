"""ROS 2 node `scene_player`: publishes the views of a scene folder (official ToysAD-8K layout) as a
fixed multi-camera rig, for the demo, tests and replaying benchmark scenes to the detector.

Per view i (camera name cam<i>), on <prefix>/cam<i>/: image_raw (sensor_msgs/Image rgb8),
camera_info (sensor_msgs/CameraInfo), pose (geometry_msgs/PoseStamped: the camera optical frame's
pose in `frame_id`, i.e. camera-to-world). All views of one cycle share one stamp.
~/ground_truth (std_msgs/String, JSON, transient local): the scene's objects and labels.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from ..data.scene_meta import SceneFormatError, read_scene_meta
from ..fileio import read_rgb
from ..geometry import CameraCalibration
from ..resources import SAMPLE_SCENE
from .conversions import calibration_to_camera_info, rgb_to_image, rigid_to_pose
from .node_main import run_node
from .params import declare_params, ros_param


@dataclass(frozen=True)
class ScenePlayerParams:
    scene_dir: str = ros_param(str(SAMPLE_SCENE), "scene folder in the official ToysAD-8K layout (default: the "
                                                  "shipped sample)")
    views: tuple = ros_param((0, 4, 8, 12, 16), "view indices to publish, one camera each")
    rate: float = ros_param(2.0, "publish cycles per second", 0.01, 100.0)
    frame_id: str = ros_param("world", "world (board) frame of the poses")
    prefix: str = ros_param("cameras", "topic prefix of the cameras")


class ScenePlayer(Node):
    def __init__(self, **kwargs):
        super().__init__("scene_player", **kwargs)
        p = declare_params(self, ScenePlayerParams)
        scene_dir, views, rate, prefix, self.frame_id = p.scene_dir, list(p.views), p.rate, p.prefix, p.frame_id

        scene = read_scene_meta(scene_dir)
        bad = [v for v in views if not 0 <= v < len(scene.cameras)]
        if not views or bad:
            raise ValueError(f"views {bad or views} not in this scene (it has {len(scene.cameras)} views)")
        self.cameras = []
        for v in views:
            cam = scene.cameras[v]
            name = f"cam{v}"
            self.cameras.append(dict(
                rgb=read_rgb(scene.rgb_path(v), SceneFormatError), camera=cam, name=name,
                info=calibration_to_camera_info(CameraCalibration.from_camera(cam, name), f"{name}_optical_frame"),
                pose=rigid_to_pose(cam.T_wc),
                pubs=(self.create_publisher(Image, f"{prefix}/{name}/image_raw", 10),
                      self.create_publisher(CameraInfo, f"{prefix}/{name}/camera_info", 10),
                      self.create_publisher(PoseStamped, f"{prefix}/{name}/pose", 10))))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        truth = {"scene": str(scene.root), "frame_id": self.frame_id, "objects": [
            {"name": o.name, "category": o.category, "anomalous": o.anomalous, "anomaly_type": o.anomaly_type,
             **o.box.to_dict()} for o in scene.objects]}
        self.create_publisher(String, "~/ground_truth", latched).publish(String(data=json.dumps(truth)))
        self.camera_names = [c["name"] for c in self.cameras]
        self.create_timer(1.0 / rate, self.publish_views)
        self.get_logger().info(f"playing {scene.root.name}: views {views} on {prefix}/cam*/ at {rate} Hz")

    def publish_views(self):
        stamp = self.get_clock().now().to_msg()
        for c in self.cameras:
            image = rgb_to_image(c["rgb"], f"{c['name']}_optical_frame", stamp)
            c["info"].header.stamp = stamp
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id, pose.pose = stamp, self.frame_id, c["pose"]
            for pub, msg in zip(c["pubs"], (image, c["info"], pose)):
                pub.publish(msg)


def main(args=None) -> int:
    return run_node(ScenePlayer, "scene_player", args)


if __name__ == "__main__":
    sys.exit(main())
