"""Dice and HD95 per evaluated region (WT, TC, ET) with the BraTS conventions, on MONAI's metrics.

Arrays are numpy label maps ``(Z, Y, X)`` with BraTS 2018-2021 values {0, 1, 2, 4}; ``spacing`` is the voxel
size in mm **in the same axis order** as the array (for a SimpleITK image: ``image.GetSpacing()[::-1]``).

Conventions (those of the BraTS challenge):
- empty prediction on empty ground truth: Dice 1, HD95 0 mm;
- exactly one of the two empty: Dice 0, HD95 = ``hd95_cap`` (default :data:`HD95_CAP_MM`, the diagonal of the
  BraTS 240 x 240 x 155 grid at 1 mm, i.e. the largest distance possible inside a BraTS image);
- otherwise MONAI's ``compute_dice`` and ``compute_hausdorff_distance(percentile=95)`` (the larger of the two
  directed 95th-percentile surface distances, Euclidean, in mm).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from AllStageTraining.constants import ET_POSTPROCESS_MIN_MM3, LABEL_ET, LABEL_NCR, REGIONS

#: HD95 when exactly one of prediction and truth is empty: sqrt(240^2 + 240^2 + 155^2) mm = 373.13 mm.
HD95_CAP_MM = round(math.sqrt(240.0**2 + 240.0**2 + 155.0**2), 2)


def region_masks(labels):
    """Boolean region maps ``(3, ...)`` in REGIONS order (WT, TC, ET) from a BraTS label map ``(...)``."""
    from AllStageTraining.data.labels import regions_from_labels

    return regions_from_labels(labels)


def _foreground_box(*label_maps: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """The bounding box (with ``margin`` voxels) of the nonzero voxels of all maps, or None if all are empty.

    Dice and surface distances do not change when both maps are cropped to this box, and the metrics then
    run on a small array instead of the whole grid.
    """
    union = np.zeros(label_maps[0].shape, dtype=bool)
    for labels in label_maps:
        union |= labels != 0
    if not union.any():
        return None
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        nonzero = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(nonzero[0]) - margin, 0), min(int(nonzero[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def dice_hd95(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    spacing: Sequence[float],
    *,
    hd95_cap: float = HD95_CAP_MM,
) -> dict[str, tuple[float, float]]:
    """``{region: (dice, hd95_mm)}`` for WT, TC and ET of one prediction against its ground truth.

    ``pred_labels`` and ``true_labels``: label maps of the same shape ``(Z, Y, X)``; ``spacing``: mm per voxel
    along those axes. Dice is in [0, 1].
    """
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    pred_labels = np.asarray(pred_labels)
    true_labels = np.asarray(true_labels)
    if pred_labels.shape != true_labels.shape:
        raise ValueError(f"prediction shape {pred_labels.shape} differs from ground-truth shape {true_labels.shape}")
    if len(spacing) != pred_labels.ndim:
        raise ValueError(f"spacing {tuple(spacing)} must have one value per array axis ({pred_labels.ndim})")

    box = _foreground_box(pred_labels, true_labels)
    if box is None:  # nothing anywhere: every region is empty on both sides
        return {region: (1.0, 0.0) for region in REGIONS}
    pred = torch.from_numpy(np.ascontiguousarray(region_masks(pred_labels[box])))[None]  # (1, 3, ...) bool
    true = torch.from_numpy(np.ascontiguousarray(region_masks(true_labels[box])))[None]

    dice = compute_dice(pred, true, include_background=True, ignore_empty=False)[0]
    pred_any = pred.flatten(2).any(dim=2)[0]
    true_any = true.flatten(2).any(dim=2)[0]
    spacing_mm = tuple(float(s) for s in spacing)

    scores: dict[str, tuple[float, float]] = {}
    for channel, region in enumerate(REGIONS):
        if not pred_any[channel] and not true_any[channel]:
            scores[region] = (1.0, 0.0)
        elif not pred_any[channel] or not true_any[channel]:
            scores[region] = (0.0, float(hd95_cap))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MONAI warns about empty masks; both are non-empty here
                hd = compute_hausdorff_distance(
                    pred[:, channel : channel + 1],
                    true[:, channel : channel + 1],
                    include_background=True,
                    percentile=95,
                    spacing=spacing_mm,
                )
            scores[region] = (float(dice[channel]), float(hd[0, 0]))
    return scores


def region_dice(pred_labels, true_labels) -> dict[str, float]:
    """``{region: dice}`` for WT, TC and ET of two label maps (numpy or torch, same shape), Dice only (fast, no
    surface distances), with the BraTS convention that an empty prediction on an empty truth scores 1."""
    pred, true = region_masks(pred_labels), region_masks(true_labels)
    scores = {}
    for channel, region in enumerate(REGIONS):
        p, t = pred[channel], true[channel]
        total = int(p.sum()) + int(t.sum())
        scores[region] = 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total
    return scores


def postprocess_et(
    labels: np.ndarray, spacing: Sequence[float], min_mm3: float = ET_POSTPROCESS_MIN_MM3
) -> np.ndarray:
    """BraTS post-processing: when the total predicted ET volume is below ``min_mm3``, its voxels become NCR.

    The threshold is a volume in mm^3, so it is ``min_mm3 / prod(spacing)`` voxels (500 voxels at 1 mm, 62.5
    at 2 mm). Returns a new label map; ``labels`` is not modified. ``labels`` (Z, Y, X) with ET = 4.
    """
    labels = np.asarray(labels)
    et = labels == LABEL_ET
    et_mm3 = float(np.count_nonzero(et)) * float(np.prod(np.asarray(spacing, dtype=np.float64)))
    out = labels.copy()
    if 0.0 < et_mm3 < min_mm3:
        out[et] = LABEL_NCR
    return out


def score_prediction(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    spacing: Sequence[float],
    *,
    postprocess: bool = False,
    hd95_cap: float = HD95_CAP_MM,
    min_et_mm3: float = ET_POSTPROCESS_MIN_MM3,
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{"raw": scores[, "postprocessed": scores]}`` with ``scores`` as :func:`dice_hd95` returns them.

    The post-processed variant applies :func:`postprocess_et` to the prediction only (never to the truth).
    """
    raw = dice_hd95(pred_labels, true_labels, spacing, hd95_cap=hd95_cap)
    result = {"raw": raw}
    if postprocess:
        processed = postprocess_et(pred_labels, spacing, min_et_mm3)
        changed = not np.array_equal(processed, pred_labels)
        result["postprocessed"] = (
            dice_hd95(processed, true_labels, spacing, hd95_cap=hd95_cap) if changed else dict(raw)
        )
    return result
