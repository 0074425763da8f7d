"""Synthetic cases as SimpleITK images, made once per test session: clean, with a head, moved, both."""

from __future__ import annotations

from functools import lru_cache

import SimpleITK as sitk

from AllStageTraining.constants import MODALITIES
from AllStageTraining.synth import SynthCase, generate_case

SPACING = 2
MOTION = (5.0, 5.0)  # degrees, mm


@lru_cache(maxsize=8)
def synth_case(index: int, *, head: bool = False, moved: bool = False) -> SynthCase:
    """Case ``index`` of seed 0 at 2 mm; ``moved``: every sequence but FLAIR moved by 5 degrees and 5 mm."""
    return generate_case(index, SPACING, 0, head=head, misalign=MOTION if moved else None)


def images_of(case: SynthCase, modalities=MODALITIES) -> dict[str, sitk.Image]:
    """modality -> sitk.Image on the case's grid (fresh objects at each call)."""
    grid = case.grid()
    out = {}
    for m in modalities:
        image = sitk.GetImageFromArray(case.images[m])
        image.CopyInformation(grid)
        out[m] = image
    return out


def true_motion(case: SynthCase, modality: str) -> sitk.Euler3DTransform:
    """The recorded motion of ``modality`` (reference point -> moved point)."""
    entry = case.motion["moved"][modality]
    return sitk.Euler3DTransform(entry["center_mm"], *entry["angles_rad"], entry["translation_mm"])
