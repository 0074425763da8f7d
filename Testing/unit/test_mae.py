"""Multimodal MAE: learned fill, random visibility, what reaches the input, quantile EMA."""

import pytest
import torch

from AllStageTraining.config import preset
from AllStageTraining.nets.mae import LearnedFill, MultimodalMAE, QuantileEMA, random_visibility

torch.set_num_threads(1)
SHAPE = (32, 32, 32)


def full_box(batch):
    return torch.tensor([[-1.0, 1.0]] * 3).expand(batch, 3, 2).clone()


def test_fill_same_box_same_values_and_flipped_box_flips():
    torch.manual_seed(0)
    fill = LearnedFill((8, 8, 8))
    with torch.no_grad():
        fill.volume.normal_()
    box = torch.tensor([[[-0.8, 0.1], [-0.3, 0.7], [0.0, 0.9]]])
    a = fill(box, (16, 12, 20))
    assert a.shape == (1, 4, 16, 12, 20)
    assert torch.equal(a, fill(box.clone(), (16, 12, 20)))
    other = fill(box + 0.05, (16, 12, 20))
    assert not torch.allclose(a, other)
    flipped = box.clone()
    flipped[:, 2] = flipped[:, 2].flip(-1)  # flip the x axis
    assert torch.allclose(fill(flipped, (16, 12, 20)), a.flip(-1), atol=1e-5)
    # A crop covering the whole volume at the grid's resolution reads the grid itself.
    assert torch.allclose(fill(full_box(1), (8, 8, 8))[0], fill.volume, atol=1e-5)


def test_fill_starts_at_zero_mean():
    assert LearnedFill((4, 4, 4))(full_box(2), (8, 8, 8)).abs().max() == 0


def test_visible_fraction_matches_ratio_and_absent_never_visible():
    gen = torch.Generator().manual_seed(0)
    available = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    fractions, dropped = [], 0
    for _ in range(25):
        visible = random_visibility(available, SHAPE, 8, 0.875, gen)
        assert visible.shape == (4, 4, *SHAPE) and visible.dtype == torch.bool
        assert not visible[~available].any()  # absent sequences are never visible
        kept = visible.flatten(2).any(-1)  # (B, 4): sequences not dropped
        assert kept.any(1).all()  # at least one sequence always stays
        dropped += int((available & ~kept).sum())
        for b in range(4):
            n_kept_voxels = kept[b].sum() * visible[b, 0].numel()
            fractions.append(float(visible[b].sum() / n_kept_voxels))
    # Tokens are whole patches: each sample shows exactly round(0.125 * tokens of kept sequences) patches.
    assert sum(fractions) / len(fractions) == pytest.approx(0.125, abs=0.01)
    assert dropped > 0  # whole present sequences do get dropped


def test_visibility_is_patchwise():
    visible = random_visibility(torch.ones(1, 4, dtype=torch.bool), SHAPE, 8, 0.5, torch.Generator().manual_seed(3))
    patches = visible.view(1, 4, 4, 8, 4, 8, 4, 8)
    assert torch.equal(patches.all(dim=(3, 5, 7)), patches.any(dim=(3, 5, 7)))


def test_absent_sequences_never_reach_the_input():
    torch.manual_seed(0)
    cfg = preset("tiny")
    mae = MultimodalMAE(cfg.net, cfg.mae).eval()
    with torch.no_grad():
        mae.fill.volume.normal_()
    available = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    x = torch.randn(2, 4, *SHAPE)
    box = full_box(2) * 0.5
    visible = random_visibility(available, SHAPE, 8, 0.875, torch.Generator().manual_seed(0))
    masked = mae.masked_input(x, visible, box)
    fill = mae.fill(box, SHAPE)
    assert torch.equal(masked[~visible], fill[~visible])
    assert torch.equal(masked[visible], x[visible])
    garbage = x.clone()
    garbage[~available] = 1e3
    with torch.no_grad():
        assert torch.equal(mae(x, visible, box), mae(garbage, visible, box))
        brain = torch.ones(2, 1, *SHAPE)
        completed = mae.complete(x, available, box, brain)
        assert torch.equal(completed[available], x[available])
        assert torch.equal(mae.complete(garbage, available, box, brain), completed)
        recon = mae(x, available[:, :, None, None, None].expand_as(x), box)
        assert torch.equal(completed[~available], recon[~available].clamp(-5, 5))


def test_quantile_ema_moves_only_present_sequences():
    ema = QuantileEMA(4, 16, momentum=0.5)
    brain = torch.zeros(2, 1, 8, 8, 8)
    brain[:, :, 2:6, 2:6, 2:6] = 1
    x = torch.randn(2, 4, 8, 8, 8)
    x[:, :, :2] = 100.0  # outside the brain: must not count
    present = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    ema.update(x, brain, present)
    assert ema.initialized.tolist() == [True, True, False, False]
    inside = x[:, 0][brain[:, 0] > 0]
    assert torch.allclose(ema.quantiles[0], ema.quantiles_of(inside))  # first update copies
    assert ema.quantiles[2:].abs().sum() == 0
    before = ema.quantiles.clone()
    ema.update(x + 2.0, brain, torch.tensor([[0, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool))
    assert torch.equal(ema.quantiles[0], before[0])  # flair absent from this batch: unchanged
    assert torch.allclose(ema.quantiles[1], 0.5 * before[1] + 0.5 * (before[1] + 2.0), atol=1e-5)
    assert ema.initialized.tolist() == [True, True, True, False]
    assert ema.quantiles[3].abs().sum() == 0
    assert torch.all(ema.quantiles[:3].diff(dim=1) >= 0)


def test_wasserstein_is_zero_for_the_population_and_positive_for_a_shift():
    ema = QuantileEMA(4, 32, momentum=0.9)
    brain = torch.ones(1, 1, 8, 8, 8)
    x = torch.randn(1, 4, 8, 8, 8)
    ema.update(x, brain, torch.ones(1, 4, dtype=torch.bool))
    absent = torch.tensor([[0, 1, 0, 0]], dtype=torch.bool)
    assert ema.wasserstein(x, brain, absent) < 1e-6
    assert ema.wasserstein(x + 1.5, brain, absent) == pytest.approx(1.5, abs=1e-4)


def test_completions_follow_the_real_channels_convention_zero_outside_the_brain_and_clipped():
    torch.manual_seed(1)
    cfg = preset("tiny")
    mae = MultimodalMAE(cfg.net, cfg.mae).eval()
    with torch.no_grad():
        mae.fill.volume.normal_(std=20.0)  # a fill far outside [-5, 5]
    available = torch.tensor([[1, 0, 0, 1]], dtype=torch.bool)
    brain = torch.zeros(1, 1, *SHAPE)
    brain[..., 4:28, 6:26, 8:24] = 1
    x = torch.randn(1, 4, *SHAPE) * brain
    with torch.no_grad():
        completed = mae.complete(x, available, full_box(1), brain)
    outside = brain[0, 0] == 0
    for m in (1, 2):  # the completed channels
        assert float(completed[0, m][outside].abs().max()) == 0.0
        assert float(completed[0, m].abs().max()) <= 5.0
        assert float(completed[0, m][~outside].abs().sum()) > 0
    assert torch.equal(completed[0, [0, 3]], x[0, [0, 3]])


def test_fill_equals_grid_sample_trilinear_with_border_padding():
    import torch.nn.functional as F

    torch.manual_seed(2)
    fill = LearnedFill((12, 9, 7))
    with torch.no_grad():
        fill.volume.normal_()
    box = torch.tensor([[[-1.3, 0.1], [0.7, -0.3], [0.0, 1.4]], [[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]]])
    shape = (16, 12, 20)
    t = [torch.linspace(0, 1, n) for n in shape]
    z, y, x = (torch.lerp(box[:, a, 0:1], box[:, a, 1:2], t[a]) for a in range(3))
    grid = torch.stack([x[:, None, None, :].expand(2, *shape), y[:, None, :, None].expand(2, *shape),
                        z[:, :, None, None].expand(2, *shape)], dim=-1)
    reference = F.grid_sample(fill.volume.unsqueeze(0).expand(2, *fill.volume.shape), grid, mode="bilinear",
                              padding_mode="border", align_corners=True)
    assert torch.allclose(fill(box, shape), reference, atol=1e-5)


def test_voxelwise_wasserstein_agrees_with_the_quantile_one_and_spreads_its_gradient():
    ema = QuantileEMA(4, 64, momentum=0.9)
    brain = torch.ones(1, 1, 16, 16, 16)
    x = torch.randn(1, 4, 16, 16, 16)
    ema.update(x, brain, torch.ones(1, 4, dtype=torch.bool))
    absent = torch.tensor([[0, 0, 1, 0]], dtype=torch.bool)
    shifted = (x * 1.5 + 0.7).requires_grad_()
    by_quantiles = ema.wasserstein(shifted, brain, absent, "quantiles")
    by_voxels = ema.wasserstein(shifted, brain, absent, "voxels")
    assert float(by_voxels.detach()) == pytest.approx(float(by_quantiles.detach()), rel=0.05)
    (grad,) = torch.autograd.grad(by_voxels, shifted)
    assert int((grad[0, 2] != 0).sum()) > 0.9 * grad[0, 2].numel()  # (almost) every voxel gets a gradient
    (grad_q,) = torch.autograd.grad(ema.wasserstein(shifted, brain, absent, "quantiles"), shifted)
    assert int((grad_q[0, 2] != 0).sum()) <= 2 * 64
    assert float(grad[0, [0, 1, 3]].abs().sum()) == 0.0
    with pytest.raises(ValueError):
        ema.wasserstein(shifted, brain, absent, "median")
