"""The comparison of a grid of runs: methods x training missing ratios x seeds, one ScenarioTable per cell.

Inputs: ``results`` ``{(ratio, seed, method): ScenarioTable}`` and, per cell, a link to its own 15-row table.
Outputs (``write_comparison``, beside the stem it is given, e.g. ``OUT/comparison``):

- ``<stem>.csv``: one row per (ratio, seed, method): mean Dice per region and overall over the evaluated
  scenarios, the post-processed ET, the number of test cases and the link (:func:`comparison_rows`);
- ``<stem>.md``: per ratio, one row per method with the seeds pooled (every test case of every seed counts
  once, :func:`pooled_tables`), then the links to every cell's table (:func:`comparison_markdown`);
- ``<stem>.png``: grouped bars of the pooled mean Dice per region, method and ratio.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

from ..constants import REGIONS, SCENARIOS
from .tables import ScenarioTable

#: (training missing ratio, seed, method)
CellKey = tuple[float, int, str]


def format_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


def _postprocessed_et(table: ScenarioTable) -> float:
    return table.overall_means("dice", "postprocessed")["ET"] if "postprocessed" in table.variants else math.nan


def comparison_rows(results: Mapping[CellKey, ScenarioTable], methods: Sequence[str],
                    links: Mapping[CellKey, str]) -> list[dict]:
    """One flat row per cell, ordered by ratio, seed and the order of ``methods`` (the CSV's rows)."""
    rows = []
    for key in sorted(results, key=lambda k: (k[0], k[1], methods.index(k[2]))):
        ratio, seed, method = key
        table = results[key]
        means = table.overall_means("dice")
        rows.append({"missing_ratio": ratio, "seed": seed, "method": method,
                     **{f"dice_{r}": means[r] for r in REGIONS}, "dice_mean": means["mean"],
                     "dice_ET_postprocessed": _postprocessed_et(table),
                     "n_test_cases": len(table.case_ids), "table": links[key]})
    return rows


def pooled_tables(results: Mapping[CellKey, ScenarioTable]) -> dict[str, dict[float, ScenarioTable]]:
    """``{method: {ratio: table}}`` with the seeds pooled: case ``c`` of seed ``s`` becomes ``s<s>/<c>``."""
    pooled: dict[str, dict[float, ScenarioTable]] = {}
    for (ratio, seed, method), table in results.items():
        target = pooled.setdefault(method, {}).setdefault(ratio, ScenarioTable(method))
        for case_id in table.case_ids:
            for variant in table.variants:
                for scenario in (s.short for s in SCENARIOS if table.has(case_id, s.short, variant)):
                    target.add(f"s{seed}/{case_id}", scenario,
                               {r: (table.value(case_id, scenario, r, "dice", variant),
                                    table.value(case_id, scenario, r, "hd95", variant)) for r in REGIONS},
                               variant)
    return pooled


def comparison_markdown(pooled: Mapping[str, Mapping[float, ScenarioTable]], rows: Sequence[dict], *,
                        methods: Sequence[str], ratios: Sequence[float], seeds: Sequence[int], figure: str) -> str:
    """The Markdown page: a table per ratio (pooled over seeds), the links to every cell, the figure."""
    lines = ["# Missing-ratio experiment: mean Dice (%) over the evaluated scenarios", "",
             f"Methods: {', '.join(methods)}; training missing ratios: {', '.join(map(format_ratio, ratios))}; "
             f"seeds: {', '.join(map(str, seeds))} (pooled: every test case of every seed counts once).", ""]
    for ratio in ratios:
        lines += [f"## Training missing ratio {format_ratio(ratio)}", "",
                  "| Method | WT | TC | ET | ET (pp) | Mean | Test cases |", "|---|---:|---:|---:|---:|---:|---:|"]
        for method in methods:
            table = pooled.get(method, {}).get(ratio)
            if table is None:
                lines.append(f"| {method} | – | – | – | – | – | 0 |")
                continue
            means = table.overall_means("dice")
            cells = [_pct(means[r]) for r in REGIONS] + [_pct(_postprocessed_et(table)), _pct(means["mean"])]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {len(table.case_ids)} |")
        lines.append("")
    lines += ["## Per-scenario tables", ""]
    lines += [f"- ratio {format_ratio(row['missing_ratio'])}, seed {row['seed']}, {row['method']}: "
              f"[{row['table']}]({row['table']})" for row in rows]
    lines += ["", f"![mean Dice per region, method and missing ratio]({figure})", ""]
    return "\n".join(lines)


def write_comparison(stem: str | Path, results: Mapping[CellKey, ScenarioTable], *, methods: Sequence[str],
                     ratios: Sequence[float], seeds: Sequence[int], links: Mapping[CellKey, str]) -> list[dict]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.png`` (see the module docstring); return the CSV rows.

    links: for every key of ``results``, the path of that cell's table relative to the folder of ``stem``."""
    from .figures import method_comparison

    stem = Path(stem)
    methods = list(methods)
    rows = comparison_rows(results, methods, links)
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
    pooled = pooled_tables(results)
    figure = stem.with_suffix(".png")
    stem.with_suffix(".md").write_text(comparison_markdown(pooled, rows, methods=methods, ratios=ratios, seeds=seeds,
                                                           figure=figure.name))
    if pooled:
        method_comparison({m: pooled[m] for m in methods if m in pooled}, figure,
                          title="Mean Dice over the evaluated scenarios, per training missing ratio")
    return rows
