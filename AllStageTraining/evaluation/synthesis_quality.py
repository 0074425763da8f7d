"""How well the MAE synthesizes each missing sequence (BraSyn-style): PSNR and SSIM inside and outside the tumour.

For every test case (all four sequences real) and each of the 14 incomplete scenarios, the MAE completes the
sequences the scenario lacks from the ones it has; each synthesized sequence is compared with the real one on
the z-score scale of preprocessing, inside the brain: in the tumour (WT) and in the healthy brain around it.

- PSNR over a region: ``10 log10(range^2 / MSE)``, ``range`` = max - min of the real sequence in the brain.
- SSIM over a region: the mean of the local SSIM map (uniform 7^3 window, the usual K1 = 0.01, K2 = 0.03)
  over that region's voxels; the map is computed on the brain box with the outside set to 0 in both images.

Rows: one per (case, scenario, missing sequence). ``summarize`` averages per missing sequence over all the
scenarios that lack it and over the cases; ``write_paired_table`` compares two MAEs' rows of the same cases
(each case's mean over the scenarios both evaluated, paired differences with bootstrap intervals over the cases).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..constants import MODALITIES, MODALITY_DISPLAY, SCENARIOS
from ..fileio import atomic_write_csv, atomic_write_json, atomic_write_text

SSIM_WINDOW = 7
FIELDS = ("case_id", "scenario", "sequence", "psnr_tumour", "psnr_healthy", "ssim_tumour", "ssim_healthy",
          "ssim_brain")
#: Score columns -> (their heading in tables, digits shown).
SCORES: dict[str, tuple[str, int]] = {
    "psnr_tumour": ("PSNR tumour (dB)", 2), "psnr_healthy": ("PSNR healthy (dB)", 2), "ssim_tumour": ("SSIM tumour", 3),
    "ssim_healthy": ("SSIM healthy", 3), "ssim_brain": ("SSIM brain", 3)}


def ssim_map(prediction: torch.Tensor, target: torch.Tensor, data_range: float) -> torch.Tensor:
    """Local SSIM of two (D, H, W) volumes with a uniform ``SSIM_WINDOW``^3 window -> (D, H, W)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stack = torch.stack([prediction, target, prediction * prediction, target * target, prediction * target])
    pooled = F.avg_pool3d(stack[:, None].double(), SSIM_WINDOW, stride=1, padding=SSIM_WINDOW // 2,
                          count_include_pad=False)[:, 0]
    mu_p, mu_t, pp, tt, pt = pooled
    var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))).float()


def _psnr(prediction: torch.Tensor, target: torch.Tensor, region: torch.Tensor, data_range: float) -> float:
    if not bool(region.any()):
        return math.nan
    mse = float((prediction[region] - target[region]).double().square().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _mean_over(values: torch.Tensor, region: torch.Tensor) -> float:
    return float(values[region].double().mean()) if bool(region.any()) else math.nan


def region_scores(prediction: torch.Tensor, target: torch.Tensor, brain: torch.Tensor, tumour: torch.Tensor) -> dict:
    """PSNR/SSIM of one synthesized (D, H, W) volume against the real one, in the tumour, the healthy brain and
    the whole brain; ``brain`` and ``tumour`` are bool (D, H, W)."""
    inside = brain & torch.isfinite(target)
    data_range = float(target[inside].max() - target[inside].min()) if bool(inside.any()) else 1.0
    data_range = data_range or 1.0
    zero = torch.zeros((), dtype=prediction.dtype, device=prediction.device)
    p, t = torch.where(inside, prediction, zero), torch.where(inside, target, zero)
    tumour_region, healthy_region = inside & tumour, inside & ~tumour
    similarity = ssim_map(p, t, data_range)
    return {"psnr_tumour": _psnr(p, t, tumour_region, data_range), "psnr_healthy": _psnr(p, t, healthy_region, data_range),
            "ssim_tumour": _mean_over(similarity, tumour_region), "ssim_healthy": _mean_over(similarity, healthy_region),
            "ssim_brain": _mean_over(similarity, inside)}


@torch.no_grad()
def case_synthesis_scores(mae, item: dict, device: torch.device, scenarios: Iterable = SCENARIOS) -> list[dict]:
    """Rows for one whole case ``item`` from ``data.dataset.ValidationCases`` (all four sequences present).

    For each incomplete scenario, the MAE completes the case from that scenario's sequences (``complete`` with the
    brain mask, as at inference) and every synthesized sequence is scored against the real one.
    """
    z, y, x = item["shape"].tolist()
    image = item["image"][None].to(device)
    box = item["box"][None].to(device)
    brain_padded = item["brain"][None].to(device)
    brain = brain_padded[0, 0, :z, :y, :x] > 0
    tumour = item["label"][0, :z, :y, :x].to(device) > 0
    rows = []
    for scenario in scenarios:
        if not scenario.missing:
            continue
        available = torch.tensor([scenario.mask], dtype=torch.bool, device=device)
        given = image * available[:, :, None, None, None]
        completed = mae.complete(given, available, box, brain_padded)[0]
        for m, name in enumerate(MODALITIES):
            if name in scenario.missing:
                scores = region_scores(completed[m, :z, :y, :x], image[0, m, :z, :y, :x], brain, tumour)
                rows.append({"case_id": item["case_id"], "scenario": scenario.short, "sequence": name, **scores})
    return rows


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per missing sequence: the mean of every score over its rows (finite values only) and the row count."""
    out: dict[str, dict[str, float]] = {}
    for name in MODALITIES:
        mine = [r for r in rows if r["sequence"] == name]
        if not mine:
            continue
        out[name] = {"n": len(mine)}
        for key in FIELDS[3:]:
            values = [float(r[key]) for r in mine if math.isfinite(float(r[key]))]
            out[name][key] = sum(values) / len(values) if values else math.nan
    return out


def write_synthesis_tables(rows: list[dict], out_dir: str | Path) -> dict[str, dict[str, float]]:
    """``synthesis.csv`` (every row) and ``synthesis.md`` (per missing sequence) in ``out_dir``; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out_dir / "synthesis.csv", FIELDS, rows)
    summary = summarize(rows)
    lines = ["| missing sequence | " + " | ".join(label for label, _ in SCORES.values()) + " | rows |",
             "|---|" + "---:|" * (len(SCORES) + 1)]
    for name, s in summary.items():
        lines.append(f"| {MODALITY_DISPLAY[name]} | " + " | ".join(f"{s[key]:.{digits}f}" for key, (_, digits)
                                                                   in SCORES.items()) + f" | {s['n']} |")
    atomic_write_text(out_dir / "synthesis.md", "\n".join(lines) + "\n")
    return summary


def read_synthesis_rows(path: str | Path) -> list[dict]:
    """The rows of a ``synthesis.csv`` (scores as floats)."""
    with Path(path).open(newline="") as handle:
        return [{k: (v if k in FIELDS[:3] else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


def _paired_case_means(rows: list[dict], other_rows: list[dict], sequence: str, score: str):
    """``({(0, case): mean}, {(0, case): mean})`` of ``score`` for ``sequence`` over the (scenario) rows both tables
    hold with finite values, so that each case is averaged over the same scenarios on both sides."""
    def finite(source):
        return {(r["case_id"], r["scenario"]): float(r[score]) for r in source
                if r["sequence"] == sequence and math.isfinite(float(r[score]))}

    mine, theirs = finite(rows), finite(other_rows)
    out: tuple[dict, dict] = ({}, {})
    for case, scenario in sorted(set(mine) & set(theirs)):
        for side, values in zip(out, (mine, theirs)):
            side.setdefault((0, case), []).append(values[case, scenario])
    return tuple({key: sum(v) / len(v) for key, v in side.items()} for side in out)


def write_paired_table(rows: list[dict], other_rows: list[dict], out_dir: str | Path, *, name: str,
                       other_name: str) -> dict[str, dict[str, dict]]:
    """``synthesis_paired.md`` and ``synthesis_paired.json`` in ``out_dir``: per missing sequence and score, both
    MAEs' means and ``name`` minus ``other_name`` with its 95% bootstrap interval over the cases, on the (case,
    scenario) rows both tables hold (each case's mean over its scenarios). Returns ``{sequence: {score:
    Interval.to_json()}}`` of the differences; ValueError when the tables share no row."""
    from .bootstrap import paired_difference

    lines = [f"# Synthesis quality, paired: `{name}` minus `{other_name}`", "",
             "Each case's mean over the incomplete scenarios, evaluated in both, that lack the sequence; 95% bootstrap "
             f"interval over the cases. Positive: `{name}` synthesizes better. **Bold**: the interval excludes zero.",
             "", f"| missing sequence | score | `{other_name}` | `{name}` | difference | cases |",
             "|---|---|---:|---:|---:|---:|"]
    out: dict[str, dict[str, dict]] = {}
    for score, (label, digits) in SCORES.items():
        for sequence in MODALITIES:
            mine, theirs = _paired_case_means(rows, other_rows, sequence, score)
            if not mine:
                continue
            difference = paired_difference(mine, theirs)
            out.setdefault(sequence, {})[score] = difference.to_json()
            means = [f"{sum(side.values()) / len(side):.{digits}f}" for side in (theirs, mine)]
            lines.append(f"| {MODALITY_DISPLAY[sequence]} | {label} | {means[0]} | {means[1]} | "
                         f"{difference.format_difference(scale=1.0, digits=digits)} | {difference.n} |")
    if not out:
        raise ValueError(f"the synthesis tables of {name} and {other_name} share no case and scenario")
    atomic_write_text(Path(out_dir) / "synthesis_paired.md", "\n".join(lines) + "\n")
    atomic_write_json(Path(out_dir) / "synthesis_paired.json", {"name": name, "against": other_name, "level": 0.95,
                                                                "over": "cases", "differences": out})
    return out
