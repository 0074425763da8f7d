"""The ``m3ae-style`` ablations trained for real: ``-no-init`` draws the segmenter's initial weights where
``m3ae-style`` copies its MAE's encoder and decoder, and ``-no-mae`` trains and predicts without any MAE."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from AllStageTraining.config import preset
from AllStageTraining.inference.predictor import Predictor
from AllStageTraining.layout import MODEL_FILE
from AllStageTraining.methods import configure

pytestmark = pytest.mark.slow
LADDER = ("m3ae-style", "m3ae-style-no-init", "m3ae-style-no-mae")


@pytest.fixture(scope="module")
def runs(tiny_split, tmp_path_factory):
    """The run folder holding one folder per LADDER method: 2 MAE steps (shared by the first two), 1 segmenter step."""
    from AllStageTraining.pipeline.run import train_and_evaluate

    root = tmp_path_factory.mktemp("m3ae_ladder")
    base = preset("tiny").with_fields({"optim_mae.steps": 2, "optim_seg.steps": 1})
    for method in LADDER:
        shared = root / "m3ae-style" / "mae" if method == "m3ae-style-no-init" else None
        train_and_evaluate(configure(base, method), tiny_split, root / method, device="cpu", until="seg",
                           mae_from=shared, log=lambda line: None)
    return root


def _largest_gap_to_the_mae(runs, method: str) -> float:
    """Max |segmenter - MAE| over the convolution kernels of the shared encoder and decoder, after one step."""
    mae = load_file(runs / "m3ae-style" / "mae" / MODEL_FILE)
    seg = load_file(runs / method / "seg" / MODEL_FILE)
    shared = [k for k in seg if k.startswith(("backbone.encoder.", "backbone.decoder.")) and seg[k].ndim == 5]
    assert shared and all(k in mae and mae[k].shape == seg[k].shape for k in shared)
    return max(float((seg[k] - mae[k]).abs().max()) for k in shared)


def test_only_m3ae_style_starts_its_segmenter_from_the_mae(runs):
    first, second = (load_file(runs / m / "mae" / MODEL_FILE) for m in LADDER[:2])  # one MAE for both
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert _largest_gap_to_the_mae(runs, "m3ae-style") < 1e-2  # one Adam step from the copied weights
    assert _largest_gap_to_the_mae(runs, "m3ae-style-no-init") > 0.1  # drawn, not copied


def test_without_an_mae_it_trains_and_predicts_from_zero_filled_inputs(runs, make_case):
    assert not (runs / "m3ae-style-no-mae" / "mae").exists()
    predictor = Predictor.from_run(runs / "m3ae-style-no-mae", device="cpu", precision="float32")
    assert predictor.mae is None and not predictor.completes_inputs
    paths = make_case(seed=2, modalities=("flair", "t1"))
    prediction = predictor.predict({"flair": paths["flair"], "t1": paths["t1"]})
    assert not prediction.reconstructions
