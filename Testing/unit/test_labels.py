"""Label maps <-> WT/TC/ET region maps, and the BraTS label-value check."""

import numpy as np
import pytest
import torch

from AllStageTraining.data.labels import LabelError, labels_from_regions, normalize_label_values, regions_from_labels

LABELS = np.array([[0, 1, 2], [4, 0, 2]], dtype=np.uint8)


def test_regions_from_labels_numpy_and_torch():
    regions = regions_from_labels(LABELS)
    assert regions.dtype == bool and regions.shape == (3, 2, 3)
    np.testing.assert_array_equal(regions[0], LABELS > 0)  # WT = 1, 2, 4
    np.testing.assert_array_equal(regions[1], (LABELS == 1) | (LABELS == 4))  # TC = 1, 4
    np.testing.assert_array_equal(regions[2], LABELS == 4)  # ET = 4
    as_torch = regions_from_labels(torch.from_numpy(LABELS))
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.bool
    np.testing.assert_array_equal(as_torch.numpy(), regions)


def test_labels_from_regions_inverts_regions_and_thresholds():
    np.testing.assert_array_equal(labels_from_regions(regions_from_labels(LABELS)), LABELS)
    probabilities = torch.tensor([[0.9, 0.9, 0.9, 0.4], [0.2, 0.8, 0.7, 0.1], [0.1, 0.1, 0.6, 0.9]])
    labels = labels_from_regions(probabilities)
    assert labels.dtype == torch.uint8
    # WT only -> ED; TC without ET -> NCR; ET -> 4 (also where WT/TC are below the threshold)
    assert labels.tolist() == [2, 1, 4, 4]
    assert labels_from_regions(probabilities.numpy(), threshold=0.95).tolist() == [0, 0, 0, 0]


def test_normalize_label_values_maps_brats2023_et():
    labels = np.array([0, 1, 2, 3, 3], dtype=np.int16)
    out = normalize_label_values(labels, "c1")
    assert out.dtype == np.uint8 and out.tolist() == [0, 1, 2, 4, 4]
    assert labels.tolist() == [0, 1, 2, 3, 3]  # input left alone
    same = np.array([0, 3], dtype=np.uint8)
    normalize_label_values(same, "c1")
    assert same.tolist() == [0, 3]
    assert normalize_label_values(np.array([0.0, 4.0]), "c1").tolist() == [0, 4]


@pytest.mark.parametrize("values, pattern", [
    ([0, 1, 5, 7], r"case caseA: label values \[5, 7\] are not BraTS labels"),
    ([0, -1, 2], r"case caseA: label values \[-1\]"),
    ([0, 3, 4], r"case caseA: label both ET values 3 and 4 occur"),
    ([0.0, 1.5], r"case caseA: label map contains non-integer values \[1.5\]"),
    ([0.0, np.nan], r"case caseA: label map contains NaN"),
])
def test_normalize_label_values_rejects_bad_values(values, pattern):
    with pytest.raises(LabelError, match=pattern):
        normalize_label_values(np.array(values), "caseA")
