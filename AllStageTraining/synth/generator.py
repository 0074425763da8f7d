"""``synthesize``: write synthetic cases in the BraTS 2020 layout.

``out_dir/SynthBraTS_001/SynthBraTS_001_{flair,t1ce,t1,t2,seg}.nii.gz``: images int16 (0 outside the brain),
labels uint8 {0,1,2,4}, all on the BraTS grid (see ``anatomy``). Case ``k`` is drawn from the random
stream ``(seed, k)`` alone, so adding cases never changes earlier ones.

Options for testing the handling of real scans: ``head`` puts a head around the brain (``head.add_head``:
not skull-stripped, on a grid padded below and above), ``misalign=(degrees, mm)`` moves every sequence but
FLAIR by a known random rigid transform (``motion.misalign``), written to ``<case_id>_motion.json`` in the
case folder. Each draws from its own stream ``(seed, k, 1)`` and ``(seed, k, 2)``: the brain, tumour and
labels are those of the plain case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..constants import MODALITIES
from .anatomy import add_mass_effect, brats_grid, deform, random_deformation, template_anatomy
from .contrast import render_sequences
from .head import add_head
from .motion import misalign as misalign_case
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
    deformed anatomy (the ground truth behind the images, for tests and inspection). ``padding``: slices
    added (below, above) to the BraTS grid; ``brain``: the true brain mask (bool) of a case with a head;
    ``motion``: the record of ``motion.misalign`` when sequences were moved.
    """

    case_id: str
    spacing: int
    images: dict[str, np.ndarray]
    labels: np.ndarray
    tissue: np.ndarray
    fractions: dict[str, np.ndarray]
    padding: tuple[int, int] = (0, 0)
    brain: np.ndarray | None = None
    motion: dict | None = None

    def grid(self) -> sitk.Image:
        """An empty image with this case's geometry: the BraTS grid, padded below and above by ``padding``."""
        grid = brats_grid(self.spacing)
        if self.padding == (0, 0):
            return grid
        below, above = self.padding
        size = list(grid.GetSize())
        padded = sitk.Image([size[0], size[1], size[2] + below + above], sitk.sitkUInt8)
        origin = list(grid.GetOrigin())
        origin[2] -= below * self.spacing
        padded.SetSpacing(grid.GetSpacing())
        padded.SetOrigin(origin)
        padded.SetDirection(grid.GetDirection())
        return padded


def generate_case(index: int, spacing: int = 2, seed: int = 0, *, head: bool = False,
                  misalign: tuple[float, float] | None = None) -> SynthCase:
    """Case number ``index`` of the stream ``seed`` (drawn from ``(seed, index)`` only); with a head and
    moved sequences when asked (see the module docstring)."""
    case = _brain_case(index, spacing, seed)
    if head:
        case = add_head(case, np.random.default_rng([int(seed), int(index), 1]))
    if misalign is not None:
        case = misalign_case(case, np.random.default_rng([int(seed), int(index), 2]), *misalign, case.grid())
    return case


def _brain_case(index: int, spacing: int, seed: int) -> SynthCase:
    """The skull-stripped, aligned case ``index`` of the stream ``seed``."""
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
    """Write ``out_dir/<case_id>/<case_id>_{flair,t1ce,t1,t2,seg}.nii.gz`` with the case's geometry, and
    ``<case_id>_motion.json`` when sequences were moved."""
    grid = case.grid()
    case_dir = Path(out_dir) / case.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    for key, array in (*case.images.items(), ("seg", case.labels)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(grid)
        sitk.WriteImage(image, str(case_dir / f"{case.case_id}_{key}.nii.gz"), True)
    if case.motion is not None:
        (case_dir / f"{case.case_id}_motion.json").write_text(json.dumps(case.motion, indent=1))
    return case_dir


def synthesize(
    out_dir: str | Path,
    n: int,
    spacing: int = 2,
    seed: int = 0,
    start_index: int = 1,
    progress: Callable[[int, int, Path], None] | None = None,
    *,
    head: bool = False,
    misalign: tuple[float, float] | None = None,
) -> list[Path]:
    """Write ``n`` cases numbered from ``start_index`` into ``out_dir``; return their folders.

    ``spacing`` is 1 (240x240x155) or 2 mm (120x120x78). ``progress(done, n, case_dir)`` is called after
    each case. ``head``, ``misalign``: see ``generate_case``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    out_dir = Path(out_dir)
    folders = []
    for done, index in enumerate(range(start_index, start_index + n), start=1):
        case_dir = write_case(generate_case(index, spacing, seed, head=head, misalign=misalign), out_dir)
        folders.append(case_dir)
        if progress is not None:
            progress(done, n, case_dir)
    return folders
