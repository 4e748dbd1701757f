"""Evaluation under both protocols, box recall, per anomaly type, seen vs unseen categories.

- paper protocol: object-wise; a ground-truth object counts as correct only when a predicted box with
  3D IoU > 0.5 is matched to it (greedy, highest IoU first, one-to-one) and its label is right.
  Accuracy is averaged over scenes. AUC pools all objects; an object without a matched box gets the
  worst score (0 for an anomaly, 1 for a normal object), since per-scene AUC is undefined for scenes
  with one class.
- reference-code protocol: all objects pooled; each ground-truth box takes the score of the predicted box
  of highest IoU (no IoU gate; 0.5 when no predicted box overlaps it at all); AUROC and accuracy over the pool.
Scores are probabilities of "anomalous"; labels use the checkpoint's threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from ..geometry import Box3D, greedy_match, iou_matrix, match_truth


@dataclass
class SceneResult:
    scene: str
    category: str
    split: str
    gt_boxes: list[Box3D]
    gt_labels: list[int]
    anomaly_types: list[str]
    pred_boxes: list[Box3D]
    pred_scores: list[float]
    threshold: float = 0.5
    matches: list[int] = field(default_factory=list)  # per gt: index of its IoU > 0.5 match, or -1
    best: list[int] = field(default_factory=list)  # per gt: index of the highest-IoU prediction, -1 if none overlaps
    matched_at: dict = field(default_factory=dict)  # IoU gate -> number of gt objects matched one-to-one above it

    def __post_init__(self):
        M = iou_matrix(self.gt_boxes, self.pred_boxes) if self.pred_boxes else np.zeros((len(self.gt_boxes), 0))
        self.best = [int(np.argmax(r)) if len(r) and r.max() > 0 else -1 for r in M]
        self.matches = greedy_match(M, 0.5, strict=True)  # = geometry.match_truth, reusing M
        self.matched_at = {t: sum(j >= 0 for j in greedy_match(M, t, strict=True)) for t in RECALL_IOUS}

    @property
    def unmatched_boxes(self) -> int:
        """Predicted boxes matched to no true object at IoU > 0.5."""
        return len(self.pred_boxes) - sum(j >= 0 for j in self.matches)


RECALL_IOUS = (0.25, 0.5, 0.7)


def box_metrics(rs: list[SceneResult]) -> dict:
    """Box quality over scene results (percentages): recall at each IoU gate of RECALL_IOUS (one-to-one matches),
    unmatched predicted boxes per scene (IoU 0.5), the share of scenes with exactly as many boxes as objects."""
    n_gt = sum(len(r.gt_boxes) for r in rs)
    out = {f"recall_iou{int(round(100 * t))}": (100 * sum(r.matched_at[t] for r in rs) / n_gt if n_gt else None)
           for t in RECALL_IOUS}
    out["unmatched_per_scene"] = float(np.mean([r.unmatched_boxes for r in rs])) if rs else None
    out["exact_count"] = float(100 * np.mean([len(r.pred_boxes) == len(r.gt_boxes) for r in rs])) if rs else None
    return out


def _auc(labels, scores) -> float | None:
    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    return float(100 * roc_auc_score(labels, scores))


def evaluate(results: list[SceneResult]) -> dict:
    """Metrics (percentages) over scene results; see the module docstring for the protocols."""
    def block(rs: list[SceneResult]) -> dict:
        p_scores, p_labels, r_scores, r_labels, accs, recall_hits, n_gt = [], [], [], [], [], 0, 0
        for r in rs:
            correct = []
            for i, y in enumerate(r.gt_labels):
                j = r.matches[i]
                if j >= 0:
                    s = r.pred_scores[j]
                    correct.append(int(s > r.threshold) == y)
                    recall_hits += 1
                else:
                    s = 0.0 if y else 1.0
                    correct.append(False)
                p_scores.append(s)
                p_labels.append(y)
                b = r.best[i]
                r_scores.append(r.pred_scores[b] if b >= 0 else 0.5)
                r_labels.append(y)
                n_gt += 1
            if correct:
                accs.append(np.mean(correct))
        r_pred = (np.asarray(r_scores) > np.array([r.threshold for r in rs for _ in r.gt_labels])) \
            if r_scores else np.zeros(0)
        return {
            "scenes": len(rs), "objects": n_gt, "anomalies": int(np.sum(p_labels)),
            "paper": {"auc": _auc(p_labels, p_scores), "accuracy": float(100 * np.mean(accs)) if accs else None},
            "reference": {"auc": _auc(r_labels, r_scores),
                          "accuracy": float(100 * np.mean(r_pred == np.asarray(r_labels, bool))) if n_gt else None},
            "box_recall_iou50": float(100 * recall_hits / n_gt) if n_gt else None,
            "boxes": box_metrics(rs),
        }

    out = {"all": block(results)}
    by_split = {}
    for r in results:
        by_split.setdefault(r.split or "unknown", []).append(r)
    out["by_split"] = {k: block(v) for k, v in sorted(by_split.items())}
    by_category = {}
    for r in results:
        by_category.setdefault(r.category or "unknown", []).append(r)
    out["boxes_by_category"] = {k: box_metrics(v) for k, v in sorted(by_category.items())}
    # per anomaly type: that type's anomalies against all normal objects (paper protocol scores)
    types = sorted({t for r in results for t in r.anomaly_types if t})
    per_type = {}
    for t in types:
        scores, labels, hits, n = [], [], 0, 0
        for r in results:
            for i, y in enumerate(r.gt_labels):
                if y and r.anomaly_types[i] != t:
                    continue
                j = r.matches[i]
                scores.append(r.pred_scores[j] if j >= 0 else (0.0 if y else 1.0))
                labels.append(y)
                if y:
                    n += 1
                    hits += int(j >= 0 and r.pred_scores[j] > r.threshold)
        per_type[t] = {"count": n, "auc": _auc(labels, scores), "detected_as_anomalous": 100 * hits / n if n else None}
    out["by_anomaly_type"] = per_type
    return out


def tune_boxes(net, scenes: list, views: int = 5) -> tuple[dict, dict[str, dict]]:
    """The box estimator's settings for `scenes` (SceneMeta list, e.g. a mix of toys and parts training scenes): of
    the settings it offers (BoxEstimator.tuning_grid, fields of its config section) within its tuning_tolerance
    points of the best box recall at IoU 0.5, the one with the fewest unmatched boxes per scene, then the highest
    recall. The volume is encoded once per scene and only the estimator's decoding runs per setting.
    Returns (the chosen settings, {setting label ("field=value ..."): {"recall", "unmatched_per_scene"}})."""
    import torch

    from ..model.inference import views_to_tensors

    est, evidence = net.boxes, []
    with torch.no_grad():
        for meta in scenes:
            images, K, T = views_to_tensors(meta.posed_views(meta.even_views(views)), net.cfg.image_size,
                                            next(net.parameters()).device)
            evidence.append((meta, est.evidence(net.scene(images, K, T).volume)[0]))
        table, settings = {}, {}
        for values in est.tuning_grid():
            bcfg = net.cfg.changed(est.section, **values).boxes
            hits = unmatched = n = 0
            for meta, e in evidence:
                pred = est.decode(e, bcfg).boxes  # the boxes an inspection gives with these settings
                found = sum(j >= 0 for j in match_truth([o.box for o in meta.objects], pred))
                hits += found
                unmatched += len(pred) - found
                n += len(meta.objects)
            label = " ".join(f"{k}={v}" for k, v in values.items())
            settings[label] = values
            table[label] = {"recall": 100 * hits / max(n, 1), "unmatched_per_scene": unmatched / max(len(evidence), 1)}
    top = max(row["recall"] for row in table.values())
    best = min((k for k in table if table[k]["recall"] >= top - est.tuning_tolerance),
               key=lambda k: (table[k]["unmatched_per_scene"], -table[k]["recall"]))
    return settings[best], table


def format_table(metrics: dict, baseline: dict | None = None, boxes: str = "predicted") -> str:
    """The evaluation table: the model's metrics and, when given, the baseline's beside them (same boxes)."""
    def f(x):
        return "  n/a" if x is None else f"{x:5.1f}"

    def line(name, b):
        return (f"  {name:<9} paper AUC {f(b['paper']['auc'])} acc {f(b['paper']['accuracy'])} | reference AUC "
                f"{f(b['reference']['auc'])} acc {f(b['reference']['accuracy'])} | box recall@0.5 "
                f"{f(b['box_recall_iou50'])}")
    rows = [("model", metrics)] + ([("baseline", baseline)] if baseline is not None else [])
    a = metrics["all"]
    out = [f"{a['scenes']} scenes, {a['objects']} objects ({a['anomalies']} anomalous), {boxes} boxes"]
    for name, m in rows:
        out.append(line(name, m["all"]))
    bx = a["boxes"]
    out.append(f"  boxes: recall@0.25 {f(bx['recall_iou25'])} @0.5 {f(bx['recall_iou50'])} @0.7 "
               f"{f(bx['recall_iou70'])} | unmatched per scene {f(bx['unmatched_per_scene'])} | exact count "
               f"{f(bx['exact_count'])} % of scenes")
    if len(metrics["boxes_by_category"]) > 1:
        out.append("  box recall@0.5 by category: " + ", ".join(
            f"{k} {f(v['recall_iou50']).strip()}" for k, v in metrics["boxes_by_category"].items()))
    for k in metrics["by_split"]:
        v = metrics["by_split"][k]
        out.append(f"{k} ({v['scenes']} scenes, {v['objects']} objects, {v['anomalies']} anomalous)")
        for name, m in rows:
            out.append(line(name, m["by_split"][k]))
    if metrics["by_anomaly_type"]:
        head = "  model AUC, detected %" + ("   | baseline AUC, detected %" if baseline is not None else "")
        out.append("by anomaly type (paper protocol, that type against all normal objects):")
        out.append(f"  {'type':<16} {'count':>5}" + head)
        for t, v in metrics["by_anomaly_type"].items():
            s = f"  {t:<16} {v['count']:>5}        {f(v['auc'])}    {f(v['detected_as_anomalous'])}"
            if baseline is not None:
                w = baseline["by_anomaly_type"].get(t, {"auc": None, "detected_as_anomalous": None})
                s += f"      |       {f(w['auc'])}    {f(w['detected_as_anomalous'])}"
            out.append(s)
    return "\n".join(out)
