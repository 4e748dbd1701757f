"""Issue 13: the faster inference path computes what the model computed before (same weights, same inputs), the
bench's same-run reference, and (marked `cuda`, run by benchmarks/gpu_check.sh) the model on a GPU."""
import numpy as np
import pytest
import torch
from reference_impl import reference_path, sparse_attention_reference

from odd_one_out_ros.benchmark import bench_inspection, synthetic_inputs
from odd_one_out_ros.geometry import boxes_to_tensor
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.fastconv import ConvActivation
from odd_one_out_ros.model.matcher import SparseVoxelAttention, correspondences, select_partners
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class OldPath:
    """The implementation before issue 13: unfused NCHW convolutions and the sparse attention gathering keys and
    values per correspondence (reference_impl.sparse_attention_reference)."""

    def __enter__(self):
        self.fwd = SparseVoxelAttention.forward
        SparseVoxelAttention.forward = sparse_attention_reference
        self.ref = reference_path()
        self.ref.__enter__()

    def __exit__(self, *exc):
        self.ref.__exit__(*exc)
        SparseVoxelAttention.forward = self.fwd


def _inspect(net, matcher, images, K, T, boxes):
    """One inspection's pieces: the full volume, the box estimator's boxes, the comparison's robust z-scores of
    `boxes`, the volume matcher's logits of them (with that prior) and the model's own scorer's logits."""
    with torch.no_grad():
        enc = net.scene(images, K, T, full=True)
        found = net.boxes(enc.volume)[0].boxes
        enc.maps = net.scorer.comparison.maps(enc)  # the comparison's 2D maps once, for both scorers
        inputs = matcher.prepare(enc, [boxes])
        matcher_logits = matcher(inputs).logits
        logits = net.scorer(net.scorer.prepare(enc, [boxes])).logits
    return enc.volume, found, inputs.prior[0], matcher_logits[0], logits[0]


def shipped_with_matcher(net):
    """The volume matcher (with the prior) of the shipped checkpoint's weights (its file keeps the matcher the
    stage 2 trained; the shipped config scores with the comparator, which drops it at load), as a scorer for `net`'s
    scene encodings."""
    from odd_one_out_ros.model.checkpoint import FORMAT_V1, upgrade_state_v1, with_parts

    cfg = net.cfg.changed("scorer", kind="matcher")
    blob = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    state = upgrade_state_v1(blob["model"], cfg) if blob["format"] == FORMAT_V1 else blob["model"]
    other, new = with_parts(state, cfg)
    assert new == [] and other.scorer.matcher.use_prior and other.scorer.comparison is not None
    return other.scorer.eval()


def test_shipped_checkpoint_outputs_unchanged_by_the_fast_path():
    """One inspection of the shipped checkpoint (trained weights, batch norms with trained statistics): old and new
    implementation agree to floating-point rounding, box for box."""
    from odd_one_out_ros.model.checkpoint import load_checkpoint

    torch.manual_seed(0)
    net, _ = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    net.eval()
    matcher = shipped_with_matcher(net)
    images, K, T, boxes = synthetic_inputs(net.cfg, 3, 5, "cpu")
    images = (0.5 + 0.3 * (images - 0.5)).clamp(0, 1)
    with OldPath():
        old = _inspect(net, matcher, images, K, T, boxes)
    new = _inspect(net, matcher, images, K, T, boxes)
    for key in ("fv", "density", "feat"):
        a, b = getattr(old[0], key), getattr(new[0], key)
        assert float((b - a).abs().max()) <= 1e-4 * max(float(a.abs().max()), 1.0), key
    assert len(new[1]) == len(old[1])
    torch.testing.assert_close(boxes_to_tensor(new[1], dtype=torch.float64),
                               boxes_to_tensor(old[1], dtype=torch.float64), atol=1e-4, rtol=0)
    assert torch.allclose(new[2], old[2], atol=1e-3), (new[2], old[2])  # robust z-scores of the prior
    assert torch.allclose(new[3], old[3], atol=1e-3), (new[3], old[3])  # the matcher's anomaly logits
    assert torch.allclose(new[4], old[4], atol=1e-3), (new[4], old[4])  # the shipped scorer's anomaly logits
    # the fused copies are in use (and kept out of the state dict)
    assert any(isinstance(m, ConvActivation) for _, c in net.scene.encoder._fused._copies.values()
               for m in c.modules())
    assert not any("_fused" in k for k in net.state_dict())


def test_fused_copy_follows_weight_changes():
    """An in-place change of the weights (an optimizer step, load_state_dict) rebuilds the fused copy."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    net = OddOneOutNet(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = net.scene.encoder(x)
        for m in net.scene.encoder.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.mul_(1.5)
        after = net.scene.encoder(x)
        with reference_path():
            ref = net.scene.encoder(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, ref, atol=1e-5, rtol=1e-4)
    # training mode, or gradients to the backbone: the original modules run (batch statistics, autograd)
    net.train()
    y = net.scene.encoder(x)
    y.sum().backward()
    assert net.scene.encoder.backbone[0][0].weight.grad is not None


@pytest.mark.parametrize("N,M,k", [(6, 5, 20), (3, 2, 4), (1, 0, 4)])
def test_sparse_attention_matches_gathered_keys_and_values(N, M, k):
    torch.manual_seed(0)
    attn = SparseVoxelAttention(32, 4)
    torch.nn.init.normal_(attn.out.weight, std=0.2)
    P = 64
    x = torch.randn(N, P, 32, requires_grad=True)
    feats = torch.randn(N, P, 16)
    partners = select_partners(feats, M)
    idx = correspondences(feats, partners, k)
    new = attn(x, partners, idx)
    ref = sparse_attention_reference(attn, x, partners, idx)
    assert torch.allclose(new, ref, atol=1e-5), float((new - ref).abs().max())
    if N > 1:  # gradients too (the matcher trains through this path)
        g_new = torch.autograd.grad(new.square().sum(), [x, attn.k.weight, attn.v.weight, attn.q.weight])
        g_ref = torch.autograd.grad(ref.square().sum(), [x, attn.k.weight, attn.v.weight, attn.q.weight])
        for a, b in zip(g_new, g_ref):
            assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_block_upsampling_equals_whole_volume():
    from odd_one_out_ros.model.box_estimator import _upsampled, _upsampled_block

    rng = np.random.default_rng(0)
    op = rng.random((8, 20, 20))
    full = _upsampled(op, 4)
    for _ in range(50):
        lo = rng.integers(0, [7, 19, 19])
        hi = np.minimum(lo + rng.integers(1, 9, 3), op.shape)
        ref = full[lo[0] * 4:hi[0] * 4, lo[1] * 4:hi[1] * 4, lo[2] * 4:hi[2] * 4]
        assert np.array_equal(_upsampled_block(op, 4, lo, hi), ref)


def test_bench_reports_a_same_run_reference():
    cfg = preset("tiny")
    res = bench_inspection(OddOneOutNet(cfg), 2, 3, warmup=1, repeat=2)
    # both timed twice, interleaved: the medians lie within their own samples, and the reference is not the model
    assert len(res["latency_ms_all"]) == len(res["reference_ms_all"]) == 2
    assert min(res["latency_ms_all"]) <= res["latency_ms_median"] <= max(res["latency_ms_all"])
    assert min(res["reference_ms_all"]) <= res["reference_ms"] <= max(res["reference_ms_all"])
    assert res["reference_ms_all"] != res["latency_ms_all"] and res["threads"] == torch.get_num_threads()
    assert "ResNet-18" in res["reference"] and set(res["stage_ms_median"]) == {"volume", "boxes", "prior", "classify"}
    # peak memory from a fresh process, over the loaded model (tests/test_one_backbone_pass.py checks the method)
    assert "fresh process" in res["peak_memory_method"] and 0 < res["peak_memory_increase_mb"] < res["peak_memory_mb"]
    lean = bench_inspection(OddOneOutNet(cfg), 2, 3, warmup=0, repeat=1, reference=False, memory=False)
    assert "reference_ms" not in lean and "peak_memory_mb" not in lean


@pytest.mark.cuda
@cuda
def test_cuda_forward_matches_cpu():
    cfg = preset("tiny", "full").changed("scorer.matcher", prior=True)
    torch.manual_seed(0)
    net = OddOneOutNet(cfg).eval()
    images, K, T, boxes = synthetic_inputs(cfg, 3, 4, "cpu")
    with torch.no_grad():
        cpu_logits = net(images, K, T, [boxes]).logits
        net_gpu = net.to("cuda")
        gpu_logits = net_gpu(images.cuda(), K.cuda(), T.cuda(), [boxes]).logits
    assert torch.allclose(cpu_logits[0], gpu_logits[0].cpu(), atol=1e-3)


@pytest.mark.cuda
@cuda
def test_cuda_bench_runs():
    cfg = preset("cpu").changed("encoder", weights="")
    res = bench_inspection(OddOneOutNet(cfg), 5, 6, "cuda", warmup=1, repeat=2)
    assert res["device"] == "cuda" and res["latency_ms_median"] > 0 and res["peak_memory_mb"] > 0
    assert res["ratio"] > 0
