"""The small synchroniser, image message conversion, posed-view validation, drawing."""
import numpy as np
import pytest

from odd_one_out_ros.geometry import Box3D, PinholeCamera, look_at
from odd_one_out_ros.sync import ApproximateSync
from odd_one_out_ros.views import PosedView
from odd_one_out_ros.viz import contact_sheet, draw_box


def test_sync_matches_within_slop_and_drops_older():
    s = ApproximateSync(3, slop=0.01)
    assert s.add(0, 1.000, "img1") is None
    assert s.add(1, 1.005, "info1") is None
    assert s.add(2, 1.100, "pose_late") is None  # outside the slop of everything queued
    assert s.add(2, 1.002, "pose1") == ["img1", "info1", "pose1"]
    # the matched messages and older ones are gone; pose_late (newer) stays queued
    assert s.add(0, 1.101, "img2") is None
    assert s.add(1, 1.099, "info2") == ["img2", "info2", "pose_late"]


def test_sync_bounded_queue_counts_drops():
    s = ApproximateSync(2, slop=0.0, queue_size=3)
    for i in range(5):
        s.add(0, float(i), i)
    assert s.dropped == 2
    assert s.add(1, 4.0, "b") == [4, "b"]
    assert s.add(1, 0.0, "too old") is None  # stamp 0 was dropped from the bounded queue
    with pytest.raises(ValueError):
        ApproximateSync(0)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_encodings(enc, rng):
    from sensor_msgs.msg import Image

    from odd_one_out_ros.ros.conversions import IMAGE_ENCODINGS, image_to_rgb

    h, w, ch = 5, 7, IMAGE_ENCODINGS[enc]
    raw = rng.integers(0, 255, (h, w, ch), dtype=np.uint8)
    pad = 3  # rows with padding bytes at the end (step > width * channels)
    msg = Image(height=h, width=w, encoding=enc, step=w * ch + pad)
    msg.data = np.concatenate([raw.reshape(h, -1), np.zeros((h, pad), np.uint8)], 1).tobytes()
    rgb = image_to_rgb(msg)
    expect = {"rgb8": raw, "rgba8": raw[..., :3], "bgr8": raw[..., ::-1], "bgra8": raw[..., 2::-1],
              "mono8": np.repeat(raw, 3, 2)}[enc]
    np.testing.assert_array_equal(rgb, expect)


def test_bad_images_are_clear_errors():
    from sensor_msgs.msg import Image

    from odd_one_out_ros.ros.conversions import image_to_rgb, rgb_to_image

    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8)))
    with pytest.raises(ValueError, match="expected 12"):
        image_to_rgb(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(5)))
    with pytest.raises(ValueError, match="bad image geometry"):
        image_to_rgb(Image(height=2, width=2, encoding="rgb8", step=2, data=bytes(12)))
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(img, encoding="bgr8")), img)


def test_posed_view_checks_image_against_camera():
    cam = PinholeCamera(np.array([[50.0, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]), 64, 48)
    PosedView(np.zeros((48, 64, 3), np.uint8), cam)
    with pytest.raises(ValueError, match="camera_info says 64x48"):
        PosedView(np.zeros((64, 48, 3), np.uint8), cam, source="cam3")
    with pytest.raises(ValueError, match="uint8 RGB"):
        PosedView(np.zeros((48, 64), np.uint8), cam)


def test_draw_box_marks_the_projected_box():
    K = np.array([[80.0, 0, 31.5], [0, 80, 31.5], [0, 0, 1]])
    cam = PinholeCamera(K, 64, 64, look_at([1.5, 0.2, 1.0], [0, 0, 0]))
    box = Box3D([0, 0, 0.1], [0.4, 0.3, 0.2], 0.3)
    img = draw_box(np.zeros((64, 64, 3), np.uint8), cam, box, (255, 0, 0))
    ys, xs = np.nonzero(img[..., 0])
    uv, _ = cam.project(box.corners())
    assert len(xs) > 50
    assert xs.min() >= uv[:, 0].min() - 2 and xs.max() <= uv[:, 0].max() + 2  # drawn where the box projects
    assert contact_sheet([img, img, img], cols=2).shape == (128, 128, 3)
