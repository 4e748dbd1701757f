"""The learned comparator (model/comparator.py, training/comparator.py): an untrained one ranks exactly as the
training-free comparison, it learns what that comparison cannot (a nuisance it must ignore), the network and
checkpoint path, and the training command's refusals."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from odd_one_out_ros.model.baseline import BaselineConfig, _descriptors, robust_z, score_cells
from odd_one_out_ros.model.checkpoint import load_checkpoint, save_checkpoint
from odd_one_out_ros.model.comparator import CellComparator, robust_z_torch
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.training.comparator import ComparatorTrainConfig, augmented, train_comparator, with_comparator

G, P = 4, 64


def test_an_untrained_comparator_scores_and_ranks_as_the_training_free_comparison():
    torch.manual_seed(0)
    cfg = BaselineConfig(grid=G)
    m = CellComparator(24, G)
    for n in (3, 5, 8):
        cells = torch.randn(n, P, 24).relu()
        valid = torch.rand(n, P) > 0.25
        logits, raw = m(cells, valid)
        ref = score_cells(_descriptors([cells], valid, cfg), valid, cfg)
        torch.testing.assert_close(raw, ref.float(), atol=1e-5, rtol=0)
        z = torch.from_numpy(robust_z(ref.numpy(), cfg)).float()
        torch.testing.assert_close(logits, z - cfg.z0, atol=1e-4, rtol=0)  # the prior's own calibration at init


def _scene(rng: np.random.Generator, n: int = 6, c: int = 16):
    """n instances of one random part: cells (n, P, c); the anomaly (one object in two scenes of three) differs
    by an offset in channels 0-3 on a quarter of its cells; every object carries a large random nuisance in
    channels 8-15 (twice the part's own spread), so the fixed cosine distance is dominated by the nuisance."""
    base = rng.normal(0, 1, (P, c))
    cells = np.repeat(base[None], n, 0) + rng.normal(0, 0.05, (n, P, c))
    cells[:, :, 8:] += rng.normal(0, 2.0, (n, P, 8))
    labels = np.zeros(n, int)
    if rng.random() < 2 / 3:
        a = int(rng.integers(n))
        idx = rng.choice(P, P // 4, replace=False)
        cells[a, idx, :4] += 1.5
        labels[a] = 1
    return {"cells": torch.from_numpy(cells).half(), "valid": torch.ones(n, P, dtype=torch.bool),
            "labels": torch.from_numpy(labels)}


def _auc(m: CellComparator, items: list[dict], use_raw: bool) -> float:
    ys, ss = [], []
    with torch.no_grad():
        for it in items:
            lo, raw = m(it["cells"].float(), it["valid"])
            ys += it["labels"].tolist()
            ss += (robust_z_torch(raw.double(), m.mad_floor) if use_raw else lo).tolist()  # per scene, as deployed
    return 100 * roc_auc_score(ys, ss)


def test_the_comparator_learns_to_ignore_a_nuisance_the_fixed_comparison_cannot():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = [_scene(rng) for _ in range(60)]
    test = [_scene(np.random.default_rng(1000 + i)) for i in range(60)]
    m = CellComparator(16, G, dim=8, hidden=8)
    base = _auc(m, test, use_raw=True)
    assert _auc(m, test, use_raw=False) == pytest.approx(base, abs=0.5)  # untrained: the same ranking
    train_comparator(m, train, ComparatorTrainConfig(steps=300, batch=4, lr=3e-3, log_every=1000), log=lambda s: None)
    learned = _auc(m.eval(), test, use_raw=False)
    assert base < 80, base  # the nuisance hides the anomaly from the fixed comparison
    assert learned > base + 15, (base, learned)  # measured: 71 -> 100


def test_augmentation_keeps_at_least_three_instances_with_their_labels_and_turns_cells():
    rng = np.random.default_rng(3)
    m = CellComparator(16, G)
    it = _scene(rng, n=5)
    it["labels"] = torch.arange(5)  # tags, to follow the objects
    seen_sizes, turned = set(), False
    for _ in range(40):
        cells, valid, y = augmented(it, m, rng)
        seen_sizes.add(len(y))
        assert 3 <= len(y) <= 5 and y.tolist() == sorted(y.tolist()) and valid.shape == cells.shape[:2]
        for k, j in enumerate(y.tolist()):  # each object's cells: some quarter turn of its own grid
            opts = [it["cells"][j].float()[perm] for perm in m.perms]
            hit = [torch.equal(cells[k], o) for o in opts]
            assert any(hit)
            turned |= not hit[0]
    assert seen_sizes == {3, 4, 5} and turned


def test_a_comparator_model_scores_the_comparisons_boxes_and_round_trips_its_checkpoint(tmp_path):
    from odd_one_out_ros.geometry import Box3D
    from tests.test_model import ring_cameras

    torch.manual_seed(0)
    plain = OddOneOutNet(preset("tiny").changed("scorer.matcher", prior=True))
    net = with_comparator(plain, dim=8, hidden=8)
    assert net.scorer.comparator is not None and getattr(plain.scorer, "comparator", None) is None
    # the scene encoder and the box estimator keep their weights; only the scorer is new
    mine, theirs = net.state_dict(), plain.state_dict()
    kept = [k for k in theirs if not k.startswith("scorer.")]
    assert kept and sorted(kept) == sorted(k for k in mine if not k.startswith("scorer."))
    for k in kept:
        assert torch.equal(mine[k], theirs[k]), k
    boxes = [Box3D([x, 0.0, 0.04], [0.08, 0.06, 0.08], 0.0) for x in (-0.2, -0.05, 0.1, 0.25)]
    images = torch.rand(1, 4, 3, 64, 64)
    K, T, _ = ring_cameras(4, 64)
    with torch.no_grad():
        out = net(images, K, T, [boxes])
        raw, logits = out.raw, out.logits
        ref = plain(images, K, T, [boxes]).raw  # the matcher's prior: the training-free comparison's raw scores
    np.testing.assert_allclose(raw[0], ref[0], rtol=1e-9, atol=0)  # the same digits (baseline.object_scores)
    assert logits[0].shape == (4,)
    path = save_checkpoint(tmp_path / "c.pt", net)
    loaded, _ = load_checkpoint(path)
    assert loaded.cfg.scorer.kind == "comparator" and loaded.cfg.scorer.comparator.dim == 8
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, K, T, [boxes]).logits[0], logits[0])
        # the stages one by one (scene encoding, the scorer's inputs, the scorer) give what forward gives
        enc = loaded.scene(images, K, T)
        lg = loaded.scorer(loaded.scorer.prepare(enc, [boxes])).logits
        torch.testing.assert_close(lg[0], logits[0])
        assert loaded(images, K, T, [[]]).logits[0].shape == (0,)  # a scene with no objects


def test_the_comparator_needs_the_teacher_comparison():
    comparator = preset("tiny").changed("scorer", kind="comparator")
    assert comparator.validate() is comparator  # the teacher comparison (the default): one map of cells
    with pytest.raises(ValueError, match="scorer.kind must be another scorer than comparator with scorer.comparison"):
        comparator.changed("scorer.comparison", features="trunk").validate()
