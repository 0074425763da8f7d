"""On briefly trained tiny ``ours`` and ``ours-display-mae`` models: the prompt matters, the prompt-sensitivity table agrees with
``predict``, the synthesis-quality rows are complete, and bfloat16 training tracks float32."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AllStageTraining.config import preset
from AllStageTraining.constants import MODALITIES, REGIONS, SCENARIOS, scenario_by_short
from AllStageTraining.evaluation.metrics import region_dice
from AllStageTraining.evaluation.prompt_sensitivity import case_prompt_table, mean_table, write_prompt_tables
from AllStageTraining.evaluation.synthesis_quality import case_synthesis_scores, region_scores, summarize
from AllStageTraining.inference.predictor import Predictor
from AllStageTraining.methods import configure

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["ours", "ours-display-mae"])
def trained(request, tiny_split, tmp_path_factory):
    """(predictor, test case files, preprocessed test case) of a tiny run trained for 12 + 12 steps: ``ours``
    (the MAE completes the segmenter's inputs) and the default ``ours-display-mae`` (it only synthesizes)."""
    from AllStageTraining.data.preprocess import load_case
    from AllStageTraining.data.splits import cases_for_split, load_split
    from AllStageTraining.pipeline.run import train_and_evaluate

    cfg = configure(preset("tiny"), request.param).with_fields(
        {"optim_mae.steps": 12, "optim_seg.steps": 12, "seg.embedding_norm": "centre"})
    run = tmp_path_factory.mktemp("trained") / request.param
    train_and_evaluate(cfg, tiny_split, run, device="cpu", until="seg", log=lambda line: None)
    predictor = Predictor.from_run(run, device="cpu", precision="float32")
    files = cases_for_split(load_split(tiny_split), "test")[0]
    case = load_case(files.images, files.label, case_id=files.case_id)  # as predict reads it (float32)
    return predictor, files, case


def test_the_prompt_changes_the_output_of_a_trained_model(trained):
    predictor, _, case = trained
    rows = case_prompt_table(predictor, case, [scenario_by_short("FC12"), scenario_by_short("F")])
    by_prompt = {}
    with torch.no_grad():
        x = torch.zeros(1, 4, 32, 32, 32)
        for s in SCENARIOS:
            by_prompt[s.short] = predictor.segmenter(x, torch.tensor([s.index]))["logits"]
    spread = max(float((by_prompt[s.short] - by_prompt["FC12"]).abs().max()) for s in SCENARIOS)
    assert spread > 1e-3
    assert len(rows) == 4 and {r["prompt"] for r in rows} == {"FC12", "F"}


@pytest.mark.parametrize("window", [None, "crop"])
def test_prompt_table_matched_cells_equal_what_predict_gives(trained, tmp_path, window, monkeypatch):
    predictor, files, case = trained
    monkeypatch.setattr(predictor.cfg.inference, "window", window)  # "crop": 32^3 windows over a 32x40x32 crop
    monkeypatch.setattr(predictor.cfg.inference, "overlap", 0.25)
    chosen = [scenario_by_short(s) for s in ("FC12", "C2", "1")]
    rows = case_prompt_table(predictor, case, chosen)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(files.label)))
    for scenario in chosen:
        result = predictor.predict({m: (files.images[m] if m in scenario.modalities else None) for m in MODALITIES})
        expected = region_dice(sitk.GetArrayFromImage(result.labels), truth)
        (cell,) = [r for r in rows if r["given"] == scenario.short and r["prompt"] == scenario.short]
        for region in REGIONS:
            assert cell[region] == pytest.approx(expected[region], abs=1e-6)
    summary = write_prompt_tables(rows, tmp_path, completed=predictor.completes_inputs)
    assert summary["n_cases"] == 1
    caption = (tmp_path / "prompts.md").read_text()
    assert ("completed by the MAE" in caption) == predictor.completes_inputs
    assert ("T1 and T2 zero" in caption) != predictor.completes_inputs
    table = mean_table(rows)
    assert np.isfinite(table[[s.index for s in chosen]][:, [s.index for s in chosen]]).all()


def test_synthesis_rows_cover_every_missing_sequence_of_every_incomplete_scenario(trained):
    from AllStageTraining.data.dataset import ValidationCases

    predictor, _, case = trained
    item = ValidationCases([case], multiple=predictor.divisor)[0]
    rows = case_synthesis_scores(predictor.mae, item, predictor.device)
    assert len(rows) == sum(len(s.missing) for s in SCENARIOS)  # 28
    summary = summarize(rows)
    assert sorted(summary) == sorted(MODALITIES) and all(s["n"] == 7 for s in summary.values())
    for row in rows:
        assert -1.0 <= row["ssim_brain"] <= 1.0 and math.isfinite(row["psnr_healthy"])


def test_region_scores_are_perfect_for_a_perfect_synthesis_and_lower_for_noise():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(20, 20, 20, generator=g)
    brain = torch.zeros(20, 20, 20, dtype=torch.bool)
    brain[2:18, 2:18, 2:18] = True
    tumour = torch.zeros_like(brain)
    tumour[8:12, 8:12, 8:12] = True
    perfect = region_scores(target, target, brain, tumour)
    assert perfect["ssim_brain"] == pytest.approx(1.0, abs=1e-6) and math.isinf(perfect["psnr_tumour"])
    noisy = region_scores(target + torch.randn(20, 20, 20, generator=g), target, brain, tumour)
    assert noisy["ssim_brain"] < 0.8 and 0 < noisy["psnr_healthy"] < 40


def test_bfloat16_training_tracks_float32():
    """The same tiny MAE steps in bfloat16 autocast and in float32 reach the same loss within tolerance."""
    from AllStageTraining.nets.mae import MultimodalMAE
    from AllStageTraining.training.engine import TrainStep, step_generator
    from AllStageTraining.training.stage1 import MAEObjective
    from AllStageTraining.training.step_rate import random_batch

    cfg = preset("tiny")
    losses = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        objective = MAEObjective(MultimodalMAE(cfg.net, cfg.mae), cfg.mae)
        optim = dataclasses.replace(cfg.optim_mae, steps=30, precision=precision, lr=3e-3)
        step = TrainStep(objective, objective, optim, torch.device("cpu"))
        assert step.precision == precision
        batch = random_batch(cfg, 2, torch.device("cpu"))
        losses[precision] = [float(step(batch, step_generator(0, k))["loss"]) for k in range(30)]
    first, last = losses["float32"][0], np.mean(losses["float32"][-5:])
    assert last < 0.9 * first  # it learns
    assert np.mean(losses["bfloat16"][-5:]) == pytest.approx(last, rel=0.1)
