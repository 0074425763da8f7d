"""The comparison of an experiment grid: methods x missing-data settings x seeds (x budgets), with intervals.

Every number rests on the per-case means: a case's Dice averaged over the scenarios it was scored in (per
region and over the three regions), keyed by ``(seed, case)``. Means carry a 95% bootstrap interval over the
cases and seeds (``bootstrap.bootstrap_mean``); two methods are compared by the *paired* difference over the
cases both scored (``bootstrap.paired_difference``), which cancels what the cases share.

Inputs (:func:`write_comparison`): one :class:`CellResult` per finished cell (its ScenarioTable, links to its
files, its wall time, the rows of its extra evaluations and its code) and the :class:`GridDescription`. Outputs beside
the stem it is given (``OUT/comparison`` or ``OUT/comparison-val``):

- ``<stem>.csv``: one row per cell: the mean Dice per region and overall, post-processed ET, the scored subset,
  the wall time, the code (``runtime.code_text``), the link to the cell's table and ``per_case_dice`` (JSON
  ``{case: {WT, TC, ET, mean}}``), from which the intervals over all scenarios can be recomputed (those by the
  sequences given and per scenario need the cells' tables) (:func:`comparison_rows`);
- ``<stem>.md``: the command, per setting (and budget) the means with intervals, the paired differences to the
  baselines (``methods.BASELINES``), each ablation against the method it takes one part off (``Method.ablates``:
  ``ours-no-da`` against ``ours``, ``m3ae-style-no-mae`` against ``m3ae-style-no-init``), the same by the
  sequences given (:data:`GIVEN_GROUPS`) and per scenario; with several budgets the learning curves and the
  convergence rule; the synthesis quality of ``ours`` and ``m3ae-style``; the prompt-sensitivity summaries; the
  wall time of every cell and of the grid (:func:`comparison_markdown`);
- ``<stem>.png``: the means with their interval bars; ``<stem>_curve.png`` the learning curves.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..constants import FULL_SCENARIO, MODALITIES, MODALITY_DISPLAY, REGIONS, SCENARIOS
from ..fileio import atomic_write_csv, atomic_write_text
from ..methods import BASELINES, CONVERGENCE_METHOD, SYNTHESIS_COMPARED, get_method
from .bootstrap import Interval, bootstrap_mean, paired_difference
from .tables import ScenarioTable

#: What the per-case means and the intervals are given for: the three regions and their mean.
PARTS: tuple[str, ...] = (*REGIONS, "mean")
#: The convergence rule: the smallest budget at which doubling the steps changes the mean Dice of
#: ``methods.CONVERGENCE_METHOD`` in ``CONVERGENCE_SETTING`` by less than ``CONVERGENCE_POINTS`` Dice points.
CONVERGENCE_SETTING, CONVERGENCE_POINTS = "r0", 2.0
SUBSET_NAMES: dict[str, str] = {"test": "test", "val": "validation"}
#: Column groups of the "by the sequences given" table (scenario short names): how many sequences are given, and
#: whether both sequences that show the tumour best (FLAIR its oedema, T1ce its enhancement) are among them.
_TUMOUR_PAIR = (MODALITIES.index("flair"), MODALITIES.index("t1ce"))
COUNT_GROUPS: tuple[str, ...] = ("1 sequence", "2 sequences", "3 sequences", "all 4")
GIVEN_GROUPS: dict[str, frozenset[str]] = {
    **{name: frozenset(s.short for s in SCENARIOS if sum(s.mask) == n) for n, name in enumerate(COUNT_GROUPS, 1)},
    "FLAIR and T1ce": frozenset(s.short for s in SCENARIOS if all(s.mask[i] for i in _TUMOUR_PAIR)),
    "FLAIR or T1ce missing": frozenset(s.short for s in SCENARIOS if not all(s.mask[i] for i in _TUMOUR_PAIR)),
}


@dataclass(frozen=True)
class CellKey:
    """One cell: the missing-data setting's tag (``r0.5``, ``rates0.6-0.4-0.2-0.8``), the seed, the method and
    the budget (steps per stage; None: the configuration's own steps)."""

    setting: str
    seed: int
    method: str
    budget: int | None = None


@dataclass
class CellResult:
    """What the comparison reads of one finished cell. links: ``{"table" | "synthesis" | "prompts": path}``
    relative to the comparison's folder; synthesis / prompts: the rows of ``synthesis.csv`` / ``prompts.csv``
    (None when that evaluation was not made); seconds: the cell's wall time (None when unknown); code: the code
    that trained and scored it (``runtime.code_text`` of its ``runtime.json``; None when not recorded)."""

    key: CellKey
    table: ScenarioTable
    links: Mapping[str, str]
    seconds: float | None = None
    synthesis: list[dict] | None = None
    prompts: list[dict] | None = None
    code: str | None = None


@dataclass(frozen=True)
class GridDescription:
    """What the grid compares, for the headings. settings: ``{tag: display label}`` in table order; budgets:
    the budgets in order (``(None,)``: the configuration's steps); subset: "test" or "val" (what was scored);
    command: the command line that made the grid; grid_seconds: the sum of the cells' wall times; sources: for a
    comparison merged from experiment folders (``pipeline.compare``), each folder (``FOLDER[@METHOD,...]``)
    with the command lines that ran it; notes: lines about cells taken from another cell (``pipeline.compare``)."""

    methods: tuple[str, ...]
    settings: Mapping[str, str]
    seeds: tuple[int, ...]
    budgets: tuple[int | None, ...] = (None,)
    subset: str = "test"
    command: str | None = None
    grid_seconds: float | None = None
    sources: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- statistics
def case_means(table: ScenarioTable, variant: str = "raw", scenarios: frozenset[str] | None = None
               ) -> dict[str, dict[str, float]]:
    """``{case: {WT, TC, ET, mean}}``: each case's Dice averaged over the scenarios it was scored in (only those
    named in ``scenarios``, short names, when given)."""
    out = {}
    for case in table.case_ids:
        shorts = [s.short for s in SCENARIOS
                  if table.has(case, s.short, variant) and (scenarios is None or s.short in scenarios)]
        if not shorts:
            continue
        means = {r: float(np.mean([table.value(case, s, r, "dice", variant) for s in shorts])) for r in REGIONS}
        out[case] = {**means, "mean": float(np.mean([means[r] for r in REGIONS]))}
    return out


def table_intervals(table: ScenarioTable, against: ScenarioTable | None = None) -> dict[str, dict[str, Interval]]:
    """One evaluation's means with their 95% bootstrap intervals over its cases: ``"scenarios"``, each case's
    Dice averaged over its scenarios (per region and overall, :data:`PARTS`), and ``"full set"``, its Dice with
    all four sequences (when scored); with ``against`` (another evaluation of the same cases), the paired
    differences ``table - against`` of both under ``"difference ..."`` keys."""
    full = FULL_SCENARIO.short

    def parts(t: ScenarioTable) -> dict[str, dict[tuple[int, str], float]]:
        means = case_means(t)
        out = {"scenarios": {p: {(0, c): v[p] for c, v in means.items()} for p in PARTS}}
        scored = [c for c in t.case_ids if t.has(c, full)]
        if scored:
            values = {r: {(0, c): t.value(c, full, r) for c in scored} for r in REGIONS}
            out["full set"] = {**values, "mean": {k: float(np.mean([values[r][k] for r in REGIONS]))
                                                  for k in values[REGIONS[0]]}}
        return out

    mine = parts(table)
    out = {group: {p: bootstrap_mean(v) for p, v in values.items()} for group, values in mine.items()}
    if against is not None:
        theirs = parts(against)
        out |= {f"difference {group}": {p: paired_difference(v, theirs[group][p]) for p, v in values.items()}
                for group, values in mine.items() if group in theirs}
    return out


def keyed_values(cells: Sequence[CellResult], part: str, scenarios: frozenset[str] | None = None
                 ) -> dict[tuple[int, str], float]:
    """``{(seed, case): per-case mean of part}`` over ``cells`` (the cells of one method, setting and budget);
    ``scenarios``: only those scenarios (short names)."""
    return {(cell.key.seed, case): values[part]
            for cell in cells for case, values in case_means(cell.table, scenarios=scenarios).items()}


class CellGroups:
    """The cells indexed by (setting, budget, method), with their per-case values and intervals computed once."""

    def __init__(self, cells: Sequence[CellResult]):
        self.cells: dict[tuple[str, int | None, str], list[CellResult]] = {}
        for cell in cells:
            self.cells.setdefault((cell.key.setting, cell.key.budget, cell.key.method), []).append(cell)
        self._values: dict[tuple, dict] = {}
        self._intervals: dict[tuple, Interval] = {}

    def values(self, setting: str, budget, method: str, part: str, scenarios: frozenset[str] | None = None
               ) -> dict[tuple[int, str], float]:
        """Per-(seed, case) means (``scenarios``: over those scenarios only)."""
        key = (setting, budget, method, part, scenarios)
        if key not in self._values:
            self._values[key] = keyed_values(self.cells.get((setting, budget, method), []), part, scenarios)
        return self._values[key]

    def has(self, setting: str, budget, method: str) -> bool:
        return (setting, budget, method) in self.cells

    def mean(self, setting: str, budget, method: str, part: str, scenarios: frozenset[str] | None = None
             ) -> Interval:
        key = ("mean", setting, budget, method, part, scenarios)
        if key not in self._intervals:
            self._intervals[key] = bootstrap_mean(self.values(setting, budget, method, part, scenarios))
        return self._intervals[key]

    def difference(self, setting: str, budget, method: str, reference: str, part: str,
                   scenarios: frozenset[str] | None = None) -> Interval:
        """``method - reference`` paired over the (seed, case) keys both have."""
        key = ("difference", setting, budget, method, reference, part, scenarios)
        if key not in self._intervals:
            self._intervals[key] = paired_difference(self.values(setting, budget, method, part, scenarios),
                                                     self.values(setting, budget, reference, part, scenarios))
        return self._intervals[key]


def convergence(groups: CellGroups, budgets: Sequence[int | None], *, method: str = CONVERGENCE_METHOD,
                setting: str = CONVERGENCE_SETTING, points: float = CONVERGENCE_POINTS) -> dict:
    """The convergence rule on ``method`` in ``setting``: for every budget b whose double 2b was also run, the
    change of the mean Dice from b to 2b (paired over cases and seeds); ``converged_at`` is the smallest b whose
    change is below ``points`` Dice points in absolute value (None: not reached, or not applicable)."""
    run = sorted(b for b in budgets if b is not None and groups.has(setting, b, method))
    steps = []
    for budget in run:
        if 2 * budget in run:
            change = paired_difference(groups.values(setting, 2 * budget, method, "mean"),
                                       groups.values(setting, budget, method, "mean"))
            steps.append({"budget": budget, "doubled": 2 * budget, "change": change,
                          "below": abs(100.0 * change.mean) < points})
    converged = next((s["budget"] for s in steps if s["below"]), None)
    return {"method": method, "setting": setting, "points": points, "budgets": run, "steps": steps,
            "converged_at": converged}


# --------------------------------------------------------------------------------------------- formatting
def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100.0 * value:.1f}"


def _signed(interval: Interval) -> str:
    """``+3.2 [+0.5, +6.1]`` in Dice points, bold where it counts (``Interval.format_difference``)."""
    return interval.format_difference()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _budget_text(budget: int | None) -> str:
    return "the configuration's steps" if budget is None else f"{budget} steps per stage"


def _sections(grid: GridDescription) -> list[tuple[str, int | None, str]]:
    """(setting tag, budget, heading) of every table section, in order."""
    several = len(grid.budgets) > 1
    return [(tag, budget, label + (f", {_budget_text(budget)}" if several else ""))
            for tag, label in grid.settings.items() for budget in grid.budgets]


def _order(grid: GridDescription):
    settings, budgets, methods = list(grid.settings), list(grid.budgets), list(grid.methods)
    return lambda cell: (settings.index(cell.key.setting), budgets.index(cell.key.budget), cell.key.seed,
                         methods.index(cell.key.method))


# --------------------------------------------------------------------------------------------- CSV rows
def comparison_rows(cells: Sequence[CellResult], grid: GridDescription) -> list[dict]:
    """One flat row per cell (the CSV), ordered by setting, budget, seed and method; ``per_case_dice`` holds
    the per-case means over the scenarios as JSON, so that the intervals over all scenarios can be recomputed
    from the CSV alone."""
    rows = []
    for cell in sorted(cells, key=_order(grid)):
        means, per_case = cell.table.overall_means("dice"), case_means(cell.table)
        post = (cell.table.overall_means("dice", "postprocessed")["ET"] if "postprocessed" in cell.table.variants
                else math.nan)
        rows.append({"setting": cell.key.setting, "setting_label": grid.settings.get(cell.key.setting, ""),
                     "seed": cell.key.seed, "budget": "" if cell.key.budget is None else cell.key.budget,
                     "method": cell.key.method, "scored": grid.subset,
                     **{f"dice_{r}": means[r] for r in REGIONS}, "dice_mean": means["mean"],
                     "dice_ET_postprocessed": post, "n_cases": len(per_case),
                     "seconds": "" if cell.seconds is None else round(cell.seconds, 1), "code": cell.code or "",
                     "table": cell.links.get("table", ""),
                     "per_case_dice": json.dumps({c: {p: round(v[p], 6) for p in PARTS} for c, v in per_case.items()})})
    return rows


# --------------------------------------------------------------------------------------------- Markdown
def _means_table(groups: CellGroups, grid: GridDescription, tag: str, budget) -> list[str]:
    lines = ["| Method | WT | TC | ET | Mean | Cases (seeds) |", "|---|---:|---:|---:|---:|---:|"]
    for method in grid.methods:
        if not groups.has(tag, budget, method):
            lines.append(f"| {method} | – | – | – | – | 0 |")
            continue
        intervals = [groups.mean(tag, budget, method, part) for part in PARTS]
        lines.append(f"| {method} | " + " | ".join(i.format() for i in intervals)
                     + f" | {intervals[-1].n} ({intervals[-1].n_seeds}) |")
    return lines


def _difference_table(groups: CellGroups, tag: str, budget, pairs: list[tuple[str, str]], heading: str) -> list[str]:
    """Paired differences ``method - reference`` for each pair whose cells exist."""
    pairs = [(m, r) for m, r in pairs if m != r and groups.has(tag, budget, m) and groups.has(tag, budget, r)]
    if not pairs:
        return []
    lines = ["", heading, "", "| Method | minus | WT | TC | ET | Mean | Pairs |", "|---|---|---:|---:|---:|---:|---:|"]
    for method, reference in pairs:
        differences = [groups.difference(tag, budget, method, reference, part) for part in PARTS]
        lines.append(f"| {method} | {reference} | " + " | ".join(_signed(d) for d in differences)
                     + f" | {differences[-1].n} |")
    return lines


def _settings_sections(groups: CellGroups, grid: GridDescription) -> list[str]:
    lines = []
    ablations = _ablation_pairs(grid.methods)
    for tag, budget, heading in _sections(grid):
        if not any(groups.has(tag, budget, m) for m in grid.methods):
            continue
        lines += [f"## {heading}", "", *_means_table(groups, grid, tag, budget)]
        for reference in BASELINES:
            lines += _difference_table(groups, tag, budget, [(m, reference) for m in grid.methods],
                                       f"Paired difference to `{reference}` (Dice points, method minus {reference}):")
        lines += _difference_table(groups, tag, budget, ablations,
                                   "Ablations: paired difference to the method each takes one part off (Dice points; "
                                   "negative: the part removed was helping):")
        methods = [m for m in grid.methods if groups.has(tag, budget, m)]
        scored = _scored_scenarios(groups, tag, budget, methods)
        lines += _given_table(groups, tag, budget, methods, scored)
        lines += _scenario_table(groups, tag, budget, methods, scored)
        lines.append("")
    return lines


def _scored_scenarios(groups: CellGroups, tag: str, budget, methods: Sequence[str]) -> set[str]:
    return {s.short for s in SCENARIOS for m in methods for cell in groups.cells[(tag, budget, m)]
            for case in cell.table.case_ids if cell.table.has(case, s.short)}


def _ablation_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """(ablation, the method it takes one part off: ``Method.ablates``) for each ablation among ``methods``."""
    return [(m, get_method(m).ablates) for m in methods if get_method(m).ablates is not None]


def _compared_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """(method, reference): every method that is not a baseline against each baseline, each baseline against
    the baselines before it in ``methods.BASELINES`` (``zero-fill-long - zero-fill``: what the longer training
    alone gives), each ablation against the method it takes one part off where both are there."""
    pairs = [(m, r) for r in BASELINES if r in methods for m in methods if m not in BASELINES]
    pairs += [(m, r) for i, m in enumerate(BASELINES) if m in methods for r in BASELINES[:i] if r in methods]
    pairs += [(m, r) for m, r in _ablation_pairs(methods) if r in methods]
    return list(dict.fromkeys(pairs))  # an ablation of a baseline (m3ae-style-no-init) is paired with it once


def _given_table(groups: CellGroups, tag: str, budget, methods: Sequence[str], scored: set[str]) -> list[str]:
    """Mean Dice of ``methods`` over the scenario groups of :data:`GIVEN_GROUPS` (1, 2, 3, 4 sequences; FLAIR and
    T1ce given or not) among the ``scored`` scenarios, and the paired differences of :func:`_compared_pairs`;
    empty when the cells scored one number of sequences only."""
    if sum(1 for name in COUNT_GROUPS if GIVEN_GROUPS[name] & scored) < 2:
        return []
    columns = {name: shorts for name, shorts in GIVEN_GROUPS.items() if shorts & scored}
    lines = ["", "By the sequences given (mean Dice over those scenarios; differences paired):", "",
             "| Method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {m} | " + " | ".join(groups.mean(tag, budget, m, "mean", c).format() for c in columns.values())
              + " |" for m in methods]
    lines += [f"| {m} - {r} | " + " | ".join(_signed(groups.difference(tag, budget, m, r, "mean", c))
                                            for c in columns.values()) + " |" for m, r in _compared_pairs(methods)]
    return lines


def _scenario_table(groups: CellGroups, tag: str, budget, methods: Sequence[str], scored: set[str]) -> list[str]:
    """Per ``scored`` scenario, the paired differences of :func:`_compared_pairs` (mean Dice points over the
    cases); empty with one scenario or no pair."""
    pairs = _compared_pairs(methods)
    scored = [s.short for s in SCENARIOS if s.short in scored]
    if len(scored) < 2 or not pairs:
        return []
    lines = ["", "Per scenario (the sequences given; paired differences, Dice points):", "",
             "| Scenario | " + " | ".join(f"{m} - {r}" for m, r in pairs) + " |", "|---|" + "---:|" * len(pairs)]
    lines += [f"| {short} | " + " | ".join(_signed(groups.difference(tag, budget, m, r, "mean", frozenset([short])))
                                          for m, r in pairs) + " |" for short in scored]
    return lines


def _curve_sections(groups: CellGroups, grid: GridDescription) -> list[str]:
    """Learning-curve tables (one per setting) and the convergence rule; empty with one budget."""
    budgets = [b for b in grid.budgets if b is not None]
    if len(budgets) < 2:
        return []
    lines = ["## Learning curves: mean Dice (%) over the scenarios against the budget (steps per stage)", ""]
    for tag, label in grid.settings.items():
        if not any(groups.has(tag, b, m) for b in budgets for m in grid.methods):
            continue
        lines += [f"**{label}**", "", "| Method | " + " | ".join(map(str, budgets)) + " |",
                  "|---|" + "---:|" * len(budgets)]
        for method in grid.methods:
            cells = [groups.mean(tag, b, method, "mean").format() if groups.has(tag, b, method) else "–"
                     for b in budgets]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines + _convergence_lines(convergence(groups, budgets), grid) + [""]


def _convergence_lines(rule: dict, grid: GridDescription) -> list[str]:
    """The rule, each doubling's change and the verdict (converged at a budget, not reached, not applicable)."""
    label = grid.settings.get(rule["setting"], rule["setting"])
    lines = [f"**Convergence rule**: the smallest budget at which doubling the steps changes `{rule['method']}`'s "
             f"mean Dice ({label}) by less than {rule['points']:g} points."]
    if not rule["steps"]:
        reason = (f"no `{rule['method']}` cells in {label}" if not rule["budgets"]
                  else "no budget was run together with its double")
        return lines + ["", f"Not applicable: {reason}."]
    lines += [""] + [f"- {s['budget']} -> {s['doubled']} steps: {_signed(s['change'])} points (paired over cases "
                     f"and seeds){' < ' if s['below'] else ' >= '}{rule['points']:g} in absolute value"
                     for s in rule["steps"]]
    if rule["converged_at"] is None:
        lines += ["", f"**Not reached** within the budgets run ({', '.join(map(str, rule['budgets']))} steps per stage)."]
    else:
        lines += ["", f"**Converged at {rule['converged_at']} steps per stage.**"]
    return lines


def _grouped_cells(cells: Sequence[CellResult], grid: GridDescription, attribute: str):
    """``[(heading, {method: [cells]})]`` per section, only the cells whose ``attribute`` rows exist."""
    out = []
    for tag, budget, heading in _sections(grid):
        by_method: dict[str, list[CellResult]] = {}
        for cell in cells:
            if (cell.key.setting, cell.key.budget) == (tag, budget) and getattr(cell, attribute) is not None:
                by_method.setdefault(cell.key.method, []).append(cell)
        if by_method:
            out.append((heading, {m: sorted(by_method[m], key=lambda c: c.key.seed) for m in grid.methods
                                  if m in by_method}))
    return out


def _synthesis_sections(cells: Sequence[CellResult], grid: GridDescription) -> list[str]:
    from .synthesis_quality import summarize

    lines = []
    for heading, by_method in _grouped_cells(cells, grid, "synthesis"):
        shown = [m for m in SYNTHESIS_COMPARED if m in by_method]
        if not shown:
            continue
        summaries = {m: summarize([row for cell in by_method[m] for row in cell.synthesis]) for m in shown}
        header = " | ".join(f"{m}: PSNR tumour / healthy (dB) | {m}: SSIM tumour / healthy" for m in shown)
        lines += [f"**{heading}**", "", f"| missing sequence | {header} |", "|---|" + "---:|" * (2 * len(shown))]
        for name in MODALITIES:
            values = []
            for m in shown:
                s = summaries[m].get(name)
                values += (["–", "–"] if s is None else
                           [f"{s['psnr_tumour']:.2f} / {s['psnr_healthy']:.2f}",
                            f"{s['ssim_tumour']:.3f} / {s['ssim_healthy']:.3f}"])
            lines.append(f"| {MODALITY_DISPLAY[name]} | " + " | ".join(values) + " |")
        links = ", ".join(f"[{c.key.method} s{c.key.seed}]({c.links['synthesis']})" for m in by_method
                          for c in by_method[m] if "synthesis" in c.links)
        lines += ["", f"Every cell's table: {links}.", ""]
    if not lines:
        return []
    return ["## Synthesis quality of the MAE (BraSyn-style)", "",
            "Each missing sequence synthesized in every incomplete scenario evaluated (14 with all 15) from the "
            "sequences given, compared with the real one inside the tumour and in the healthy brain; pooled over "
            "the scored cases and seeds.", "", *lines]


def _prompt_advantage(rows: list[dict]) -> dict:
    """``prompt_sensitivity.diagonal_advantage`` of the rows' mean table, restricted to the scenarios evaluated
    (a grid run on fewer than 15 scenarios has a smaller square table)."""
    from .prompt_sensitivity import diagonal_advantage, mean_table

    table = mean_table(rows)
    scored = [i for i in range(len(SCENARIOS)) if np.isfinite(table[i]).any()]
    return diagonal_advantage(table[np.ix_(scored, scored)])


def _prompt_statistics(cells: Sequence[CellResult]) -> dict:
    """:func:`prompt_statistics` of the prompt-sensitivity rows of some cells."""
    per_case: dict[tuple[int, str], list[dict]] = {}
    for cell in cells:
        for row in cell.prompts:
            per_case.setdefault((cell.key.seed, row["case_id"]), []).append(row)
    return prompt_statistics(per_case)


def prompt_statistics(per_case: Mapping[tuple[int, str], list[dict]]) -> dict:
    """Statistics of prompt-sensitivity rows (``{(seed, case): rows}``) with intervals over cases and seeds:
    the matched prompt's advantage over its row's mean, and the real-minus-synthesized gaps (mean and WT)."""
    from .prompt_sensitivity import real_versus_synthesized

    advantage = {k: _prompt_advantage(rows)["diagonal_minus_row_mean"] for k, rows in per_case.items()}
    gaps = {k: real_versus_synthesized(rows) for k, rows in per_case.items()}
    pooled = _prompt_advantage([row for rows in per_case.values() for row in rows])
    return {"advantage": bootstrap_mean(advantage), "best_rows": pooled["rows_where_matched_is_best"],
            "complete_rows": pooled["complete_rows"],
            "gap_mean": bootstrap_mean({k: g["gap_mean"] for k, g in gaps.items()}),
            "gap_WT": bootstrap_mean({k: g["gap_WT"] for k, g in gaps.items()})}


def _prompt_sections(cells: Sequence[CellResult], grid: GridDescription) -> list[str]:
    rows = []
    for heading, by_method in _grouped_cells(cells, grid, "prompts"):
        for method, mine in by_method.items():
            stats = _prompt_statistics(mine)
            links = ", ".join(f"[s{c.key.seed}]({c.links['prompts']})" for c in mine if "prompts" in c.links)
            rows.append(f"| {heading} | {method} | {_signed(stats['advantage'])} | {stats['best_rows']} of "
                        f"{stats['complete_rows']} | {_signed(stats['gap_mean'])} | {_signed(stats['gap_WT'])} | "
                        f"{stats['advantage'].n} | {links} |")
    if not rows:
        return []
    return ["## Prompt sensitivity (sequences given x prompt used: 15 x 15 with all 15 scenarios)", "",
            "Matched minus row mean: the Dice of the matched prompt minus the row's mean over the prompts, "
            "averaged over the rows, per case (interval over cases and seeds). Real minus synthesized: all four "
            "real sequences against FLAIR and T1ce real with T1 and T2 synthesized by the MAE (zero where it "
            "synthesizes for display only), both under the all-four prompt (negative: the model does better "
            "without the real T1 and T2).", "",
            "| Setting | Method | Matched minus row mean (points) | Rows where the matched prompt is best | "
            "Real minus synthesized, mean (points) | Real minus synthesized, WT (points) | Cases | Tables |",
            "|---|---|---:|---:|---:|---:|---:|---|", *rows, ""]


def _cells_section(cells: Sequence[CellResult], grid: GridDescription) -> list[str]:
    lines = ["## Cells", "", f"Grid wall time (sum of the cells): {_duration(grid.grid_seconds)}.", "",
             "| Setting | Seed | Budget | Method | Wall time | Mean Dice | Code | Tables |",
             "|---|---:|---:|---|---:|---:|---|---|"]
    for cell in sorted(cells, key=_order(grid)):
        links = ", ".join(f"[{name}]({path})" for name, path in cell.links.items())
        budget = "–" if cell.key.budget is None else str(cell.key.budget)
        lines.append(f"| {grid.settings.get(cell.key.setting, cell.key.setting)} | {cell.key.seed} | {budget} | "
                     f"{cell.key.method} | {_duration(cell.seconds)} | "
                     f"{_pct(cell.table.overall_means('dice')['mean'])} | {cell.code or 'not recorded'} | {links} |")
    return lines + [""]


def _code_lines(cells: Sequence[CellResult]) -> list[str]:
    """A warning unless every cell recorded one and the same unmodified commit (see the Cells table): cells of
    several commits, cells that did not record theirs, and modified checkouts (whose edits may differ)."""
    counts = Counter(cell.code or "not recorded" for cell in cells)
    if len(counts) < 2 and not any(code == "not recorded" or "+modified" in code for code in counts):
        return []
    return ["Code: the cells were not all made by one recorded, unmodified commit (git commits from "
            "`runtime.json`): " + "; ".join(f"{code} ({n} cell{'s' if n > 1 else ''})"
                                           for code, n in sorted(counts.items()))
            + ". Compare such cells only where the training and evaluation code did not change between them.", ""]


def comparison_markdown(cells: Sequence[CellResult], grid: GridDescription, *, figure: str,
                        curve_figure: str | None = None, groups: CellGroups | None = None) -> str:
    """The Markdown page (see the module docstring); ``groups``: the cells' intervals, when computed already."""
    groups = groups or CellGroups(cells)
    subset = SUBSET_NAMES[grid.subset]
    budgets = ", ".join(_budget_text(b) for b in grid.budgets)
    lines = [f"# Experiment comparison: mean Dice (%) over the evaluated scenarios, scored on the {subset} cases", "",
             f"Command: `{grid.command}`" if grid.command else "Command: not recorded", "",
             *([f"Cells from the experiment folder{'s' if len(grid.sources) > 1 else ''}:", "",
                *(f"- `{label}`, made by " + "; ".join(f"`{c}`" for c in commands) for label, commands in grid.sources),
                ""] if grid.sources else []),
             *([*(f"- {note}" for note in grid.notes), ""] if grid.notes else []),
             f"Methods: {', '.join(grid.methods)}; missing-data settings: {'; '.join(grid.settings.values())}; "
             f"seeds: {', '.join(map(str, grid.seeds))}; budgets: {budgets}; scored: the split's {subset} cases; "
             f"{len(cells)} cell(s), wall time {_duration(grid.grid_seconds)} (sum of the cells).", "",
             *_code_lines(cells),
             f"Means: each {subset} case's Dice averaged over the scenarios, then over cases and seeds, with a 95% "
             "bootstrap interval (seeds, then cases within a seed). Differences are paired: the same cases and seeds "
             "for both methods; **bold**: the 95% interval excludes zero.", "",
             *_settings_sections(groups, grid), f"![mean Dice with 95% intervals]({figure})", ""]
    lines += _curve_sections(groups, grid)
    if curve_figure:
        lines += [f"![learning curves]({curve_figure})", ""]
    lines += _synthesis_sections(cells, grid) + _prompt_sections(cells, grid) + _cells_section(cells, grid)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figures, files
def _draw_means(groups: CellGroups, grid: GridDescription, png: Path) -> None:
    from .figures import interval_bars

    sections = [(tag, budget, heading) for tag, budget, heading in _sections(grid)
                if any(groups.has(tag, budget, m) for m in grid.methods)]
    methods = [m for m in grid.methods if any(groups.has(t, b, m) for t, b, _ in sections)]
    values = {part: {m: [groups.mean(t, b, m, part) if groups.has(t, b, m) else None for t, b, _ in sections]
                     for m in methods} for part in PARTS}
    interval_bars([heading for _, _, heading in sections], values, png,
                  title=f"Mean Dice over the scenarios ({SUBSET_NAMES[grid.subset]} cases), 95% intervals")


def _draw_curves(groups: CellGroups, grid: GridDescription, png: Path) -> bool:
    from .figures import learning_curves

    budgets = [b for b in grid.budgets if b is not None]
    curves = {label: {m: [(b, groups.mean(tag, b, m, "mean")) for b in budgets if groups.has(tag, b, m)]
                      for m in grid.methods if any(groups.has(tag, b, m) for b in budgets)}
              for tag, label in grid.settings.items()}
    curves = {label: per_method for label, per_method in curves.items() if per_method}
    if len(budgets) < 2 or not curves:
        return False
    learning_curves(curves, png, title="Mean Dice over the scenarios against the budget, 95% intervals")
    return True


def write_comparison(stem: str | Path, cells: Sequence[CellResult], grid: GridDescription) -> list[dict]:
    """Write ``<stem>.csv``, ``<stem>.md``, ``<stem>.png`` and, with several budgets, ``<stem>_curve.png``
    (see the module docstring); return the CSV rows."""
    stem = Path(stem)
    rows = comparison_rows(cells, grid)
    fields = list(rows[0]) if rows else ["setting", "seed", "budget", "method"]
    atomic_write_csv(stem.with_suffix(".csv"), fields, rows)
    groups = CellGroups(cells)
    figure, curve = stem.with_suffix(".png"), stem.with_name(f"{stem.name}_curve.png")
    if cells:
        _draw_means(groups, grid, figure)
    has_curve = _draw_curves(groups, grid, curve)
    atomic_write_text(stem.with_suffix(".md"), comparison_markdown(cells, grid, figure=figure.name, groups=groups,
                                                                   curve_figure=curve.name if has_curve else None))
    return rows
