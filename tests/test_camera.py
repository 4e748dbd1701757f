"""PinholeCamera against OpenCV and against itself (round trips)."""
import cv2
import numpy as np
import pytest

from odd_one_out_ros.geometry import PinholeCamera, Rigid, look_at


def random_camera(rng, model="plumb_bob", n_dist=5, strength=1.0, min_f=0.6):
    """Random camera; `strength` scales the distortion, `min_f` the narrowest focal length (x width)."""
    w, h = int(rng.integers(200, 1300)), int(rng.integers(200, 1000))
    f = rng.uniform(min_f, 1.8) * max(w, h)
    K = np.array([[f, 0, w / 2 + rng.uniform(-20, 20)], [0, f * rng.uniform(0.95, 1.05), h / 2 + rng.uniform(-20, 20)],
                  [0, 0, 1]])
    if model == "equidistant":
        dist = strength * rng.uniform(-0.05, 0.05, 4)
    elif n_dist:
        dist = strength * np.concatenate([rng.uniform(-0.2, 0.2, 2), rng.uniform(-0.002, 0.002, 2),
                                          rng.uniform(-0.05, 0.05, n_dist - 4)])
    else:
        dist = np.zeros(0)
    eye = rng.uniform(-2, 2, 3) + np.array([0, 0, 2.5])
    T = look_at(eye, rng.uniform(-0.3, 0.3, 3))
    return PinholeCamera(K, w, h, T, dist, model)


def points_in_view(cam, rng, n=200):
    """World points that project inside the image, at depths 0.5..4 m."""
    uv = np.stack([rng.uniform(0, cam.width - 1, n), rng.uniform(0, cam.height - 1, n)], 1)
    return cam.unproject(uv, rng.uniform(0.5, 4.0, n)), uv


@pytest.mark.parametrize("model,n_dist", [("plumb_bob", 0), ("plumb_bob", 5), ("rational_polynomial", 8),
                                          ("plumb_bob", 4), ("equidistant", 4)])
def test_projection_matches_opencv(rng, model, n_dist):
    for _ in range(20):
        cam = random_camera(rng, model, n_dist)
        X = rng.uniform(-1, 1, (300, 3))
        X = X[cam.world_to_camera(X)[:, 2] > 0.2]
        uv, z = cam.project(X)
        rvec = cam.T_cw.as_rotvec()
        if model == "equidistant":
            ref, _ = cv2.fisheye.projectPoints(X.reshape(-1, 1, 3), rvec, cam.T_cw.t, cam.K, cam.dist)
        else:
            ref, _ = cv2.projectPoints(X, rvec, cam.T_cw.t, cam.K, cam.dist if cam.has_distortion else None)
        np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6, rtol=0)
        np.testing.assert_allclose(z, cam.world_to_camera(X)[:, 2])


@pytest.mark.parametrize("model,n_dist", [("plumb_bob", 0), ("plumb_bob", 5), ("rational_polynomial", 8),
                                          ("equidistant", 4)])
def test_unproject_project_round_trip(rng, model, n_dist):
    # strong random distortion folds over near the corners of wide images (not invertible there);
    # real lenses are invertible over their image, which moderate coefficients reproduce
    for _ in range(10):
        cam = random_camera(rng, model, n_dist, strength=0.5, min_f=0.9)
        X, uv = points_in_view(cam, rng)
        uv2, z = cam.project(X)
        np.testing.assert_allclose(uv2, uv, atol=1e-6)
        np.testing.assert_allclose(cam.unproject(uv2, z), X, atol=1e-7)


def test_points_behind_camera_are_not_projected():
    cam = PinholeCamera(np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]), 100, 100)
    uv, z = cam.project([[0, 0, -1.0], [0, 0, 1.0]])
    assert np.isnan(uv[0]).all() and np.allclose(uv[1], [50, 50])
    assert cam.visible([[0, 0, -1.0], [0, 0, 1.0], [10, 0, 1.0]]).tolist() == [False, True, False]


def test_pixel_rays_hit_their_pixels(rng):
    cam = random_camera(rng, "plumb_bob", 5).resized(64, 48)
    origin, dirs = cam.pixel_rays()
    assert dirs.shape == (48, 64, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0)
    np.testing.assert_allclose(origin, cam.center)
    pts = origin + 2.0 * dirs.reshape(-1, 3)
    uv, _ = cam.project(pts)
    v, u = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=1e-6)
    # a stride keeps the pixel-centre convention: ray (i, j) goes through pixel (i*s, j*s)
    _, d2 = cam.pixel_rays(stride=4)
    np.testing.assert_allclose(d2, dirs[::4, ::4])


def test_resize_keeps_pixel_centres():
    K = np.array([[200.0, 0, 99.5], [0, 200, 49.5], [0, 0, 1]])  # principal point at the image centre
    cam = PinholeCamera(K, 200, 100).resized(100, 50)
    assert cam.cx == pytest.approx(49.5) and cam.cy == pytest.approx(24.5) and cam.fx == pytest.approx(100)


def test_scale_intrinsics_is_one_rule_for_cameras_and_batched_tensors(rng):
    """scale_intrinsics: the K of PinholeCamera.resized, and the same numbers for a torch batch (..., 3, 3) in
    the tensor's dtype, the input left as it was."""
    import torch

    from odd_one_out_ros.geometry import scale_intrinsics

    cam = random_camera(rng)
    K = scale_intrinsics(cam.K, 64 / cam.width, 48 / cam.height)
    np.testing.assert_array_equal(K, cam.resized(64, 48).K)
    batch = torch.tensor(np.stack([cam.K, cam.K])[None], dtype=torch.float32)  # (1, 2, 3, 3)
    before = batch.clone()
    out = scale_intrinsics(batch, 64 / cam.width, 48 / cam.height)
    assert out.dtype == torch.float32 and out.shape == batch.shape and torch.equal(batch, before)
    np.testing.assert_allclose(out[0, 1].numpy(), K, rtol=1e-6)
    K0 = cam.K.copy()
    scale_intrinsics(cam.K, 0.5, 0.5)
    np.testing.assert_array_equal(cam.K, K0)  # a new array: the camera's K is not changed


def test_camera_convention_look_at():
    """OpenCV frame: a point above the target appears above the image centre (smaller v)."""
    T = look_at([2.0, 0, 1.0], [0, 0, 0])
    cam = PinholeCamera(np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]), 100, 100, T)
    np.testing.assert_allclose(cam.center, [2, 0, 1], atol=1e-12)
    uv, z = cam.project([[0, 0, 0], [0, 0, 0.3], [0, 0.3, 0]])
    np.testing.assert_allclose(uv[0], [50, 50], atol=1e-9)
    assert uv[1, 1] < 50  # up in the world is up in the image
    assert uv[2, 0] > 50  # world +y is to the right for a camera on +x looking at the origin
    assert z[0] == pytest.approx(np.sqrt(5))


@pytest.mark.parametrize("K,msg", [(np.zeros((3, 3)), "fx=0.0"), (np.eye(2), "3x3"),
                                   (np.array([[1.0, 0, 1], [0, 1, 1], [0, 0, 2]]), "look like"),
                                   (np.array([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]]), "non-finite")])
def test_bad_intrinsics_are_clear_errors(K, msg):
    with pytest.raises(ValueError, match=msg):
        PinholeCamera(K, 10, 10)


def test_bad_pose_and_distortion_are_clear_errors():
    K = np.array([[10.0, 0, 5], [0, 10, 5], [0, 0, 1]])
    with pytest.raises(ValueError, match="proper rotation"):
        PinholeCamera(K, 10, 10, np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="coefficients"):
        PinholeCamera(K, 10, 10, Rigid.identity(), np.ones(3))
    with pytest.raises(ValueError, match="unsupported distortion model"):
        PinholeCamera(K, 10, 10, Rigid.identity(), np.zeros(5), "kannala")
