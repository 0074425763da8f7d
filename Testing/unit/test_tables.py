"""ScenarioTable arithmetic, file round trips and the figures, on hand-made scores."""

import csv
import json
import math

import numpy as np
import pytest

from AllStageTraining.constants import REGIONS, SCENARIOS
from AllStageTraining.evaluation.figures import heatmap, method_comparison
from AllStageTraining.evaluation.tables import ScenarioTable


def scores(wt, tc, et, hd=(1.0, 2.0, 3.0)):
    return {"WT": (wt, hd[0]), "TC": (tc, hd[1]), "ET": (et, hd[2])}


def full_table(offset: float = 0.0, method: str = "m") -> ScenarioTable:
    """Two cases x 15 scenarios; case b scores 0.1 lower than case a; Dice grows with the scenario index."""
    table = ScenarioTable(method)
    for i, scenario in enumerate(SCENARIOS):
        base = 0.5 + 0.02 * i + offset
        table.add("a", scenario.short, scores(base + 0.1, base, base - 0.1, hd=(i, 2 * i, 3 * i)))
        table.add("b", scenario.short, scores(base, base - 0.1, base - 0.2, hd=(i + 2, 2 * i + 2, 3 * i + 2)))
    return table


def test_means_over_cases_scenarios_and_regions():
    table = full_table()
    dice = table.mean_table("dice")
    assert dice.shape == (len(SCENARIOS), len(REGIONS))
    i = 4  # C2
    base = 0.5 + 0.02 * i
    assert dice[i] == pytest.approx([base + 0.05, base - 0.05, base - 0.15])
    assert table.mean_table("hd95")[i] == pytest.approx([i + 1, 2 * i + 1, 3 * i + 1])
    assert table.scenario_means("dice")[i] == pytest.approx(base - 0.05)
    overall = table.overall_means("dice")
    mean_base = 0.5 + 0.02 * 7  # mean of i over 0..14 is 7
    assert overall["WT"] == pytest.approx(mean_base + 0.05)
    assert overall["TC"] == pytest.approx(mean_base - 0.05)
    assert overall["ET"] == pytest.approx(mean_base - 0.15)
    assert overall["mean"] == pytest.approx(mean_base - 0.05)
    assert table.n_cases().tolist() == [2] * 15
    assert table.case_ids == ["a", "b"]


def test_overall_mean_is_over_scenarios_not_over_all_entries():
    # scenario "2" has three cases, "FC12" one: the overall mean weighs the two scenarios equally
    table = ScenarioTable()
    for case in ("a", "b", "c"):
        table.add(case, "2", scores(0.2, 0.2, 0.2))
    table.add("a", "FC12", scores(1.0, 1.0, 1.0))
    assert table.overall_means("dice")["WT"] == pytest.approx(0.6)
    dice = table.mean_table("dice")
    assert np.isnan(dice[1]).all()  # "C" was never scored
    assert np.isnan(table.scenario_means("dice")[1])
    assert table.n_cases().tolist() == [3] + [0] * 13 + [1]


def test_add_rejects_unknown_scenario_variant_and_incomplete_scores():
    table = ScenarioTable()
    with pytest.raises(ValueError, match="unknown scenario"):
        table.add("a", "FX", scores(1, 1, 1))
    with pytest.raises(ValueError, match="variant"):
        table.add("a", "F", scores(1, 1, 1), variant="smoothed")
    with pytest.raises(ValueError, match="ET"):
        table.add("a", "F", {"WT": (1, 0), "TC": (1, 0)})


def test_csv_round_trip_keeps_every_value(tmp_path):
    table = full_table()
    table.add("a", "FC12", scores(0.123456789012, 0.5, 1 / 3, hd=(math.pi, 0.0, 373.13)), variant="postprocessed")
    path = table.to_csv(tmp_path / "table.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 15 * 3 + 3
    back = ScenarioTable.from_csv(path, method="again")
    assert back.method == "again"
    assert back.variants == ["raw", "postprocessed"]
    for variant in back.variants:
        for metric in ("dice", "hd95"):
            np.testing.assert_array_equal(back.mean_table(metric, variant), table.mean_table(metric, variant))
    assert back.value("a", "FC12", "ET", "dice", "postprocessed") == 1 / 3
    assert back.value("a", "FC12", "WT", "hd95", "postprocessed") == math.pi


def test_from_csv_rejects_a_summary_csv(tmp_path):
    table = full_table()
    path = table.to_summary_csv(tmp_path / "table_summary.csv")
    with pytest.raises(ValueError, match="not a per-case score table"):
        ScenarioTable.from_csv(path)


def test_merge_combines_runs():
    first, second = ScenarioTable(), ScenarioTable()
    first.add("a", "F", scores(0.4, 0.4, 0.4))
    second.add("b", "F", scores(0.8, 0.8, 0.8))
    first.merge(second)
    assert first.case_ids == ["a", "b"]
    assert first.mean_table()[SCENARIOS.index(next(s for s in SCENARIOS if s.short == "F"))] == pytest.approx([0.6] * 3)


def test_markdown_summary_and_files(tmp_path):
    table = full_table()
    for scenario in SCENARIOS:
        table.add("a", scenario.short, scores(0.9, 0.8, 0.75), variant="postprocessed")
        table.add("b", scenario.short, scores(0.9, 0.8, 0.65), variant="postprocessed")
    text = table.to_markdown()
    lines = text.splitlines()
    dice_rows = [l for l in lines if l.startswith("| ")][: 1 + 15 + 1]  # header, 15 scenarios, mean
    assert "ET (pp)" in dice_rows[0]
    assert [r.split("|")[1].strip() for r in dice_rows[1:16]] == [s.short for s in SCENARIOS]
    c2 = dice_rows[1 + 4].split("|")
    assert c2[2].strip() == "T1ce + T2"
    assert [c.strip() for c in c2[3:8]] == ["63.00", "53.00", "43.00", "70.00", "53.00"]
    assert "**Mean**" in dice_rows[16] and "**70.00**" in dice_rows[16]  # mean ET (pp) over scenarios
    assert "HD95 (mm)" in text

    paths = table.write(tmp_path / "eval", extra={"note": "x"})
    assert set(paths) == {"table.csv", "table_summary.csv", "table.md", "summary.json", "heatmap.png"}
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["note"] == "x"
    assert summary["n_cases"] == 2 and summary["n_scenarios_scored"] == 15
    assert summary["mean_dice"]["WT"] == pytest.approx(0.5 + 0.14 + 0.05)
    assert summary["mean_dice_postprocessed"]["ET"] == pytest.approx(0.70)
    assert summary["per_scenario"]["C2"]["dice"]["TC"] == pytest.approx(0.53)
    assert paths["heatmap.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with paths["table_summary.csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 16 and rows[15]["scenario"] == "mean"
    assert float(rows[4]["dice_WT"]) == pytest.approx(0.63)


def test_figures_are_written(tmp_path):
    import matplotlib.image

    png = heatmap(full_table(), tmp_path / "hd.png", metric="hd95")
    assert matplotlib.image.imread(png).shape[0] > 400
    tables = {"ours": full_table(0.1, "ours"), "zero-fill": full_table(0.0, "zero-fill")}
    flat = method_comparison(tables, tmp_path / "methods.png")
    by_ratio = method_comparison({m: {0.0: t, 0.5: t} for m, t in tables.items()}, tmp_path / "ratios.png")
    for png in (flat, by_ratio):
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image[..., :3].std() > 0.05  # not blank
