"""A head around a synthetic brain: CSF, skull, scalp, eyes, sinuses and neck, plus the background noise of a
real magnitude image, so that the brain is no longer "skull-stripped".

``add_head(case, rng) -> SynthCase`` keeps every brain voxel of ``case`` exactly as it was (so stripping the
head with the true brain mask gives the clean case back) and fills the rest of the grid. The grid grows by
``PAD_BELOW_MM`` below and ``PAD_ABOVE_MM`` above (the BraTS grid cuts the brain a few millimetres from its
top and bottom, where the vertex and the skull base must fit); labels and tissue maps are padded alike.

Layers outside the brain, by distance from its closed outline (mm, each thickness varies smoothly by about
25% over the head): subarachnoid CSF 2, dura 1 (enhances on T1ce), inner table 1.5, diploe (fatty marrow)
3, outer table 1.5, galea and muscle 1.5 (temporalis up to 6 more over the temples), subcutaneous fat 4,
skin 2. Below the brain a neck and face: muscle with fat streaks, the spinal canal (CSF around the cord,
inside a vertebral ring of bone), two eyes (vitreous, in orbital fat) under the frontal lobes and an air
sinus between them. Signals follow real MRI relative to white matter as in ``contrast.SIGNAL``: bone is dark
on every sequence, fat bright on T1 (and fairly bright on T2 and FLAIR), CSF and vitreous bright on T2 only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from ..constants import MODALITIES
from .contrast import SIGNAL
from .fields import smooth_field

PAD_BELOW_MM = 26.0
PAD_ABOVE_MM = 20.0
CLOSING_MM = 8.0  # the brain's outline is closed over sulci before the layers are laid around it

AIR, CSF, DURA, BONE, MARROW, MUSCLE, FAT, SKIN, VITREOUS, CORD = range(10)
#: Relative signal per head tissue in MODALITIES order (flair, t1ce, t1, t2); white matter on T1 is 1.
HEAD_SIGNAL: dict[int, tuple[float, float, float, float]] = {
    AIR: (0.0, 0.0, 0.0, 0.0),
    CSF: SIGNAL["csf"],
    DURA: (0.35, 1.15, 0.40, 0.35),
    BONE: (0.04, 0.05, 0.05, 0.04),
    MARROW: (0.70, 1.05, 1.10, 0.75),
    MUSCLE: (0.50, 0.62, 0.60, 0.38),
    FAT: (1.00, 1.40, 1.45, 1.05),
    SKIN: (0.65, 0.80, 0.75, 0.60),
    VITREOUS: (0.10, 0.20, 0.18, 1.65),
    CORD: SIGNAL["wm"],
}
#: Skull layers outward from the closed brain outline: (tissue, mean thickness mm).
SHELL_LAYERS: tuple[tuple[int, float], ...] = (
    (CSF, 2.0), (DURA, 1.0), (BONE, 1.5), (MARROW, 3.0), (BONE, 1.5), (MUSCLE, 1.5),
)
SKIN_MM, FAT_MM = 2.0, 4.0


def _pad(array: np.ndarray, below: int, above: int) -> np.ndarray:
    return np.pad(array, ((below, above), (0, 0), (0, 0)))


def _closed(mask: np.ndarray, radius_mm: float, spacing: float) -> np.ndarray:
    """Morphological closing by a ball of ``radius_mm`` (two distance transforms), holes filled."""
    dilated = ndi.distance_transform_edt(~mask, sampling=spacing) <= radius_mm
    return ndi.binary_fill_holes(ndi.distance_transform_edt(dilated, sampling=spacing) > radius_mm) | mask


def _ball(shape, centre, radius_mm: float, spacing: float) -> np.ndarray:
    axes = [(np.arange(n) - c) * spacing for n, c in zip(shape, centre)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    return z * z + y * y + x * x <= radius_mm * radius_mm


def _head_tissue(rng: np.random.Generator, brain: np.ndarray, spacing: float) -> np.ndarray:
    """uint8 head tissue codes (Z, Y, X) around ``brain`` (bool); brain voxels get CSF (they are overwritten)."""
    shape = brain.shape
    envelope = _closed(brain, CLOSING_MM, spacing)
    outside = ndi.distance_transform_edt(~envelope, sampling=spacing)  # mm from the closed outline
    tissue = np.full(shape, AIR, np.uint8)
    tissue[envelope] = CSF
    centre = np.argwhere(brain).mean(0)
    lateral = np.abs(np.arange(shape[2]) - centre[2]) * spacing  # mm from the midline
    z_mm = (np.arange(shape[0]) - centre[0]) * spacing  # mm above the brain's centre
    temples = (np.clip((lateral[None, None, :] - 50.0) / 15.0, 0, 1)
               * np.exp(-((z_mm[:, None, None] + 5.0) / 25.0) ** 2))
    boundary = np.zeros(shape, np.float32)
    for tissue_code, thickness in SHELL_LAYERS:
        layer = thickness * (1.0 + 0.25 * smooth_field(rng, shape, 40.0 / spacing))
        if tissue_code == MUSCLE:
            layer = layer + 6.0 * temples
        inner, boundary = boundary, boundary + np.maximum(layer, 0.5 * thickness)
        tissue[(outside > inner) & (outside <= boundary)] = tissue_code
    skull_outer = boundary

    # neck and face: an elliptic column under the brain, rounded on top, plus the orbits
    low = np.argwhere(brain)
    bottom = low[:, 0].min()
    z_index, y_index, x_index = np.indices(shape, sparse=True)
    column_top = bottom + 40.0 / spacing
    radial = ((x_index - centre[2]) * spacing / 62.0) ** 2 + ((y_index - centre[1] + 10.0 / spacing) * spacing / 80.0) ** 2
    rounding = np.clip((z_index - (column_top - 25.0 / spacing)) / (25.0 / spacing), 0, None) ** 2
    body = radial + rounding <= 1.0
    front = low[:, 1].min()
    eye_z = bottom + 32.0 / spacing
    eyes = [(eye_z, front + 22.0 / spacing, centre[2] + side * 32.0 / spacing) for side in (-1, 1)]
    orbits = np.zeros(shape, bool)
    for eye in eyes:
        orbits |= _ball(shape, eye, 17.0, spacing)
    head = ndi.binary_fill_holes((outside <= skull_outer + SKIN_MM + FAT_MM) | body | orbits)
    depth = ndi.distance_transform_edt(head, sampling=spacing)  # mm inside the head's surface
    soft = head & (outside > skull_outer)
    fat = FAT_MM * (1.0 + 0.25 * smooth_field(rng, shape, 40.0 / spacing))
    streaks = smooth_field(rng, shape, 12.0 / spacing) > 1.0
    tissue[soft] = MUSCLE
    tissue[soft & streaks] = FAT
    tissue[soft & orbits] = FAT
    tissue[soft & (depth <= SKIN_MM + fat)] = FAT
    tissue[soft & (depth <= SKIN_MM)] = SKIN
    for eye in eyes:
        tissue[_ball(shape, eye, 11.0, spacing) & soft] = VITREOUS
    sinus = _ball(shape, (eye_z - 14.0 / spacing, front + 28.0 / spacing, centre[2]), 14.0, spacing)
    tissue[sinus & soft & (depth > 8.0)] = AIR

    # spinal canal under the brainstem: cord in CSF inside a ring of bone, down to the bottom of the grid
    stem = low[low[:, 0] < bottom + 4.0 / spacing].mean(0)
    below = np.zeros(shape, bool)
    below[: bottom + 1] = True
    radius = np.hypot((y_index - stem[1]) * spacing, (x_index - stem[2]) * spacing)
    for code, outer in ((BONE, 15.0), (CSF, 8.0), (CORD, 5.0)):
        tissue[below & (radius <= outer) & ~envelope] = code
    return tissue


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def add_head(case, rng: np.random.Generator, *, zero_background: bool = False):
    """``case`` (a clean ``SynthCase``) with a head around its brain, on the grid padded below and above.

    Brain voxels (non-zero in the clean images) keep their values; the head's sequences share each clean
    sequence's scale (estimated from its white matter) and get their own bias field and Rician noise, in
    the air as well unless ``zero_background`` (some scanners write exact zeros outside the head).
    The result's ``brain`` holds the true brain mask (bool, padded grid).
    """
    spacing = float(case.spacing)
    below, above = int(np.ceil(PAD_BELOW_MM / spacing)), int(np.ceil(PAD_ABOVE_MM / spacing))
    clean = {m: _pad(case.images[m], below, above) for m in MODALITIES}
    brain = np.any([image != 0 for image in clean.values()], axis=0)
    tissue = _head_tissue(rng, brain, spacing)
    fractions = {k: _pad(v, below, above) for k, v in case.fractions.items()}
    white = brain & (fractions["wm"] > 0.9) & (_pad(case.labels, below, above) == 0)
    outside_head = tissue == AIR
    table = np.array([HEAD_SIGNAL[code] for code in range(len(HEAD_SIGNAL))], np.float32)
    images = {}
    for channel, modality in enumerate(MODALITIES):
        level = float(np.median(clean[modality][white])) / SIGNAL["wm"][channel]
        signal = table[tissue, channel] * (1.0 + 0.06 * smooth_field(rng, tissue.shape, 4.0 / spacing))
        signal *= np.exp(rng.uniform(0.05, 0.15) * smooth_field(rng, tissue.shape, 70.0 / spacing))
        signal = ndi.gaussian_filter(signal, 0.6 if spacing == 1 else 0.45) * level
        noisy = _rician(rng, signal, rng.uniform(0.015, 0.035) * level)
        if zero_background:
            noisy[outside_head] = 0.0
        out = np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)
        out[brain] = clean[modality][brain]
        images[modality] = out
    return replace(case, images=images, labels=_pad(case.labels, below, above),
                   tissue=_pad(case.tissue, below, above), fractions=fractions,
                   padding=(case.padding[0] + below, case.padding[1] + above), brain=brain)
