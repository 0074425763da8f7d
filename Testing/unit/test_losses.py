"""Stage-1 and stage-2 losses: what each one sees and where its gradient goes."""

import pytest
import torch

from AllStageTraining.config import preset
from AllStageTraining.nets.losses import (
    consistency_loss,
    feature_distillation,
    fill_regularizer,
    logit_distillation,
    population_loss,
    reconstruction_loss,
    segmentation_loss,
)
from AllStageTraining.nets.mae import LearnedFill, QuantileEMA, random_visibility

torch.set_num_threads(1)
SHAPE = (16, 16, 16)
AVAILABLE = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)


def brain_mask():
    brain = torch.zeros(2, 1, *SHAPE)
    brain[:, :, 2:14, 3:13, 2:14] = 1
    return brain


def test_reconstruction_loss_ignores_absent_sequences():
    torch.manual_seed(0)
    recon = torch.randn(2, 4, *SHAPE, requires_grad=True)
    target = torch.randn(2, 4, *SHAPE) * AVAILABLE[:, :, None, None, None]
    visible = random_visibility(AVAILABLE, SHAPE, 8, 0.5, torch.Generator().manual_seed(0))
    loss = reconstruction_loss(recon, target, visible, brain_mask(), AVAILABLE, 0.1)
    changed = target.clone()
    changed[~AVAILABLE] = torch.randn_like(changed[~AVAILABLE]) * 10
    changed[0, 1, 5, 5, 5] = float("nan")  # sample 0 lacks t1ce: even NaN there must not matter
    assert torch.equal(reconstruction_loss(recon, changed, visible, brain_mask(), AVAILABLE, 0.1), loss)
    loss.backward()
    assert recon.grad[~AVAILABLE].abs().sum() == 0
    assert recon.grad[AVAILABLE].abs().sum() > 0
    # Outside the brain nothing counts either.
    assert recon.grad[:, :, :2].abs().sum() == 0


def test_reconstruction_loss_weights_visible_voxels():
    recon = torch.zeros(2, 4, *SHAPE)
    target = torch.ones(2, 4, *SHAPE)
    visible = torch.zeros(2, 4, *SHAPE, dtype=torch.bool)
    visible[:, :, :8] = True
    brain = brain_mask()
    assert reconstruction_loss(recon, target, visible, brain, AVAILABLE, 0.0) == pytest.approx(1.0)
    assert reconstruction_loss(recon, target, visible, brain, AVAILABLE, 0.25) == pytest.approx(1.25)


def test_population_loss_gradient_only_on_absent_channels():
    ema = QuantileEMA(4, 16, 0.9)
    ema.update(torch.randn(2, 4, *SHAPE), brain_mask(), torch.ones(2, 4, dtype=torch.bool))
    recon = (torch.randn(2, 4, *SHAPE) * 2 + 1).requires_grad_()
    loss = population_loss(recon, brain_mask(), AVAILABLE, ema)
    assert loss > 0
    loss.backward()
    assert recon.grad[AVAILABLE].abs().sum() == 0
    for b, m in (~AVAILABLE).nonzero().tolist():
        assert recon.grad[b, m].abs().sum() > 0
    assert ema.quantiles.grad is None


def test_consistency_loss_stop_gradient_on_better_informed_view():
    torch.manual_seed(0)
    recon_a = torch.randn(2, 4, *SHAPE, requires_grad=True)
    recon_b = torch.randn(2, 4, *SHAPE, requires_grad=True)
    visible_a = torch.zeros(2, 4, *SHAPE, dtype=torch.bool)
    visible_b = torch.zeros(2, 4, *SHAPE, dtype=torch.bool)
    visible_a[0, 0] = True  # sample 0: view a sees more -> a teaches
    visible_b[1, 1] = True  # sample 1: view b sees more -> b teaches
    loss = consistency_loss(recon_a, recon_b, visible_a, visible_b, brain_mask(), AVAILABLE)
    loss.backward()
    assert recon_a.grad[0].abs().sum() == 0 and recon_b.grad[1].abs().sum() == 0
    assert recon_b.grad[0][~AVAILABLE[0]].abs().sum() > 0 and recon_a.grad[1][~AVAILABLE[1]].abs().sum() > 0
    assert recon_b.grad[0][AVAILABLE[0]].abs().sum() == 0  # present sequences are not part of L_cons
    same = consistency_loss(recon_a, recon_a, visible_a, visible_b, brain_mask(), AVAILABLE)
    assert same == 0


def test_fill_regularizer_is_zero_for_constant_and_positive_for_rough():
    fill = LearnedFill((6, 6, 6))
    assert fill_regularizer(fill) == 0
    with torch.no_grad():
        fill.volume.normal_()
    loss = fill_regularizer(fill.volume)
    assert loss > 0
    loss.backward()
    assert fill.volume.grad.abs().sum() > 0


def test_segmentation_loss_deep_supervision_and_ordering():
    torch.manual_seed(0)
    target = torch.zeros(2, 3, *SHAPE)
    target[:, 0, 4:12, 4:12, 4:12] = 1
    target[:, 1, 6:10, 6:10, 6:10] = 1
    target[:, 2, 7:9, 7:9, 7:9] = 1
    good = (target * 2 - 1) * 8
    bad = -good
    deep_good = [torch.nn.functional.adaptive_max_pool3d(target, s) * 16 - 8 for s in (8, 4)]
    weights = preset("tiny").seg.deep_supervision_weights
    low = segmentation_loss(good, deep_good, target, weights)
    high = segmentation_loss(bad, [-d for d in deep_good], target, weights)
    assert low < 0.05 < 1.0 < high
    logits = torch.zeros(2, 3, *SHAPE, requires_grad=True)
    deep = [torch.zeros(2, 3, 8, 8, 8, requires_grad=True), torch.zeros(2, 3, 4, 4, 4, requires_grad=True)]
    segmentation_loss(logits, deep, target, weights).backward()
    assert all(t.grad.abs().sum() > 0 for t in [logits, *deep])
    with pytest.raises(ValueError, match="weights"):
        segmentation_loss(logits, deep, target, (1.0,))


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_logit_distillation_detaches_teacher(kind):
    torch.manual_seed(0)
    student = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
    loss = logit_distillation(student, teacher, kind, 2.0)
    assert loss > 0
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    assert logit_distillation(teacher, teacher, kind, 2.0).abs() < 1e-6
    with pytest.raises(ValueError):
        logit_distillation(student, teacher, "l1", 2.0)


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_logit_distillation_is_float32_under_bfloat16_autocast(kind):
    # bfloat16 logits of nearly equal views: in bfloat16 arithmetic the KL came out negative during training
    torch.manual_seed(1)
    teacher = (torch.randn(2, 3, 16, 16, 16) * 4).bfloat16()
    student = (teacher.float() + 0.05 * torch.randn(teacher.shape)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = logit_distillation(student, teacher, kind, 2.0)
    exact = logit_distillation(student.double(), teacher.double(), kind, 2.0)
    assert loss.dtype == torch.float32 and loss > 0
    assert loss.item() == pytest.approx(exact.item(), rel=1e-4)


def test_feature_distillation_detaches_teacher():
    student = torch.randn(2, 8, 2, 2, 2, requires_grad=True)
    teacher = torch.randn(2, 8, 2, 2, 2, requires_grad=True)
    feature_distillation(student, teacher).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
