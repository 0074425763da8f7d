"""The experiment comparison: per-case means in the CSV, intervals and paired differences equal to the bootstrap
on those means, ablations against ``ours``, the learning curve and its convergence rule, the scored subset."""

from __future__ import annotations

import csv
import json
import zlib

import numpy as np
import pytest

from AllStageTraining.constants import REGIONS, SCENARIOS
from AllStageTraining.evaluation.bootstrap import bootstrap_mean, paired_difference
from AllStageTraining.evaluation.comparison import (
    CellGroups, CellKey, CellResult, GIVEN_GROUPS, GridDescription, case_means, convergence, keyed_values,
    table_intervals, write_comparison,
)
from AllStageTraining.evaluation.tables import ScenarioTable

CASES = [f"case{i}" for i in range(6)]


def table(method: str, level: float, seed: int, spread: float = 0.05) -> ScenarioTable:
    """Dice around ``level`` for every case, scenario and region (reproducible for method and seed)."""
    rng = np.random.default_rng(zlib.crc32(repr((method, seed, level)).encode()))
    out = ScenarioTable(method)
    case_offsets = {c: 0.04 * (i - 2.5) for i, c in enumerate(CASES)}  # what the methods share: harder cases
    for case in CASES:
        for scenario in SCENARIOS:
            out.add(case, scenario.short, {r: (float(np.clip(level + case_offsets[case] + rng.normal(0, spread), 0, 1)),
                                              5.0) for r in REGIONS})
    return out


def cell(method, seed, level, setting="r0.5", budget=None) -> CellResult:
    return CellResult(CellKey(setting, seed, method, budget), table(method, level, seed),
                      {"table": f"{setting}_s{seed}/{method}/eval/table.md"}, seconds=12.0)


def _signed(interval) -> str:
    points = lambda v: f"{round(100 * v, 1) + 0.0:+.1f}"  # noqa: E731
    return f"{points(interval.mean)} [{points(interval.low)}, {points(interval.high)}]"


def test_case_means_average_the_scenarios_of_each_case():
    t = table("ours", 0.6, 0)
    means = case_means(t)
    for case in CASES:
        for region in REGIONS:
            expected = np.mean([t.value(case, s.short, region) for s in SCENARIOS])
            assert means[case][region] == pytest.approx(expected)
        assert means[case]["mean"] == pytest.approx(np.mean([means[case][r] for r in REGIONS]))
    # over complete tables, the mean of the per-case means is the literature's mean over scenarios
    assert np.mean([m["mean"] for m in means.values()]) == pytest.approx(t.overall_means()["mean"])


def test_intervals_and_paired_differences_are_the_bootstrap_of_the_per_case_means(tmp_path):
    levels = {"ours": 0.70, "zero-fill": 0.60, "ours-no-da": 0.69}
    cells = [cell(m, seed, level) for seed in (0, 1) for m, level in levels.items()]
    grid = GridDescription(methods=tuple(levels), settings={"r0.5": "ratio 0.5"}, seeds=(0, 1),
                           command="python -m AllStageTraining experiment --x", grid_seconds=72.0)
    rows = write_comparison(tmp_path / "comparison", cells, grid)

    with (tmp_path / "comparison.csv").open() as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) == 6 and {r["scored"] for r in written} == {"test"}
    for row, c in zip(written, sorted(cells, key=lambda c: (c.key.seed, list(levels).index(c.key.method)))):
        assert (row["method"], int(row["seed"])) == (c.key.method, c.key.seed)
        per_case = json.loads(row["per_case_dice"])
        assert set(per_case) == set(CASES)
        for case, values in case_means(c.table).items():
            assert per_case[case]["mean"] == pytest.approx(values["mean"], abs=1e-6)
        assert float(row["dice_mean"]) == pytest.approx(c.table.overall_means()["mean"])

    markdown = (tmp_path / "comparison.md").read_text()
    assert "Command: `python -m AllStageTraining experiment --x`" in markdown and "scored on the test cases" in markdown
    by_method = {m: [c for c in cells if c.key.method == m] for m in levels}
    for method, mine in by_method.items():
        for part in ("WT", "mean"):
            interval = bootstrap_mean(keyed_values(mine, part))
            assert interval.n == 12 and interval.n_seeds == 2
            assert interval.format() in markdown
    # paired to zero-fill: the 10-point lead excludes zero (bold); the ablation against ours
    lead = paired_difference(keyed_values(by_method["ours"], "mean"), keyed_values(by_method["zero-fill"], "mean"))
    assert lead.excludes_zero and f"| ours | zero-fill | " in markdown and f"**{_signed(lead)}**" in markdown
    ablation = paired_difference(keyed_values(by_method["ours-no-da"], "mean"), keyed_values(by_method["ours"], "mean"))
    assert "| ours-no-da | ours |" in markdown and _signed(ablation) in markdown
    assert "zero-fill-long" not in markdown  # no such cells: no such comparison
    assert "Grid wall time (sum of the cells): 72 s" in markdown
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "comparison_curve.png").exists()


def test_the_convergence_rule_finds_the_smallest_budget_whose_doubling_changes_less_than_two_points(tmp_path):
    def grid_cells(levels: dict[int, float]):
        return [cell("zero-fill", 0, level, setting="r0", budget=b) for b, level in levels.items()]

    converging = grid_cells({100: 0.50, 200: 0.60, 400: 0.605})
    groups = CellGroups(converging)
    rule = convergence(groups, [100, 200, 400])
    changes = {s["budget"]: 100 * s["change"].mean for s in rule["steps"]}
    assert set(changes) == {100, 200} and abs(changes[100]) >= 2 and abs(changes[200]) < 2
    assert rule["converged_at"] == 200

    grid = GridDescription(methods=("zero-fill",), settings={"r0": "ratio 0"}, seeds=(0,), budgets=(100, 200, 400),
                           subset="val")
    write_comparison(tmp_path / "comparison-val", converging, grid)
    markdown = (tmp_path / "comparison-val.md").read_text()
    assert "scored on the validation cases" in markdown
    assert "| zero-fill | " + " | ".join(groups.mean("r0", b, "zero-fill", "mean").format() for b in (100, 200, 400)) \
        in markdown
    assert "**Converged at 200 steps per stage.**" in markdown
    assert (tmp_path / "comparison-val_curve.png").read_bytes()[:4] == b"\x89PNG"

    still_rising = grid_cells({100: 0.40, 200: 0.50, 400: 0.60})
    assert convergence(CellGroups(still_rising), [100, 200, 400])["converged_at"] is None
    write_comparison(tmp_path / "rising", still_rising, grid)
    assert "**Not reached** within the budgets run (100, 200, 400 steps per stage)." in (tmp_path / "rising.md").read_text()
    no_double = convergence(CellGroups(grid_cells({100: 0.4, 300: 0.5})), [100, 300])
    assert no_double["steps"] == [] and no_double["converged_at"] is None


def test_one_evaluations_intervals_rest_on_its_case_means_and_its_full_set_scores():
    better, worse = table("a", 0.8, 0), table("b", 0.7, 0)
    intervals = table_intervals(better, against=worse)
    means = case_means(better)
    assert intervals["scenarios"]["WT"] == bootstrap_mean({(0, c): v["WT"] for c, v in means.items()})
    full = {(0, c): better.value(c, "FC12", "TC") for c in CASES}
    assert intervals["full set"]["TC"] == bootstrap_mean(full)
    gap = intervals["difference scenarios"]["mean"]
    assert gap.excludes_zero and 0.05 < gap.mean < 0.15  # the paired differences see the 0.1 level gap
    assert set(table_intervals(better)) == {"scenarios", "full set"}


def test_the_table_by_sequences_given_separates_where_a_method_gains_from_where_it_loses(tmp_path):
    base = {seed: table("zero-fill-long", 0.6, seed) for seed in (0, 1)}
    ours = {}
    for seed, reference in base.items():  # ours: 10 points below on one sequence, 10 above with all four
        ours[seed] = ScenarioTable("ours")
        for case in CASES:
            for s in SCENARIOS:
                shift = {1: -0.1, 4: 0.1}.get(sum(s.mask), 0.0)
                ours[seed].add(case, s.short, {r: (reference.value(case, s.short, r) + shift, 5.0) for r in REGIONS})
    cells = [CellResult(CellKey("r0.5", seed, name, None), t, {})
             for seed in (0, 1) for name, t in (("ours", ours[seed]), ("zero-fill-long", base[seed]))]
    grid = GridDescription(methods=("ours", "zero-fill-long"), settings={"r0.5": "ratio 0.5"}, seeds=(0, 1))
    write_comparison(tmp_path / "comparison", cells, grid)

    page = (tmp_path / "comparison.md").read_text().splitlines()
    header = "| Method | 1 sequence | 2 sequences | 3 sequences | all 4 | FLAIR and T1ce | FLAIR or T1ce missing |"
    assert header in page
    by_given = page[page.index(header):]
    row = next(line for line in by_given if line.startswith("| ours - zero-fill-long |")).split(" | ")[1:]
    assert row[0].startswith("**-10.0 [-10.0, -10.0]") and row[1] == row[2] == "+0.0 [+0.0, +0.0]"
    assert row[3].startswith("**+10.0 [+10.0, +10.0]")
    # FLAIR and T1ce given: FC, FC1, FC2 (+0) and FC12 (+10); missing: the 4 single sequences (-10) of 11 sets
    assert row[4].startswith("**+2.5 [+2.5, +2.5]") and row[5].startswith("**-3.6 [-3.6, -3.6]")
    singles = keyed_values([c for c in cells if c.key.method == "ours"], "mean", GIVEN_GROUPS["1 sequence"])
    assert next(line for line in by_given if line.startswith("| ours | ")).split(" | ")[1] == bootstrap_mean(
        singles).format()
    per_scenario = page[page.index("| Scenario | ours - zero-fill-long |"):]
    rows = dict(tuple(cell.strip() for cell in line.strip("|").split("|")) for line in per_scenario[2:17])
    assert list(rows) == [s.short for s in SCENARIOS]
    assert rows["F"].startswith("**-10.0") and rows["FC"] == "+0.0 [+0.0, +0.0]"
    assert rows["FC12"].startswith("**+10.0")


@pytest.mark.parametrize("codes, warned", [
    (("0123456789ab", "0123456789ab"), False),
    (("0123456789ab", "ba9876543210"), True),
    (("0123456789ab+modified", "0123456789ab+modified"), True),  # the two checkouts' edits may differ
    ((None, None), True),
])
def test_the_page_warns_unless_every_cell_recorded_one_unmodified_commit(tmp_path, codes, warned):
    cells = [CellResult(CellKey("r0.5", seed, "ours", None), table("ours", 0.7, seed), {}, code=code)
             for seed, code in enumerate(codes)]
    grid = GridDescription(methods=("ours",), settings={"r0.5": "ratio 0.5"}, seeds=(0, 1))
    write_comparison(tmp_path / "comparison", cells, grid)
    page = (tmp_path / "comparison.md").read_text()
    assert ("Code: the cells were not all made by one recorded, unmodified commit" in page) == warned


def test_cells_that_scored_one_scenario_get_neither_the_by_sequences_nor_the_per_scenario_table(tmp_path):
    cells = []
    for seed in (0, 1):
        for method, level in (("ours", 0.7), ("zero-fill", 0.6)):
            full = ScenarioTable(method)
            for case in CASES:
                full.add(case, "FC12", {r: (level, 5.0) for r in REGIONS})
            cells.append(CellResult(CellKey("r0.5", seed, method, None), full, {}))
    grid = GridDescription(methods=("ours", "zero-fill"), settings={"r0.5": "ratio 0.5"}, seeds=(0, 1))
    write_comparison(tmp_path / "comparison", cells, grid)
    page = (tmp_path / "comparison.md").read_text()
    assert "| ours | zero-fill | **+10.0" in page  # the difference over the one scenario is still there
    assert "By the sequences given" not in page and "Per scenario" not in page


def test_the_groups_compare_each_method_with_each_baseline_the_longer_baseline_with_the_shorter_and_ablations():
    from AllStageTraining.evaluation.comparison import _compared_pairs

    assert _compared_pairs(("ours", "zero-fill", "zero-fill-long", "ours-no-distill")) == [
        ("ours", "zero-fill"), ("ours-no-distill", "zero-fill"), ("ours", "zero-fill-long"),
        ("ours-no-distill", "zero-fill-long"), ("zero-fill-long", "zero-fill"), ("ours-no-distill", "ours")]
    # each ablation against the method it takes one part off, where both are there: the m3ae-style ladder by rungs
    ladder = ("m3ae-style", "m3ae-style-no-init", "m3ae-style-no-mae", "ours-display-mae")
    assert len(set(_compared_pairs(ladder))) == len(_compared_pairs(ladder))  # no pair twice
    assert _compared_pairs(ladder)[-1] == ("m3ae-style-no-mae", "m3ae-style-no-init")
    assert ("m3ae-style-no-init", "m3ae-style") in _compared_pairs(ladder)
    assert ("ours-display-mae", "ours") not in _compared_pairs(("ours", "ours-display-mae"))  # the default: not one
