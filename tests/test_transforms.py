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


def test_frame_tree_looks_up_across_branches_and_says_when_it_cannot():
    """target <- source through the nearest common ancestor, equal to composing the transforms by hand; a newer
    transform of a child replaces the older; frames in two trees, unknown frames and a loop give None."""
    from odd_one_out_ros.geometry.frame_tree import FrameTree

    rng = np.random.default_rng(3)

    def rand():
        return Rigid.from_rotvec(rng.normal(size=3), rng.normal(size=3))

    tree, T = FrameTree(), {}
    for parent, child in [("map", "base_link"), ("base_link", "arm"), ("arm", "gripper"), ("map", "world"),
                          ("world", "odd_one_out/cam0")]:
        T[child] = rand()
        tree.set(parent, child, T[child])
    got = tree.lookup("gripper", "world")  # gripper <- world = (map <- gripper)^-1 (map <- world)
    want = (T["base_link"] @ T["arm"] @ T["gripper"]).inverse() @ T["world"]
    assert np.allclose(got.as_matrix(), want.as_matrix(), atol=1e-9)
    p = rng.normal(size=(5, 3))
    cam_in_arm = tree.lookup("arm", "odd_one_out/cam0").apply(p)
    assert np.allclose(cam_in_arm, (T["base_link"] @ T["arm"]).inverse().apply(T["world"].apply(
        T["odd_one_out/cam0"].apply(p))), atol=1e-9)
    assert np.allclose(tree.lookup("world", "world").as_matrix(), np.eye(4))
    assert tree.lookup("world", "nowhere") is None
    tree.set("other_root", "lonely", rand())
    assert tree.lookup("world", "lonely") is None
    moved = rand()
    tree.set("map", "world", moved)  # the newer transform wins
    assert np.allclose(tree.lookup("map", "world").as_matrix(), moved.as_matrix())
    tree.set("gripper", "map", rand())  # a loop map -> ... -> gripper -> map: no hang, no answer across it
    assert tree.lookup("lonely", "arm") is None
    assert "gripper" in tree.frames() and "map" in tree.frames()
    with pytest.raises(ValueError, match="two different"):
        tree.set("a", "a", rand())
