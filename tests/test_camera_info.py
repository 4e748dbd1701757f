"""camera_info YAML files and sensor_msgs/CameraInfo conversion."""
import numpy as np
import pytest

from odd_one_out_ros.geometry import (
    CalibrationFileError,
    CameraCalibration,
    read_camera_info_yaml,
    write_camera_info_yaml,
)
from odd_one_out_ros.resources import share_dir

CALIB = CameraCalibration(640, 480, np.array([[610.5, 0, 321.25], [0, 612.0, 239.75], [0, 0, 1]]),
                          np.array([-0.21, 0.05, 0.001, -0.0005, 0.01]), camera_name="cam0")


def test_yaml_round_trip(tmp_path):
    path = write_camera_info_yaml(CALIB, tmp_path / "cam0.yaml")
    back = read_camera_info_yaml(path)
    assert (back.width, back.height, back.camera_name, back.distortion_model) == (640, 480, "cam0", "plumb_bob")
    np.testing.assert_array_equal(back.K, CALIB.K)
    np.testing.assert_array_equal(back.D, CALIB.D)
    np.testing.assert_array_equal(back.P, CALIB.P)
    with pytest.raises(FileExistsError, match="--force"):
        write_camera_info_yaml(CALIB, path)
    write_camera_info_yaml(CALIB, path, force=True)


def test_reads_the_camera_calibration_parsers_format(tmp_path):
    """A file as written by ROS camera_calibration (flow-style lists, rows/cols/data)."""
    text = """image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [430.15, 0, 306.5, 0, 430.0, 221.0, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.337, 0.118, 0.0005, -0.0001, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [295.5, 0, 285.5, 0, 0, 344.0, 223.0, 0, 0, 0, 1, 0]
"""
    (tmp_path / "c.yaml").write_text(text)
    c = read_camera_info_yaml(tmp_path / "c.yaml")
    assert c.K[0, 0] == 430.15 and c.P[0, 0] == 295.5 and c.D[0] == -0.337
    cam = c.to_camera()
    assert cam.has_distortion and cam.width == 640


def test_shipped_calibration_files_are_valid():
    files = sorted((share_dir() / "calibration").glob("*camera*.yaml"))
    assert files
    for f in files:
        read_camera_info_yaml(f)


@pytest.mark.parametrize("text,match", [
    ("image_width: [unclosed", "not valid YAML"),
    ("- a list", "expected a camera_info mapping"),
    ("image_width: 10\nimage_height: 10\n", "missing key 'camera_matrix'"),
    ("image_width: 10\nimage_height: 10\ncamera_matrix: {rows: 3, cols: 3, data: [0,0,0,0,0,0,0,0,0]}\n",
     "fx=0.0, fy=0.0"),
    ("image_width: 10\nimage_height: 10\ncamera_matrix: {rows: 3, cols: 3, data: [1,0,0,0,1,0]}\n",
     "has 6 values"),
    ("image_width: ten\nimage_height: 10\n", "must be integers"),
    ("image_width: 10\nimage_height: 10\ncamera_matrix: {rows: 3, cols: 3, data: [5,0,5,0,5,5,0,0,1]}\n"
     "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 3, data: [0.1, 0.1, 0.1]}\n",
     "coefficients"),
])
def test_malformed_files_are_clear_errors_naming_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationFileError, match=match) as e:
        read_camera_info_yaml(path)
    assert str(path) in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CalibrationFileError, match="cannot read"):
        read_camera_info_yaml(tmp_path / "nope.yaml")


def test_camera_info_message_round_trip():
    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, camera_info_to_calibration

    msg = calibration_to_camera_info(CALIB, "cam0_optical_frame")
    assert msg.header.frame_id == "cam0_optical_frame" and len(msg.k) == 9 and msg.width == 640
    back = camera_info_to_calibration(msg)
    np.testing.assert_allclose(back.K, CALIB.K)
    np.testing.assert_allclose(back.D, CALIB.D)
    assert (back.width, back.height) == (640, 480)


def test_camera_info_binning_roi_and_uncalibrated():
    from sensor_msgs.msg import CameraInfo

    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, camera_info_to_calibration

    msg = calibration_to_camera_info(CALIB)
    msg.binning_x = msg.binning_y = 2
    c = camera_info_to_calibration(msg)
    assert (c.width, c.height) == (320, 240) and c.K[0, 0] == pytest.approx(305.25)
    assert c.K[0, 2] == pytest.approx(321.25 / 2)
    msg = calibration_to_camera_info(CALIB)
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 50, 200, 100
    c = camera_info_to_calibration(msg)
    assert (c.width, c.height) == (200, 100) and c.K[0, 2] == pytest.approx(221.25)
    with pytest.raises(ValueError, match="/cam9/camera_info: K is all zeros"):
        camera_info_to_calibration(CameraInfo(), source="/cam9/camera_info")


def test_pose_message_round_trip(rng):
    from odd_one_out_ros.geometry import Rigid
    from odd_one_out_ros.ros.conversions import pose_to_rigid, rigid_to_pose

    T = Rigid.from_rotvec(rng.normal(size=3), rng.normal(size=3))
    np.testing.assert_allclose(pose_to_rigid(rigid_to_pose(T)).as_matrix(), T.as_matrix(), atol=1e-12)


def test_atomic_writes_replace_the_file_or_folder_whole_or_not_at_all(tmp_path):
    """fileio.atomic_path (calibration files, rig YAML, tag-pose JSON, boards, splits.json, generated scenes):
    the content goes to a staging path beside the target, which replaces the target when the block ends; an
    error leaves the target as it was."""
    from odd_one_out_ros.fileio import atomic_path, write_text_atomic

    target = tmp_path / "sub" / "a.txt"
    assert write_text_atomic(target, "one") == target and target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "one"
    folder = tmp_path / "scene"
    for content in ("old", "new"):
        with atomic_path(folder, ".partial") as tmp:
            tmp.mkdir()
            (tmp / content).write_text(content)
    assert [p.name for p in folder.iterdir()] == ["new"] and not (tmp_path / "scene.partial").exists()
