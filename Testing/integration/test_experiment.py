"""``experiment``: MAE sharing between identical stage-1 settings, and a tiny grid that is extended on a rerun
without redoing its finished cell."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile

import pytest

from AllStageTraining.config import preset
from AllStageTraining.fileio import sha256_file
from AllStageTraining.methods import configure, method_names
from AllStageTraining.pipeline.run import mae_identity


def test_identical_stage1_settings_share_one_mae(tmp_path):
    split = tmp_path / "split.json"
    split.write_text('{"train": ["a"]}')
    base = preset("tiny")
    key = {m: mae_identity(configure(base, m), split) for m in method_names()}
    assert key["ours"] == key["ours-no-distill"] == key["ours-no-personal"]
    # each ablation changes one thing: no-da keeps the two masked views that m3ae-style (one view) does not
    assert len({key[m] for m in ("ours", "ours-no-da", "m3ae-style", "ours-no-pop", "ours-no-cons")}) == 5
    other_split = tmp_path / "other.json"
    other_split.write_text('{"train": ["b"]}')
    assert mae_identity(configure(base, "ours"), other_split) != key["ours"]
    # what may change on resume does not change the key (cache folders, loader workers, logging cadence)
    relaxed = base.with_fields({"data.cache_dir": "/elsewhere", "data.num_workers": 3, "optim_mae.log_every": 7})
    assert mae_identity(configure(relaxed, "ours"), split) == key["ours"]


def _experiment(data, out, methods: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "AllStageTraining", "experiment", "--data", str(data), "--out", str(out),
               "--methods", methods, "--ratios", "0.5", "--seeds", "0", "--preset", "tiny",
               "--test-fraction", "0.17", "--val-fraction", "0", "--threads", "2", "--device", "cpu",
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

    # every cell recorded where its stages ran: the --device given, for training and evaluation alike
    for method, stages in (("zero-fill", {"seg", "eval"}), ("m3ae-style", {"mae", "seg", "eval"})):
        runtime = json.loads((out / "r0.5_s0" / method / "runtime.json").read_text())
        assert set(runtime) == stages and {r["device"] for r in runtime.values()} == {"cpu"}, runtime
        assert all(r["threads"] == 2 for r in runtime.values())

    # an exported cell carries its split's provenance: the cell's split.json is a byte copy of the grid's split
    split = out / "splits" / "r0.5_s0.json"
    exported = subprocess.run([sys.executable, "-m", "AllStageTraining", "export", "--run", str(cell),
                               "--out", str(tmp_path / "cell.zip")], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    meta = json.loads(zipfile.ZipFile(tmp_path / "cell.zip").read("bundle.json"))
    assert meta["provenance"]["split_sha256"] == sha256_file(split) == sha256_file(cell / "split.json")
    assert meta["method"] == "zero-fill" and meta["provenance"]["evaluation"]["scenarios"] == ["FC12", "F1", "C"]
