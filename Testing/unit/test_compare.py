"""``compare``: experiment folders run apart merge into the comparison one grid would write, paired over the
same cases; folders whose configuration, scenarios or split cases differ, and cells found twice, are refused."""

from __future__ import annotations

import csv
import json
import zlib

import numpy as np

from AllStageTraining.cli import main
from AllStageTraining.config import preset
from AllStageTraining.constants import REGIONS, SCENARIOS
from AllStageTraining.evaluation.bootstrap import paired_difference
from AllStageTraining.evaluation.tables import ScenarioTable
from AllStageTraining.exit_codes import EXIT_OK

TEST_CASES = [f"case{i}" for i in range(5)]


def _table(method: str, seed: int, level: float) -> ScenarioTable:
    rng = np.random.default_rng(zlib.crc32(repr((method, seed)).encode()))
    table = ScenarioTable(method)
    for i, case in enumerate(TEST_CASES):
        for scenario in SCENARIOS:
            table.add(case, scenario.short,
                      {r: (float(np.clip(level + 0.03 * i + rng.normal(0, 0.04), 0, 1)), 4.0) for r in REGIONS})
    return table


def write_experiment(root, methods: dict[str, float], *, seeds=(0, 1), window="crop", test_cases=TEST_CASES):
    """An experiment folder as ``experiment`` leaves it, less the weights: experiment.json, timings.json, the
    splits and each cell's finished evaluation (``methods``: name -> Dice level)."""
    cfg = preset("tiny")
    cfg.data.crop_size = (32, 32, 32)
    cfg.inference.window = window
    root.mkdir(parents=True)
    (root / "experiment.json").write_text(json.dumps({
        "methods": list(methods), "settings": [{"ratio": 0.5}], "seeds": list(seeds), "budgets": [],
        "scenarios": [s.short for s in SCENARIOS], "evaluate_on": "test", "command": f"experiment {root.name}",
        "base_config": cfg.to_dict()}))
    (root / "splits").mkdir()
    timings = {}
    for seed in seeds:
        split = {"data_root": str(root), "seed": seed, "train": ["a", "b"], "val": ["v"], "test": list(test_cases)}
        (root / "splits" / f"r0.5_s{seed}.json").write_text(json.dumps(split))
        for method, level in methods.items():
            _table(method, seed, level).write(root / f"r0.5_s{seed}" / method / "eval", heatmap=False)
            timings[f"r0.5_s{seed}/{method}"] = 60.0
    (root / "timings.json").write_text(json.dumps(timings))
    return root


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_merged_folders_give_one_comparison_paired_over_the_same_cases(tmp_path):
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6})
    second = write_experiment(tmp_path / "second", {"zero-fill-long": 0.65}, window=[32, 32, 32])
    out = tmp_path / "merged"

    assert main(["compare", str(first), str(second), "--out", str(out)]) == EXIT_OK

    rows = read_rows(out / "comparison.csv")
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, str(s)) for m in ("ours", "zero-fill", "zero-fill-long") for s in (0, 1))
    for row in rows:
        assert (out / row["table"]).is_file()  # links relative to the comparison's folder
        assert float(row["seconds"]) == 60.0
    per_case = {m: {(int(r["seed"]), c): v["mean"] for r in rows if r["method"] == m
                    for c, v in json.loads(r["per_case_dice"]).items()} for m in ("ours", "zero-fill-long")}
    difference = paired_difference(per_case["ours"], per_case["zero-fill-long"])
    page = (out / "comparison.md").read_text()
    expected = f"{100 * difference.mean:+.1f} [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]"
    line = next(x for x in page.splitlines() if x.startswith("| ours | zero-fill-long |"))
    assert line.split(" | ")[5].strip("*") == expected
    assert f"`{first}`: `experiment first`" in page and f"`{second}`: `experiment second`" in page


def test_folders_that_cannot_be_compared_cell_against_cell_are_refused(tmp_path, capsys):
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6})
    one_pass = write_experiment(tmp_path / "one_pass", {"zero-fill-long": 0.65}, window=None)
    other_cases = write_experiment(tmp_path / "other_cases", {"zero-fill-long": 0.65},
                                   test_cases=TEST_CASES[:-1] + ["case9"])
    twice = write_experiment(tmp_path / "twice", {"zero-fill": 0.5, "zero-fill-long": 0.65})

    for folders, message in (([one_pass], "another base configuration"), ([other_cases], "split r0.5_s0"),
                             ([twice], "is in"), ([tmp_path / "nowhere"], "not an experiment folder"),
                             ([f"{twice}@m3ae-style"], "has no method m3ae-style")):
        out = tmp_path / f"out_{len(message)}"
        assert main(["compare", str(first), *map(str, folders), "--out", str(out)]) != EXIT_OK
        assert message in capsys.readouterr().err
        assert not (out / "comparison.csv").exists()
    assert main(["compare", str(first), str(twice), "--out", str(first)]) != EXIT_OK
    assert "one of the folders compared" in capsys.readouterr().err

    out = tmp_path / "chosen"
    assert main(["compare", str(first), f"{twice}@zero-fill-long", "--out", str(out)]) == EXIT_OK
    assert {r["method"] for r in read_rows(out / "comparison.csv")} == {"ours", "zero-fill", "zero-fill-long"}


def test_no_finished_evaluation_of_the_subset_is_an_error(tmp_path, capsys):
    first = write_experiment(tmp_path / "first", {"ours": 0.7})
    assert main(["compare", str(first), "--out", str(tmp_path / "out"), "--evaluate-on", "val"]) != EXIT_OK
    assert "no finished val evaluation" in capsys.readouterr().err
