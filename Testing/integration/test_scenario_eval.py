"""The test-split evaluation: 15 scenarios per test case, only the scenario's sequences reach the predictor,
predictions land in ``pred/<case>/<scenario>.nii.gz``, and a rerun scores existing predictions instead of
recomputing them."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from AllStageTraining.constants import MODALITIES, SCENARIOS
from AllStageTraining.evaluation.scenario_eval import evaluate_split, prediction_path


class CountingPredictor:
    """A real tiny Predictor that also records which sequences each call received."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.calls: list[tuple[str, ...]] = []

    def predict(self, images, **kwargs):
        self.calls.append(tuple(m for m in MODALITIES if images.get(m) is not None))
        return self.predictor.predict(images, **kwargs)


@pytest.fixture(scope="module")
def tiny_predictor():
    from AllStageTraining.config import preset
    from AllStageTraining.inference.predictor import Predictor
    from AllStageTraining.nets.build import build_models

    cfg = preset("tiny")
    torch.manual_seed(0)
    embeddings = torch.randn(len(SCENARIOS), 512)  # stands in for the text encoder's output: any fixed codes
    mae, segmenter = build_models(cfg, embeddings)
    return Predictor(cfg, mae, segmenter, "cpu")


@pytest.fixture(scope="module")
def one_test_case_split(synthetic_root):
    from AllStageTraining.data.discovery import find_cases
    from AllStageTraining.data.splits import make_split

    cases = find_cases(synthetic_root)
    return make_split(cases, seed=0, val_fraction=0.0, test_fraction=1.0 / len(cases))


@pytest.mark.slow
def test_fifteen_scenarios_then_resume(tmp_path, tiny_predictor, one_test_case_split):
    torch.set_num_threads(2)
    split = one_test_case_split
    (case_id,) = split["test"]
    spy = CountingPredictor(tiny_predictor)
    seen = []
    table = evaluate_split(spy, split, tmp_path, method="tiny", progress=lambda f, text: seen.append(f))

    # every scenario once, with exactly its sequences
    assert sorted(spy.calls) == sorted(s.modalities for s in SCENARIOS)
    assert seen[-1] == pytest.approx(1.0) and len(seen) == len(SCENARIOS)
    assert (table.n_cases() == 1).all()
    for scenario in SCENARIOS:
        assert prediction_path(tmp_path, case_id, scenario).is_file()
    with (tmp_path / "table_summary.csv").open() as f:
        raw_rows = [r for r in csv.DictReader(f) if r["variant"] == "raw"]
    assert [r["scenario"] for r in raw_rows] == [s.short for s in SCENARIOS] + ["mean"]
    markdown = (tmp_path / "table.md").read_text()
    assert all(f"| {s.short} | {s.display} |" in markdown for s in SCENARIOS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["predictions_computed"] == 15 and summary["predictions_reused"] == 0
    assert summary["scored_subset"] == "test" and summary["scored_cases"] == [case_id]
    assert set(summary["mean_dice_postprocessed"]) == {"WT", "TC", "ET", "mean"}
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert not list(tmp_path.rglob("*.tmp*")), "no temporary prediction file may be left behind"

    # resume: one prediction lost; only that one is recomputed, the others are read back untouched
    lost = prediction_path(tmp_path, case_id, SCENARIOS[4])
    lost.unlink()
    kept = {s.short: prediction_path(tmp_path, case_id, s).stat().st_mtime_ns for s in SCENARIOS if s.index != 4}
    again = CountingPredictor(tiny_predictor)
    table2 = evaluate_split(again, split, tmp_path, method="tiny", progress=lambda f, text: None)
    assert again.calls == [SCENARIOS[4].modalities]
    assert all(prediction_path(tmp_path, case_id, s).stat().st_mtime_ns == kept[s.short]
               for s in SCENARIOS if s.index != 4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["predictions_computed"] == 1 and summary["predictions_reused"] == 14
    # the same network on the same inputs: the recomputed scores equal the first ones
    assert table2.overall_means() == pytest.approx(table.overall_means())
