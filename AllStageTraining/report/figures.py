"""Figures of the demo report (matplotlib, Agg backend; nothing opens a window).

Images are numpy arrays in the project's array order ``(z, y, x)`` of an LPS-oriented volume, so an axial
slice ``volume[z]`` shows anterior at the top and the patient's right on the left (radiological view).

- :func:`dice_side_by_side`: the 15 x 3 Dice tables of two methods beside each other and their difference.
- :func:`synthesis_grid`: real sequences beside the ones the MAE synthesized when they were missing.
- :func:`segmentation_overlays`: ground truth and predicted labels over an image, for a few scenarios.
- :func:`training_curves`: loss curves read from TensorBoard event files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from AllStageTraining.constants import LABEL_ED, LABEL_ET, LABEL_NAMES, LABEL_NCR, REGIONS, SCENARIOS

#: Label colours (RGB in [0, 1]) in the figures: the usual BraTS display colours.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {
    LABEL_NCR: (0.90, 0.15, 0.15),  # necrotic / non-enhancing core: red
    LABEL_ED: (0.20, 0.80, 0.25),  # edema: green
    LABEL_ET: (1.00, 0.85, 0.10),  # enhancing tumour: yellow
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tumour_slice(labels: np.ndarray) -> int:
    """Index of the axial slice (axis 0 of a (z, y, x) label map) with the most tumour voxels."""
    counts = (np.asarray(labels) > 0).reshape(labels.shape[0], -1).sum(axis=1)
    return int(np.argmax(counts)) if counts.any() else labels.shape[0] // 2


def _window(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Display window: the 1st and 99.5th percentile of the voxels inside ``mask`` (default: nonzero)."""
    values = image[mask] if mask is not None else image[image != 0]
    if values.size == 0:
        values = image.ravel()
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def _label_rgba(labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        hit = labels == value
        rgba[hit, :3] = colour
        rgba[hit, 3] = alpha
    return rgba


def _legend_handles():
    from matplotlib.patches import Patch

    return [Patch(color=LABEL_COLOURS[v], label=f"{LABEL_NAMES[v]} ({v})") for v in (LABEL_NCR, LABEL_ED, LABEL_ET)]


def dice_side_by_side(tables: Mapping[str, np.ndarray], png: str | Path, *, title: str | None = None) -> Path:
    """Annotated heatmaps of the mean Dice per scenario and region of two (or more) methods, plus the
    difference first - second.

    tables: ``{method: (15, 3) Dice fractions in SCENARIOS x REGIONS order}`` (``ScenarioTable.mean_table()``).
    The last row of each panel is the mean over the scenarios. Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    names = list(tables)
    panels = []
    for name in names:
        values = np.asarray(tables[name], dtype=float) * 100.0
        panels.append((name, np.vstack([values, np.nanmean(values, axis=0)])))
    show_difference = len(names) >= 2
    if show_difference:
        panels.append((f"{names[0]} - {names[1]}", panels[0][1] - panels[1][1]))
    row_labels = [f"{s.short:>4}  {s.display}" for s in SCENARIOS] + ["Mean"]

    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels) + 2.6, 7.2), dpi=110,
                             gridspec_kw={"wspace": 0.08})
    axes = np.atleast_1d(axes)
    for k, (ax, (name, values)) in enumerate(zip(axes, panels)):
        difference = show_difference and k == len(panels) - 1
        if difference:
            bound = max(10.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 10.0)
            cmap, vmin, vmax = "RdBu", -bound, bound
        else:
            cmap, vmin, vmax = "viridis", 0.0, 100.0
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(REGIONS)), REGIONS)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(row_labels)), row_labels if k == 0 else [""] * len(row_labels),
                      fontfamily="monospace", fontsize=8)
        ax.axhline(len(SCENARIOS) - 0.5, color="white", linewidth=3)
        ax.set_title(name + ("\n(Dice points)" if difference else "\nDice (%)"), fontsize=9, pad=22)
        for (i, j), value in np.ndenumerate(values):
            if not math.isfinite(value):
                continue
            if difference:
                text, colour = f"{value:+.1f}", "white" if abs(value) > 0.6 * vmax else "black"
            else:
                text, colour = f"{value:.1f}", "black" if value > 60 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=colour,
                    fontweight="bold" if i == len(SCENARIOS) else None)
    fig.suptitle(title or "Mean Dice per availability scenario (rows) and region (columns)", fontsize=10)
    fig.subplots_adjust(left=0.26, right=0.98, top=0.86, bottom=0.02)
    fig.savefig(png)
    plt.close(fig)
    return png


def synthesis_grid(
    real: Mapping[str, np.ndarray],
    synthesized: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    png: str | Path,
    *,
    slice_index: int,
    brain: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """One row per sequence: the real image, then that sequence as synthesized in each given condition.

    real: ``{modality display name: (z, y, x) volume}`` in row order.
    synthesized: ``[(column title, {modality display name: volume})]``; a condition that did not synthesize
        a sequence (because it was given) leaves that cell with a note.
    slice_index: the axial slice shown; ``brain``: optional (z, y, x) mask for the display windows.
    Each image is windowed on its own 1st-99.5th percentile inside the brain (the synthesized sequences are
    in normalized units, the real ones in scanner units). Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    rows = list(real)
    columns = [("real", real)] + list(synthesized)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.3 * len(columns), 2.4 * len(rows)), dpi=110,
                             squeeze=False)
    for i, name in enumerate(rows):
        for j, (column, volumes) in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=10)
            volume = volumes.get(name)
            if volume is None:
                ax.set_facecolor("0.92")
                ax.text(0.5, 0.5, "given\n(not synthesized)", ha="center", va="center", fontsize=8,
                        color="0.35", transform=ax.transAxes)
                continue
            mask = brain if brain is not None else None
            low, high = _window(volume, mask)
            ax.imshow(volume[slice_index], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    fig.suptitle(title or "Real sequences (left) and the MAE's synthesis of each one when it was missing",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def segmentation_overlays(
    background: np.ndarray,
    truth: np.ndarray,
    predictions: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    png: str | Path,
    *,
    slice_index: int,
    background_name: str = "FLAIR",
    title: str | None = None,
) -> Path:
    """Label maps over an axial slice: the ground truth, then one row per method with a column per scenario.

    background: (z, y, x) image; truth and every prediction: (z, y, x) label maps {0, 1, 2, 4} on the same
    grid. predictions: ``[(method, [(scenario title, labels), ...]), ...]``. Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    n_cols = 1 + max(len(cols) for _, cols in predictions)
    fig, axes = plt.subplots(len(predictions), n_cols, figsize=(2.3 * n_cols, 2.9 * len(predictions) + 0.9),
                             dpi=110, squeeze=False)
    low, high = _window(background)
    image = background[slice_index]
    for i, (method, columns) in enumerate(predictions):
        cells = [("ground truth", truth)] + list(columns)
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(cells):
                ax.axis("off")
                continue
            name, labels = cells[j]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            ax.imshow(_label_rgba(np.asarray(labels)[slice_index]), interpolation="nearest")
            ax.set_title(name, fontsize=8.5)
            if j == 0:
                ax.set_ylabel(method, fontsize=10)
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title or f"Segmentations on {background_name}, axial slice {slice_index}; "
                 "column titles: sequences given", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.08, top=0.86, wspace=0.05, hspace=0.45)
    fig.savefig(png)
    plt.close(fig)
    return png


def read_scalars(log_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of the TensorBoard event files under ``log_dir``: ``{tag: (steps, values)}``.

    Several event files (a resumed run writes a new one) are merged; a later value for a step wins.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                series.setdefault(tag, {})[int(event.step)] = float(event.value)
    return {tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
            for tag, points in series.items()}


def _smooth(values: np.ndarray, weight: float = 0.8) -> np.ndarray:
    """TensorBoard-style exponential moving average (debiased)."""
    out = np.empty_like(values, dtype=float)
    last, norm = 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * float(v)
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def training_curves(panels: Sequence[tuple[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]], png: str | Path,
                    *, title: str | None = None) -> Path:
    """One panel per training run with its loss curves (raw values faint, smoothed line strong).

    panels: ``[(panel title, {series name: (steps, values)}), ...]``; empty panels say so. Returns ``png``.
    """
    plt = _pyplot()
    png = Path(png)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), dpi=110, squeeze=False)
    for ax, (name, series) in zip(axes[0], panels):
        ax.set_title(name, fontsize=9.5)
        ax.set_xlabel("step")
        if not series:
            ax.text(0.5, 0.5, "no scalars logged", ha="center", va="center", transform=ax.transAxes)
            continue
        for k, (label, (steps, values)) in enumerate(series.items()):
            colour = f"C{k % 10}"
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(np.asarray(values)), color=colour, linewidth=1.6, label=label)
        values = np.concatenate([np.asarray(v, dtype=float) for _, v in series.values()])
        if np.all(values > 0) and values.max() / values.min() > 30:  # several decades: log scale
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.7)
    fig.suptitle(title or "Training losses", fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
