"""Does the scenario prompt matter? The 15 x 15 prompt-sensitivity table, and the real-vs-synthesized check.

For every test case (all four sequences real), every row scenario S and every column scenario P: the case is
given only the sequences of S, the MAE completes the others (as at inference: where the MAE is for display
only, the others stay zero), and the segmenter runs with the prompt of P. Cell (S, P) holds the Dice of WT, TC
and ET. A model that uses its prompt scores best on the diagonal (P = S); one that ignores it has flat rows.

The same table answers a second question: column FC12 says how the model fares when completions are passed off
as real sequences. Cell (FC, FC12), real FLAIR and T1ce plus synthesized T1 and T2 under the all-four prompt,
against cell (FC12, FC12), all four real: a model that scores higher on its own completions than on real data
has learned the look of its completions. Where the MAE only synthesizes for display, row FC holds zero-filled
T1 and T2 unless the predictor is told to feed the completions (``evaluate --completions-as-inputs``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..constants import FULL_SCENARIO, REGIONS, SCENARIOS, scenario_by_short
from ..fileio import atomic_write_csv, atomic_write_text
from .metrics import region_dice

FIELDS = ("case_id", "given", "prompt", *REGIONS)


@torch.no_grad()
def case_prompt_table(predictor, case, scenarios: Iterable = SCENARIOS) -> list[dict]:
    """Rows ``{case_id, given, prompt, WT, TC, ET}`` for one preprocessed case with all four sequences and a label.

    ``predictor``: an ``inference.Predictor`` (its networks, device, threshold, precision and windows are used
    exactly as ``predict`` uses them); ``case``: a ``data.preprocess.PreprocessedCase``.
    """
    from ..data.dataset import ValidationCases
    from ..data.labels import labels_from_regions

    scenarios = list(scenarios)
    item = ValidationCases([case], multiple=predictor.divisor)[0]
    device = predictor.device
    z, y, x = item["shape"].tolist()
    image = item["image"][None].to(device)
    brain = item["brain"][None].to(device)
    inside = brain[0, 0, :z, :y, :x] > 0
    truth = torch.from_numpy(np.asarray(case.label)).to(device)
    threshold = math.log(predictor.cfg.inference.threshold / (1.0 - predictor.cfg.inference.threshold))
    rows = []
    for given in scenarios:
        available = torch.tensor([given.mask], dtype=torch.bool, device=device)
        visible = available[:, :, None, None, None]
        inputs = image * visible
        if given.missing and predictor.completes_inputs:
            recon = predictor.run_network(lambda v, b: predictor.mae(v, visible, b), inputs, (z, y, x), given)
            inputs = predictor.mae.merge(inputs, recon, available, brain)
        for prompt in scenarios:
            index = torch.tensor([prompt.index], device=device)
            segment = lambda v, b: predictor.segmenter(v, index.expand(len(v)), deep=False)["logits"]  # noqa: E731
            logits = predictor.run_network(segment, inputs, (z, y, x), given)[0, :, :z, :y, :x]
            labels = labels_from_regions(logits, threshold)
            labels[~inside] = 0
            rows.append({"case_id": case.case_id, "given": given.short, "prompt": prompt.short,
                         **region_dice(labels, truth)})
    return rows


def mean_table(rows: list[dict], region: str | None = None) -> np.ndarray:
    """(15, 15) mean Dice over cases: rows = given scenario, columns = prompt (SCENARIOS order); ``region`` None
    averages WT, TC and ET. Cells without rows are NaN."""
    sums, counts = np.zeros((len(SCENARIOS),) * 2), np.zeros((len(SCENARIOS),) * 2)
    for row in rows:
        i, j = scenario_by_short(row["given"]).index, scenario_by_short(row["prompt"]).index
        value = float(row[region]) if region else sum(float(row[r]) for r in REGIONS) / len(REGIONS)
        sums[i, j] += value
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts


def diagonal_advantage(table: np.ndarray) -> dict[str, float]:
    """How much the matched prompt beats the others, over the rows that are complete: mean over rows of
    (diagonal - row mean), the number of rows whose diagonal is the row's best, and the mean row range (max - min),
    all in Dice fractions."""
    rows = np.isfinite(table).all(axis=1)
    if not rows.any():
        return {"diagonal_minus_row_mean": math.nan, "rows_where_matched_is_best": 0, "mean_row_range": math.nan,
                "complete_rows": 0}
    full, diagonal = table[rows], np.diag(table)[rows]
    return {"diagonal_minus_row_mean": float(np.mean(diagonal - full.mean(axis=1))),
            "rows_where_matched_is_best": int(np.sum(diagonal >= full.max(axis=1) - 1e-12)),
            "mean_row_range": float(np.mean(full.max(axis=1) - full.min(axis=1))), "complete_rows": int(rows.sum())}


def real_versus_synthesized(rows: list[dict]) -> dict[str, float]:
    """WT/TC/ET/mean Dice of all four real (FC12 given, FC12 prompt) and of FLAIR + T1ce real with T1 and T2
    synthesized passed off as real (FC given, FC12 prompt), and real minus synthesized."""
    full = FULL_SCENARIO.short
    out = {}
    for tag, given in (("real", full), ("synthesized", "FC")):
        mine = [r for r in rows if r["given"] == given and r["prompt"] == full]
        for region in REGIONS:
            out[f"{tag}_{region}"] = float(np.mean([r[region] for r in mine])) if mine else math.nan
        out[f"{tag}_mean"] = float(np.mean([out[f"{tag}_{r}"] for r in REGIONS]))
    for key in (*REGIONS, "mean"):
        out[f"gap_{key}"] = out[f"real_{key}"] - out[f"synthesized_{key}"]
    return out


def write_prompt_tables(rows: list[dict], out_dir: str | Path, *, completed: bool) -> dict:
    """``prompts.csv`` (every row), ``prompts.md`` (the mean table and both checks) in ``out_dir``; returns the
    summary ``{"diagonal": ..., "real_vs_synthesized": ..., "n_cases": ...}``. ``completed``: whether the MAE completed the
    sequences a row lacks (False: a display-only MAE left them zero), which the captions say."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out_dir / "prompts.csv", FIELDS, rows)
    table = mean_table(rows)
    summary = {"diagonal": diagonal_advantage(table), "real_vs_synthesized": real_versus_synthesized(rows),
               "n_cases": len({r["case_id"] for r in rows})}
    shorts = [s.short for s in SCENARIOS]
    rest, t1_t2 = (("completed by the MAE", "synthesized") if completed else
                   ("zero: the MAE synthesizes for display only", "zero"))
    lines = [f"Mean Dice (%) over WT, TC and ET; rows: the sequences given (the rest {rest}); "
             "columns: the prompt. Bold: the best prompt of each row.", "",
             "| given \\ prompt | " + " | ".join(shorts) + " |", "|---|" + "---:|" * len(shorts)]
    for i, short in enumerate(shorts):
        best = np.max(table[i], initial=-np.inf, where=np.isfinite(table[i]))
        cells = [("–" if not np.isfinite(v) else f"**{100 * v:.1f}**" if v >= best - 1e-12 else f"{100 * v:.1f}")
                 for v in table[i]]
        lines.append(f"| {short} | " + " | ".join(cells) + " |")
    d, r = summary["diagonal"], summary["real_vs_synthesized"]
    lines += ["", f"Matched prompt minus row mean: {100 * d['diagonal_minus_row_mean']:+.2f} Dice points on average; "
              f"the matched prompt is the best of its row in {d['rows_where_matched_is_best']} of {d['complete_rows']} "
              f"rows; mean row "
              f"range {100 * d['mean_row_range']:.2f} points.", "",
              f"All four real vs FLAIR + T1ce real with T1 and T2 {t1_t2} (both under the FC12 prompt), Dice (%): "
              + ", ".join(f"{k} {100 * r['real_' + k]:.1f} vs {100 * r['synthesized_' + k]:.1f}"
                          for k in (*REGIONS, "mean")) + "."]
    atomic_write_text(out_dir / "prompts.md", "\n".join(lines) + "\n")
    return summary
