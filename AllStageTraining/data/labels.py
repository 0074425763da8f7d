"""Conversions between BraTS label maps and the three evaluated regions (WT, TC, ET).

Label maps inside the project hold the BraTS 2018-2021 values {0, 1, 2, 4}; ``normalize_label_values`` is the
one place that accepts BraTS 2023+'s ET = 3 and maps it to 4. The region functions work on numpy arrays and
torch tensors alike and keep the input's library.
"""

from __future__ import annotations

import numpy as np

from ..constants import (
    LABEL_ED,
    LABEL_ET,
    LABEL_ET_BRATS2023,
    LABEL_NCR,
    REGION_LABELS,
    REGIONS,
    VALID_LABEL_SETS,
)


class LabelError(ValueError):
    """A label map holds values outside the BraTS conventions."""


def _is_torch(array) -> bool:
    return type(array).__module__.startswith("torch")


def regions_from_labels(labels):
    """Region masks from a label map.

    labels: integer label map (...) with values in {0, 1, 2, 4}, numpy array or torch tensor.
    Returns bool (3, ...) in REGIONS order (WT, TC, ET), of the same library as ``labels``.
    """
    masks = []
    for region in REGIONS:
        mask = None
        for value in sorted(REGION_LABELS[region]):
            hit = labels == value
            mask = hit if mask is None else mask | hit
        masks.append(mask)
    if _is_torch(labels):
        import torch

        return torch.stack(masks)
    return np.stack(masks)


def labels_from_regions(probabilities, threshold: float = 0.5):
    """Label map from region probabilities (or booleans).

    probabilities: (3, ...) in REGIONS order, numpy or torch. A voxel is in a region when its value exceeds
    ``threshold``. ET -> 4; TC without ET -> 1; WT without TC -> 2; elsewhere 0.
    Returns uint8 (...) of the same library.
    """
    wt, tc, et = (probabilities[i] > threshold for i in range(3))
    if _is_torch(probabilities):
        import torch

        labels = torch.zeros(wt.shape, dtype=torch.uint8, device=wt.device)
    else:
        labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = LABEL_ED
    labels[tc] = LABEL_NCR
    labels[et] = LABEL_ET
    return labels


def normalize_label_values(array: np.ndarray, case_id: str) -> np.ndarray:
    """Check a label map's value set and return it as uint8 with ET = 4.

    Accepts a subset of {0, 1, 2, 4} (BraTS 2018-2021) or of {0, 1, 2, 3} (BraTS 2023+, 3 is mapped to 4).
    Raises LabelError naming ``case_id`` and the offending values otherwise (including non-integer or NaN).
    """
    array = np.asarray(array)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise LabelError(f"case {case_id}: label map contains NaN or infinite values")
        fractional = array != np.round(array)
        if fractional.any():
            bad = np.unique(array[fractional])[:10].tolist()
            raise LabelError(f"case {case_id}: label map contains non-integer values {bad}")
    elif array.dtype.kind not in "iub":
        raise LabelError(f"case {case_id}: label map has non-numeric type {array.dtype}")
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if low < 0 or high > 255:
        values = set(np.unique(array).astype(np.int64).tolist())
    else:
        counts = np.bincount(array.astype(np.uint8, copy=False).ravel(), minlength=1)
        values = set(np.flatnonzero(counts).tolist())
    if not any(values <= allowed for allowed in VALID_LABEL_SETS):
        expected = " or ".join("{" + ", ".join(map(str, sorted(s))) + "}" for s in VALID_LABEL_SETS)
        bad = sorted(values - set().union(*VALID_LABEL_SETS))
        detail = f"values {bad} are not BraTS labels" if bad else f"both ET values 3 and 4 occur ({sorted(values)})"
        raise LabelError(f"case {case_id}: label {detail}; expected a subset of {expected}")
    labels = array.astype(np.uint8, copy=False)
    if LABEL_ET_BRATS2023 in values:
        labels = labels.copy() if labels is array else labels
        labels[labels == LABEL_ET_BRATS2023] = LABEL_ET
    return labels
