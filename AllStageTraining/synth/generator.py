"""``synthesize``: write synthetic cases in the BraTS 2020 layout.

``out_dir/SynthBraTS_001/SynthBraTS_001_{flair,t1ce,t1,t2,seg}.nii.gz``: images int16 (0 outside the brain),
labels uint8 {0,1,2,4}, all on the BraTS grid (see ``anatomy``). Case ``k`` is drawn from the random
stream ``(seed, k)`` alone, so adding cases never changes earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..constants import MODALITIES
from .anatomy import add_mass_effect, brats_grid, deform, random_deformation, template_anatomy
from .contrast import render_sequences
from .tumour import grow_lesion, labels_from_tissue, plan_lesions

CASE_PREFIX = "SynthBraTS"


def case_id(index: int) -> str:
    """``SynthBraTS_001`` for index 1."""
    return f"{CASE_PREFIX}_{index:03d}"


@dataclass
class SynthCase:
    """One generated case on the full BraTS grid, arrays (Z, Y, X).

    ``images``: modality -> int16; ``labels``: uint8 {0,1,2,4}; ``tissue``: uint8 tumour tissue codes
    (``tumour.TISSUE_NAMES``); ``fractions``: "gm", "wm", "csf" -> float32 healthy-tissue fractions of the
    deformed anatomy (the ground truth behind the images, for tests and inspection).
    """

    case_id: str
    spacing: int
    images: dict[str, np.ndarray]
    labels: np.ndarray
    tissue: np.ndarray
    fractions: dict[str, np.ndarray]


def generate_case(index: int, spacing: int = 2, seed: int = 0) -> SynthCase:
    """Case number ``index`` of the stream ``seed`` (drawn from ``(seed, index)`` only)."""
    rng = np.random.default_rng([int(seed), int(index)])
    anatomy = template_anatomy(spacing)
    shape = anatomy.brain.shape
    plans = plan_lesions(rng, anatomy.eligible, spacing)
    deformation = random_deformation(rng, shape, spacing, amplitude_mm=rng.uniform(1.5, 3.5))
    centres = [deformation.to_output(plan.centre) for plan in plans]
    for plan, centre in zip(plans, centres):
        strength = rng.uniform(0.15, 0.45) if plan.high_grade else rng.uniform(0.05, 0.25)
        add_mass_effect(deformation, centre, 1.2 * plan.core_radius_mm / spacing, strength)
    maps = deform(anatomy, deformation)
    tissue = np.zeros(shape, np.uint8)
    csf = np.clip(maps["brain"] - maps["gm"] - maps["wm"], 0.0, 1.0)
    for plan, centre in zip(plans, centres):
        grow_lesion(rng, plan, centre, maps["cerebrum"], maps["wm"], csf, tissue, spacing)
    images, brain = render_sequences(rng, maps, tissue, spacing)
    tissue *= brain

    full_shape = tuple(reversed(brats_grid(spacing).GetSize()))

    def full(array: np.ndarray) -> np.ndarray:
        out = np.zeros(full_shape, array.dtype)
        out[anatomy.box] = array
        return out

    return SynthCase(
        case_id=case_id(index),
        spacing=spacing,
        images={m: full(images[m]) for m in MODALITIES},
        labels=full(labels_from_tissue(tissue)),
        tissue=full(tissue),
        fractions={"gm": full(maps["gm"]), "wm": full(maps["wm"]), "csf": full(csf)},
    )


def write_case(case: SynthCase, out_dir: Path) -> Path:
    """Write ``out_dir/<case_id>/<case_id>_{flair,t1ce,t1,t2,seg}.nii.gz`` with the BraTS geometry."""
    grid = brats_grid(case.spacing)
    case_dir = Path(out_dir) / case.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    for key, array in (*case.images.items(), ("seg", case.labels)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(grid)
        sitk.WriteImage(image, str(case_dir / f"{case.case_id}_{key}.nii.gz"), True)
    return case_dir


def synthesize(
    out_dir: str | Path,
    n: int,
    spacing: int = 2,
    seed: int = 0,
    start_index: int = 1,
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[Path]:
    """Write ``n`` cases numbered from ``start_index`` into ``out_dir``; return their folders.

    ``spacing`` is 1 (240x240x155) or 2 mm (120x120x78). ``progress(done, n, case_dir)`` is called after
    each case.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    out_dir = Path(out_dir)
    folders = []
    for done, index in enumerate(range(start_index, start_index + n), start=1):
        case_dir = write_case(generate_case(index, spacing, seed), out_dir)
        folders.append(case_dir)
        if progress is not None:
            progress(done, n, case_dir)
    return folders
