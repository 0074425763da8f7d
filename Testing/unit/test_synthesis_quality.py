"""The paired synthesis table: each case averaged over the scenarios both tables hold, differences bold only when
their interval excludes zero."""

import json

import numpy as np
import pytest

from AllStageTraining.evaluation.synthesis_quality import FIELDS, write_paired_table


def rows_of(ssim_brain: dict[str, list[float]], sequence: str = "t1") -> list[dict]:
    """One row per (case, scenario S0, S1, ...) synthesizing ``sequence``: SSIM brain as given, the rest 0.5."""
    return [{"case_id": case, "scenario": f"S{i}", "sequence": sequence, **{k: 0.5 for k in FIELDS[3:]},
             "ssim_brain": value} for case, values in ssim_brain.items() for i, value in enumerate(values)]


def test_a_consistent_gain_is_bold_with_the_means_in_their_columns_and_noise_is_not(tmp_path):
    rng = np.random.default_rng(0)
    base = {f"c{i}": list(rng.uniform(0.2, 0.4, size=3)) for i in range(12)}
    better = {case: [v + 0.02 for v in values] for case, values in base.items()}
    gain = write_paired_table(rows_of(better), rows_of(base), tmp_path, name="new", other_name="old")
    interval = gain["t1"]["ssim_brain"]
    assert np.isclose(interval["mean"], 0.02) and interval["low"] > 0 and interval["n"] == 12
    table = (tmp_path / "synthesis_paired.md").read_text()
    old_mean = np.mean([np.mean(v) for v in base.values()])
    assert f"| T1 | SSIM brain | {old_mean:.3f} | {old_mean + 0.02:.3f} | **+0.020 [+0.020, +0.020]** | 12 |" in table
    assert "| T1 | PSNR tumour (dB) | 0.50 | 0.50 | +0.00 [+0.00, +0.00] | 12 |" in table and "| T2 |" not in table
    assert json.loads((tmp_path / "synthesis_paired.json").read_text())["differences"]["t1"]["ssim_brain"] == interval

    noisy = {case: [v + rng.normal(0, 0.05) for v in values] for case, values in base.items()}
    noise = write_paired_table(rows_of(noisy), rows_of(base), tmp_path, name="new", other_name="old")
    assert noise["t1"]["ssim_brain"]["low"] < 0 < noise["t1"]["ssim_brain"]["high"]
    assert "**" not in (tmp_path / "synthesis_paired.md").read_text().split("| missing sequence")[1]


def test_cases_are_averaged_over_the_scenarios_both_scored_with_finite_values(tmp_path):
    """Rows one table lacks, and NaN rows, leave both sides: the difference compares like with like."""
    mine = rows_of({"a": [0.4, 0.9], "b": [0.3, float("nan")]})
    theirs = rows_of({"a": [0.2], "b": [0.1, 0.8]})  # no S1 for case a
    out = write_paired_table(mine, theirs, tmp_path, name="new", other_name="old")
    assert out["t1"]["ssim_brain"]["mean"] == pytest.approx(0.2)  # a: 0.4 - 0.2, b: 0.3 - 0.1 (S1 NaN in mine)
    with pytest.raises(ValueError, match="share no case"):
        write_paired_table(rows_of({"a": [0.4]}), rows_of({"z": [0.4]}), tmp_path, name="new", other_name="old")
