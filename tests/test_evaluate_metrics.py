"""`evaluate` on hand-computed cases (no rendering, no model).

Every expected number below is worked out by hand in the comments. AUC is counted as the share of (anomalous,
normal) pairs where the anomaly scores higher, a tie counting 1/2.

Geometry used throughout: true object i is a 10 cm cube centred at x = 0.3 * i (cubes 20 cm apart, so boxes of
different objects never overlap). A predicted box is that cube shifted by d along x; its IoU with the object is
(0.1 - d) * 0.01 / (2 * 0.001 - (0.1 - d) * 0.01) = (0.1 - d) / (0.1 + d):
    d = 0     -> IoU 1        (matched at IoU > 0.5)
    d = 0.05  -> 0.05 / 0.15 = 1/3   (not matched)
    d = 0.07  -> 0.03 / 0.17 = 0.176 (not matched)
"""
import pytest

from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.training.evaluate import SceneResult, evaluate


def _gt(i: int) -> Box3D:
    return Box3D([0.3 * i, 0.0, 0.05], [0.1, 0.1, 0.1])


def _pred(i: int, d: float = 0.0) -> Box3D:
    return Box3D([0.3 * i + d, 0.0, 0.05], [0.1, 0.1, 0.1])


def _scene(objects, preds, split="test", threshold=0.5, name="s", category="cup") -> SceneResult:
    """objects: [(label, anomaly type)], object i at x = 0.3 i; preds: [(object index, shift d, score)]."""
    return SceneResult(name, category, split, [_gt(i) for i in range(len(objects))], [y for y, _ in objects],
                       [t for _, t in objects], [_pred(i, d) for i, d, _ in preds], [s for _, _, s in preds],
                       threshold=threshold)


def _perfect(labels_scores, **kw) -> SceneResult:
    """Every object with an exact box (IoU 1) of the given score; labels 1 get anomaly type "crack"."""
    objects = [(y, "crack" if y else "") for y, _ in labels_scores]
    return _scene(objects, [(i, 0.0, s) for i, (_, s) in enumerate(labels_scores)], **kw)


def test_auc_between_0_and_100_with_a_tie():
    # anomalies 0.9, 0.4; normals 0.4, 0.2, 0.6; every box exact, so both protocols see the same scores.
    # pairs (anomaly, normal), 2 x 3 = 6:
    #   0.9 vs 0.4, 0.2, 0.6: 1 + 1 + 1 = 3
    #   0.4 vs 0.4 (tie, 1/2), 0.2 (1), 0.6 (0) = 1.5
    #   -> 4.5 / 6 = 75.0   (ties counted as 1 would give 5/6 = 83.3, as 0 would give 4/6 = 66.7)
    m = evaluate([_perfect([(1, 0.9), (1, 0.4), (0, 0.4), (0, 0.2), (0, 0.6)])])["all"]
    assert m["paper"]["auc"] == pytest.approx(75.0)
    assert m["reference"]["auc"] == pytest.approx(75.0)
    # threshold 0.5: 0.9 -> anomalous (right), 0.4 -> normal (wrong), normals 0.4, 0.2 -> normal (right),
    # 0.6 -> anomalous (wrong): 3 / 5 = 60.0 under both protocols (one scene, all boxes matched)
    assert m["paper"]["accuracy"] == pytest.approx(60.0)
    assert m["reference"]["accuracy"] == pytest.approx(60.0)
    assert (m["objects"], m["anomalies"], m["box_recall_iou50"]) == (5, 2, 100.0)


def test_paper_accuracy_averages_scenes_and_reference_accuracy_pools_objects():
    # all boxes exact, threshold 0.5:
    #   A (seen-test):   normal 0.1 (right)                                         -> 1/1
    #   B (seen-test):   anomaly 0.2 (wrong), normal 0.7 (wrong), normal 0.1 (right) -> 1/3
    #   E (seen-test):   no objects, one stray box: no accuracy of its own, left out of the scene average
    #   C (unseen-test): anomaly 0.9 (right), normal 0.8 (wrong)                    -> 1/2
    a = _perfect([(0, 0.1)], split="seen-test", name="a")
    b = _perfect([(1, 0.2), (0, 0.7), (0, 0.1)], split="seen-test", name="b")
    e = _scene([], [(0, 0.0, 0.9)], split="seen-test", name="e")
    c = _perfect([(1, 0.9), (0, 0.8)], split="unseen-test", name="c")
    m = evaluate([a, b, e, c])
    # paper, all: mean over the 3 scenes with objects (1 + 1/3 + 1/2) / 3 = (6 + 2 + 3) / 18 = 11/18 = 61.11
    # reference, all: pooled right objects 1 + 1 + 1 = 3 of 6 = 50.0
    assert m["all"]["paper"]["accuracy"] == pytest.approx(100 * 11 / 18)
    assert m["all"]["reference"]["accuracy"] == pytest.approx(50.0)
    # seen-test: paper (1 + 1/3) / 2 = 66.67; reference pooled 2 of 4 = 50.0
    seen = m["by_split"]["seen-test"]
    assert seen["paper"]["accuracy"] == pytest.approx(100 * 2 / 3)
    assert seen["reference"]["accuracy"] == pytest.approx(50.0)
    assert (seen["scenes"], seen["objects"], seen["anomalies"]) == (3, 4, 1)
    # unseen-test: one scene, so both are 1 / 2 = 50.0
    assert m["by_split"]["unseen-test"]["paper"]["accuracy"] == pytest.approx(50.0)
    assert m["by_split"]["unseen-test"]["reference"]["accuracy"] == pytest.approx(50.0)


def test_missed_objects_paper_worst_score_reference_best_iou_box_or_one_half():
    # Scene A: a1 (anomaly) has two boxes, neither matched: index 0 at d = 0.07 (IoU 0.18) with score 0.1 and
    #          index 3 at d = 0.05 (IoU 1/3) with score 0.6; a3 (anomaly) exact 0.8; n1 exact 0.7; n2 exact 0.2.
    # Scene B: nothing predicted; a2 (anomaly), n3 (normal).
    sa = _scene([(1, "crack"), (1, "crack"), (0, ""), (0, "")],
                [(0, 0.07, 0.1), (1, 0.0, 0.8), (2, 0.0, 0.7), (0, 0.05, 0.6), (3, 0.0, 0.2)], name="a")
    sb = _scene([(1, "crack"), (0, "")], [], name="b")
    m = evaluate([sa, sb])["all"]
    # paper scores (missed anomaly -> 0, missed normal -> 1): anomalies a1 0, a3 0.8, a2 0;
    # normals n1 0.7, n2 0.2, n3 1.0. Pairs 3 x 3 = 9: a3 beats 0.7 and 0.2, loses to 1.0 -> 2; a1, a2 -> 0.
    # -> 2 / 9 = 22.22
    assert m["paper"]["auc"] == pytest.approx(100 * 2 / 9)
    # paper accuracy (a missed object is wrong whatever its score): A: a1 missed (wrong), a3 0.8 (right),
    # n1 0.7 (wrong), n2 0.2 (right) -> 2/4; B: both missed -> 0/2. Mean (1/2 + 0) / 2 = 25.0
    assert m["paper"]["accuracy"] == pytest.approx(25.0)
    # reference scores (highest-IoU box, no gate; 0.5 where the scene has no box): anomalies a1 0.6 (IoU 1/3
    # beats 0.18), a3 0.8, a2 0.5; normals n1 0.7, n2 0.2, n3 0.5.
    # pairs: 0.6 vs 0.7, 0.2, 0.5 -> 0 + 1 + 1 = 2; 0.8 -> 3; 0.5 vs 0.7, 0.2, 0.5 -> 0 + 1 + 1/2 = 1.5
    # -> 6.5 / 9 = 72.22
    assert m["reference"]["auc"] == pytest.approx(100 * 6.5 / 9)
    # reference accuracy, pooled, score > 0.5: a1 0.6 (right), a3 (right), n1 0.7 (wrong), n2 (right),
    # a2 0.5 -> normal (wrong), n3 0.5 -> normal (right) -> 4 / 6 = 66.67
    assert m["reference"]["accuracy"] == pytest.approx(100 * 4 / 6)
    # matched at IoU > 0.5: a3, n1, n2 -> 3 / 6 = 50.0
    assert m["box_recall_iou50"] == pytest.approx(50.0)
    # an object that no box overlaps at all takes 0.5, not the score of whichever box comes first: scene C has an
    # anomaly with no box near it and a normal object boxed exactly (0.9, listed first). Reference scores:
    # anomaly 0.5, normal 0.9 -> 0 / 1 = 0.0 (taking box 0's score would tie them: 50.0)
    sc = _scene([(1, "crack"), (0, "")], [(1, 0.0, 0.9)], name="c")
    assert sc.best == [-1, 0]
    assert evaluate([sc])["all"]["reference"]["auc"] == pytest.approx(0.0)


def test_detected_as_anomalous_needs_a_matched_box_scored_above_its_scene_threshold():
    # "crack" anomalies: c1 exact 0.9 (thr 0.5): detected; c2 exact 0.5 (thr 0.5): not (needs score > threshold);
    # c3 box at IoU 1/3 with score 0.9: not (unmatched); c4 exact 0.4 in a scene of threshold 0.3: detected.
    # -> 2 / 4 = 50.0  (>= would give 3/4; the best-IoU box would give 3/4; a fixed 0.5 threshold 1/4)
    s1 = _scene([(1, "crack"), (1, "crack"), (1, "crack"), (0, "")],
                [(0, 0.0, 0.9), (1, 0.0, 0.5), (2, 0.05, 0.9), (3, 0.0, 0.1)], name="s1")
    s2 = _scene([(1, "crack"), (0, "")], [(0, 0.0, 0.4), (1, 0.0, 0.1)], threshold=0.3, name="s2")
    t = evaluate([s1, s2])["by_anomaly_type"]["crack"]
    assert t["count"] == 4
    assert t["detected_as_anomalous"] == pytest.approx(50.0)


def test_single_class_sets_give_no_auc():
    normal = _perfect([(0, 0.2), (0, 0.7)], split="seen-test", name="n")  # all normal
    cracked = _perfect([(1, 0.9), (1, 0.3)], split="unseen-test", name="c")  # all anomalous
    for m in (evaluate([normal])["all"], evaluate([cracked])["all"]):
        assert m["paper"]["auc"] is None and m["reference"]["auc"] is None
        # accuracy is still defined: one of the two objects is on the right side of 0.5 -> 50.0
        assert m["paper"]["accuracy"] == pytest.approx(50.0)
        assert m["reference"]["accuracy"] == pytest.approx(50.0)
    m = evaluate([normal, cracked])
    # pooled, both classes: anomalies 0.9, 0.3 vs normals 0.2, 0.7: 0.9 -> 2, 0.3 -> 1 -> 3 / 4 = 75.0
    assert m["all"]["paper"]["auc"] == pytest.approx(75.0)
    # each split holds one class only
    for split in ("seen-test", "unseen-test"):
        assert m["by_split"][split]["paper"]["auc"] is None and m["by_split"][split]["reference"]["auc"] is None
    # a type with no normal object anywhere: no AUC, but its detection rate (0.9 detected, 0.3 not) is 50.0
    t = evaluate([cracked])["by_anomaly_type"]["crack"]
    assert t["auc"] is None and t["detected_as_anomalous"] == pytest.approx(50.0) and t["count"] == 2
    # nothing at all
    empty = evaluate([])
    assert empty["all"]["paper"] == {"auc": None, "accuracy": None}
    assert empty["all"]["reference"] == {"auc": None, "accuracy": None}
    assert empty["by_split"] == {} and empty["by_anomaly_type"] == {}


def test_per_anomaly_type_auc_against_all_normal_objects():
    # Scene 1: normals n1 0.2, n2 0.5; crack c1 0.9; dent d1 0.5 (all exact boxes).
    # Scene 2: normal n3 0.7; crack c2 0.6 (exact); dent d2 box at IoU 1/3 scored 0.95 (missed: paper score 0).
    # Scene 3: normal n4 0.55 only (no anomaly of any type, still one of "all normal objects").
    s1 = _scene([(0, ""), (0, ""), (1, "crack"), (1, "dent")],
                [(0, 0.0, 0.2), (1, 0.0, 0.5), (2, 0.0, 0.9), (3, 0.0, 0.5)], name="s1")
    s2 = _scene([(0, ""), (1, "crack"), (1, "dent")], [(0, 0.0, 0.7), (1, 0.0, 0.6), (2, 0.05, 0.95)], name="s2")
    s3 = _perfect([(0, 0.55)], name="s3")
    m = evaluate([s1, s2, s3])
    types = m["by_anomaly_type"]
    assert sorted(types) == ["crack", "dent"]
    # normals of all scenes: 0.2, 0.5, 0.7, 0.55.
    # crack: 0.9 beats all 4 -> 4; 0.6 beats 0.2, 0.5, 0.55, loses to 0.7 -> 3. -> 7 / 8 = 87.5
    assert types["crack"]["auc"] == pytest.approx(87.5)
    # dent: 0.5 vs 0.2 (1), 0.5 (tie, 1/2), 0.7 (0), 0.55 (0) -> 1.5; d2 missed -> 0 beats nothing.
    # -> 1.5 / 8 = 18.75
    assert types["dent"]["auc"] == pytest.approx(18.75)
    assert types["crack"]["count"] == types["dent"]["count"] == 2
    # detected: crack 0.9 and 0.6 both > 0.5 -> 100.0; dent 0.5 (not > 0.5), d2 unmatched -> 0.0
    assert types["crack"]["detected_as_anomalous"] == pytest.approx(100.0)
    assert types["dent"]["detected_as_anomalous"] == pytest.approx(0.0)
    # all types together (paper): 4 + 3 + 1.5 + 0 = 8.5 of 4 x 4 = 16 pairs -> 53.125
    assert m["all"]["paper"]["auc"] == pytest.approx(53.125)
