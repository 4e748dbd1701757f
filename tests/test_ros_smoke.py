"""A real rclpy graph on loopback: the camera_info_publisher executable (another process) publishes a
CameraInfo from a YAML file and this process receives it over DDS."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from odd_one_out_ros.geometry import read_camera_info_yaml
from odd_one_out_ros.resources import share_dir

EXE = Path(sys.executable).parent / "camera_info_publisher"


def receive_one(topic: str, domain: int, timeout: float = 30.0):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        node = rclpy.create_node("smoke_listener", context=ctx)
        got = []
        node.create_subscription(CameraInfo, topic, got.append, 10)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        ex.shutdown()
        node.destroy_node()
        return got[0] if got else None
    finally:
        rclpy.try_shutdown(context=ctx)


def test_camera_info_travels_between_processes(ros_domain):
    yaml_path = share_dir() / "calibration" / "toysad_camera.yaml"
    proc = subprocess.Popen([str(EXE), "--ros-args", "-p", f"camera_info_file:={yaml_path}",
                             "-p", "frame_id:=cam7_optical_frame", "-p", "rate:=20.0",
                             "-r", "camera_info:=/smoke/cam7/camera_info"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        msg = receive_one("/smoke/cam7/camera_info", ros_domain)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert msg is not None, f"no CameraInfo received; publisher said:\n{out}"
    calib = read_camera_info_yaml(yaml_path)
    assert msg.header.frame_id == "cam7_optical_frame"
    assert (msg.width, msg.height) == (calib.width, calib.height)
    np.testing.assert_allclose(np.array(msg.k).reshape(3, 3), calib.K)


def test_other_domain_does_not_hear_it(ros_domain):
    """The domain id isolates tests: a listener on another domain receives nothing."""
    yaml_path = share_dir() / "calibration" / "toysad_camera.yaml"
    proc = subprocess.Popen([str(EXE), "--ros-args", "-p", f"camera_info_file:={yaml_path}",
                             "-r", "camera_info:=/smoke/iso/camera_info"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert receive_one("/smoke/iso/camera_info", (ros_domain + 1) % 100, timeout=3.0) is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("param,match", [("camera_info_file:=/nonexistent/cam.yaml", "cannot read"),
                                         ("rate:=0.0", "rate")])
def test_bad_parameters_exit_with_a_clear_error(ros_domain, tmp_path, param, match):
    args = [str(EXE), "--ros-args", "-p", param]
    if "camera_info_file" not in param:
        args += ["-p", f"camera_info_file:={share_dir() / 'calibration' / 'toysad_camera.yaml'}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr  # bad parameters or files: exit 2 (docs/ros.md, node_main.run_node)
    assert match in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert "Traceback" not in r.stderr
