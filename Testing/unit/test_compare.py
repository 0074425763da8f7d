"""``compare``: experiment folders run apart merge into the comparison one grid would write, paired over the
same cases; folders whose configuration, scenarios or split cases differ, and cells found twice, are refused."""

from __future__ import annotations

import csv
import json
import zlib

import numpy as np

from AllStageTraining.cli import main
from AllStageTraining.config import RunConfig, preset
from AllStageTraining.constants import REGIONS, SCENARIOS
from AllStageTraining.data.splits import MissingSetting
from AllStageTraining.evaluation.bootstrap import paired_difference
from AllStageTraining.evaluation.tables import ScenarioTable
from AllStageTraining.exit_codes import EXIT_OK
from AllStageTraining.methods import DEFAULT_METHOD, configure

TEST_CASES = [f"case{i}" for i in range(5)]


def _table(method: str, seed: int, level: float, cases) -> ScenarioTable:
    rng = np.random.default_rng(zlib.crc32(repr((method, seed)).encode()))
    table = ScenarioTable(method)
    for i, case in enumerate(cases):
        for scenario in SCENARIOS:
            table.add(case, scenario.short,
                      {r: (float(np.clip(level + 0.03 * i + rng.normal(0, 0.04), 0, 1)), 4.0) for r in REGIONS})
    return table


def write_experiment(root, methods: dict[str, float], *, seeds=(0, 1), window="crop", test_cases=TEST_CASES,
                     budgets=(), steps=600, subset="test", setting=None):
    """An experiment folder as ``experiment`` leaves it, less the weights: experiment.json, timings.json, the
    splits and each cell's finished evaluation of ``subset`` (``methods``: name -> Dice level)."""
    cfg = preset("tiny")
    cfg.data.crop_size = (32, 32, 32)
    cfg.inference.window = window
    cfg.optim_mae.steps = cfg.optim_seg.steps = steps
    setting = setting or MissingSetting(ratio=0.5)
    root.mkdir(parents=True)
    (root / "experiment.json").write_text(json.dumps({
        "methods": list(methods), "settings": [setting.to_dict()], "seeds": list(seeds), "budgets": list(budgets),
        "scenarios": [s.short for s in SCENARIOS], "evaluate_on": subset, "command": f"experiment {root.name}",
        "base_config": cfg.to_dict()}))
    (root / "splits").mkdir()
    timings, tag_budget = {}, f"_n{budgets[0]}" if len(budgets) > 1 else ""
    for seed in seeds:
        split = {"data_root": str(root), "seed": seed, "train": ["a", "b"], "val": ["v1", "v2"],
                 "test": list(test_cases)}
        (root / "splits" / f"{setting.tag}_s{seed}.json").write_text(json.dumps(split))
        for method, level in methods.items():
            cell = f"{setting.tag}_s{seed}{tag_budget}/{method}"
            folder = root / cell / ("eval" if subset == "test" else "eval-val")
            _table(method, seed, level, split[subset]).write(
                folder, heatmap=False, extra={"scored_cases": split[subset], "scenarios": [s.short for s in SCENARIOS]})
            timings[cell] = 60.0
    (root / "timings.json").write_text(json.dumps(timings))
    return root


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_merged_folders_give_one_comparison_paired_over_the_same_cases(tmp_path):
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6})
    second = write_experiment(tmp_path / "second", {"zero-fill-long": 0.65}, window=[32, 32, 32])
    code = {"package": "0.1.0", "commit": "0123456789ab", "modified": False}
    for seed in (0, 1):  # the second folder's cells recorded their code; the first folder's did not
        (second / f"r0.5_s{seed}" / "zero-fill-long" / "runtime.json").write_text(
            json.dumps({stage: {"device": "cpu", "code": code} for stage in ("seg", "eval")}))
    out = tmp_path / "merged"

    assert main(["compare", str(first), str(second), "--out", str(out)]) == EXIT_OK

    rows = read_rows(out / "comparison.csv")
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, str(s)) for m in ("ours", "zero-fill", "zero-fill-long") for s in (0, 1))
    for row in rows:
        assert (out / row["table"]).is_file()  # links relative to the comparison's folder
        assert float(row["seconds"]) == 60.0
        assert row["code"] == ("0123456789ab" if row["method"] == "zero-fill-long" else "")
    per_case = {m: {(int(r["seed"]), c): v["mean"] for r in rows if r["method"] == m
                    for c, v in json.loads(r["per_case_dice"]).items()} for m in ("ours", "zero-fill-long")}
    difference = paired_difference(per_case["ours"], per_case["zero-fill-long"])
    page = (out / "comparison.md").read_text()
    expected = f"{100 * difference.mean:+.1f} [{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]"
    line = next(x for x in page.splitlines() if x.startswith("| ours | zero-fill-long |"))
    assert line.split(" | ")[5].strip("*") == expected
    assert f"`{first}`, made by `experiment first`" in page and f"`{second}`, made by `experiment second`" in page
    assert ("not all made by one recorded, unmodified commit (git commits from `runtime.json`): 0123456789ab (2 "
            "cells); not recorded (4 cells)") in page


def test_folders_that_cannot_be_compared_cell_against_cell_are_refused(tmp_path, capsys):
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6})
    one_pass = write_experiment(tmp_path / "one_pass", {"zero-fill-long": 0.65}, window=None)
    other_cases = write_experiment(tmp_path / "other_cases", {"zero-fill-long": 0.65},
                                   test_cases=TEST_CASES[:-1] + ["case9"])
    twice = write_experiment(tmp_path / "twice", {"zero-fill": 0.5, "zero-fill-long": 0.65})
    no_split = write_experiment(tmp_path / "no_split", {"m3ae-style": 0.6})
    (no_split / "splits" / "r0.5_s1.json").unlink()
    scored_other = write_experiment(tmp_path / "scored_other", {"m3ae-style": 0.6})
    (scored_other / "splits" / "r0.5_s0.json").write_text((first / "splits" / "r0.5_s0.json").read_text())
    summary = scored_other / "r0.5_s1" / "m3ae-style" / "eval" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "scored_cases": TEST_CASES[:2]}))

    refusals = (([one_pass], "another base configuration"), ([other_cases], "split r0.5_s0"),
                ([twice], "r0.5_s0/zero-fill is in"), ([tmp_path / "nowhere"], "not an experiment folder"),
                ([f"{twice}@m3ae-style"], "has no method m3ae-style"), ([f"{twice}@"], "name the methods"),
                ([no_split], "has no split (r0.5_s1.json)"), ([scored_other], "scored other cases"))
    for number, (folders, message) in enumerate(refusals):
        out = tmp_path / f"out{number}"
        assert main(["compare", str(first), *map(str, folders), "--out", str(out)]) != EXIT_OK
        assert message in capsys.readouterr().err
        assert not out.exists()
    for out in (first, twice):  # a compared folder, or another experiment's folder
        assert main(["compare", str(first), "--out", str(out)]) != EXIT_OK
        assert "is an experiment folder" in capsys.readouterr().err

    out = tmp_path / "chosen"
    assert main(["compare", str(first), f"{twice}@zero-fill-long", "--out", str(out)]) == EXIT_OK
    assert {r["method"] for r in read_rows(out / "comparison.csv")} == {"ours", "zero-fill", "zero-fill-long"}


def test_folders_made_under_another_default_method_compare_by_the_steps_their_cells_train(tmp_path, capsys):
    """A base configured for the default (its equal-compute rule adds stage 1's steps to the segmenter's) and one
    made before that default existed train the same cells; a base whose own segmenter steps differ does not."""
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6})
    later, other = (write_experiment(tmp_path / name, {"m3ae-style": 0.6}, steps=steps)
                    for name, steps in (("later", 600), ("other", 700)))
    for folder in (later, other):
        description = json.loads((folder / "experiment.json").read_text())
        base = configure(RunConfig.from_dict(description["base_config"]), DEFAULT_METHOD)
        assert base.optim_seg.stage1_steps == base.optim_mae.steps > 0
        (folder / "experiment.json").write_text(json.dumps({**description, "base_config": base.to_dict()}))

    assert main(["compare", str(first), str(later), "--out", str(tmp_path / "merged")]) == EXIT_OK
    assert {r["method"] for r in read_rows(tmp_path / "merged" / "comparison.csv")} == {"ours", "zero-fill",
                                                                                       "m3ae-style"}
    assert main(["compare", str(first), str(other), "--out", str(tmp_path / "refused")]) != EXIT_OK
    assert "optim_seg.steps: 600 -> 700" in capsys.readouterr().err


def test_a_budget_grid_and_a_folder_of_the_same_steps_pair_up_and_only_listed_cells_count(tmp_path):
    rates = MissingSetting.parse_rates("0.6,0.4,0.2,0.8")
    curve = write_experiment(tmp_path / "curve", {"zero-fill": 0.6}, budgets=(600, 1200), steps=50, setting=rates)
    plain = write_experiment(tmp_path / "plain", {"ours": 0.7}, setting=rates)
    leftover = write_experiment(tmp_path / "leftover", {"zero-fill-long": 0.6}, setting=rates)
    (leftover / f"{rates.tag}_s0" / "zero-fill-long").rename(leftover / f"{rates.tag}_s0" / "m3ae-style")
    out = tmp_path / "merged"

    assert main(["compare", str(curve), str(plain), str(leftover), "--out", str(out)]) == EXIT_OK

    rows = read_rows(out / "comparison.csv")
    assert sorted((r["method"], r["seed"], r["budget"]) for r in rows) == [
        ("ours", "0", "600"), ("ours", "1", "600"), ("zero-fill", "0", "600"), ("zero-fill", "1", "600"),
        ("zero-fill-long", "1", "600")]  # the m3ae-style folder is not in leftover's grid
    assert {r["setting_label"] for r in rows} == {rates.label}
    assert "| ours | zero-fill | " in (out / "comparison.md").read_text()  # paired within the 600-step budget


def test_validation_cells_are_compared_and_a_subset_without_cells_is_an_error(tmp_path, capsys):
    first = write_experiment(tmp_path / "first", {"ours": 0.7, "zero-fill": 0.6}, subset="val")
    assert main(["compare", str(first), "--out", str(tmp_path / "out"), "--evaluate-on", "val"]) == EXIT_OK
    assert len(read_rows(tmp_path / "out" / "comparison-val.csv")) == 4
    assert main(["compare", str(first), "--out", str(tmp_path / "out2")]) != EXIT_OK
    assert "no finished test evaluation" in capsys.readouterr().err


def test_zero_fill_at_twice_the_budget_stands_in_for_a_missing_zero_fill_long(tmp_path):
    """zero-fill at 1200 steps per stage trains as zero-fill-long at 600 (``test_methods``): merged with a 600-step
    folder, its cells stand in as zero-fill-long for the seeds where a third method can pair with them, once, and the
    page says so; with no such partner (zero-fill alone at two budgets), nothing stands in."""
    doubled = write_experiment(tmp_path / "doubled", {"zero-fill": 0.66}, budgets=(1200,), steps=50)
    plain = write_experiment(tmp_path / "plain", {"ours": 0.7, "zero-fill": 0.6}, seeds=(0,))
    out = tmp_path / "merged"

    assert main(["compare", str(plain), str(doubled), "--out", str(out)]) == EXIT_OK

    rows = {(r["method"], r["budget"], r["seed"]): r for r in read_rows(out / "comparison.csv")}
    assert sorted(rows) == sorted([("ours", "600", "0"), ("zero-fill", "600", "0"), ("zero-fill", "1200", "0"),
                                   ("zero-fill", "1200", "1"), ("zero-fill-long", "600", "0")])
    assert rows[("zero-fill-long", "600", "0")]["per_case_dice"] == rows[("zero-fill", "1200", "0")]["per_case_dice"]
    assert rows[("zero-fill-long", "600", "0")]["seconds"] == ""
    page = (out / "comparison.md").read_text()
    assert ("`zero-fill-long` at 600 steps per stage (r0.5, seed 0): the `zero-fill` cells at 1200 steps stand in for "
            "it (the same training; 1 of the 5 cells") in page
    assert "| ours - zero-fill-long |" in page
    assert "wall time 4.0 min (sum of the cells)" in page  # 4 trained cells of 60 s; the stand-in adds none

    longer = write_experiment(tmp_path / "longer", {"zero-fill": 0.7}, budgets=(2400,), steps=50)
    assert main(["compare", str(doubled), str(longer), "--out", str(tmp_path / "alone")]) == EXIT_OK
    assert {r["method"] for r in read_rows(tmp_path / "alone" / "comparison.csv")} == {"zero-fill"}
