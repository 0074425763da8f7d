"""Losses of both stages; each returns a scalar tensor.

Stage 1 (MAE): ``reconstruction_loss`` (L_rec), ``population_loss`` (L_pop), ``consistency_loss`` (L_cons),
``fill_regularizer``. Stage 2 (segmenter): ``segmentation_loss``, ``logit_distillation``,
``feature_distillation``. Shapes: images/reconstructions (B, 4, D, H, W) in MODALITIES order; ``visible``
(B, 4, D, H, W) bool; ``brain`` (B, 1, D, H, W) (> 0 inside); ``available`` (B, 4) bool; region maps and logits
(B, 3, D, H, W) in REGIONS order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import Tensor, nn

from .mae import QuantileEMA


def _masked_mse(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Mean of (a - b)^2 over ``mask``; values outside the mask (even NaN) never enter. 0 for an empty mask."""
    diff = torch.where(mask, a - b, torch.zeros((), dtype=a.dtype, device=a.device))
    return diff.square().sum() / mask.sum().clamp(min=1)


def reconstruction_loss(
    recon: Tensor, target: Tensor, visible: Tensor, brain: Tensor, available: Tensor, w_visible: float
) -> Tensor:
    """L_rec: MSE on the invisible voxels of the present sequences inside the brain + ``w_visible`` x MSE on
    their visible voxels. Absent sequences have no target and contribute nothing."""
    present = available.bool()[:, :, None, None, None] & (brain > 0)
    loss = _masked_mse(recon, target, present & ~visible)
    if w_visible:
        loss = loss + w_visible * _masked_mse(recon, target, present & visible)
    return loss


def population_loss(recon: Tensor, brain: Tensor, available: Tensor, ema: QuantileEMA,
                    estimator: str = "quantiles") -> Tensor:
    """L_pop: 1-D Wasserstein-1 distance between each ABSENT sequence's reconstructed brain intensities and the
    population quantiles ``ema`` (which has no gradient); present sequences get no gradient from it.
    ``estimator``: see ``QuantileEMA.wasserstein``."""
    return ema.wasserstein(recon, brain, ~available.bool(), estimator)


def consistency_loss(
    recon_a: Tensor, recon_b: Tensor, visible_a: Tensor, visible_b: Tensor, brain: Tensor, available: Tensor
) -> Tensor:
    """L_cons: two views of the same samples; for each sample, the view that saw fewer visible voxels is pulled
    (MSE, inside the brain, ABSENT sequences only) toward the other, which is detached (stop-gradient).
    Ties go to view a as the teacher."""
    a_teaches = visible_a.flatten(1).sum(1) >= visible_b.flatten(1).sum(1)  # (B,)
    pick = a_teaches[:, None, None, None, None]
    teacher = torch.where(pick, recon_a, recon_b).detach()
    student = torch.where(pick, recon_b, recon_a)
    absent = ~available.bool()[:, :, None, None, None] & (brain > 0)
    return _masked_mse(student, teacher, absent)


def fill_regularizer(fill: Tensor | nn.Module) -> Tensor:
    """Smoothness of the learned fill: mean squared finite difference along each spatial axis, summed.

    ``fill`` is the (4, gz, gy, gx) volume or the ``LearnedFill`` module holding it."""
    volume = fill.volume if isinstance(fill, nn.Module) else fill
    return sum(torch.diff(volume, dim=axis).square().mean() for axis in (1, 2, 3))


# Batch Dice (over the batch per region) with smoothing 1: an empty region in a crop is scored softly
# instead of giving a loss of 1 whatever the prediction (nnU-Net's choice for the same problem).
_dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)


def _dice_bce(logits: Tensor, target: Tensor) -> Tensor:
    return _dice(logits, target) + F.binary_cross_entropy_with_logits(logits, target)


def segmentation_loss(logits: Tensor, deep: list[Tensor], target_regions: Tensor, weights) -> Tensor:
    """Soft Dice + BCE on the three sigmoid region maps, with deep supervision.

    logits (B, 3, D, H, W); deep: coarser logits, finest first; target_regions (B, 3, D, H, W) in {0, 1};
    weights: ``weights[0]`` for the full-resolution output, ``weights[i + 1]`` for ``deep[i]``. Targets are
    max-pooled to each deep output's size (a region present anywhere in a coarse voxel counts). The weighted
    sum is divided by the sum of the weights used, so turning deep supervision off keeps the scale.
    """
    outputs = [logits, *deep]
    if len(weights) < len(outputs):
        raise ValueError(f"{len(outputs)} outputs but only {len(weights)} deep-supervision weights")
    target = target_regions.to(logits.dtype)
    total = logits.new_zeros(())
    for weight, output in zip(weights, outputs):
        scaled = target if output.shape[2:] == target.shape[2:] else F.adaptive_max_pool3d(target, output.shape[2:])
        total = total + weight * _dice_bce(output, scaled)
    return total / sum(weights[: len(outputs)])


def logit_distillation(student_logits: Tensor, teacher_logits: Tensor, kind: str = "mse",
                      temperature: float = 2.0) -> Tensor:
    """Student <- teacher on the region logits (B, 3, ...); the teacher is detached here.

    "mse": mean squared difference of the sigmoid probabilities. "kl": per-voxel, per-region binary KL
    divergence KL(teacher || student) of the tempered probabilities sigmoid(logit / T), averaged and
    multiplied by T^2 (so its gradient scale does not shrink with T, as in Hinton et al.).
    Computed in float32 also under autocast: in bfloat16 the KL of nearly equal views came out negative.
    """
    student_logits, teacher_logits = student_logits.float(), teacher_logits.detach().float()
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(student_logits), torch.sigmoid(teacher_logits))
    if kind == "kl":
        s, t = student_logits / temperature, teacher_logits / temperature
        p_t = torch.sigmoid(t)
        kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        return kl.mean() * temperature**2
    raise ValueError(f"distillation kind must be 'mse' or 'kl', not {kind!r}")


def feature_distillation(student_bottleneck: Tensor, teacher_bottleneck: Tensor) -> Tensor:
    """MSE between bottleneck features (B, Cb, d, h, w); the teacher is detached here."""
    return F.mse_loss(student_bottleneck, teacher_bottleneck.detach())
