"""Markdown table of an ablation run folder (scripts/ablation.sh): one row per variant, paper-protocol AUC /
accuracy, reference-protocol AUC and box recall per test set.  usage: python scripts/ablation_table.py RUN_DIR"""
import json
import sys
from pathlib import Path

SETS = [("toys_seen-test", "toys seen"), ("toys_unseen-test", "toys unseen"), ("parts_test", "parts")]


def fmt(x):
    return "n/a" if x is None else f"{x:.1f}"


def main(run: Path) -> None:
    head = "| variant | " + " | ".join(f"{name}: paper AUC / acc, ref. AUC, recall" for _, name in SETS) + " |"
    print(head)
    print("| --- " * (len(SETS) + 1) + "|")
    for v in ("A", "B", "C", "full"):
        cells = []
        for key, _ in SETS:
            f = run / v / f"eval_{key}.json"
            if not f.is_file():
                cells.append("not run")
                continue
            a = json.loads(f.read_text())["metrics"]["all"]
            cells.append(f"{fmt(a['paper']['auc'])} / {fmt(a['paper']['accuracy'])}, "
                         f"{fmt(a['reference']['auc'])}, {fmt(a['box_recall_iou50'])} ({a['scenes']} sc.)")
        print(f"| {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation"))
