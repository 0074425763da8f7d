"""``experiment``: MAE sharing between identical stage-1 settings; a tiny grid that is extended on a rerun
without redoing its finished cell; a per-sequence-rates grid over two seeds whose comparison intervals equal the
bootstrap of the cells' own tables and whose extra evaluations resume instead of recomputing; a learning curve
scored on the validation cases with the convergence rule's verdict."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from AllStageTraining.config import preset
from AllStageTraining.evaluation.bootstrap import bootstrap_mean, paired_difference
from AllStageTraining.evaluation.comparison import case_means
from AllStageTraining.evaluation.tables import ScenarioTable
from AllStageTraining.fileio import sha256_file
from AllStageTraining.methods import configure, method_names
from AllStageTraining.pipeline.run import mae_identity


def test_identical_stage1_settings_share_one_mae(tmp_path):
    split = tmp_path / "split.json"
    split.write_text('{"train": ["a"]}')
    base = preset("tiny")
    key = {m: mae_identity(configure(base, m), split) for m in method_names()}
    assert key["ours"] == key["ours-no-distill"] == key["ours-no-personal"] == key["ours-no-init"] \
        == key["ours-no-logit-distill"] == key["ours-no-feat-distill"] == key["ours-no-personal-no-distill"]
    assert key["m3ae-style"] == key["m3ae-style-no-init"]  # only the segmenter's initial weights differ
    # each ablation changes one thing: no-da keeps the two masked views that m3ae-style (one view) does not
    assert len({key[m] for m in ("ours", "ours-no-da", "m3ae-style", "ours-no-pop", "ours-no-cons")}) == 5
    other_split = tmp_path / "other.json"
    other_split.write_text('{"train": ["b"]}')
    assert mae_identity(configure(base, "ours"), other_split) != key["ours"]
    # what may change on resume does not change the key (cache folders, loader workers, logging cadence)
    relaxed = base.with_fields({"data.cache_dir": "/elsewhere", "data.num_workers": 3, "optim_mae.log_every": 7})
    assert mae_identity(configure(relaxed, "ours"), split) == key["ours"]


@pytest.mark.parametrize("options, message", [
    (["--budgets", "100,200", "--steps-mae", "50"], "give --budgets or --steps-mae/--steps-seg, not both"),
    (["--missing-rates", "0.6,0.4,0.2"], "--missing-rates needs 4 comma-separated numbers"),
    (["--missing-rates", "0.6,0.4,0.2,0.8;0.1,0.1,0.1,1.5"], "missing rate of t2 must lie in [0, 1]"),
    (["--ratios", "0,0"], "the grid's settings repeat a value"),
    (["--budgets", "0"], "budgets must be at least 1 step"),
    (["--prompt-table-cases", "0"], "--prompt-table-cases must be at least 1"),
])
def test_bad_grid_options_are_usage_errors(options, message, tmp_path, capsys):
    from AllStageTraining.cli import main

    code = main(["experiment", "--data", str(tmp_path), "--out", str(tmp_path / "grid"), "--preset", "tiny",
                 "--device", "cpu", *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ERROR:") and message in err, err
    assert not (tmp_path / "grid").exists()


def _run(data, out, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "AllStageTraining", "experiment", "--data", str(data), "--out", str(out),
               "--preset", "tiny", "--threads", "2", "--device", "cpu", "--allow-untrained-text-encoder", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _experiment(data, out, methods: str) -> subprocess.CompletedProcess:
    return _run(data, out, "--methods", methods, "--ratios", "0.5", "--seeds", "0", "--test-fraction", "0.17",
                "--val-fraction", "0", "--scenarios", "FC12,F1,C")


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
    assert [(r["method"], r["setting"]) for r in rows] == [("zero-fill", "r0.5"), ("m3ae-style", "r0.5")]
    for row in rows:
        assert 0.0 <= float(row["dice_WT"]) <= 1.0 and row["n_cases"] == "1"
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


def _keyed(tables: dict[int, Path], part: str = "mean") -> dict:
    """``{(seed, case): per-case mean}`` read back from the cells' own ``table.csv`` files (``{seed: path}``)."""
    return {(seed, case): values[part] for seed, path in tables.items()
            for case, values in case_means(ScenarioTable.from_csv(path)).items()}


def _signed(interval) -> str:
    points = lambda v: f"{round(100 * v, 1) + 0.0:+.1f}"  # noqa: E731
    return f"{points(interval.mean)} [{points(interval.low)}, {points(interval.high)}]"


RATES = "rates0.6-0.4-0.2-0.8"


@pytest.mark.slow
def test_rates_grid_over_two_seeds_with_intervals_and_resumed_extra_evaluations(synthetic_root, tmp_path):
    out = tmp_path / "grid"
    options = ["--methods", "ours,zero-fill", "--missing-rates", "0.6,0.4,0.2,0.8", "--seeds", "0,1",
               "--test-fraction", "0.17", "--val-fraction", "0", "--scenarios", "FC12,F1,FC", "--prompt-table-cases", "1"]
    first = _run(synthetic_root, out, *options)
    assert first.returncode == 0, first.stderr[-3000:]

    for seed in (0, 1):  # the rates are the split's, every test case keeps its four sequences
        split = json.loads((out / "splits" / f"{RATES}_s{seed}.json").read_text())
        assert split["missing"]["mode"] == "rates"
        assert split["missing"]["rates"] == {"flair": 0.6, "t1ce": 0.4, "t1": 0.2, "t2": 0.8}
        assert len(split["test"]) == 1 and all(len(split["available"][c]) == 4 for c in split["test"])
    description = json.loads((out / "experiment.json").read_text())
    assert "--missing-rates 0.6,0.4,0.2,0.8" in description["command"]

    # the extra evaluations where they apply: synthesis for MAE methods, prompts for personalizing ones
    ours, zero_fill = (out / f"{RATES}_s1" / m / "eval" for m in ("ours", "zero-fill"))
    assert (ours / "synthesis.md").is_file() and (ours / "prompts.json").is_file()
    assert not (zero_fill / "synthesis.md").exists() and not (zero_fill / "prompts.json").exists()
    with (ours / "synthesis.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 + 2  # F1 and FC each lack two sequences
    with (ours / "prompts.csv").open() as f:
        prompt_rows = list(csv.DictReader(f))
    assert len(prompt_rows) == 3 * 3 and len({r["case_id"] for r in prompt_rows}) == 1

    # the comparison's intervals are the bootstrap of the cells' own per-case means, over both seeds
    markdown = (out / "comparison.md").read_text()
    tables = {m: {seed: out / f"{RATES}_s{seed}" / m / "eval" / "table.csv" for seed in (0, 1)}
              for m in ("ours", "zero-fill")}
    for method, paths in tables.items():
        interval = bootstrap_mean(_keyed(paths))
        assert interval.n == 2 and interval.n_seeds == 2 and f"| {interval.format()} | 2 (2) |" in markdown
        assert bootstrap_mean(_keyed(paths, "WT")).format() in markdown
    difference = paired_difference(_keyed(tables["ours"]), _keyed(tables["zero-fill"]))
    assert "| ours | zero-fill | " in markdown and _signed(difference) + " | 2 |" in markdown.replace("**", "")
    assert "## rates FLAIR 0.6, T1ce 0.4, T1 0.2, T2 0.8" in markdown
    assert "Synthesis quality" in markdown and f"{RATES}_s0/ours/eval/prompts.md" in markdown
    with (out / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(len(json.loads(r["per_case_dice"])) == 1 for r in rows)

    # an interrupted prompt table (its one case done, the summary not written) and finished cells: the rerun
    # recomputes nothing
    partial = ours / ".prompts.partial.csv"
    (ours / "prompts.csv").rename(partial)
    (ours / "prompts.json").unlink()
    finished = [ours / "synthesis.csv", ours / "table.csv", *(ours / "pred").rglob("*.nii.gz")]
    before = {p: p.stat().st_mtime_ns for p in finished}
    second = _run(synthetic_root, out, *options)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in finished} == before
    assert "prompts: SynthBraTS" not in second.stdout  # no case of any prompt table computed again
    assert second.stdout.count("synthesis evaluation already finished") == 2
    assert (ours / "prompts.json").is_file() and not partial.exists()
    with (ours / "prompts.csv").open() as f:
        assert list(csv.DictReader(f)) == prompt_rows


@pytest.mark.slow
def test_learning_curve_scored_on_the_validation_cases(synthetic_root, tmp_path):
    out = tmp_path / "curve"
    result = _run(synthetic_root, out, "--methods", "zero-fill,zero-fill-long", "--ratios", "0", "--seeds", "0",
                  "--budgets", "2,4", "--evaluate-on", "val", "--val-fraction", "0.17", "--test-fraction", "0.17",
                  "--scenarios", "FC12,F1")
    assert result.returncode == 0, result.stderr[-3000:]
    split = json.loads((out / "splits" / "r0_s0.json").read_text())
    for budget in (2, 4):
        for method, steps in (("zero-fill", budget), ("zero-fill-long", 2 * budget)):  # the method's own rule
            cell = out / f"r0_s0_n{budget}" / method
            assert json.loads((cell / "config.json").read_text())["optim_seg"]["steps"] == steps
            summary = json.loads((cell / "eval-val" / "summary.json").read_text())
            assert summary["scored_subset"] == "val" and summary["scored_cases"] == split["val"] != split["test"]
            assert not (cell / "eval").exists(), "the test cases are not touched"
    assert not (out / "comparison.md").exists()
    markdown = (out / "comparison-val.md").read_text()
    assert "scored on the validation cases" in markdown and "## Learning curves" in markdown
    assert (out / "comparison-val_curve.png").stat().st_size > 10_000
    curve = {b: _keyed({0: out / f"r0_s0_n{b}" / "zero-fill" / "eval-val" / "table.csv"}) for b in (2, 4)}
    change = paired_difference(curve[4], curve[2])
    assert f"- 2 -> 4 steps: {_signed(change)} points" in markdown
    verdict = "**Converged at 2 steps per stage.**" if abs(100 * change.mean) < 2 else "**Not reached** within"
    assert verdict in markdown
    for budget in (2, 4):
        assert bootstrap_mean(curve[budget]).format() in markdown
