"""The paired synthesis table: per-case means over scenarios, and differences that are called only when real."""

import math

import numpy as np

from AllStageTraining.evaluation.synthesis_quality import FIELDS, case_means, write_paired_table


def rows_of(ssim_brain: dict[str, list[float]], sequence: str = "t1") -> list[dict]:
    """One row per (case, scenario) synthesizing ``sequence``, SSIM brain as given, the other scores fixed."""
    return [{"case_id": case, "scenario": f"S{i}", "sequence": sequence, **{k: 0.5 for k in FIELDS[3:]},
             "ssim_brain": value} for case, values in ssim_brain.items() for i, value in enumerate(values)]


def test_case_means_average_each_cases_scenarios_and_skip_nan():
    rows = rows_of({"a": [0.2, 0.4, math.nan], "b": [0.9]})
    assert case_means(rows, "t1", "ssim_brain") == {(0, "a"): 0.30000000000000004, (0, "b"): 0.9}
    assert case_means(rows, "t2", "ssim_brain") == {}


def test_paired_table_bolds_a_consistent_gain_and_not_noise(tmp_path):
    rng = np.random.default_rng(0)
    base = {f"c{i}": list(rng.uniform(0.2, 0.4, size=3)) for i in range(12)}
    better = {case: [v + 0.02 for v in values] for case, values in base.items()}
    noisy = {case: [v + rng.normal(0, 0.05) for v in values] for case, values in base.items()}
    gain = write_paired_table(rows_of(better), rows_of(base), tmp_path, name="new", other_name="old")
    interval = gain["t1"]["ssim_brain"]
    assert np.isclose(interval["mean"], 0.02) and interval["low"] > 0 and interval["n"] == 12
    table = (tmp_path / "synthesis_paired.md").read_text()
    assert "| T1 | SSIM brain |" in table and "**+0.020 [+0.020, +0.020]**" in table
    assert "| T1 | SSIM tumour |" in table and "| T2 |" not in table  # only sequences both scored
    noise = write_paired_table(rows_of(noisy), rows_of(base), tmp_path, name="new", other_name="old")
    assert noise["t1"]["ssim_brain"]["low"] < 0 < noise["t1"]["ssim_brain"]["high"]
