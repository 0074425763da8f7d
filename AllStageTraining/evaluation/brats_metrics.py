"""The official BraTS metrics (``brats-evaluation``, built on ``panoptica``; the optional extra ``brats``):
lesion-wise Dice and HD95 of WT, TC and ET, as the BraTS 2023+ challenges rank them.

The package's glioma configuration ("gli") expects the BraTS 2023 labels, so the project's ET = 4 is given as
3; its groups are WT = {1, 2, 3}, TC = {1, 3} and ET = {3}. Lesions are the connected components of each
region, matched between prediction and truth; the lesion-wise Dice and HD95 are the package's (``sq_dsc``,
``sq_hd95``, what ``brats_evaluation.parse_seg_results`` reports): means over the matched lesion pairs, with
the numbers of matched (``tp``), spurious (``fp``) and missed (``fn``) lesions beside them. The voxel spacing
is passed, so that HD95 is in mm; an infinite HD95 becomes the challenge's 373. A region without any lesion to
match gives NaN, as in the package. Its global Dice equals :func:`metrics.dice_hd95`'s Dice (a test checks
it); its global HD95 ignores the spacing (voxels), so it is not reported.

Install: ``pip install ".[brats]"``. It pins numpy < 2.3, pandas < 3 and rich < 14 (panoptica's bounds).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Sequence

import numpy as np

from ..constants import LABEL_ET, REGIONS

INSTALL_HINT = 'pip install ".[brats]"'
#: panoptica's group name of each region in the "gli" configuration, and the groups not needed here.
GROUPS: dict[str, str] = {"WT": "wt", "TC": "tc", "ET": "et"}
SKIPPED_GROUPS: tuple[str, ...] = ("snfh", "netc", "rc")
#: The challenge's HD95 for an unmatched lesion (the diameter of the 240 x 240 x 155 grid, mm).
HD95_PENALTY_MM = 373.0
FIELDS: tuple[str, ...] = ("lesion_dice", "lesion_hd95", "tp", "fp", "fn", "global_dice")


class BratsMetricsUnavailable(ImportError):
    """``brats-evaluation`` (or ``panoptica``) is not installed; the message says how to install it."""


def brats_evaluator():
    """panoptica's evaluator loaded with the package's glioma configuration; BratsMetricsUnavailable without it."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from brats_evaluation import config_path
            from panoptica import Panoptica_Evaluator

            return Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    except ImportError as error:
        raise BratsMetricsUnavailable(f"the official BraTS metrics need the brats-evaluation package: {INSTALL_HINT} "
                                      f"({error})") from error


def _number(value, *, hd95: bool = False) -> float:
    if value is None:
        return math.nan
    value = float(value)
    return HD95_PENALTY_MM if hd95 and math.isinf(value) else value


def lesion_wise_scores(evaluator, pred_labels: np.ndarray, true_labels: np.ndarray,
                       spacing: Sequence[float]) -> dict[str, dict[str, float]]:
    """``{region: {"lesion_dice", "lesion_hd95" (mm), "tp", "fp", "fn", "global_dice"}}`` for WT, TC, ET.

    pred_labels, true_labels: (Z, Y, X) label maps with the project's values {0, 1, 2, 4}; spacing: mm per voxel
    in the same axis order (``image.GetSpacing()[::-1]``).
    """
    def brats2023(labels: np.ndarray) -> np.ndarray:
        out = np.asarray(labels).astype(np.uint8, copy=True)
        out[out == LABEL_ET] = 3
        return out

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = evaluator.evaluate(brats2023(pred_labels), brats2023(true_labels),
                                     voxelspacing=tuple(float(s) for s in spacing), skip_groups=list(SKIPPED_GROUPS),
                                     verbose=False)
    scores = {}
    for region in REGIONS:
        values = results[GROUPS[region]].to_dict(True)
        scores[region] = {"lesion_dice": _number(values.get("sq_dsc")),
                          "lesion_hd95": _number(values.get("sq_hd95"), hd95=True),
                          **{k: _number(values.get(k)) for k in ("tp", "fp", "fn")},
                          "global_dice": _number(values.get("global_bin_dsc"))}
    return scores
