"""The 15-scenario x 3-region table: per-case scores, means, and the files a run writes.

A :class:`ScenarioTable` holds one Dice and one HD95 per (case, scenario, region, variant), where the variant
is ``"raw"`` or ``"postprocessed"`` (ET post-processing applied to the prediction). Means are taken over the
cases of each scenario first; the overall mean of a region is the mean over the scenarios that were scored
(the literature's "mean over the 15 scenarios"). Dice is stored as a fraction in [0, 1] (CSV, JSON) and shown
in percent in Markdown and figures; HD95 is in mm.

Files (:meth:`ScenarioTable.write`): ``table.csv`` (long format, one row per case x scenario x variant x region,
re-readable with :meth:`ScenarioTable.from_csv`), ``table_summary.csv`` (the 15 x 3 means), ``table.md``,
``summary.json`` and ``heatmap.png``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from AllStageTraining.constants import REGIONS, SCENARIOS, scenario_by_short

VARIANTS: tuple[str, ...] = ("raw", "postprocessed")
METRICS: tuple[str, ...] = ("dice", "hd95")
LONG_COLUMNS: tuple[str, ...] = ("case_id", "scenario", "variant", "region", "dice", "hd95")


class ScenarioTable:
    """Per-case Dice/HD95 for the 15 scenarios and 3 regions, with the means the literature reports."""

    def __init__(self, method: str | None = None) -> None:
        self.method = method
        # (case_id, scenario short, variant, region) -> (dice, hd95)
        self._scores: dict[tuple[str, str, str, str], tuple[float, float]] = {}

    # ----------------------------------------------------------------------------------------------- filling
    def add(
        self,
        case_id: str,
        scenario: str,
        scores: dict[str, tuple[float, float]],
        variant: str = "raw",
    ) -> None:
        """Record ``scores`` (``{region: (dice, hd95)}`` for all of WT, TC, ET) of one case in one scenario."""
        scenario_by_short(scenario)  # raises on an unknown short name
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        missing = [r for r in REGIONS if r not in scores]
        if missing:
            raise ValueError(f"scores for {case_id}/{scenario} lack region(s) {missing}")
        for region in REGIONS:
            dice, hd95 = scores[region]
            self._scores[(str(case_id), scenario, variant, region)] = (float(dice), float(hd95))

    def add_variants(self, case_id: str, scenario: str, variants: dict[str, dict[str, tuple[float, float]]]) -> None:
        """Record the output of :func:`metrics.score_prediction` (``{variant: {region: (dice, hd95)}}``)."""
        for variant, scores in variants.items():
            self.add(case_id, scenario, scores, variant)

    def merge(self, other: "ScenarioTable") -> None:
        """Add every score of ``other`` (its values win where both hold the same key)."""
        self._scores.update(other._scores)

    # ----------------------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._scores)

    @property
    def case_ids(self) -> list[str]:
        return sorted({key[0] for key in self._scores})

    @property
    def variants(self) -> list[str]:
        present = {key[2] for key in self._scores}
        return [v for v in VARIANTS if v in present]

    def has(self, case_id: str, scenario: str, variant: str = "raw") -> bool:
        return (str(case_id), scenario, variant, REGIONS[0]) in self._scores

    def value(self, case_id: str, scenario: str, region: str, metric: str = "dice", variant: str = "raw") -> float:
        return self._scores[(str(case_id), scenario, variant, region)][METRICS.index(metric)]

    def n_cases(self, variant: str = "raw") -> np.ndarray:
        """Number of scored cases per scenario, ``(15,)`` int in SCENARIOS order."""
        counts = defaultdict(set)
        for case_id, scenario, var, _ in self._scores:
            if var == variant:
                counts[scenario].add(case_id)
        return np.array([len(counts[s.short]) for s in SCENARIOS], dtype=int)

    def mean_table(self, metric: str = "dice", variant: str = "raw") -> np.ndarray:
        """Mean over cases, ``(15, 3)`` float64 (SCENARIOS x REGIONS); NaN where a scenario has no case."""
        column = METRICS.index(metric)
        sums = np.zeros((len(SCENARIOS), len(REGIONS)))
        counts = np.zeros((len(SCENARIOS), len(REGIONS)))
        rows = {s.short: i for i, s in enumerate(SCENARIOS)}
        cols = {r: j for j, r in enumerate(REGIONS)}
        for (_, scenario, var, region), values in self._scores.items():
            if var == variant:
                sums[rows[scenario], cols[region]] += values[column]
                counts[rows[scenario], cols[region]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def scenario_means(self, metric: str = "dice", variant: str = "raw") -> np.ndarray:
        """Per-scenario mean over the three regions, ``(15,)``; NaN for unscored scenarios."""
        table = self.mean_table(metric, variant)
        scored = ~np.isnan(table).any(axis=1)
        out = np.full(len(SCENARIOS), np.nan)
        out[scored] = table[scored].mean(axis=1)
        return out

    def overall_means(self, metric: str = "dice", variant: str = "raw") -> dict[str, float]:
        """Per-region mean over the scored scenarios, plus ``"mean"`` over the regions (NaN if none)."""
        table = self.mean_table(metric, variant)
        scored = ~np.isnan(table).any(axis=1)
        if not scored.any():
            return {**{r: math.nan for r in REGIONS}, "mean": math.nan}
        per_region = table[scored].mean(axis=0)
        return {**{r: float(v) for r, v in zip(REGIONS, per_region)}, "mean": float(per_region.mean())}

    # ----------------------------------------------------------------------------------------------- output
    def to_csv(self, path: str | Path) -> Path:
        """Long format: one row per case x scenario x variant x region (rows in a stable, readable order)."""
        path = Path(path)
        order = {s.short: i for i, s in enumerate(SCENARIOS)}
        keys = sorted(
            self._scores,
            key=lambda k: (k[0], order[k[1]], VARIANTS.index(k[2]), REGIONS.index(k[3])),
        )
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(LONG_COLUMNS)
            for key in keys:
                dice, hd95 = self._scores[key]
                writer.writerow([*key, repr(dice), repr(hd95)])
        return path

    @classmethod
    def from_csv(cls, path: str | Path, method: str | None = None) -> "ScenarioTable":
        """Read a long-format CSV written by :meth:`to_csv` (for example to combine runs)."""
        path = Path(path)
        table = cls(method)
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or set(LONG_COLUMNS) - set(reader.fieldnames):
                raise ValueError(
                    f"{path} is not a per-case score table: expected columns {', '.join(LONG_COLUMNS)}"
                )
            grouped: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
            for row in reader:
                grouped[(row["case_id"], row["scenario"], row["variant"])][row["region"]] = (
                    float(row["dice"]),
                    float(row["hd95"]),
                )
        for (case_id, scenario, variant), scores in grouped.items():
            table.add(case_id, scenario, scores, variant)
        return table

    def summary_rows(self) -> list[dict[str, Any]]:
        """The 15 scenario rows and a final ``mean`` row, per variant, as flat dicts (``table_summary.csv``)."""
        rows = []
        for variant in self.variants:
            dice, hd95 = self.mean_table("dice", variant), self.mean_table("hd95", variant)
            dice_mean, hd_mean = self.scenario_means("dice", variant), self.scenario_means("hd95", variant)
            counts = self.n_cases(variant)
            for i, scenario in enumerate(SCENARIOS):
                row = {"scenario": scenario.short, "display": scenario.display, "variant": variant,
                       "n_cases": int(counts[i])}
                row.update({f"dice_{r}": dice[i, j] for j, r in enumerate(REGIONS)})
                row["dice_mean"] = dice_mean[i]
                row.update({f"hd95_{r}": hd95[i, j] for j, r in enumerate(REGIONS)})
                row["hd95_mean"] = hd_mean[i]
                rows.append(row)
            overall_dice, overall_hd = self.overall_means("dice", variant), self.overall_means("hd95", variant)
            row = {"scenario": "mean", "display": "mean over scored scenarios", "variant": variant,
                   "n_cases": len(self.case_ids)}
            row.update({f"dice_{r}": overall_dice[r] for r in REGIONS})
            row["dice_mean"] = overall_dice["mean"]
            row.update({f"hd95_{r}": overall_hd[r] for r in REGIONS})
            row["hd95_mean"] = overall_hd["mean"]
            rows.append(row)
        return rows

    def to_summary_csv(self, path: str | Path) -> Path:
        path = Path(path)
        rows = self.summary_rows()
        with path.open("w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                                 for r in rows)
        return path

    def to_markdown(self, title: str | None = None) -> str:
        """Dice (%) and HD95 (mm) tables: 15 scenario rows and the mean over scenarios.

        When post-processed scores exist, an ``ET (pp)`` column shows ET after post-processing beside the raw ET.
        """
        pp = "postprocessed" in self.variants
        lines = []
        if title or self.method:
            lines += [f"### {title or self.method}", ""]
        if not self.variants:
            return "\n".join(lines + ["(no scores)", ""])
        n_scored = int((self.n_cases() > 0).sum())
        for metric, heading, scale, fmt in (("dice", "Dice (%)", 100.0, "{:.2f}"), ("hd95", "HD95 (mm)", 1.0, "{:.2f}")):
            table = self.mean_table(metric, "raw")
            scenario_mean = self.scenario_means(metric, "raw")
            overall = self.overall_means(metric, "raw")
            et_pp = self.mean_table(metric, "postprocessed")[:, REGIONS.index("ET")] if pp else None
            overall_pp = self.overall_means(metric, "postprocessed")["ET"] if pp else None
            header = ["Scenario", "Sequences", *REGIONS, *(["ET (pp)"] if pp else []), "Mean", "Cases"]
            lines += [f"**{heading}**", "", "| " + " | ".join(header) + " |",
                      "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]

            def cell(value: float) -> str:
                return "–" if value is None or math.isnan(value) else fmt.format(value * scale)

            counts = self.n_cases()
            for i, scenario in enumerate(SCENARIOS):
                cells = [cell(v) for v in table[i]]
                if pp:
                    cells.append(cell(et_pp[i]))
                cells += [cell(scenario_mean[i]), str(int(counts[i]))]
                lines.append(f"| {scenario.short} | {scenario.display} | " + " | ".join(cells) + " |")
            cells = [cell(overall[r]) for r in REGIONS] + ([cell(overall_pp)] if pp else []) + [cell(overall["mean"])]
            label = "**Mean**" if n_scored == len(SCENARIOS) else f"**Mean ({n_scored} of {len(SCENARIOS)})**"
            lines.append(f"| {label} | | " + " | ".join(f"**{c}**" for c in cells) + f" | {len(self.case_ids)} |")
            lines.append("")
        if pp:
            lines += ["ET (pp): enhancing tumour after BraTS post-processing (a predicted ET smaller than the "
                      "volume threshold becomes NCR).", ""]
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: means per region (Dice fraction, HD95 mm) per variant and per scenario."""

        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(float(value), 6)

        out: dict[str, Any] = {
            "method": self.method,
            "regions": list(REGIONS),
            "n_cases": len(self.case_ids),
            "n_scenarios_scored": int((self.n_cases() > 0).sum()),
            "dice_unit": "fraction",
            "hd95_unit": "mm",
        }
        for variant in self.variants:
            suffix = "" if variant == "raw" else f"_{variant}"
            out[f"mean_dice{suffix}"] = {k: clean(v) for k, v in self.overall_means("dice", variant).items()}
            out[f"mean_hd95{suffix}"] = {k: clean(v) for k, v in self.overall_means("hd95", variant).items()}
            dice, hd95 = self.mean_table("dice", variant), self.mean_table("hd95", variant)
            counts = self.n_cases(variant)
            out[f"per_scenario{suffix}"] = {
                s.short: {
                    "display": s.display,
                    "n_cases": int(counts[i]),
                    "dice": {r: clean(dice[i, j]) for j, r in enumerate(REGIONS)},
                    "hd95": {r: clean(hd95[i, j]) for j, r in enumerate(REGIONS)},
                }
                for i, s in enumerate(SCENARIOS)
            }
        return out

    def write(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None, heatmap: bool = True) -> dict[str, Path]:
        """Write ``table.csv``, ``table_summary.csv``, ``table.md``, ``summary.json`` (plus ``extra`` keys) and
        ``heatmap.png`` into ``out_dir``; returns ``{name: path}``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "table.csv": self.to_csv(out_dir / "table.csv"),
            "table_summary.csv": self.to_summary_csv(out_dir / "table_summary.csv"),
        }
        (out_dir / "table.md").write_text(self.to_markdown())
        paths["table.md"] = out_dir / "table.md"
        summary = self.summary()
        summary.update(extra or {})
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        paths["summary.json"] = out_dir / "summary.json"
        if heatmap and self.variants:
            from AllStageTraining.evaluation.figures import heatmap as draw_heatmap

            paths["heatmap.png"] = draw_heatmap(self, out_dir / "heatmap.png")
        return paths

