"""Gliomas of irregular shape grown inside the (deformed) brain.

A lesion's core is the top-N voxels of a shape field (a union of perturbed, rotated ellipsoidal blobs plus
two scales of smooth noise), so its volume is exact and its outline lobulated. High-grade cores hold a
necrotic centre (interior by distance plus noise), an enhancing rim of varying thickness with
non-enhancing patches, and sometimes haemorrhage; low-grade cores are non-enhancing, sometimes with a cyst.
Edema is the top-N of a potential that decays away from the core and is weighted by white-matter
probability, so it spreads along white-matter tracts and spares cortex and CSF.

Tissue codes (finer than BraTS labels, because they image differently) map to labels by ``TISSUE_LABEL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..constants import LABEL_ED, LABEL_ET, LABEL_NCR
from .fields import smooth_field, top_n_mask

EDEMA, NONENHANCING, NECROSIS, ENHANCING, HAEMORRHAGE = 1, 2, 3, 4, 5
TISSUE_NAMES: dict[int, str] = {
    EDEMA: "edema", NONENHANCING: "nonenhancing", NECROSIS: "necrosis", ENHANCING: "enhancing",
    HAEMORRHAGE: "haemorrhage",
}
TISSUE_LABEL: dict[int, int] = {
    EDEMA: LABEL_ED, NONENHANCING: LABEL_NCR, NECROSIS: LABEL_NCR, ENHANCING: LABEL_ET, HAEMORRHAGE: LABEL_NCR,
}
LOW_GRADE_PROBABILITY = 0.2  # cases without enhancing tumour
TWO_LESION_PROBABILITY = 0.25


@dataclass(frozen=True)
class LesionPlan:
    """One lesion: template voxel of its centre (box coordinates), whole-tumour volume (mm^3), the core's
    share of it, and its grade."""

    centre: np.ndarray
    whole_mm3: float
    core_fraction: float
    high_grade: bool

    @property
    def core_radius_mm(self) -> float:
        return float((3.0 * self.whole_mm3 * self.core_fraction / (4.0 * np.pi)) ** (1.0 / 3.0))


def plan_lesions(rng: np.random.Generator, eligible: np.ndarray, spacing: int) -> list[LesionPlan]:
    """One or two lesions with centres drawn among ``eligible`` voxels, whole tumour 20-150 cm^3 in all."""
    high_grade = rng.random() >= LOW_GRADE_PROBABILITY
    total = np.exp(rng.uniform(np.log(30e3), np.log(140e3))) if high_grade else np.exp(rng.uniform(np.log(20e3), np.log(100e3)))
    shares = [1.0]
    if rng.random() < TWO_LESION_PROBABILITY:
        first = rng.uniform(0.6, 0.8)
        shares = [first, 1.0 - first]
    candidates = np.argwhere(eligible)
    centres: list[np.ndarray] = []
    for _ in shares:
        for _attempt in range(50):
            centre = candidates[rng.integers(len(candidates))].astype(float)
            if all(np.linalg.norm((centre - c) * spacing) > 45.0 for c in centres):
                break
        centres.append(centre)
    return [
        LesionPlan(
            centre=centre,
            whole_mm3=float(total * share),
            core_fraction=float(rng.uniform(0.25, 0.5) if high_grade else rng.uniform(0.3, 0.6)),
            high_grade=high_grade,
        )
        for centre, share in zip(centres, shares)
    ]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _shape_field(rng, offsets_mm, radius_mm: float, spacing: int, shape) -> np.ndarray:
    """Lobulated blob field: > 0 roughly inside a union of perturbed ellipsoids of about ``radius_mm``."""
    dz, dy, dx = offsets_mm
    field = np.full(shape, -np.inf, dtype=np.float32)
    n_blobs = 1 + rng.integers(0, 4)
    for k in range(n_blobs):
        if k == 0:
            centre, radius = np.zeros(3), 0.8 * radius_mm
        else:
            direction = rng.standard_normal(3)
            centre = direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.8) * radius_mm
            radius = rng.uniform(0.35, 0.7) * radius_mm
        axes = np.exp(rng.normal(0.0, 0.2, 3))
        inverse = (_random_rotation(rng) / axes[None, :]).T  # rows: rotated axes scaled by 1/axis length
        d = [dz - centre[0], dy - centre[1], dx - centre[2]]
        squared = sum((inverse[i, 0] * d[0] + inverse[i, 1] * d[1] + inverse[i, 2] * d[2]) ** 2 for i in range(3))
        np.maximum(field, 1.0 - np.sqrt(squared) / radius, out=field)
    field += 0.35 * smooth_field(rng, shape, max(1.5, 0.9 * radius_mm / spacing))
    field += 0.12 * smooth_field(rng, shape, max(1.0, 0.3 * radius_mm / spacing))
    return field


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def grow_lesion(
    rng: np.random.Generator,
    plan: LesionPlan,
    centre: np.ndarray,
    cerebrum: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    tissue: np.ndarray,
    spacing: int,
) -> None:
    """Grow one lesion around ``centre`` (output voxel coordinates) into ``tissue`` (uint8 codes, in place),
    only where ``cerebrum`` > 0.5; voxels already holding tumour core are left alone."""
    whole_radius = (3.0 * plan.whole_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    core_radius = plan.core_radius_mm
    half = int(np.ceil((1.8 * whole_radius + 12.0) / spacing))
    centre_index = np.round(centre).astype(int)
    lo = np.maximum(centre_index - half, 0)
    hi = np.minimum(centre_index + half + 1, tissue.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shape = tuple(int(b - a) for a, b in zip(lo, hi))
    offsets = np.meshgrid(*[(np.arange(a, b) - c) * float(spacing) for a, b, c in zip(lo, hi, centre)], indexing="ij", sparse=True)
    offsets = [o.astype(np.float32) for o in offsets]

    local_tissue = tissue[box]
    free = (cerebrum[box] > 0.5) & ((local_tissue == 0) | (local_tissue == EDEMA))
    voxel_mm3 = float(spacing**3)
    n_core = int(round(plan.whole_mm3 * plan.core_fraction / voxel_mm3))
    core_field = _shape_field(rng, offsets, core_radius, spacing, shape)
    core = _largest_component(top_n_mask(core_field, free & (csf[box] < 0.6), n_core))
    if not core.any():
        return

    new = np.zeros(shape, np.uint8)
    depth = ndi.distance_transform_edt(core)
    inner = depth / max(float(depth.max()), 1.0) + 0.12 * smooth_field(rng, shape, max(1.0, 0.5 * core_radius / spacing))
    deep = depth > max(1.5, 3.5 / spacing)  # necrosis keeps a rim of at least 3 mm (one voxel at 2 mm)
    if plan.high_grade:
        necrosis = top_n_mask(inner, deep, int(rng.uniform(0.2, 0.5) * core.sum()))
        rim = core & ~necrosis
        patches = smooth_field(rng, shape, max(1.0, 0.4 * core_radius / spacing))
        nonenhancing = top_n_mask(patches, rim, int(rng.uniform(0.0, 0.3) * rim.sum()))
        new[rim] = ENHANCING
        new[nonenhancing] = NONENHANCING
        new[necrosis] = NECROSIS
        if rng.random() < 0.35:
            spots = smooth_field(rng, shape, max(1.0, 3.0 / spacing))
            new[top_n_mask(spots, necrosis, int(rng.uniform(0.05, 0.15) * necrosis.sum()))] = HAEMORRHAGE
    else:
        new[core] = NONENHANCING
        if rng.random() < 0.3:
            new[top_n_mask(inner, deep, int(rng.uniform(0.1, 0.25) * core.sum()))] = NECROSIS

    distance_mm = ndi.distance_transform_edt(~core) * spacing
    decay = rng.uniform(8.0, 16.0)
    potential = np.exp(-distance_mm / decay) * (0.1 + 0.9 * wm[box]) ** 2 * (1.0 - 0.9 * csf[box])
    potential += 0.12 * smooth_field(rng, shape, max(1.0, 6.0 / spacing)) * np.exp(-distance_mm / (2.0 * decay))
    n_edema = int(round(plan.whole_mm3 / voxel_mm3)) - int(core.sum())
    edema = top_n_mask(potential, free & ~core, n_edema)
    whole = _largest_component(core | edema)
    new[edema & whole] = EDEMA
    write = (new > 0) & ((local_tissue == 0) | ((local_tissue == EDEMA) & (new != EDEMA)))
    local_tissue[write] = new[write]


def labels_from_tissue(tissue: np.ndarray) -> np.ndarray:
    """BraTS labels (uint8, {0,1,2,4}) from tissue codes."""
    lut = np.zeros(256, np.uint8)
    for code, label in TISSUE_LABEL.items():
        lut[code] = label
    return lut[tissue]
