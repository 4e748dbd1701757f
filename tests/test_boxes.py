"""Box3D and exact 3D IoU against a Monte Carlo reference."""
import numpy as np
import pytest

from odd_one_out_ros.geometry import Box3D, iou_3d, iou_matrix


def monte_carlo_iou(a, b, rng, n=400_000):
    """Reference IoU: sample the union's enclosing AABB uniformly, count inside-both / inside-either."""
    lo = np.minimum(a.aabb().center - a.aabb().size / 2, b.aabb().center - b.aabb().size / 2)
    hi = np.maximum(a.aabb().center + a.aabb().size / 2, b.aabb().center + b.aabb().size / 2)
    p = rng.uniform(lo, hi, (n, 3))
    ia, ib = a.contains(p), b.contains(p)
    union = np.count_nonzero(ia | ib)
    return np.count_nonzero(ia & ib) / union if union else 0.0


def random_box(rng, yaw=True):
    return Box3D(rng.uniform(-0.15, 0.15, 3), rng.uniform(0.1, 0.6, 3), rng.uniform(-np.pi, np.pi) if yaw else 0.0)


def test_iou_matches_monte_carlo_for_rotated_boxes(rng):
    checked = 0
    for _ in range(40):
        a, b = random_box(rng), random_box(rng, yaw=rng.random() < 0.7)
        ref = monte_carlo_iou(a, b, rng)
        got = iou_3d(a, b)
        assert got == pytest.approx(ref, abs=0.01), (a, b)
        assert iou_3d(b, a) == pytest.approx(got, abs=1e-12)
        checked += ref > 0.05
    assert checked > 15  # the random pairs really overlap


def test_iou_special_cases(rng):
    a = Box3D([0.1, 0.2, 0.3], [0.4, 0.2, 0.3], 0.7)
    assert iou_3d(a, a) == pytest.approx(1.0)
    # a box equals itself turned by 180 degrees; 90 degrees of a square footprint too
    assert iou_3d(a, Box3D(a.center, a.size, a.yaw + np.pi)) == pytest.approx(1.0)
    sq = Box3D([0, 0, 0], [0.3, 0.3, 0.1], 0.2)
    assert iou_3d(sq, Box3D(sq.center, sq.size, 0.2 + np.pi / 2)) == pytest.approx(1.0)
    # nested: IoU = volume ratio
    inner = Box3D(a.center, a.size / 2, a.yaw)
    assert iou_3d(a, inner) == pytest.approx(1 / 8)
    # disjoint in xy, in z, and touching faces
    assert iou_3d(a, Box3D(a.center + [2, 0, 0], a.size, 0.3)) == 0.0
    assert iou_3d(a, Box3D(a.center + [0, 0, 1], a.size, a.yaw)) == 0.0
    c = Box3D([0, 0, 0], [1, 1, 1])
    assert iou_3d(c, Box3D([1, 0, 0], [1, 1, 1])) == 0.0
    # axis-aligned half overlap: inter 0.5, union 1.5
    assert iou_3d(c, Box3D([0.5, 0, 0], [1, 1, 1])) == pytest.approx(1 / 3)
    # 45 degrees: a unit square and its rotated copy overlap in a regular octagon (2(sqrt2-1))
    assert iou_3d(c, Box3D([0, 0, 0], [1, 1, 1], np.pi / 4)) == pytest.approx(
        2 * (np.sqrt(2) - 1) / (2 - 2 * (np.sqrt(2) - 1)))
    # degenerate (zero-volume) boxes give 0, not an error
    assert iou_3d(Box3D([0, 0, 0], [0, 0, 0]), Box3D([0, 0, 0], [0, 0, 0])) == 0.0


def test_iou_matrix_shape_and_values(rng):
    A = [random_box(rng) for _ in range(3)]
    B = [random_box(rng) for _ in range(4)]
    M = iou_matrix(A, B)
    assert M.shape == (3, 4)
    assert M[1, 2] == pytest.approx(iou_3d(A[1], B[2]))
    assert iou_matrix([], B).shape == (0, 4)


def test_boxes_to_and_from_tensors():
    """boxes_to_tensor / boxes_from_tensor: (N, 7) rows [centre, size, yaw], float32 unless asked, and back."""
    import torch

    from odd_one_out_ros.geometry import boxes_from_tensor, boxes_to_tensor

    boxes = [Box3D([0.1, -0.2, 0.05], [0.2, 0.1, 0.1], 0.4), Box3D([0.3, 0.0, 0.02], [0.05, 0.06, 0.04], -1.0)]
    rows = boxes_to_tensor(boxes)
    assert rows.dtype == torch.float32 and rows.shape == (2, 7)
    assert rows[1].tolist() == pytest.approx([0.3, 0.0, 0.02, 0.05, 0.06, 0.04, -1.0])
    exact = boxes_to_tensor(boxes, dtype=torch.float64)
    back = boxes_from_tensor(exact)
    assert [b.to_dict() for b in back] == [b.to_dict() for b in boxes]
    assert [b.to_dict() for b in boxes_from_tensor(exact.numpy())] == [b.to_dict() for b in boxes]
    assert boxes_to_tensor([]).shape == (0, 7) and boxes_from_tensor(torch.zeros(0, 7)) == []


def test_corners_volume_contains():
    b = Box3D([1, 2, 3], [2, 4, 6], np.pi / 2)
    c = b.corners()
    assert c.shape == (8, 3)
    np.testing.assert_allclose(c.mean(0), b.center)
    # yaw 90 degrees: the box's x extent (2) now lies along world y
    np.testing.assert_allclose(c.max(0) - c.min(0), [4, 2, 6], atol=1e-12)
    assert b.volume == pytest.approx(48)
    assert b.contains([[1, 2, 3], [1, 2.99, 3], [1, 3.01, 3], [2.9, 2, 3]]).tolist() == [True, True, False, True]
    np.testing.assert_allclose(Box3D.from_dict(b.to_dict()).corners(), c)
    np.testing.assert_allclose(Box3D.from_points(c).size, [4, 2, 6], atol=1e-12)


def test_bad_boxes_are_clear_errors():
    with pytest.raises(ValueError, match=">= 0"):
        Box3D([0, 0, 0], [1, -1, 1])
    with pytest.raises(ValueError, match="3 values"):
        Box3D([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="non-finite"):
        Box3D([0, 0, np.nan], [1, 1, 1])


def _fraction_volume(box: Box3D, grid, sub: int = 6) -> np.ndarray:
    """(Z, Y, X) fraction of each voxel inside box, from sub^3 points per voxel."""
    c = grid.centers().numpy().reshape(-1, 1, 3)
    offs = ((np.arange(sub) + 0.5) / sub - 0.5) * grid.voxel_size
    d = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(1, -1, 3)
    inside = box.contains((c + d).reshape(-1, 3)).reshape(c.shape[0], -1)
    X, Y, Z = grid.shape
    return inside.mean(1).reshape(Z, Y, X)


def test_sub_voxel_boundaries_fit_small_and_thin_boxes():
    """Boxes of 1.3-4 voxels in some extent, at any yaw, as exact voxel fractions: the upsampled fit recovers them
    (IoU > 0.75); fitting whole voxels does not."""
    import dataclasses

    from odd_one_out_ros.model.box_estimator import boxes_from_opacity
    from odd_one_out_ros.model.config import DensityBoxConfig, GridConfig
    from odd_one_out_ros.model.volume import VoxelGrid

    grid = VoxelGrid.from_config(GridConfig(shape=(24, 24, 10), voxel_size=0.02, z_min=-0.02))
    cfg = DensityBoxConfig(occupancy_threshold=0.5, boundary_level=0.5, min_voxels=2, min_extent_voxels=1.0)
    fine, coarse = [], []
    for size, yaw in [((0.083, 0.047, 0.026), 0.3), ((0.15, 0.11, 0.031), -1.1), ((0.061, 0.061, 0.13), 0.7)]:
        truth = Box3D([0.011, -0.007, size[2] / 2], size, yaw)
        opacity = _fraction_volume(truth, grid)
        fine.append(iou_3d(boxes_from_opacity(opacity, grid, cfg)[0], truth))
        coarse.append(iou_3d(boxes_from_opacity(opacity, grid, dataclasses.replace(cfg, upsample=1,
                                                                                 occupancy_threshold=0.5))[0], truth))
    assert min(fine) > 0.75, fine
    assert min(coarse) < 0.6 and np.mean(fine) > np.mean(coarse) + 0.1, (fine, coarse)
