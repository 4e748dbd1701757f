"""The shipped checkpoint's quality, pinned (issue 37): its model card names the file's sha256, and on fixed generated
held-out scenes (seeds no recipe trains, tunes or chooses on) `odd-one-out evaluate` keeps box recall and reference
AUC within PIN_MARGIN points of the figures the card's "Pinned in CI" table records for those same scenes. A new
checkpoint needs its card's sha256 and pinned rows rewritten (the card says how)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from odd_one_out_ros.model.checkpoint import file_sha256
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT
from odd_one_out_ros.synth.generate import generate
from odd_one_out_ros.synth.scene import GeneratorConfig

BIN = Path(sys.executable).parent
CARD = Path(DEFAULT_CHECKPOINT).with_name("MODEL_CARD.md")
PIN_SCENES = {"toys": (970, "seen-test"), "parts": (971, "test")}
"""kind -> (seed, split): 6 scenes of 5 views each"""
PIN_MARGIN = 3.0


def _pinned(kind: str) -> tuple[float, float]:
    """(box recall at IoU 0.5, reference AUC) of the card's row "| pin <kind> ..." in its "Pinned in CI" table."""
    m = re.search(rf"^\| pin {kind} [^|]*\|[^|]*\| ([\d.]+) \| ([\d.]+) \|", CARD.read_text(), re.MULTILINE)
    assert m, f"{CARD} has no pinned row for {kind}"
    return float(m.group(1)), float(m.group(2))


def test_the_model_card_names_the_shipped_checkpoints_sha256():
    assert f"sha256 `{file_sha256(DEFAULT_CHECKPOINT)}`" in CARD.read_text()


@pytest.mark.parametrize("kind", sorted(PIN_SCENES))
def test_the_shipped_checkpoint_keeps_its_pinned_quality(kind, tmp_path):
    seed, split = PIN_SCENES[kind]
    generate(GeneratorConfig(kind=kind, views=5), 6, tmp_path / "data", seed, split, progress=False)
    out = tmp_path / "eval.json"
    r = subprocess.run([str(BIN / "odd-one-out"), "evaluate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--data",
                        str(tmp_path / "data"), "--views", "5", "--threads", "2", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(out.read_text())["metrics"]["all"]
    assert m["scenes"] == 6
    recall, auc = _pinned(kind)
    assert m["boxes"]["recall_iou50"] >= recall - PIN_MARGIN, (m["boxes"], recall)
    assert m["reference"]["auc"] >= auc - PIN_MARGIN, (m["reference"], auc)
