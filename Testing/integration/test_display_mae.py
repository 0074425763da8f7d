"""The default method ``ours-display-mae``: its labels come from a segmenter trained exactly as ``ours-no-mae``'s
(the MAE never reaches it), and its MAE only synthesizes the missing sequences for display."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file

from AllStageTraining.config import RunConfig, preset
from AllStageTraining.inference.predictor import Predictor
from AllStageTraining.methods import DEFAULT_METHOD, configure

pytestmark = pytest.mark.slow
STEPS = 4  # per stage: the segmenters of both methods train 2 * STEPS steps


@pytest.fixture(scope="module")
def runs(tiny_split, tmp_path_factory):
    """{method: run folder}: ``ours-display-mae`` and ``ours-no-mae`` at the same budget (STEPS + STEPS), seed and
    data."""
    from AllStageTraining.pipeline.run import train_and_evaluate

    root, base = tmp_path_factory.mktemp("display"), preset("tiny")
    base = base.with_fields({"optim_mae.steps": STEPS, "optim_seg.steps": STEPS})
    methods = (DEFAULT_METHOD, "ours-no-mae")
    for method in methods:
        cfg = configure(base, method)
        assert cfg.optim_seg.steps == 2 * STEPS
        train_and_evaluate(cfg, tiny_split, root / method, device="cpu", until="seg", log=lambda line: None)
    return {method: root / method for method in methods}


def test_the_default_method_is_ours_display_mae():
    assert RunConfig().method == DEFAULT_METHOD == "ours-display-mae"


def test_its_segmenter_is_trained_as_ours_no_mae(runs):
    display, no_mae = (load_file(runs[m] / "seg" / "model.safetensors") for m in (DEFAULT_METHOD, "ours-no-mae"))
    assert (runs[DEFAULT_METHOD] / "mae" / "model.safetensors").is_file()
    assert display.keys() == no_mae.keys()
    changed = [k for k in display if not torch.equal(display[k], no_mae[k])]
    assert not changed, changed[:5]


def test_predict_synthesizes_for_display_and_segments_the_zero_filled_input(runs, make_case):
    paths = make_case(seed=4, modalities=("flair", "t1ce"))
    predictor = Predictor.from_run(runs[DEFAULT_METHOD], device="cpu", precision="float32")
    zero_fill = Predictor(predictor.cfg, None, predictor.segmenter, "cpu", precision="float32")
    assert predictor.mae is not None and not predictor.completes_inputs
    images = {"flair": paths["flair"], "t1ce": paths["t1ce"]}
    shown = predictor.predict(images)
    assert sorted(shown.reconstructions) == ["t1", "t2"]
    brain = sitk.GetArrayFromImage(shown.brain_mask) > 0
    for image in shown.reconstructions.values():
        values = sitk.GetArrayFromImage(image)
        assert np.ptp(values[brain]) > 0 and not values[~brain].any()
    labels = sitk.GetArrayFromImage(shown.labels)
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(zero_fill.predict(images).labels))
    completing = Predictor(configure(predictor.cfg, "ours"), predictor.mae, predictor.segmenter, "cpu",
                           precision="float32")
    seen = {}

    def record(module, args) -> None:  # the segmenter's input of each predict call (one pass: no window)
        seen[len(seen)] = args[0].clone()

    hook = predictor.segmenter.register_forward_pre_hook(record)
    try:
        predictor.predict(images)
        completing.predict(images)
    finally:
        hook.remove()
    assert not seen[0][:, 2:].any() and seen[0][:, :2].any()  # T1, T2 channels: zero for the segmenter
    assert seen[1][:, 2:].abs().sum() > 0  # where the MAE completes the inputs (ours), they are not
    unasked = predictor.predict(images, synthesize=False)
    assert unasked.reconstructions == {} and "reconstruct" not in unasked.timings and "reconstruct" in shown.timings
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(unasked.labels))
    assert any("for display" in line for line in shown.log)


def test_its_bundle_says_the_mae_is_for_display_and_evaluate_can_feed_the_completions(runs, tiny_split, tmp_path,
                                                                                      capsys):
    from AllStageTraining.cli import main
    from AllStageTraining.inference.bundle import export_bundle

    bundle = export_bundle(runs[DEFAULT_METHOD], tmp_path / "bundle.zip", {"note": "tiny test model"})
    with zipfile.ZipFile(bundle) as archive:
        meta = json.loads(archive.read("bundle.json"))
    assert (meta["method"], meta["has_mae"], meta["mae_completes_inputs"]) == (DEFAULT_METHOD, True, False)
    assert not Predictor.from_bundle(bundle, device="cpu").completes_inputs
    out = tmp_path / "fed"
    args = ["evaluate", "--bundle", str(bundle), "--split", str(tiny_split), "--scenarios", "FC,FC12", "--out",
            str(out), "--device", "cpu", "--threads", "1"]
    assert main([*args, "--completions-as-inputs", "--prompt-table-cases", "1"]) == 0
    assert json.loads((out / "pred" / "bundle.json").read_text())["completions_as_inputs"] is True
    assert "real_mean" in json.loads((out / "prompts.json").read_text())["real_vs_synthesized"]
    capsys.readouterr()
    assert main(args) == 2  # its predictions are not this bundle's as it runs by default
    assert "made with --completions-as-inputs" in capsys.readouterr().err
