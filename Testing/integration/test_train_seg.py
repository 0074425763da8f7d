"""Stage 2: student subsets, the no-gradient-to-teacher rule, switchable loss terms, and a short real run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from AllStageTraining.config import preset
from AllStageTraining.constants import FULL_SCENARIO, MODALITIES, SCENARIOS
from AllStageTraining.methods import configure, get_method
from AllStageTraining.nets.build import build_models
from AllStageTraining.training.engine import TrainStep, step_generator
from AllStageTraining.training.stage2 import SegObjective, scenario_indices

torch.set_num_threads(1)
SHAPE = (16, 16, 16)


def _batch(available) -> dict:
    g = torch.Generator().manual_seed(3)
    available = torch.tensor(available, dtype=torch.bool)
    n = available.shape[0]
    image = torch.randn(n, 4, *SHAPE, generator=g) * available[:, :, None, None, None]
    label = (torch.rand(n, 3, *SHAPE, generator=g) > 0.7).float()
    box = torch.tensor([[-1.0, 1.0]] * 3).expand(n, 3, 2).clone()
    brain = torch.zeros(n, 1, *SHAPE)
    brain[..., 2:14, 3:13, 1:15] = 1  # a brain smaller than the crop: completions must be 0 outside it
    return {"image": image * brain, "available": available, "label": label, "brain": brain, "box": box}


def _objective(method="ours", **seg_overrides) -> SegObjective:
    cfg = configure(preset("tiny"), method)
    cfg.seg = dataclasses.replace(cfg.seg, **seg_overrides)
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), 12), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    return SegObjective(segmenter, mae, cfg.seg, get_method(method).objective)


AVAILABLE = [[True, False, True, True], [True, True, True, True], [False, True, False, False]]


def test_scenario_indices_follow_the_scenario_table():
    masks = torch.tensor([s.mask for s in SCENARIOS])
    assert scenario_indices(masks).tolist() == list(range(len(SCENARIOS)))
    with pytest.raises(ValueError):
        scenario_indices(torch.zeros(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("method", ["ours", "m3ae-style"])
def test_distillation_sends_no_gradient_to_the_teacher_rows(method):
    objective = _objective(method)
    batch = _batch(AVAILABLE)
    views = objective.views(batch, step_generator(0, 0))
    terms = objective.losses(views, batch["label"])
    logits, bottleneck = views.outputs["logits"], views.outputs["bottleneck"]
    n = views.batch
    first_teaches = views.teacher.tolist()
    teacher_rows = [b if first_teaches[b] else n + b for b in range(n)]
    student_rows = [n + b if first_teaches[b] else b for b in range(n)]
    distill = terms["logit_distill"] + terms["feat_distill"]
    g_logits, g_feat = torch.autograd.grad(distill, [logits, bottleneck], retain_graph=True)
    assert float(g_logits[teacher_rows].abs().max()) == 0.0
    assert float(g_feat[teacher_rows].abs().max()) == 0.0
    assert float(g_logits[student_rows].abs().max()) > 0.0
    assert float(g_feat[student_rows].abs().max()) > 0.0
    # the teacher's own segmentation loss does reach the teacher rows (shared weights learn from both views)
    (g_seg,) = torch.autograd.grad(terms["seg_teacher"], [logits])
    assert float(g_seg[teacher_rows].abs().max()) > 0.0 and float(g_seg[student_rows].abs().max()) == 0.0


def _spy_views(objective, batch, step):
    """The objective's views of ``batch`` with what reached the segmenter: (views, inputs, scenario indices)."""
    seen = {}
    original = objective.segmenter.forward

    def spy(x, scenario):
        seen["x"], seen["scenario"] = x.detach(), scenario
        return original(x, scenario)

    objective.segmenter.forward = spy
    views = objective.views(batch, step_generator(0, step))
    return views, seen["x"], seen["scenario"]


@pytest.mark.parametrize("teacher_prompt", ["full", "real"])
def test_views_of_ours_are_exactly_the_design(teacher_prompt):
    """Teacher: the real A, the rest completed by the frozen MAE from A (prompt FC12, or A's with "real");
    student: a subset S of A kept real, the rest completed from S (prompt of S); both equal
    ``mae.complete`` of the same inputs, so 0 outside the brain."""
    objective = _objective("ours", teacher_prompt=teacher_prompt)
    batch = _batch(AVAILABLE)
    views, inputs, scenario = _spy_views(objective, batch, 1)
    n = views.batch
    teacher_mask, student_mask = views.masks[:n], views.masks[n:]
    assert torch.equal(teacher_mask, batch["available"])
    assert not bool((student_mask & ~batch["available"]).any()) and bool(student_mask.any(1).all())
    expected_prompt = [FULL_SCENARIO.index] * n if teacher_prompt == "full" else scenario_indices(teacher_mask).tolist()
    assert scenario[:n].tolist() == expected_prompt
    assert scenario[n:].tolist() == scenario_indices(student_mask).tolist()
    x, box, brain = batch["image"], batch["box"], batch["brain"]
    mae = objective.frozen_mae
    with torch.no_grad():
        for rows, mask in ((slice(0, n), teacher_mask), (slice(n, 2 * n), student_mask)):
            for b in range(n):
                kept = x[b : b + 1] * mask[b, :, None, None, None]
                if bool(mask[b].all()):
                    expected = x[b : b + 1]
                else:
                    expected = mae.complete(kept, mask[b : b + 1], box[b : b + 1], brain[b : b + 1])
                got = inputs[rows][b : b + 1]
                assert torch.equal(got[:, mask[b]], x[b : b + 1, mask[b]])  # real channels: exactly the input
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)  # batched vs single: rounding
    outside = brain[:, 0] == 0
    assert float(inputs[:, :, outside[0]].abs().max()) == 0.0


def test_zero_fill_sees_zeros_outside_the_subset_and_only_a_segmentation_term():
    objective = _objective("zero-fill")
    assert objective.frozen_mae is None
    batch = _batch(AVAILABLE)
    views = objective.views(batch, step_generator(0, 2))
    terms = objective.losses(views, batch["label"])
    assert set(terms) == {"loss", "seg"}
    assert not bool((views.masks & ~batch["available"]).any())


def test_m3ae_style_without_an_mae_distills_between_two_zero_filled_views():
    """``m3ae-style-no-mae``: the self-distillation objective with no MAE anywhere; each view keeps its subset's
    real channels and zero elsewhere, and the view with more real sequences teaches."""
    objective = _objective("m3ae-style-no-mae")
    assert objective.frozen_mae is None
    batch = _batch(AVAILABLE)
    views, inputs, _ = _spy_views(objective, batch, 4)
    n = views.batch
    assert torch.equal(inputs, torch.cat([batch["image"]] * 2) * views.masks[:, :, None, None, None])
    assert views.teacher.tolist() == (views.masks[:n].sum(1) >= views.masks[n:].sum(1)).tolist()
    assert {"logit_distill", "feat_distill"} <= set(objective.losses(views, batch["label"]))
    with pytest.raises(ValueError, match="needs the stage-1 MAE"):
        SegObjective(objective.segmenter, None, objective.cfg, get_method("ours").objective)


TERMS = {"w_seg_teacher": "seg_teacher", "w_seg_student": "seg_student", "w_logit_distill": "logit_distill",
         "w_feat_distill": "feat_distill"}


@pytest.mark.parametrize("weight_name", list(TERMS))
def test_a_term_switched_off_is_neither_computed_nor_in_the_total(weight_name):
    objective = _objective("ours", **{weight_name: 0.0})
    batch = _batch(AVAILABLE)
    terms = objective(batch, step_generator(0, 3))
    assert TERMS[weight_name] not in terms
    cfg = objective.cfg
    expected = sum(getattr(cfg, w) * terms[t] for w, t in TERMS.items() if t in terms)
    assert set(terms) == {"loss"} | {t for w, t in TERMS.items() if w != weight_name}
    assert torch.allclose(terms["loss"], expected)


def test_the_frozen_mae_is_outside_the_trained_module_and_does_not_change():
    objective = _objective("ours")
    assert not any(name.startswith("frozen_mae") for name in objective.state_dict())
    assert all(not p.requires_grad for p in objective.frozen_mae.parameters())
    names = {n for n, _ in objective.named_parameters()}
    assert names and all(n.startswith("segmenter.") for n in names)
    mae_before = {k: v.clone() for k, v in objective.frozen_mae.state_dict().items()}
    seg_before = {k: v.clone() for k, v in objective.segmenter.state_dict().items()}
    optim = dataclasses.replace(preset("tiny").optim_seg, steps=2)
    step = TrainStep(objective, objective, optim, torch.device("cpu"))
    for k in range(2):
        step(_batch(AVAILABLE), step_generator(0, k))
    assert all(torch.equal(v, mae_before[k]) for k, v in objective.frozen_mae.state_dict().items())
    assert any(not torch.equal(v, seg_before[k]) for k, v in objective.segmenter.state_dict().items())


def test_term_gradient_norms_scale_with_the_term_and_skip_the_total():
    from AllStageTraining.training.gradient_shares import term_gradient_norms

    objective = _objective("ours")
    batch = _batch(AVAILABLE)
    terms = objective(batch, step_generator(0, 0))
    params = [p for p in objective.parameters() if p.requires_grad]
    norms = term_gradient_norms({**terms, "tripled": 3 * terms["seg_student"]}, params)
    assert set(norms) == {"seg_teacher", "seg_student", "logit_distill", "feat_distill", "tripled"}
    assert all(n > 0 for n in norms.values())
    assert norms["tripled"] == pytest.approx(3 * norms["seg_student"], rel=1e-5)
    terms["loss"].backward()  # the graph was kept for the training step
    assert all(p.grad is not None for p in params)


def test_gradient_shares_of_a_run_folder(tiny_run, tiny_split, tmp_path, capsys):
    import shutil

    from AllStageTraining.config import RunConfig
    from AllStageTraining.training import gradient_shares

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copyfile(tiny_split, run / "split.json")
    assert gradient_shares.main([str(run), "--batches", "1", "--threads", "1"]) == 0
    printed = {line.split()[0]: [float(v) for v in line.split()[1:]]
               for line in capsys.readouterr().out.splitlines()[1:]}
    kind = RunConfig.load(run / "config.json").seg.distill_kind
    assert set(printed) == {"seg_teacher", "seg_student", "logit_distill", "feat_distill",
                            "logit_distill_mse", "logit_distill_kl", "feat_distill_mse"}
    assert printed["logit_distill"] == pytest.approx(printed[f"logit_distill_{kind}"], rel=1e-4)
    assert printed["feat_distill"] == pytest.approx(printed["feat_distill_mse"], rel=1e-4)
    assert all(value >= 0 and norm > 0 for value, norm in printed.values())
