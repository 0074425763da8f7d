"""Brain extraction with deepbet (MIT; Fisch et al., Comput. Biol. Med. 2024), loaded lazily.

deepbet ships two trained TorchScript networks in its wheel (a 128^3 bounding-box finder and a 256^3 mask
network, about 9 MB each), trained on T1-weighted images of adults. Its package imports no GUI code at
import time (``customtkinter`` is only a dependency of its ``deepbet-gui`` entry point), so its documented
Python class ``deepbet.BrainExtraction`` is used directly: ``run_model`` on the volume in the RAS+
array order it was trained on, then its own post-processing (largest component, holes filled). It is an
optional extra: ``pip install ".[preprocess]"``.

``extract_brain(image) -> sitk.Image`` (uint8 mask on the image's grid) and ``mask_problem(mask)`` (None or
why the mask cannot be a brain: empty, nearly the whole volume, implausibly small or large).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import SimpleITK as sitk

from .input_checks import finite_array

INSTALL_HINT = 'pip install ".[preprocess]"  (or: pip install deepbet)'
THRESHOLD = 0.5  # deepbet's default probability threshold
MIN_BRAIN_ML = 600.0  # smaller masks are not a whole adult brain (BraTS brains: about 1.1-1.9 l)
MAX_BRAIN_ML = 2300.0
MAX_VOLUME_SHARE = 0.9  # a mask covering more of the grid is not a brain


class BrainExtractionUnavailable(ImportError):
    """deepbet (the ``preprocess`` extra) is not installed, but brain extraction is needed."""


@lru_cache(maxsize=2)
def _extractor(use_gpu: bool):
    try:
        from deepbet import BrainExtraction
    except ImportError as error:
        raise BrainExtractionUnavailable(
            f"brain extraction needs the deepbet package, which is not installed ({error}); install it with "
            f"{INSTALL_HINT}, or pass skull-stripped sequences") from None
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice, about deepbet's code, not the user's
        warnings.simplefilter("ignore", FutureWarning)
        return BrainExtraction(no_gpu=not use_gpu)


def extract_brain(image: sitk.Image, *, device: str = "cpu") -> sitk.Image:
    """Brain mask (uint8 0/1 on ``image``'s grid) of a head image by deepbet. ``device``: "cpu" or "cuda"."""
    import torch

    extractor = _extractor(device.startswith("cuda"))
    ras = sitk.DICOMOrient(image, "RAS")  # array axes (z, y, x) -> transposed: x to the right, y anterior, z up
    volume = np.ascontiguousarray(finite_array(ras).transpose(2, 1, 0))
    with torch.inference_mode():
        probability = extractor.run_model(volume)
    mask = extractor.postprocess(probability > THRESHOLD)
    out = sitk.GetImageFromArray(np.ascontiguousarray(mask.transpose(2, 1, 0)).astype(np.uint8))
    out.CopyInformation(ras)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return sitk.DICOMOrient(out, code)


def mask_volume_ml(mask: sitk.Image) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) * float(np.prod(mask.GetSpacing())) / 1000.0


def mask_problem(mask: sitk.Image) -> str | None:
    """None when ``mask`` can be a brain, else what is wrong with it (empty, the whole volume, too small or
    too large for an adult brain)."""
    inside = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    if inside == 0:
        return "the brain mask is empty"
    share = inside / float(np.prod(mask.GetSize()))
    if share > MAX_VOLUME_SHARE:
        return f"the brain mask covers {100 * share:.0f}% of the volume: that is not a brain"
    volume = mask_volume_ml(mask)
    if volume < MIN_BRAIN_ML:
        return f"the brain mask holds only {volume:.0f} ml (an adult brain: 1100-1900 ml)"
    if volume > MAX_BRAIN_ML:
        return f"the brain mask holds {volume:.0f} ml, more than any brain (1100-1900 ml)"
    return None
