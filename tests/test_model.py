"""The model's pieces against brute-force or analytic references, on tiny CPU tensors."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from odd_one_out_ros.geometry import Box3D, PinholeCamera, boxes_to_tensor, iou_3d, look_at, scale_intrinsics
from odd_one_out_ros.model.box_estimator import estimate_boxes
from odd_one_out_ros.model.config import DensityBoxConfig, GridConfig, ModelConfig, preset
from odd_one_out_ros.model.matcher import (
    AttentionBlock,
    CrossInstanceMatcher,
    SparseVoxelAttention,
    correspondences,
    roi_pool,
    select_partners,
)
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.model.renderer import VolumeRenderer
from odd_one_out_ros.model.volume import VoxelGrid, backproject

torch.set_num_threads(1)


def ring_cameras(V, size, radius=1.0, height=0.7, f=0.9):
    """V cameras on a ring looking at the origin: K (1, V, 3, 3), T_cw (1, V, 4, 4), list[PinholeCamera]."""
    K = np.array([[f * size, 0, size / 2 - 0.5], [0, f * size, size / 2 - 0.5], [0, 0, 1]])
    cams = [PinholeCamera(K, size, size, look_at([radius * math.cos(a), radius * math.sin(a), height], [0, 0, 0]))
            for a in np.linspace(0, 2 * math.pi, V, endpoint=False) + 0.3]
    Kt = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)[None]
    Tt = torch.tensor(np.stack([c.T_cw.as_matrix() for c in cams]), dtype=torch.float32)[None]
    return Kt, Tt, cams


def test_backprojection_equals_per_voxel_loop():
    torch.manual_seed(0)
    grid = VoxelGrid.from_config(GridConfig(shape=(5, 4, 3), voxel_size=0.3, z_min=-0.3))  # wider than the views
    V, C, h, w = 3, 4, 9, 11
    K, T, cams = ring_cameras(V, 10, radius=0.9, f=0.8)
    K = scale_intrinsics(K, w / 10, h / 10)
    feats = torch.rand(1, V, C, h, w, dtype=torch.float64)
    vol, count = backproject(feats, K.double(), T.double(), grid)
    centers = grid.centers(dtype=torch.float64).numpy()
    ref = np.zeros((C, 3, 4, 5))
    ref_count = np.zeros((3, 4, 5))
    for z in range(3):
        for y in range(4):
            for x in range(5):
                acc, n = np.zeros(C), 0
                for v in range(V):
                    cam = cams[v].resized(w, h)
                    uv, depth = cam.project(centers[z, y, x][None])
                    (u, vv), depth = uv[0], depth[0]
                    if depth <= 0 or not (-0.5 <= u <= w - 0.5 and -0.5 <= vv <= h - 0.5):
                        continue
                    # bilinear lookup at (u, v) with border clamping, by hand
                    uc, vc = min(max(u, 0), w - 1), min(max(vv, 0), h - 1)
                    u0, v0 = int(np.floor(uc)), int(np.floor(vc))
                    u1, v1 = min(u0 + 1, w - 1), min(v0 + 1, h - 1)
                    a, b = uc - u0, vc - v0
                    f = feats[0, v].numpy()
                    acc += (f[:, v0, u0] * (1 - a) * (1 - b) + f[:, v0, u1] * a * (1 - b)
                            + f[:, v1, u0] * (1 - a) * b + f[:, v1, u1] * a * b)
                    n += 1
                ref[:, z, y, x] = acc / max(n, 1)
                ref_count[z, y, x] = n
    assert len(set(np.unique(ref_count))) >= 2  # voxels seen by different numbers of views: the mask matters
    np.testing.assert_array_equal(count[0, 0].numpy(), ref_count)
    np.testing.assert_allclose(vol[0].numpy(), ref, atol=1e-6)  # cameras went through float32


def test_backprojection_ignores_view_order():
    torch.manual_seed(1)
    grid = VoxelGrid.from_config(GridConfig(shape=(6, 6, 4), voxel_size=0.1, z_min=-0.1))
    K, T, _ = ring_cameras(4, 16)
    feats = torch.rand(1, 4, 3, 16, 16)
    perm = torch.tensor([2, 0, 3, 1])
    a, _ = backproject(feats, K, T, grid)
    b, _ = backproject(feats[:, perm], K[:, perm], T[:, perm], grid)
    torch.testing.assert_close(a, b)


def test_renderer_constant_density_box_is_analytic():
    """A box of constant density on voxel boundaries, rays along +x through it: opacity 1 - exp(-sigma L)
    and expected entry depth follow the closed form (trilinear ramps are symmetric, so the optical
    thickness is exact; depth to within half a voxel)."""
    grid = VoxelGrid.from_config(GridConfig(shape=(40, 40, 40), voxel_size=0.02, z_min=-0.4))
    sigma = 8.0
    dens = torch.zeros(1, 1, 40, 40, 40, dtype=torch.float64)
    dens[..., 10:30, 10:30, 10:30] = sigma  # world [-0.2, 0.2]^3, L = 0.4 m
    renderer = VolumeRenderer(grid, 2000)
    # a camera at x = -1 looking along +x; its central pixel ray crosses the cube's middle
    cam = PinholeCamera(np.array([[50.0, 0, 4.5], [0, 50, 4.5], [0, 0, 1]]), 10, 10, look_at([-1, 0, 0], [0, 0, 0.0]))
    K = torch.tensor(cam.K)[None, None]
    T = torch.tensor(cam.T_cw.as_matrix())[None, None]
    out = renderer(dens, torch.ones(1, 1, 40, 40, 40, dtype=torch.float64), K, T, 10, 10)
    opacity = out["opacity"][0, 0, 0]
    # the four pixels around the centre see 0.4 m of the cube (rays nearly parallel to x)
    L = 0.4
    slant = math.cos(math.atan(0.5 * math.sqrt(2) / 50))  # pixel (4, 4) is half a pixel off the axis
    assert float(opacity[4, 4]) == pytest.approx(1 - math.exp(-sigma * L / slant), abs=2e-3)
    a = 0.8  # entry distance from the camera
    expected = a + 1 / sigma - L * math.exp(-sigma * L) / (1 - math.exp(-sigma * L))
    assert float(out["depth"][0, 0, 0, 4, 4]) == pytest.approx(expected, abs=0.01)
    # fields are weighted by the same weights: a constant field of 1 renders as the opacity
    torch.testing.assert_close(out["fields"][0, 0, 0], opacity)
    # a ray that misses the grid renders nothing
    cam2 = cam.with_pose(look_at([-1, 0, 2.0], [-1, 0, 3.0], up=(1, 0, 0)))
    out2 = renderer(dens, None, K, torch.tensor(cam2.T_cw.as_matrix())[None, None], 10, 10)
    assert float(out2["opacity"].abs().max()) == 0.0


def test_renderer_sphere_opacity_matches_chord_length():
    grid = VoxelGrid.from_config(GridConfig(shape=(64, 64, 64), voxel_size=0.01, z_min=-0.32))
    c = grid.centers(dtype=torch.float64)
    r, sigma = 0.2, 10.0
    dens = (c.norm(dim=-1) < r).double()[None, None] * sigma
    cam = PinholeCamera(np.array([[60.0, 0, 15.5], [0, 60, 15.5], [0, 0, 1]]), 32, 32, look_at([0, -1.5, 0], [0, 0, 0]))
    K, T = torch.tensor(cam.K)[None, None], torch.tensor(cam.T_cw.as_matrix())[None, None]
    out = VolumeRenderer(grid, 800)(dens, None, K, T, 32, 32)
    origin, dirs = cam.pixel_rays()
    d = dirs.reshape(-1, 3)
    # distance of each ray to the sphere centre -> chord length 2 sqrt(r^2 - p^2)
    p = np.linalg.norm(np.cross(d, -origin), axis=1)
    chord = 2 * np.sqrt(np.clip(r ** 2 - p ** 2, 0, None))
    ref = 1 - np.exp(-sigma * chord)
    got = out["opacity"].reshape(-1).numpy()
    inside = p < r - 0.02  # away from the voxelised rim
    assert inside.sum() > 20
    np.testing.assert_allclose(got[inside], ref[inside], atol=0.03)
    assert got[p > r + 0.02].max() < 0.02


def test_gradients_reach_encoder_and_feature_loss_leaves_density_alone():
    torch.manual_seed(0)
    cfg = preset("tiny")
    net = OddOneOutNet(cfg)
    K, T, _ = ring_cameras(3, cfg.image_size)
    vol = net.scene.volume(torch.rand(1, 3, 3, cfg.image_size, cfg.image_size), K, T)
    out = net.scene.render(vol, K, T, (cfg.image_size, cfg.image_size), stratified=True)
    # image loss -> encoder
    net.zero_grad()
    out["rgb"].square().mean().backward(retain_graph=True)
    enc_grad = sum(p.grad.abs().sum() for p in net.scene.encoder.parameters() if p.grad is not None)
    assert enc_grad > 0
    # feature loss -> projector and encoder, but not the density head
    net.zero_grad()
    out["feat"].square().mean().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.scene.density_head.parameters())
    assert sum(p.grad.abs().sum() for p in net.scene.projector.parameters()) > 0
    assert sum(p.grad.abs().sum() for p in net.scene.encoder.parameters() if p.grad is not None) > 0


def blob_density(grid: VoxelGrid, boxes: list[Box3D], sigma=200.0) -> np.ndarray:
    c = grid.centers(dtype=torch.float64).reshape(-1, 3).numpy()
    d = np.zeros(len(c))
    for b in boxes:
        d[b.contains(c)] = sigma
    return d.reshape(grid.shape[2], grid.shape[1], grid.shape[0])


def test_box_estimator_recovers_blobs_without_knowing_their_number():
    grid = VoxelGrid.from_config(GridConfig(shape=(100, 100, 16), voxel_size=0.01, z_min=0.0))
    truth = [Box3D([-0.25, -0.2, 0.05], [0.2, 0.1, 0.1], 0.4),
             Box3D([0.2, 0.25, 0.04], [0.16, 0.16, 0.08], -0.7),
             # two boxes one empty voxel apart (touching but separate objects)
             Box3D([0.1, -0.2, 0.05], [0.12, 0.2, 0.1], 0.0),
             Box3D([0.235, -0.2, 0.05], [0.13, 0.2, 0.1], 0.0)]
    dens = blob_density(grid, truth)
    rng = np.random.default_rng(0)
    noise = rng.random(dens.shape) < 0.0015  # isolated noise voxels
    dens[noise] = 200.0
    boxes = estimate_boxes(dens, grid, DensityBoxConfig(occupancy_threshold=0.5, min_voxels=8))
    assert len(boxes) == 4
    for t in truth:
        assert max(iou_3d(t, b) for b in boxes) > 0.9
    assert estimate_boxes(np.zeros_like(dens), grid, DensityBoxConfig()) == []
    assert estimate_boxes(np.where(noise, 200.0, 0.0), grid, DensityBoxConfig()) == []  # noise alone: nothing


def test_soft_height_gives_thin_objects_their_height():
    """A 1 cm plate in 2.5 cm voxels: 40 % opacity in one voxel layer. Voxel rounding makes its box 2.5 cm tall
    (IoU 0.4 at best); soft_height gives 1 cm and IoU > 0.8. A tall block keeps its height."""
    s = 0.025
    grid = VoxelGrid.from_config(GridConfig(shape=(40, 40, 8), voxel_size=s, z_min=0.0))
    plate, block = Box3D([-0.2, -0.2, 0.005], [0.1, 0.1, 0.01], 0.0), Box3D([0.2, 0.2, 0.05], [0.1, 0.1, 0.1], 0.0)
    dens = np.zeros((8, 40, 40))
    dens[0, 10:14, 10:14] = -np.log(1 - 0.4) / s  # opacity 0.4: the plate fills 40 % of the voxel layer
    dens[0:4, 26:30, 26:30] = 400.0  # opacity ~1
    for soft, plate_iou in ((False, (0.3, 0.45)), (True, (0.8, 1.0))):
        boxes = estimate_boxes(dens, grid, DensityBoxConfig(occupancy_threshold=0.3, min_voxels=8, soft_height=soft,
                                                            upsample=1))  # whole voxels: what soft_height mends
        assert len(boxes) == 2
        p = max(boxes, key=lambda b: -b.center[0])
        b = max(boxes, key=lambda b: b.center[0])
        assert plate_iou[0] < iou_3d(plate, p) < plate_iou[1]
        assert iou_3d(block, b) > 0.97


def test_boxes_are_cut_at_the_support_plane():
    """Density leaking one voxel below the floor (z < 0) lowers the IoU of a 10 cm block; floor_cut removes it."""
    s = 0.025
    grid = VoxelGrid.from_config(GridConfig(shape=(20, 20, 8), voxel_size=s, z_min=-0.05))
    block = Box3D([0.0, 0.0, 0.05], [0.1, 0.1, 0.1], 0.0)
    dens = np.zeros((8, 20, 20))
    dens[1:6, 8:12, 8:12] = 400.0  # z from -0.025 to 0.1
    dens[0:2, 0:3, 0:3] = 400.0  # a blob wholly below the floor
    cut = estimate_boxes(dens, grid, DensityBoxConfig(min_voxels=8, floor_cut=True))
    uncut = estimate_boxes(dens, grid, DensityBoxConfig(min_voxels=8, floor_cut=False))
    assert len(cut) == 1 and len(uncut) == 2
    assert iou_3d(block, cut[0]) > 0.97 and max(iou_3d(block, b) for b in uncut) < 0.85


def test_correspondences_equal_brute_force_argsort():
    torch.manual_seed(0)
    N, P, d, k = 4, 27, 5, 6
    feats = torch.randn(N, P, d, dtype=torch.float64)
    partners = select_partners(feats, 0)
    assert partners.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    idx = correspondences(feats, partners, k)
    for n in range(N):
        for i in range(P):
            for mi, m in enumerate(partners[n].tolist()):
                scores = [float(feats[n, i] @ feats[m, j]) for j in range(P)]
                assert sorted(idx[n, i, mi].tolist()) == sorted(np.argsort(scores)[::-1][:k].tolist())
    # max_partners keeps the most similar objects only
    feats2 = feats.clone()
    feats2[3] = feats2[0] + 0.01
    assert select_partners(feats2, 1)[0].tolist() == [3]


def dense_reference(attn: SparseVoxelAttention, x: torch.Tensor) -> torch.Tensor:
    """Per query voxel: softmax over every voxel of every other object (naive loops)."""
    N, P, D = x.shape
    h, dh = attn.h, attn.dh
    q, k, v = attn.q(x).view(N, P, h, dh), attn.k(x).view(N, P, h, dh), attn.v(x).view(N, P, h, dh)
    out = torch.zeros(N, P, h, dh, dtype=x.dtype)
    for n in range(N):
        keys = torch.cat([k[m] for m in range(N) if m != n])  # ((N-1)P, h, dh)
        vals = torch.cat([v[m] for m in range(N) if m != n])
        for i in range(P):
            w = torch.einsum("hd,jhd->hj", q[n, i], keys) / math.sqrt(dh)
            out[n, i] = torch.einsum("hj,jhd->hd", w.softmax(-1), vals)
    return attn.out(out.reshape(N, P, D))


def test_sparse_attention_equals_dense_when_k_covers_every_voxel():
    torch.manual_seed(0)
    N, P, D = 3, 8, 16
    attn = SparseVoxelAttention(D, 4).double()
    x = torch.randn(N, P, D, dtype=torch.float64)
    partners = select_partners(x, 0)
    idx = correspondences(x, partners, P)  # k = P: every voxel of every other object
    torch.testing.assert_close(attn(x, partners, idx), dense_reference(attn, x))
    # with a smaller k the result differs (the test can fail)
    idx_small = correspondences(x, partners, 2)
    assert not torch.allclose(attn(x, partners, idx_small), dense_reference(attn, x))
    # one object alone: nothing to compare with, no update
    assert attn(x[:1], select_partners(x[:1], 0), correspondences(x[:1], select_partners(x[:1], 0), 4)).abs().max() == 0


@pytest.mark.parametrize("variant", ["A", "B", "C", "full"])
def test_permuting_objects_permutes_scores(variant):
    torch.manual_seed(0)
    cfg = preset("tiny", variant)
    matcher = CrossInstanceMatcher(cfg, 12).double().eval()
    for blk in matcher.blocks:  # non-zero attention output so that objects really interact
        torch.nn.init.normal_(blk.attn.out.weight, std=0.2)
    r = cfg.scorer.matcher.roi_size
    z = torch.randn(5, 12, r, r, r, dtype=torch.float64)
    feats = torch.randn(5, r ** 3, 6, dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    a = matcher(z, feats)
    b = matcher(z[perm], feats[perm])
    torch.testing.assert_close(b, a[perm])
    if variant != "A":  # comparison: an object's score depends on the others
        z2 = z.clone()
        z2[4] += 1.0
        assert not torch.allclose(matcher(z2, feats)[0], a[0])


def test_roi_pool_samples_inside_the_box():
    grid = VoxelGrid.from_config(GridConfig(shape=(20, 20, 10), voxel_size=0.05, z_min=0.0))
    c = grid.centers()
    vol = torch.stack([c[..., 0], c[..., 1], c[..., 2]])[None]  # the volume holds world coordinates
    boxes = boxes_to_tensor([Box3D([0.1, -0.1, 0.2], [0.2, 0.1, 0.1], 0.5)])
    z = roi_pool(vol, boxes, grid, 4, 0.0)
    assert z.shape == (1, 3, 4, 4, 4)
    pts = z[0].permute(1, 2, 3, 0).reshape(-1, 3).numpy()
    assert Box3D([0.1, -0.1, 0.2], [0.2, 0.1, 0.1], 0.5).contains(pts).all()
    np.testing.assert_allclose(pts.mean(0), [0.1, -0.1, 0.2], atol=1e-5)


def test_permuting_views_changes_nothing_and_any_view_and_object_count_works():
    torch.manual_seed(0)
    cfg = preset("tiny")
    net = OddOneOutNet(cfg).eval()
    S = cfg.image_size
    K, T, _ = ring_cameras(6, S)
    images = torch.rand(1, 6, 3, S, S)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    with torch.no_grad():
        a = net.scene.volume(images, K, T)
        b = net.scene.volume(images[:, perm], K[:, perm], T[:, perm])
        torch.testing.assert_close(a.fv, b.fv, atol=1e-5, rtol=1e-4)
        for M in (1, 20):
            Km, Tm, _ = ring_cameras(M, S)
            enc = net.scene(torch.rand(1, M, 3, S, S), Km, Tm)
            for N in (1, 15):
                boxes = [Box3D([-0.3 + 0.04 * i, 0.05 * (i % 3), 0.1], [0.06, 0.05, 0.08], 0.2 * i) for i in range(N)]
                logits = net.scorer(net.scorer.prepare(enc, [boxes])).logits[0]
                assert logits.shape == (N,) and torch.isfinite(logits).all()


def test_attention_block_starts_as_identity_on_attention_path():
    blk = AttentionBlock(16, 4, sparse=True)
    x = torch.randn(3, 8, 16)
    partners = select_partners(x, 0)
    idx = correspondences(x, partners, 3)
    # zero-initialised output projection: the block is x + MLP(LN(x)) at start
    torch.testing.assert_close(blk(x, partners, idx), x + blk.mlp(blk.norm2(x)))


def test_config_round_trip_and_errors():
    for name in ("paper", "cpu", "cpu_default", "tiny"):
        cfg = preset(name)
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="variant"):
        preset("cpu", "D")
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({**preset("cpu").to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="unknown config"):
        preset("huge")


def test_losses_against_hand_computed_values():
    from odd_one_out_ros.model.losses import feature_loss, image_loss, weighted_bce

    gt = torch.rand(1, 2, 3, 4, 4)
    mask = (torch.rand(1, 2, 1, 4, 4) > 0.5).float()
    assert float(image_loss(gt * mask, mask, gt, mask)) == 0.0  # perfect reconstruction
    assert float(image_loss(torch.zeros_like(gt), torch.zeros_like(mask), gt, mask, 2.0)) == pytest.approx(
        float((gt * mask).square().mean() + 2 * mask.square().mean()))
    f = torch.randn(1, 2, 5, 4, 4)
    assert float(feature_loss(3 * f, f, mask)) == pytest.approx(0.0, abs=1e-6)  # cosine ignores scale
    assert float(feature_loss(-f, f, mask)) == pytest.approx(2.0, abs=1e-6)
    # off-mask pixels do not count
    g = f.clone()
    g[:, :, :, mask[0, 0, 0] == 0] = -g[:, :, :, mask[0, 0, 0] == 0]
    assert float(feature_loss(g[:, :1], f[:, :1], mask[:, :1])) == pytest.approx(0.0, abs=1e-6)
    logits, labels = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    w = torch.tensor([0.7, 0.3, 0.3])
    assert float(weighted_bce(logits, labels)) == pytest.approx(float((w * bce).sum() / w.sum()))


def test_the_prior_adds_a_learned_affine_of_the_robust_z_score():
    """scorer.matcher.prior: logit = head + a (z - b), z the boxes' robust z-scores of the training-free comparison;
    forward computes z from the images itself; a model without the prior has no prior parameters (old
    checkpoints load) and ignores nothing silently: a prior model without z refuses to classify."""

    from odd_one_out_ros.benchmark import synthetic_inputs
    from odd_one_out_ros.model.baseline import baseline_scores, robust_z
    from odd_one_out_ros.model.scorers import ScorerInputs

    base = preset("tiny")
    assert (not base.scorer.matcher.prior and preset("cpu").scorer.matcher.prior
            and not preset("paper").scorer.matcher.prior)
    assert not any("prior" in k for k in OddOneOutNet(base).state_dict())
    torch.manual_seed(0)
    cfg = base.changed("scorer.matcher", prior=True)
    net = OddOneOutNet(cfg).eval()
    scorer, comparison = net.scorer, net.scorer.comparison
    assert comparison is not None
    images, K, T, boxes = synthetic_inputs(cfg, 3, 4, "cpu")
    with torch.no_grad():
        scorer.matcher.prior_scale.fill_(0.5)
        enc = net.scene(images, K, T)
        inputs = scorer.prepare(enc, [boxes])
        z = torch.tensor([0.0, 1.0, 2.0, 5.0])
        l0 = scorer(dataclasses.replace(inputs, prior=[torch.zeros(4)])).logits[0]
        l1 = scorer(dataclasses.replace(inputs, prior=[z])).logits[0]
        assert torch.allclose(l1 - l0, 0.5 * z, atol=1e-5)
        with pytest.raises(ValueError, match="prior"):
            scorer(ScorerInputs(enc, [boxes]))
        out = net(images, K, T, [boxes])
        prior = comparison.z_scores(comparison.raw_scores(enc, [boxes]), images.device)[0]
        raw = baseline_scores(images[0], K[0], T[0], boxes, comparison.extractor("cpu"), comparison.baseline_cfg)
        assert np.allclose(prior.numpy(), robust_z(raw, comparison.baseline_cfg), atol=1e-6)
        torch.testing.assert_close(inputs.prior[0], prior)  # what the scorer prepares is that z-score
        assert torch.allclose(out.logits[0], scorer(dataclasses.replace(inputs, prior=[prior])).logits[0],
                              atol=1e-5)
        assert len(out.boxes[0]) == 4 and out.found[0].boxes == boxes
    # the speed benchmarks run on a prior model too (the cpu preset has it)
    from odd_one_out_ros.benchmark import bench_attention, bench_inspection

    assert set(bench_attention(cfg, [2, 3], repeat=1)["sparse"]) == {2, 3}
    calls = []
    real = comparison.raw_scores

    def counted(*a, **kw):  # the real comparison, counted: the benchmark's inspection must run it each time
        calls.append(real(*a, **kw))
        return calls[-1]

    comparison.raw_scores = counted
    bench = bench_inspection(net, 3, 4, warmup=1, repeat=2, reference=False, memory=False)
    assert len(calls) == 3 and all(c[0].shape == (4,) for c in calls)
    assert set(bench["stage_ms_median"]) == {"volume", "boxes", "prior", "classify"}


def test_paper_config_forward_and_backward_at_a_reduced_size():
    """The paper's architecture (ResNet-50 + FPN, the four-scale 3D U-Net, feature distillation, sparse voxel
    attention with every other instance, the density + DBSCAN boxes, no prior) runs forward and backward on a CPU at
    a reduced image and grid size: its own boxes and logits, the training losses and gradients to the encoder."""
    from odd_one_out_ros.model.estimators import DensityBoxes
    from odd_one_out_ros.model.losses import LossWeights
    from odd_one_out_ros.model.scorers import MatcherScorer

    torch.manual_seed(0)
    paper = preset("paper")
    cfg = dataclasses.replace(paper, image_size=64, grid=GridConfig(shape=(16, 16, 8), voxel_size=0.05, z_min=-0.1),
                              render=dataclasses.replace(paper.render, n_samples=16, rgb_size=16, feature_size=8))
    assert (cfg.encoder, cfg.scorer, cfg.boxes, cfg.unet_channels) == (
        paper.encoder, paper.scorer, paper.boxes, paper.unet_channels)
    net = OddOneOutNet(cfg)
    assert net.scene.encoder.cfg.name == "resnet50_fpn" and cfg.distill and not cfg.scorer.matcher.prior
    assert isinstance(net.boxes, DensityBoxes) and isinstance(net.scorer, MatcherScorer)
    assert net.scorer.comparison is None
    S = cfg.image_size
    K, T, _ = ring_cameras(4, S)
    images = torch.rand(1, 4, 3, S, S)
    boxes = [Box3D([-0.2 + 0.2 * i, 0.05 * i, 0.08], [0.12, 0.1, 0.12], 0.3 * i) for i in range(3)]
    net.eval()
    with torch.no_grad():
        given = net(images, K, T, [boxes])
        assert given.boxes[0] == boxes and given.logits[0].shape == (3,) and torch.isfinite(given.logits[0]).all()
        assert given.raw is None
        own = net(images, K, T)  # the density estimator's boxes on an untrained volume: any number
        assert own.logits[0].shape == (len(own.boxes[0]),) and torch.isfinite(own.logits[0]).all()
    net.train()
    enc = net.scene(images, K, T, full=True)
    vol = enc.volume
    out = net.scene.render(vol, K, T, (S, S), stratified=True)
    r, f = cfg.render.rgb_size, cfg.render.feature_size
    out = {"rgb": out["rgb"].flatten(3), "opacity": out["opacity"].flatten(3), "feat": out["feat"].flatten(3),
           "logits": net(images, K, T, [boxes], encoding=enc).logits[0]}
    targets = {"rgb": torch.rand(1, 4, 3, r * r), "mask": torch.ones(1, 4, 1, r * r),
               "feat": torch.rand(1, 4, cfg.teacher_dim, f * f), "feat_weights": torch.ones(1, 4, 1, f * f),
               "labels": torch.tensor([0.0, 1.0, 0.0])}
    terms = net.get_loss_dict(vol, out, targets, LossWeights())
    assert {"image", "feature", "bce", "total"} <= set(terms) and torch.isfinite(terms["total"])
    terms["total"].backward()
    assert sum(p.grad.abs().sum() for p in net.scene.encoder.parameters() if p.grad is not None) > 0
    assert sum(p.grad.abs().sum() for p in net.scorer.matcher.parameters() if p.grad is not None) > 0
