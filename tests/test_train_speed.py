"""Issue 11 (training speed): the fast paths compute what the original formulation computes.

The U-Net in the (B, C, X, Y, Z) layout with the halo-split convolution, the channels-last per-voxel heads,
the sparse feature integration, rendering a subset of rays, the ray samplers' unbiasedness, the frozen
backbone's per-image cache (mirrored images included), two CPU ranks on the new paths and `bench --train`.
No timing here: speed is checked by benchmarks/train_step.py.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from odd_one_out_ros.model.checkpoint import load_checkpoint, read_checkpoint
from odd_one_out_ros.model.config import GridConfig, preset
from odd_one_out_ros.model.heads import Projector
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.model.renderer import VolumeRenderer, integrate_fields
from odd_one_out_ros.model.unet3d import PointwiseConv3d, UNet3D, fast_conv3d
from odd_one_out_ros.model.volume import VoxelGrid
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT
from odd_one_out_ros.training.trainer import TrainConfig, Trainer, sample_object_pixels, sample_pixels

torch.set_num_threads(1)
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- the original formulation (before issue 11)
def _norm3d(c):
    return nn.GroupNorm(min(8, c), c)


class OldResBlock3d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(_norm3d(c), nn.ReLU(inplace=True), nn.Conv3d(c, c, 3, padding=1),
                                  _norm3d(c), nn.ReLU(inplace=True), nn.Conv3d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class OldUNet3D(nn.Module):
    """The U-Net as it was: nn.Conv3d on (B, C, Z, Y, X), the same parameter names."""

    def __init__(self, in_ch, out_ch, channels, blocks):
        super().__init__()
        self.stem = nn.Conv3d(in_ch + 1, channels[0], 3, padding=1)
        self.down, self.enc = nn.ModuleList(), nn.ModuleList()
        for i, (c, n) in enumerate(zip(channels, blocks)):
            self.down.append(nn.Identity() if i == 0 else nn.Conv3d(channels[i - 1], c, 3, stride=2, padding=1))
            self.enc.append(nn.Sequential(*[OldResBlock3d(c) for _ in range(n)]))
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.up.append(nn.Conv3d(channels[i] + channels[i - 1], channels[i - 1], 3, padding=1))
            self.dec.append(OldResBlock3d(channels[i - 1]))
        self.out = nn.Sequential(_norm3d(channels[0]), nn.ReLU(inplace=True), nn.Conv3d(channels[0], out_ch, 1))

    def forward(self, volume, seen):
        # the same down / up path as today's (it is layout-free); what differs is the layout and the blocks
        return UNet3D.forward_xyz(self, torch.cat([volume, seen], dim=1))


def old_mlp3d(c_in, c_hidden, c_out, layers):
    mods, c = [], c_in
    for _ in range(layers - 1):
        mods += [nn.Conv3d(c, c_hidden, 1), nn.ReLU(inplace=True)]
        c = c_hidden
    mods.append(nn.Conv3d(c, c_out, 1))
    return nn.Sequential(*mods)


# ---------------------------------------------------------------- layout and convolutions
@pytest.mark.parametrize("k,stride,pad", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0), (3, 2, 0)])
def test_halo_split_convolution_equals_conv3d(k, stride, pad):
    """fast_conv3d cuts a small batch-1 input into two halves (the case PyTorch runs with its slow kernel):
    values and gradients equal F.conv3d in float64, for odd and even depths."""
    torch.manual_seed(0)
    for D in (3, 5, 6, 9):
        x = torch.randn(1, 4, D, 7, 5, requires_grad=True)
        w = torch.randn(3, 4, k, k, k, requires_grad=True)
        b = torch.randn(3, requires_grad=True)
        got = fast_conv3d(x, w, b, (stride,) * 3, (pad,) * 3)
        x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
        ref = F.conv3d(x64, w64, b64, stride, pad)
        assert got.shape == ref.shape
        torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(ref)
        got.backward(g.float())
        ref.backward(g)
        for a, r in ((x, x64), (w, w64), (b, b64)):
            torch.testing.assert_close(a.grad.double(), r.grad, atol=1e-4, rtol=1e-5)


def test_unet_in_xyz_layout_equals_the_original_on_the_same_weights():
    """The new U-Net (computed as (B, C, X, Y, Z), kernels permuted on the fly) against the original module on
    (B, C, Z, Y, X) in float64, with the same state dict both ways (old checkpoints load unchanged)."""
    torch.manual_seed(0)
    new = UNet3D(6, 5, (8, 16, 32), (1, 1, 2))
    old = OldUNet3D(6, 5, (8, 16, 32), (1, 1, 2))
    old.load_state_dict(new.state_dict(), strict=True)
    new.load_state_dict(old.state_dict(), strict=True)
    old = old.double()
    vol = torch.randn(1, 6, 5, 12, 10, requires_grad=True)  # Z, Y, X odd and even: padding, halves, upsampling
    seen = (torch.rand(1, 1, 5, 12, 10) > 0.3).float()
    out = new(vol, seen)
    vol64 = vol.detach().double().requires_grad_()
    ref = old(vol64, seen.double())
    assert out.shape == ref.shape == (1, 5, 5, 12, 10)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    out.backward(g.float())
    ref.backward(g)
    torch.testing.assert_close(vol.grad.double(), vol64.grad, atol=1e-5, rtol=1e-4)
    for (name, p), (_, p64) in zip(new.named_parameters(), old.named_parameters()):
        torch.testing.assert_close(p.grad.double(), p64.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_shipped_checkpoint_gives_the_original_volume():
    """A checkpoint written before the layout change (the shipped one) loads, and its U-Net and heads compute
    what the original modules compute with its weights."""
    net, blob = load_checkpoint(DEFAULT_CHECKPOINT)
    cfg = blob["config"]
    X, Y, Z = cfg.grid.shape
    old = OldUNet3D(cfg.encoder.out_channels, cfg.volume_channels, cfg.unet_channels, cfg.unet_blocks)
    old.load_state_dict(net.scene.unet.state_dict(), strict=True)
    old_proj = old_mlp3d(cfg.volume_channels, 128, cfg.teacher_dim, 4)
    old_proj.load_state_dict(net.scene.projector.net.state_dict(), strict=True)
    torch.manual_seed(1)
    vol = torch.randn(1, cfg.encoder.out_channels, Z, Y, X)
    seen = torch.ones(1, 1, Z, Y, X)
    with torch.no_grad():
        fv_new, fv_old = net.scene.unet(vol, seen), old(vol, seen)
        torch.testing.assert_close(fv_new, fv_old, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(net.scene.projector(fv_old), old_proj(fv_old), atol=2e-4, rtol=1e-4)


def test_pointwise_heads_equal_1x1x1_convolutions():
    torch.manual_seed(0)
    conv = nn.Conv3d(6, 4, 1)
    pw = PointwiseConv3d(6, 4)
    pw.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 3, 5, 7)
    torch.testing.assert_close(pw(x), conv(x))
    proj = Projector(6, 9, hidden=8)
    ref = old_mlp3d(6, 8, 9, 4)
    ref.load_state_dict(proj.net.state_dict(), strict=True)
    xg = x.clone().requires_grad_()
    out = proj(xg)
    assert out.shape == (2, 9, 3, 5, 7) and out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, ref(x), atol=1e-6, rtol=1e-5)
    out.square().sum().backward()
    xr = x.clone().requires_grad_()
    ref(xr).square().sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- rendering
def ring_cameras(V, size, radius=1.0, height=0.7, f=0.9):
    """V cameras on a ring looking at the origin: K (1, V, 3, 3), T_cw (1, V, 4, 4)."""
    from odd_one_out_ros.geometry import look_at

    K = torch.tensor([[f * size, 0, size / 2 - 0.5], [0, f * size, size / 2 - 0.5], [0, 0, 1]])
    T = [torch.tensor(look_at([radius * np.cos(a), radius * np.sin(a), height], [0, 0, 0]).as_matrix(),
                      dtype=torch.float32) for a in np.linspace(0, 2 * np.pi, V, endpoint=False) + 0.3]
    return K.expand(1, V, 3, 3).contiguous(), torch.stack(T)[None]


def test_feature_integration_equals_grid_sample_and_weighted_sum():
    """The sparse-matrix feature integration (constant weights) equals trilinear grid_sample + weighted sum in
    value and in the gradient of the fields, for two scenes, points outside the grid included."""
    torch.manual_seed(0)
    B, C, Z, Y, X, R, S = 2, 5, 4, 6, 7, 9, 11
    fields = torch.randn(B, C, Z, Y, X, dtype=torch.float64)
    norm = torch.rand(B, R, S, 3, dtype=torch.float64) * 2.4 - 1.2
    w = torch.rand(B, R, S, dtype=torch.float64)
    f1, f2 = fields.clone().requires_grad_(), fields.clone().requires_grad_()
    got = integrate_fields(f1, norm, w)
    looked = F.grid_sample(f2, norm[..., None, :], mode="bilinear", padding_mode="zeros", align_corners=False)
    ref = (looked[..., 0] * w[:, None]).sum(-1).transpose(1, 2)  # (B, R, C)
    torch.testing.assert_close(got, ref)
    g = torch.randn_like(ref)
    got.backward(g)
    ref.backward(g)
    torch.testing.assert_close(f1.grad, f2.grad)
    # channels-last fields (as the heads return them) are read in place, with the same result
    cl = fields.movedim(1, -1).contiguous().movedim(-1, 1)
    torch.testing.assert_close(integrate_fields(cl, norm, w), ref)


def test_rendering_a_pixel_subset_equals_those_pixels_of_the_full_image():
    torch.manual_seed(0)
    cfg = preset("tiny")
    net = OddOneOutNet(cfg).eval()
    K, T = ring_cameras(3, cfg.image_size)
    with torch.no_grad():
        vol = net.scene.volume(torch.rand(1, 3, 3, cfg.image_size, cfg.image_size), K, T)
        vol = dataclasses.replace(vol, density=vol.density + 30.0 * torch.rand_like(vol.density))  # something to see
        full = net.scene.render(vol, K, T, (cfg.image_size, cfg.image_size))
        r, f = cfg.render.rgb_size, cfg.render.feature_size
        pix = torch.stack([torch.randperm(r * r)[:40] for _ in range(3)])[None]
        fpix = torch.stack([torch.randperm(f * f)[:20] for _ in range(3)])[None]
        sub = net.scene.render(vol, K, T, (cfg.image_size, cfg.image_size), pixels=pix, feature_pixels=fpix)
    assert float(full["opacity"].amax()) > 0.1
    for key, idx in (("rgb", pix), ("opacity", pix), ("depth", pix), ("feat", fpix)):
        flat = full[key].flatten(3)
        ref = torch.gather(flat, 3, idx[:, :, None, :].expand(-1, -1, flat.shape[2], -1))
        assert sub[key].shape == ref.shape
        torch.testing.assert_close(sub[key], ref, atol=1e-5, rtol=1e-5)


def test_renderer_without_fields_and_detached_features_keep_their_gradients_apart():
    """The feature pass (detached density, sparse integration) sends no gradient to the density; the colour
    pass does."""
    grid = VoxelGrid.from_config(GridConfig(shape=(8, 8, 4), voxel_size=0.1, z_min=-0.2))
    K, T = ring_cameras(2, 16, radius=1.5)
    dens = (torch.rand(1, 1, 4, 8, 8) * 20).requires_grad_()
    feat = torch.randn(1, 6, 4, 8, 8, requires_grad=True)
    rend = VolumeRenderer(grid, 16)
    out = rend(dens, feat, K, T, 16, 16, detach_density=True)
    out["fields"].square().sum().backward()
    assert dens.grad is None and float(feat.grad.abs().sum()) > 0
    out = rend(dens, feat[:, :3], K, T, 16, 16)
    out["fields"].square().sum().backward()
    assert float(dens.grad.abs().sum()) > 0


# ---------------------------------------------------------------- ray sampling
def test_pixel_samplers_draw_without_repetition_and_are_unbiased():
    rng = np.random.default_rng(0)
    idx = sample_pixels(64, 20, 3, rng)
    assert idx.shape == (1, 3, 20) and all(len(set(v.tolist())) == 20 for v in idx[0])
    assert torch.equal(sample_pixels(64, 0, 2, rng)[0, 1], torch.arange(64))
    # object pixels: an unbiased estimate of sum(mask * x) over all pixels, exact with few object pixels
    mask = torch.zeros(2, 100)
    mask[0, 10:60] = torch.linspace(0.2, 1.0, 50)
    mask[1, 5:9] = 1.0  # 4 object pixels < n: all of them, the rest weight 0
    x = torch.from_numpy(rng.random((2, 100))).float()
    truth = float((mask * x).sum())
    est = []
    for _ in range(3000):
        i, w = sample_object_pixels(mask, 10, rng)
        assert i.shape == (1, 2, 10) and w.shape == (1, 2, 1, 10)
        assert all(len(set(v.tolist())) == 10 for v in i[0])
        assert float(mask[1, i[0, 1]].sum()) == 4.0 and torch.allclose(w[0, 1, 0].sum(), torch.tensor(4.0))
        est.append(float((w[0, :, 0] * torch.gather(x, 1, i[0])).sum()))
    assert abs(np.mean(est) - truth) < 0.02 * truth
    assert np.std(est) > 0  # it is a random subset


# ---------------------------------------------------------------- training paths
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import small_toys

    return small_toys(tmp_path_factory.mktemp("speed_data"), scenes=2, seed=5)


def test_frozen_backbone_is_cached_per_image_and_mirrored_images_get_their_own_features(data, tmp_path):
    cfg = preset("tiny")
    tc = TrainConfig(n_input=3, n_target=2, rays=40, feature_rays=10, freeze_backbone=True, warmup_steps=0, lr=1e-2)
    tr = Trainer(cfg, tc, data, tmp_path / "run")
    before = {k: v.clone() for k, v in tr.net.scene.encoder.state_dict().items()}
    flips, epoch = [], 0
    while len(set(flips)) < 2 or epoch < 3:  # until both an unmirrored and a mirrored item were trained on
        tr.epoch = epoch
        tr.dataset.set_epoch(epoch)
        flips.append(_is_flipped(tr, epoch))
        tr.run_step([0])
        epoch += 1
        assert epoch < 30
    tr.net.train()
    assert not tr.net.scene.encoder.backbone.training  # batch norms stay in eval mode: cached levels stay valid
    after = tr.net.scene.encoder.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)  # fixed, running stats too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("fpn."))  # the pyramid trains
    # the cache returns what the backbone computes, for an image and its mirror image (different entries)
    item = tr.dataset[0]
    img = item["images"][0]
    u8 = (img * 255).round().byte().permute(1, 2, 0).numpy()
    computed = tr.backbone_cache.computed
    for im in (u8, np.ascontiguousarray(u8[:, ::-1])):
        cached = tr.backbone_cache(im)
        with torch.no_grad():
            direct = tr.net.scene.encoder.backbone_levels(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255)
        for c, d in zip(cached, direct):
            torch.testing.assert_close(c, d[0], atol=2e-2, rtol=2e-3)  # stored as fp16
    assert tr.backbone_cache.computed <= computed + 1  # the unmirrored view was cached already
    mirrored = tr.backbone_cache(np.ascontiguousarray(u8[:, ::-1]))
    assert not torch.allclose(mirrored[0], torch.flip(tr.backbone_cache(u8)[0], dims=[-1]), atol=1e-3)
    assert (tmp_path / "run" / "backbone_cache").is_dir()


def _is_flipped(tr, epoch):
    """Whether SceneDataset mirrors item 0 in this epoch (its draws: view order, then the flip)."""
    rng = np.random.default_rng([tr.dataset.seed, epoch, 0])
    rng.permutation(len(tr.dataset.meta(0).cameras))
    return bool(rng.random() < 0.5)


def test_two_cpu_ranks_train_with_ray_subsets_and_a_frozen_backbone(data, tmp_path):
    """torchrun, 2 one-thread ranks, the subset renderer and the backbone cache: a stage 1 and a stage 2."""
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--config", "tiny", "--data", str(data), "--out", str(run), "--epochs", "2", "--threads", "1",
              "--views", "3,2", "--rays", "50", "--feature-rays", "12", "--no-progress"]
    for stage in ("1", "2"):
        r = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port",
                            str(29000 + (os.getpid() + int(stage)) % 500), "-m", "odd_one_out_ros.cli", "train",
                            "--stage", stage, *common], capture_output=True, text=True, timeout=240, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    conf = json.loads((run / "config.json").read_text())
    assert conf["world_size"] == 2 and conf["train"]["rays"] == 50 and conf["train"]["freeze_backbone"]
    s1, s2 = read_checkpoint(run / "stage1.pt")["model"], read_checkpoint(run / "stage2.pt")["model"]
    assert any(not torch.equal(s1[k], s2[k]) for k in s1 if k.startswith("scorer.matcher."))
    assert all(torch.equal(s1[k], s2[k]) for k in s1 if k.startswith("scene.encoder.backbone."))
    assert any((run / "backbone_cache").rglob("*.pt"))


def test_bench_train_writes_step_times_breakdown_and_reference(tmp_path):
    out = tmp_path / "train.json"
    r = subprocess.run([str(BIN / "odd-one-out"), "bench", "--train", "--config", "tiny", "--repeat", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["views"] == [4, 3]
    for stage in ("stage1", "stage2"):
        assert res["train_step_ms"][stage] > 0 and res["ratio_to_reference"][stage] > 0
        assert {"data", "teacher", "forward", "backward", "optimizer"} <= set(res["breakdown_ms"][stage])
        assert {"encoder", "unet3d", "render"} <= set(res["forward_parts_ms"][stage])
    assert "classify" in res["forward_parts_ms"]["stage2"]
    assert res["reference_ms"] > 0 and "stage1" in r.stdout
