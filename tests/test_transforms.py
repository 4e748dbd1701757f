import cv2
import numpy as np
import pytest

from odd_one_out_ros.geometry import Rigid, look_at, matrix_to_quat, pose_to_dict, quat_to_matrix, yaw_to_matrix


def test_rotation_vector_matches_rodrigues(rng):
    for _ in range(50):
        rvec = rng.normal(size=3)
        T = Rigid.from_rotvec(rvec, rng.normal(size=3))
        np.testing.assert_allclose(T.R, cv2.Rodrigues(rvec)[0], atol=1e-12)
        np.testing.assert_allclose(Rigid.from_rotvec(T.as_rotvec(), T.t).R, T.R, atol=1e-12)


def test_quaternion_convention_is_xyzw():
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    q = [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]
    np.testing.assert_allclose(quat_to_matrix(q), yaw_to_matrix(np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(matrix_to_quat(yaw_to_matrix(np.pi / 2)), q, atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        quat_to_matrix([0, 0, 0, 0])


def test_compose_inverse_and_matrix(rng):
    A = Rigid.from_rotvec(rng.normal(size=3), rng.normal(size=3))
    B = Rigid.from_quat(rng.normal(size=4), rng.normal(size=3))
    p = rng.normal(size=(10, 3))
    np.testing.assert_allclose((A @ B).apply(p), A.apply(B.apply(p)))
    np.testing.assert_allclose((A @ A.inverse()).as_matrix(), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(Rigid.from_matrix(A.as_matrix()).as_matrix(), A.as_matrix())
    with pytest.raises(ValueError, match="last row"):
        Rigid.from_matrix(np.ones((4, 4)))


def test_look_at_degenerate_cases():
    with pytest.raises(ValueError, match="coincide"):
        look_at([0, 0, 1], [0, 0, 1])
    with pytest.raises(ValueError, match="parallel"):
        look_at([0, 0, 1], [0, 0, 0])


def test_pose_to_dict_writes_plain_floats_of_one_pose(rng):
    """pose_to_dict (tag-pose JSON, rig YAML): matrix, translation, quaternion (x, y, z, w) and camera position of
    one world-to-camera transform, as plain floats that read back as the same transform."""
    import json

    T = Rigid.from_rotvec(rng.normal(size=3), rng.normal(size=3))
    d = json.loads(json.dumps(pose_to_dict(T)))
    assert list(d) == ["matrix", "translation", "quaternion_xyzw", "camera_position"]
    np.testing.assert_array_equal(Rigid.from_matrix(d["matrix"]).as_matrix(), T.as_matrix())
    np.testing.assert_allclose(Rigid.from_quat(d["quaternion_xyzw"], d["translation"]).R, T.R, atol=1e-12)
    np.testing.assert_allclose(d["camera_position"], -T.R.T @ T.t, atol=1e-12)
    assert list(pose_to_dict(T, matrix_key="T_cw"))[0] == "T_cw"
