"""Pins the camera and box conventions to real data: the ToysAD-8K sample scene (3 bananas).

The paper's scene metadata stores world-to-camera 4x4 matrices in the OpenCV frame and object
boxes as centre + extents along the object's own axes + its yaw (docs/frames.md).
"""
import json

import cv2
import numpy as np
import pytest

from odd_one_out_ros.data.scene_meta import SceneFormatError, read_scene_meta
from odd_one_out_ros.geometry import Box3D, PinholeCamera
from odd_one_out_ros.resources import SAMPLE_SCENE


def load_mask(path) -> np.ndarray:
    """Official masks are RGBA PNGs with the object at ~206 in the colour channels."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert m is not None, path
    return (m[..., 0] if m.ndim == 3 else m) > 127


def box_silhouette(cam: PinholeCamera, box: Box3D) -> np.ndarray:
    uv, z = cam.project(box.corners())
    assert np.all(z > 0)
    sil = np.zeros((cam.height, cam.width), np.uint8)
    cv2.fillConvexPoly(sil, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
    return sil.astype(bool)


def mask_stats(scene, swap_extents=False, invert_pose=False):
    """Per (object, view) with a non-empty mask: fraction of the mask inside the projected box,
    whether the projected centre is inside the mask's bounding rectangle, and its distance (px) to
    the nearest mask pixel, and whether the pixel it falls in is a mask pixel."""
    rows = []
    for obj in scene.objects:
        box = obj.box if not swap_extents else Box3D(obj.box.center, obj.box.size[[1, 0, 2]], obj.box.yaw)
        for v, cam in enumerate(scene.cameras):
            if invert_pose:
                cam = cam.with_pose(cam.T_cw.inverse())
            mask = load_mask(scene.mask_path(obj, v))
            if not mask.any():
                continue
            uv, z = cam.project(box.center[None])
            ys, xs = np.nonzero(mask)
            if z[0] <= 0:
                rows.append((0.0, False, np.inf, False))
                continue
            u, w = uv[0]
            in_rect = xs.min() - 0.5 <= u <= xs.max() + 0.5 and ys.min() - 0.5 <= w <= ys.max() + 0.5
            dist = np.sqrt((xs - u) ** 2 + (ys - w) ** 2).min()
            sil = box_silhouette(cam, box) if np.all(cam.project(box.corners())[1] > 0) else np.zeros_like(mask)
            iu, iv = int(round(u)), int(round(w))
            on_mask = 0 <= iu < cam.width and 0 <= iv < cam.height and mask[iv, iu]
            rows.append(((mask & sil).sum() / mask.sum(), in_rect, dist, on_mask))
    return np.array(rows, dtype=np.float64)


@pytest.fixture(scope="module")
def scene():
    return read_scene_meta(SAMPLE_SCENE)


def test_sample_scene_reads_with_its_labels(scene):
    assert len(scene.cameras) == 20 and len(scene.objects) == 3
    assert scene.cameras[0].width == 256 and scene.cameras[0].fx == pytest.approx(213.333, abs=1e-3)
    labels = {o.name: (o.anomalous, o.anomaly_type, o.category) for o in scene.objects}
    assert labels == {"object.001": (True, "crack", "banana"), "object.002": (False, "", "banana"),
                      "object": (False, "", "banana")}


def test_box_centres_project_onto_their_objects(scene):
    """Every object's box centre lands on the object in every view where the object is seen.

    Bananas are curved: the box centre lies in the hollow of the curve, so it projects just off
    the banana in 7 of 20 views (0.1 - 6.5 px away). The check is therefore: inside the mask's
    bounding rectangle and within 8 px of the mask. A wrong convention misses by far more.
    """
    stats = mask_stats(scene)
    assert len(stats) >= 50  # 3 objects x 20 views, minus views where one is hidden
    assert stats[:, 1].all(), "a box centre projects outside its object's mask rectangle"
    assert stats[:, 2].max() < 8.0
    assert np.mean(stats[:, 3]) > 0.6  # most centres fall on a mask pixel (measured: 65 %)


def test_projected_boxes_cover_their_masks(scene):
    """The projected 3D box encloses the object's mask: pins K, the pose direction, extents, yaw."""
    stats = mask_stats(scene)
    assert stats[:, 0].mean() > 0.98 and stats[:, 0].min() > 0.9


def test_wrong_conventions_fail_the_same_checks(scene):
    """The checks above can fail: camera-to-world poses or swapped extents do not pass them."""
    inverted = mask_stats(scene, invert_pose=True)
    assert not (inverted[:, 1].all() and inverted[:, 2].max() < 8.0)
    swapped = mask_stats(scene, swap_extents=True)
    assert not (swapped[:, 0].mean() > 0.98 and swapped[:, 0].min() > 0.9)


def test_bad_scene_folders_are_clear_errors(tmp_path):
    with pytest.raises(SceneFormatError, match="cannot read"):
        read_scene_meta(tmp_path)
    (tmp_path / "scene3d.metadata.json").write_text("{not json")
    with pytest.raises(SceneFormatError, match="not valid JSON"):
        read_scene_meta(tmp_path)
    identity = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    meta = {"camera": {"K": [[0, 0, 0], [0, 0, 0], [0, 0, 1]], "poses": [{"rotation": identity}]}}
    (tmp_path / "scene3d.metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SceneFormatError, match="fx=0.0"):
        read_scene_meta(tmp_path)


def test_shipped_checkpoint_flags_the_cracked_banana_and_only_it(scene):
    """What the shipped model decides on real data (5 of the 20 views, its own boxes, no ground truth given): the box
    on the cracked banana is the one anomalous box and the highest score. Its boxes are not all right yet (issue 21:
    the middle banana is not boxed, the right one split in two), so only this decision is pinned."""
    from odd_one_out_ros.inspection.loader import load_inspector

    model = load_inspector(None, "cpu")  # the shipped checkpoint
    res = model.guarded(scene.posed_views([0, 4, 8, 12, 16]))
    cracked = next(o for o in scene.objects if o.anomalous)
    assert res.objects, "no box on the sample"
    dist = [np.linalg.norm(o.box.center[:2] - cracked.box.center[:2]) for o in res.objects]
    on_cracked = int(np.argmin(dist))
    assert dist[on_cracked] < 0.05, dist  # a box sits on the cracked banana
    assert [o.anomalous for o in res.objects] == [i == on_cracked for i in range(len(res.objects))]
    assert res.objects[on_cracked].score == max(o.score for o in res.objects) > model.threshold
