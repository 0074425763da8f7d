"""``experiment``: the method configurations, MAE sharing between identical stage-1 settings, and a tiny grid
that is extended on a rerun without redoing its finished cell."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from AllStageTraining.commands.experiment import METHODS, mae_identity, method_config
from AllStageTraining.config import preset


def test_method_configs_switch_off_one_part_each():
    base = preset("tiny")
    cfgs = {m: method_config(base, m) for m in METHODS}
    assert cfgs["ours"].to_dict() == method_config(base, "ours").to_dict()
    assert cfgs["zero-fill"].seg.method == "zero-fill" and cfgs["m3ae-style"].seg.method == "m3ae-style"
    assert (cfgs["ours-no-da"].mae.w_pop, cfgs["ours-no-da"].mae.w_cons) == (0.0, 0.0)
    assert (cfgs["m3ae-style"].mae.w_pop, cfgs["m3ae-style"].mae.w_cons) == (0.0, 0.0)
    assert (cfgs["ours-no-distill"].seg.w_logit_distill, cfgs["ours-no-distill"].seg.w_feat_distill) == (0.0, 0.0)
    assert cfgs["ours-no-personal"].seg.personalize == "none"
    # everything a comparison must hold fixed is the same for every method
    for cfg in cfgs.values():
        assert cfg.to_dict()["data"] == base.to_dict()["data"] and cfg.to_dict()["net"] == base.to_dict()["net"]
        assert cfg.optim_mae == base.optim_mae and cfg.optim_seg == base.optim_seg and cfg.seed == base.seed
    # each ablation differs from ours in its own part only
    assert cfgs["ours-no-da"].seg == cfgs["ours"].seg
    assert cfgs["ours-no-distill"].mae == cfgs["ours"].mae


def test_identical_stage1_settings_share_one_mae(tmp_path):
    split = tmp_path / "split.json"
    split.write_text('{"train": ["a"]}')
    base = preset("tiny")
    key = {m: mae_identity(method_config(base, m), split) for m in METHODS}
    assert key["ours"] == key["ours-no-distill"] == key["ours-no-personal"]
    assert key["ours-no-da"] == key["m3ae-style"] != key["ours"]
    other_split = tmp_path / "other.json"
    other_split.write_text('{"train": ["b"]}')
    assert mae_identity(method_config(base, "ours"), other_split) != key["ours"]


def _experiment(data, out, methods: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "AllStageTraining", "experiment", "--data", str(data), "--out", str(out),
               "--methods", methods, "--ratios", "0.5", "--seeds", "0", "--preset", "tiny",
               "--test-fraction", "0.17", "--val-fraction", "0", "--threads", "2",
               "--scenarios", "FC12,F1,C"]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_grid_resumes_without_redoing_finished_cells(synthetic_root, tmp_path):
    out = tmp_path / "experiment"
    first = _experiment(synthetic_root, out, "zero-fill")
    assert first.returncode == 0, first.stderr[-3000:]
    cell = out / "r0.5_s0" / "zero-fill"
    finished = [cell / "eval" / "summary.json", cell / "seg" / "model.safetensors",
                *sorted((cell / "eval" / "pred").rglob("*.nii.gz"))]
    assert len(finished) == 2 + 3
    before = {p: p.stat().st_mtime_ns for p in finished}

    second = _experiment(synthetic_root, out, "zero-fill,m3ae-style")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipped: finished earlier (r0.5_s0/zero-fill/eval/summary.json exists)" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == before
    assert (out / "r0.5_s0" / "m3ae-style" / "mae" / "model.safetensors").is_file()

    with (out / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["missing_ratio"]) for r in rows] == [("zero-fill", "0.5"), ("m3ae-style", "0.5")]
    for row in rows:
        assert 0.0 <= float(row["dice_WT"]) <= 1.0 and row["n_test_cases"] == "1"
    comparison = (out / "comparison.md").read_text()
    assert "| zero-fill |" in comparison and "| m3ae-style |" in comparison
    assert "r0.5_s0/m3ae-style/eval/table.md" in comparison
    assert (out / "comparison.png").stat().st_size > 10_000
