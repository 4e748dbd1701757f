"""The training recipes at tiny size: scripts/train_default.sh (the shipped checkpoint from nothing) and
scripts/finetune_shapes.sh (the shipped checkpoint fine-tuned on a folder of the user's meshes). Real data
generation, two-rank torchrun training, box tuning, evaluation with the baseline, the report; then a rerun
resumes without redoing anything."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odd_one_out_ros.model.checkpoint import read_checkpoint
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT
from odd_one_out_ros.synth.parts import make_part

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


RECIPE_TIMEOUT = 1200  # s for one recipe script; each test's pytest timeout lies above the runs it makes


def run(script, *args, **knobs):
    env = dict(os.environ, BIN=str(BIN), **{k: str(v) for k, v in knobs.items()})
    r = subprocess.run([str(ROOT / "scripts" / script), *map(str, args)], capture_output=True, text=True,
                       timeout=RECIPE_TIMEOUT, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.mark.timeout(2 * RECIPE_TIMEOUT + 120)  # the recipe, then its rerun
def test_default_recipe_at_tiny_size(tmp_path):
    out = tmp_path / "recipe"
    knobs = dict(TOYS=2, PARTS=1, TEST=1, STEPS1=1, STEPS2=1, BOXSTEPS=2, REFINESTEPS=2, TUNE=1, CMPSTEPS=2)
    run("train_default.sh", out, **knobs)
    blob = read_checkpoint(out / "cpu_default.pt")
    assert blob["config"].name == "cpu_default" and blob["config"].scorer.matcher.prior  # the shipped preset
    assert blob["config"].boxes.estimator == "heatmap" and "box_head_trained_on" in blob["meta"]
    assert "box_recall_by_setting" in blob["meta"]  # tune-boxes set the head's threshold
    assert all(k.startswith("score_threshold=") for k in blob["meta"]["box_recall_by_setting"])  # the head's
    assert blob["config"].scorer.kind == "comparator" and "comparator_trained_on" in blob["meta"]  # stage 2 on a CPU
    assert all(v.dtype == torch.float16 for v in blob["model"].values() if v.is_floating_point())  # shipping size
    report = (out / "metrics.md").read_text()
    for label in ("toys, seen categories", "toys, unseen categories", "parts"):
        assert sum(line.startswith(f"| {label} | ") for line in report.splitlines()) == 2  # 5 and 10 views
    assert "Real ToysAD-8K sample scene" in report and "object.001" in report
    assert "Recipe wall time" in report
    log = (out / "recipe.log").read_text()
    assert "stage 1: 1 steps" in log and "stage 2: 1 steps" in log and log.rstrip().endswith("metrics.md")
    assert "box head: cache volumes, 2 steps, refiner 2 steps" in log and "comparator: cache cells, 2 steps" in log
    stamp = (out / "cpu_default.pt").stat().st_mtime_ns
    again = run("train_default.sh", out, **knobs)
    assert "stage 1" not in again.stdout and "generate" not in again.stdout  # everything was done: resumed
    assert (out / "cpu_default.pt").stat().st_mtime_ns == stamp


@pytest.mark.timeout(RECIPE_TIMEOUT + 120)
def test_finetune_on_your_own_meshes_at_tiny_size(tmp_path):
    shapes = tmp_path / "meshes"
    shapes.mkdir()
    make_part(3).mesh().export(shapes / "bracket.stl")
    make_part(8).mesh().export(shapes / "flange.obj")
    out = tmp_path / "ft"
    r = run("finetune_shapes.sh", shapes, out, SCENES=2, TEST=1, STEPS1=1, STEPS2=1, BOXSTEPS=2, REFINESTEPS=2,
            LOOK="real")  # (issue 36) the generator's look reaches every scene the recipe makes
    for split in ("train", "test"):
        assert json.loads((out / "data" / split / "generator.json").read_text())["config"]["look"] == "real"
    gain = (out / "gain.md").read_text()
    assert "| shipped |" in gain and "| finetuned |" in gain and "| shipped |" in r.stdout
    a, b = read_checkpoint(DEFAULT_CHECKPOINT)["model"], read_checkpoint(out / "finetuned.pt")["model"]
    assert a.keys() <= b.keys() and any(not torch.equal(a[k].float(), b[k].float()) for k in a)
