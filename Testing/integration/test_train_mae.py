"""Stage 1: the objective's terms, and a real learning check on synthetic cases (CPU)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from AllStageTraining.config import preset
from AllStageTraining.constants import MODALITIES
from AllStageTraining.nets.mae import MultimodalMAE
from AllStageTraining.training.engine import step_generator
from AllStageTraining.training.stage1 import MAEObjective

torch.set_num_threads(1)
SHAPE = (16, 16, 16)


def _batch() -> dict:
    g = torch.Generator().manual_seed(0)
    available = torch.tensor([[True, False, True, True], [True, True, True, True]])
    image = torch.randn(2, 4, *SHAPE, generator=g) * available[:, :, None, None, None]
    box = torch.tensor([[-1.0, 1.0]] * 3).expand(2, 3, 2).clone()
    return {"image": image, "available": available, "brain": torch.ones(2, 1, *SHAPE), "box": box}


def _objective(**mae_overrides) -> MAEObjective:
    cfg = preset("tiny")
    mae_cfg = dataclasses.replace(cfg.mae, **mae_overrides)
    torch.manual_seed(0)
    return MAEObjective(MultimodalMAE(cfg.net, mae_cfg), mae_cfg)


def test_every_term_is_weighted_into_the_total_and_the_ema_learns_only_present_sequences():
    objective = _objective()
    terms = objective(_batch(), step_generator(0, 0))
    cfg = objective.cfg
    assert set(terms) == {"loss", "rec", "pop", "cons", "fill_reg"}
    expected = terms["rec"] + cfg.w_pop * terms["pop"] + cfg.w_cons * terms["cons"] + cfg.w_fill_reg * terms["fill_reg"]
    assert torch.allclose(terms["loss"], expected)
    assert objective.mae.quantile_ema.initialized.tolist() == [True, True, True, True]
    only_flair = _batch()
    only_flair["available"] = torch.tensor([[True, False, False, False]] * 2)
    objective = _objective()
    objective(only_flair, step_generator(0, 0))
    assert objective.mae.quantile_ema.initialized.tolist() == [True, False, False, False]


@pytest.mark.parametrize("off", ["w_pop", "w_cons", "w_fill_reg"])
def test_a_term_switched_off_is_absent_and_views_are_their_own_setting(off):
    objective = _objective(**{off: 0.0})
    calls = []
    forward = objective.mae.forward
    objective.mae.forward = lambda x, *rest: calls.append(x.shape[0]) or forward(x, *rest)
    terms = objective(_batch(), step_generator(0, 0))
    name = {"w_pop": "pop", "w_cons": "cons", "w_fill_reg": "fill_reg"}[off]
    assert name not in terms
    assert calls == [4]  # two views of the 2 samples in one batch, with or without L_cons (mae.views = 2)
    cfg = objective.cfg
    weights = {"pop": cfg.w_pop, "cons": cfg.w_cons, "fill_reg": cfg.w_fill_reg}
    expected = terms["rec"] + sum(weights[k] * terms[k] for k in weights if k in terms)
    assert torch.allclose(terms["loss"], expected)


@pytest.mark.slow
def test_tiny_mae_reconstructs_held_out_sequences_better_than_the_learned_fill(tmp_path, tiny_split):
    """80 steps on four synthetic training cases; validation holds out each sequence of the val case."""
    from safetensors.torch import load_file

    from AllStageTraining.config import RunConfig
    from AllStageTraining.training.stage1 import train_mae

    cfg = preset("tiny")
    cfg.mae = dataclasses.replace(cfg.mae, w_cons=0.0, views=1)  # one view per step: the check is about L_rec
    cfg.optim_mae = dataclasses.replace(cfg.optim_mae, steps=80, lr=1e-2, ckpt_every=1000, log_every=20, val_every=0)
    path = train_mae(cfg, tiny_split, tmp_path / "mae", device="cpu")

    from AllStageTraining.methods import configure

    assert RunConfig.load(tmp_path / "mae" / "config.json") == configure(cfg)  # as the method trains it
    mae = MultimodalMAE(cfg.net, cfg.mae)
    mae.load_state_dict(load_file(path))
    assert bool(mae.quantile_ema.initialized.all())
    report = json.loads((tmp_path / "mae" / "val" / "step_000080.json").read_text())
    sequences = report["sequences"]
    assert set(sequences) == set(MODALITIES)  # the val case has all four; each was held out
    for scores in sequences.values():
        assert {"psnr", "ssim", "fill_psnr", "fill_ssim", "n_cases"} <= set(scores)
    psnr = sum(s["psnr"] for s in sequences.values()) / 4
    fill_psnr = sum(s["fill_psnr"] for s in sequences.values()) / 4
    ssim = sum(s["ssim"] for s in sequences.values()) / 4
    fill_ssim = sum(s["fill_ssim"] for s in sequences.values()) / 4
    assert psnr > fill_psnr + 0.3, sequences
    assert ssim > fill_ssim, sequences
    assert sum(s["psnr"] > s["fill_psnr"] for s in sequences.values()) >= 3, sequences
    assert list((tmp_path / "mae" / "tb").glob("events.out.tfevents.*"))


def test_one_view_is_drawn_when_asked_and_consistency_needs_two():
    objective = _objective(w_cons=0.0, views=1)
    calls = []
    forward = objective.mae.forward
    objective.mae.forward = lambda x, *rest: calls.append(x.shape[0]) or forward(x, *rest)
    terms = objective(_batch(), step_generator(0, 0))
    assert calls == [2] and "cons" not in terms
    with pytest.raises(ValueError, match="views"):
        _objective(views=1)  # w_cons > 0 needs two views
