"""Figures of the 15-scenario evaluation (matplotlib, Agg backend; nothing opens a window).

- :func:`heatmap`: scenario x region Dice (or HD95) of one :class:`ScenarioTable`, values written in the cells.
- :func:`method_comparison`: grouped bars of the mean Dice per region for several methods, either one group
  per region (one table per method) or one panel per region with one group per training missing ratio.
- :func:`interval_bars`: one panel per region (and the mean), a group of bars per setting and a bar per method,
  each with its 95% interval (``bootstrap.Interval``) as an error bar.
- :func:`learning_curves`: mean Dice against the training budget (log scale), a line per method with interval
  bars, one panel per setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np

from AllStageTraining.constants import REGIONS, SCENARIOS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(table, png: str | Path, *, metric: str = "dice", variant: str = "raw", title: str | None = None) -> Path:
    """Draw the 15 x 3 mean table of ``table`` (a ScenarioTable) plus the mean row as an annotated heatmap.

    Dice is shown in percent on a 0-100 scale (higher is better); HD95 in mm with a reversed colour map.
    Unscored scenarios are left blank. Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    values = table.mean_table(metric, variant)
    overall = table.overall_means(metric, variant)
    values = np.vstack([values, [overall[r] for r in REGIONS]])
    if metric == "dice":
        values = values * 100.0
        cmap, vmin, vmax, unit = "viridis", 0.0, 100.0, "Dice (%)"
    else:
        finite = values[np.isfinite(values)]
        cmap, vmin, vmax, unit = "viridis_r", 0.0, float(finite.max()) if finite.size else 1.0, "HD95 (mm)"
    row_labels = [f"{s.display} ({s.short})" for s in SCENARIOS] + ["Mean over scenarios"]

    fig, ax = plt.subplots(figsize=(5.6, 7.4), dpi=120)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(REGIONS)), REGIONS)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.axhline(len(SCENARIOS) - 0.5, color="white", linewidth=3)
    span = (vmax - vmin) or 1.0
    for (i, j), value in np.ndenumerate(values):
        if math.isfinite(value):
            dark = (value - vmin) / span > 0.6 if metric == "dice" else (value - vmin) / span < 0.4
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    color="black" if dark else "white", fontweight="bold" if i == len(SCENARIOS) else None)
    fig.colorbar(image, ax=ax, label=unit, fraction=0.08, pad=0.03)
    name = title or (table.method and f"{table.method}: {unit}") or unit
    if variant != "raw":
        name += f" ({variant})"
    ax.set_title(name, fontsize=10, pad=24)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def method_comparison(tables_by_method: Mapping, png: str | Path, *, variant: str = "raw", title: str | None = None) -> Path:
    """Grouped bars of the mean Dice (%) over scenarios, per region, for several methods.

    ``tables_by_method``: ``{method: ScenarioTable}`` draws one panel with a group per region (WT, TC, ET,
    mean) and a bar per method; ``{method: {missing_ratio: ScenarioTable}}`` draws one panel per region with
    a group per missing ratio. Bars carry their values. Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    methods = list(tables_by_method)
    if not methods:
        raise ValueError("method_comparison needs at least one method")
    by_ratio = isinstance(next(iter(tables_by_method.values())), Mapping)
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / len(methods)

    def bars(ax, groups: list[str], heights: dict[str, list[float]]) -> None:
        x = np.arange(len(groups))
        for k, method in enumerate(methods):
            values = np.array(heights[method], dtype=float)
            drawn = ax.bar(x + (k - (len(methods) - 1) / 2) * width, np.nan_to_num(values), width,
                           label=method, color=colours[k % len(colours)])
            ax.bar_label(drawn, labels=["" if math.isnan(v) else f"{v:.1f}" for v in values], fontsize=7, padding=1)
        ax.set_xticks(x, groups)
        ax.set_ylim(0, 118)  # headroom for the legend above the bars
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)

    if not by_ratio:
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * 4 * max(1, len(methods)) / 2, 3.8), dpi=120)
        groups = [*REGIONS, "mean"]
        heights = {m: [100.0 * tables_by_method[m].overall_means("dice", variant)[g] for g in groups] for m in methods}
        bars(ax, groups, heights)
        ax.set_ylabel("mean Dice over scenarios (%)")
        ax.legend(fontsize=8, loc="upper center", ncol=len(methods), frameon=False)
        axes = [ax]
    else:
        ratios = sorted({r for per_ratio in tables_by_method.values() for r in per_ratio})
        fig, axes = plt.subplots(1, len(REGIONS), figsize=(4.2 * len(REGIONS), 3.8), dpi=120, sharey=True)
        for ax, region in zip(axes, REGIONS):
            heights = {
                m: [100.0 * tables_by_method[m][r].overall_means("dice", variant)[region]
                    if r in tables_by_method[m] else math.nan for r in ratios]
                for m in methods
            }
            bars(ax, [f"{r:g}" if isinstance(r, (int, float)) else str(r) for r in ratios], heights)
            ax.set_title(region)
            ax.set_xlabel("training missing ratio")
        axes[0].set_ylabel("mean Dice over scenarios (%)")
        axes[-1].legend(fontsize=8, loc="upper center", ncol=len(methods), frameon=False)
    fig.suptitle(title or "Mean Dice over the scenarios, per method", fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def _error_bars(intervals) -> tuple[np.ndarray, np.ndarray]:
    """(heights, 2 x n asymmetric error sizes) in percent from ``bootstrap.Interval``s (None: NaN). Sizes are
    clipped at 0: where every value is the same, the mean can sit a rounding error outside its interval."""
    mean = np.array([np.nan if i is None else i.mean for i in intervals], dtype=float) * 100.0
    low = np.array([np.nan if i is None else i.low for i in intervals], dtype=float) * 100.0
    high = np.array([np.nan if i is None else i.high for i in intervals], dtype=float) * 100.0
    return mean, np.clip(np.nan_to_num(np.vstack([mean - low, high - mean])), 0.0, None)


def interval_bars(groups: list[str], values: Mapping[str, Mapping[str, list]], png: str | Path, *,
                  title: str) -> Path:
    """Bars of mean Dice (%) with 95% interval error bars, two panels per row.

    groups: the x groups (e.g. the missing-data settings); values: ``{panel: {method: [Interval | None per
    group]}}`` (panels e.g. WT, TC, ET, mean), Dice fractions. Returns ``png``.
    """
    import textwrap

    plt = _pyplot()
    png = Path(png)
    panels = list(values)
    methods = list(next(iter(values.values()))) if panels else []
    if not methods:
        raise ValueError("interval_bars needs at least one method")
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / len(methods)
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    panel_width = max(4.0, 0.8 + len(groups) * (0.5 + 0.22 * len(methods)))
    fig, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, 3.6 * rows), dpi=120, sharey=True,
                             squeeze=False)
    x = np.arange(len(groups))
    labels = ["\n".join(textwrap.wrap(g, 18)) for g in groups]
    for ax, panel in zip(axes.flat, panels):
        for k, method in enumerate(methods):
            mean, errors = _error_bars(values[panel][method])
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, np.nan_to_num(mean), width, yerr=errors, capsize=2,
                   label=method, color=colours[k % len(colours)], error_kw={"linewidth": 0.8})
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_title(panel)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean Dice over scenarios (%)")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(title, fontsize=10)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(methods), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if rows > 1 else 0.86))
    fig.savefig(png)
    plt.close(fig)
    return png


def learning_curves(curves: Mapping[str, Mapping[str, list]], png: str | Path, *, title: str) -> Path:
    """Mean Dice (%) against the budget, one panel per setting: ``{setting label: {method: [(budget,
    Interval), ...]}}`` (Dice fractions); the x axis is logarithmic (base 2). Returns ``png``."""
    plt = _pyplot()
    png = Path(png)
    if not curves:
        raise ValueError("learning_curves needs at least one setting")
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(curves), figsize=(1.0 + 4.2 * len(curves), 3.8), dpi=120, sharey=True,
                             squeeze=False)
    budgets = sorted({b for per_method in curves.values() for points in per_method.values() for b, _ in points})
    for ax, (setting, per_method) in zip(axes[0], curves.items()):
        for k, (method, points) in enumerate(per_method.items()):
            points = sorted(points)
            mean, errors = _error_bars([interval for _, interval in points])
            ax.errorbar([b for b, _ in points], mean, yerr=errors, marker="o", capsize=3, label=method,
                        color=colours[k % len(colours)])
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("steps per stage")
        ax.set_title(setting)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean Dice over scenarios (%)")
    axes[0][-1].legend(fontsize=7, frameon=True)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
