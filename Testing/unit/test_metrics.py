"""Dice / HD95 with the BraTS conventions and the ET post-processing, on small hand-made label maps."""

import math

import numpy as np
import pytest

from AllStageTraining.constants import LABEL_ED, LABEL_ET, LABEL_NCR, REGIONS
from AllStageTraining.evaluation.metrics import (
    HD95_CAP_MM,
    dice_hd95,
    postprocess_et,
    region_masks,
    score_prediction,
)

ISO = (1.0, 1.0, 1.0)


def tumour(shape=(12, 12, 12)) -> np.ndarray:
    """Edema shell around a core of NCR with an ET centre: every region non-empty."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:10, 2:10, 2:10] = LABEL_ED
    labels[4:8, 4:8, 4:8] = LABEL_NCR
    labels[5:7, 5:7, 5:7] = LABEL_ET
    return labels


def test_region_masks_follow_brats_definitions():
    labels = tumour()
    masks = region_masks(labels)
    assert masks.shape == (3, *labels.shape) and masks.dtype == bool
    assert masks[0].sum() == 8**3  # WT = 1, 2, 4
    assert masks[1].sum() == 4**3  # TC = 1, 4
    assert masks[2].sum() == 2**3  # ET = 4


def test_perfect_prediction_scores_dice_one_hd_zero():
    labels = tumour()
    scores = dice_hd95(labels, labels.copy(), ISO)
    assert list(scores) == list(REGIONS)
    for dice, hd in scores.values():
        assert dice == pytest.approx(1.0)
        assert hd == pytest.approx(0.0)


def test_half_overlap_gives_exact_dice():
    truth = np.zeros((10, 10, 10), np.uint8)
    pred = np.zeros_like(truth)
    truth[2:6, 2:6, 2:6] = LABEL_ED  # 64 voxels
    pred[4:8, 2:6, 2:6] = LABEL_ED  # 64 voxels, 32 shared
    scores = dice_hd95(pred, truth, ISO)
    assert scores["WT"][0] == pytest.approx(0.5)
    # TC and ET are empty in both: BraTS convention
    assert scores["TC"] == (1.0, 0.0) and scores["ET"] == (1.0, 0.0)

    pred_half = np.zeros_like(truth)
    pred_half[2:4, 2:6, 2:6] = LABEL_ED  # half of the truth, nothing outside: 2*32/(32+64)
    assert dice_hd95(pred_half, truth, ISO)["WT"][0] == pytest.approx(2 / 3)


def test_empty_prediction_on_empty_truth_scores_one():
    empty = np.zeros((6, 7, 8), np.uint8)
    assert dice_hd95(empty, empty.copy(), (2.0, 1.0, 1.0)) == {r: (1.0, 0.0) for r in REGIONS}


def test_one_side_empty_scores_zero_and_the_cap():
    truth = tumour()
    pred = truth.copy()
    pred[pred == LABEL_ET] = LABEL_NCR  # ET missed, WT and TC perfect
    scores = dice_hd95(pred, truth, ISO)
    assert scores["ET"] == (0.0, HD95_CAP_MM)
    assert scores["WT"] == pytest.approx((1.0, 0.0)) and scores["TC"] == pytest.approx((1.0, 0.0))
    # the other way round (ET predicted where truth has none) and a custom cap
    scores = dice_hd95(truth, pred, ISO, hd95_cap=100.0)
    assert scores["ET"] == (0.0, 100.0)
    assert HD95_CAP_MM == pytest.approx(math.sqrt(240**2 + 240**2 + 155**2), abs=0.01)


@pytest.mark.parametrize("axis, spacing, expected_mm", [
    (0, (2.5, 1.0, 0.8), 3 * 2.5),  # shifted along z, 2.5 mm slices
    (2, (2.5, 1.0, 0.8), 3 * 0.8),  # shifted along x, 0.8 mm columns
])
def test_hd95_of_shifted_cube_uses_anisotropic_spacing(axis, spacing, expected_mm):
    # A 2x2x2 cube is all surface; shifted by 3 voxels its surface voxels lie 2 or 3 voxels from the
    # other cube's along the shift axis, so the 95th percentile of each directed distance is 3 voxels.
    truth = np.zeros((12, 12, 12), np.uint8)
    truth[4:6, 4:6, 4:6] = LABEL_ED
    pred = np.roll(truth, 3, axis=axis)
    dice, hd95 = dice_hd95(pred, truth, spacing)["WT"]
    assert dice == 0.0
    assert hd95 == pytest.approx(expected_mm, rel=1e-5)


def test_hd95_ignores_a_single_far_outlier_voxel():
    truth = np.zeros((30, 12, 12), np.uint8)
    truth[2, :, :] = LABEL_ED  # a 144-voxel plane: all surface
    pred = truth.copy()
    pred[28, 6, 6] = LABEL_ED  # one stray voxel 26 slices away: max distance 52 mm, 95th percentile 0
    dice, hd95 = dice_hd95(pred, truth, (2.0, 1.0, 1.0))["WT"]
    assert dice == pytest.approx(2 * 144 / (145 + 144))
    assert hd95 == pytest.approx(0.0)


def test_shape_and_spacing_mismatch_raise():
    with pytest.raises(ValueError, match="shape"):
        dice_hd95(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), ISO)
    with pytest.raises(ValueError, match="spacing"):
        dice_hd95(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), (1.0, 1.0))


def test_postprocess_threshold_scales_with_voxel_volume():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:18, 2:18, 2:18] = LABEL_ED
    labels[5:9, 5:9, 5:9] = LABEL_ET  # 64 ET voxels
    # 1 mm: 64 mm^3 < 500 -> becomes NCR
    out = postprocess_et(labels, ISO, 500.0)
    assert not (out == LABEL_ET).any() and (out == LABEL_NCR).sum() == 64
    assert (labels == LABEL_ET).sum() == 64  # input untouched
    # 2 mm: 64 voxels are 512 mm^3 >= 500 -> kept
    assert np.array_equal(postprocess_et(labels, (2.0, 2.0, 2.0), 500.0), labels)
    # anisotropic 1 x 1 x 7.5 mm: 480 mm^3 < 500 -> NCR; 1 x 1 x 8: 512 -> kept
    assert not (postprocess_et(labels, (7.5, 1.0, 1.0), 500.0) == LABEL_ET).any()
    assert (postprocess_et(labels, (8.0, 1.0, 1.0), 500.0) == LABEL_ET).sum() == 64
    # only ET voxels change
    changed = postprocess_et(labels, ISO, 500.0) != labels
    assert np.array_equal(changed, labels == LABEL_ET)


def test_score_prediction_reports_both_variants():
    truth = tumour()
    truth[truth == LABEL_ET] = LABEL_NCR  # truth without ET
    pred = tumour()  # a small (8 voxel) false ET
    result = score_prediction(pred, truth, ISO, postprocess=True)
    assert set(result) == {"raw", "postprocessed"}
    assert result["raw"]["ET"] == (0.0, HD95_CAP_MM)
    assert result["postprocessed"]["ET"] == (1.0, 0.0)  # removed by post-processing: both empty
    assert result["postprocessed"]["TC"][0] == pytest.approx(1.0)
    assert set(score_prediction(pred, truth, ISO)) == {"raw"}


def test_large_grid_with_small_tumour_is_cropped_and_fast():
    # a BraTS-sized grid: the metrics run on the tumour's bounding box only
    import time

    truth = np.zeros((155, 240, 240), np.uint8)
    truth[60:80, 100:130, 100:125] = LABEL_ED
    truth[65:75, 110:120, 105:115] = LABEL_ET
    pred = np.roll(truth, 1, axis=1)
    start = time.perf_counter()
    scores = dice_hd95(pred, truth, ISO)
    assert time.perf_counter() - start < 5.0
    assert scores["WT"][1] == pytest.approx(1.0)
    assert scores["ET"][0] == pytest.approx(2 * 900 / 2000)
