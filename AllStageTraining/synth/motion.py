"""Patient motion between acquisitions: every sequence but the reference moved by a known random rigid
transform, so that tests of co-registration know the truth.

``misalign(case, rng, degrees, mm, grid)`` rotates each moved sequence by exactly ``degrees`` about a random
axis through the brain's centre and shifts it by exactly ``mm`` in a random direction. The labels stay in
the reference's frame (a label is drawn on the reference). The record says, per moved sequence, the
transform ``T`` that maps a point of the reference's frame to where the same anatomy lies in the moved
image: SimpleITK's convention for a registration of the moved image (moving) onto the reference (fixed), so
a perfect registration returns ``T``. Rebuild it with
``sitk.Euler3DTransform(center_mm, *angles_rad, translation_mm)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from ..constants import MODALITIES

REFERENCE = MODALITIES[0]  # the sequence that does not move (the predictor's default reference)
CORNER = 0.08  # share of each axis at the grid's corners where the background noise is measured


def random_rigid(rng: np.random.Generator, degrees: float, mm: float, center_mm) -> sitk.Euler3DTransform:
    """A rotation by exactly ``degrees`` about a uniformly random axis through ``center_mm`` followed by a
    shift of exactly ``mm`` in a uniformly random direction."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    versor = sitk.VersorRigid3DTransform()
    versor.SetCenter([float(c) for c in center_mm])
    versor.SetRotation(axis.tolist(), float(np.deg2rad(degrees)))
    euler = sitk.Euler3DTransform()
    euler.SetCenter([float(c) for c in center_mm])
    euler.SetMatrix(versor.GetMatrix())
    euler.SetTranslation((mm * direction).tolist())
    return euler


def describe(transform: sitk.Euler3DTransform) -> dict:
    """JSON-ready record of a rigid transform: Euler angles (rad, SimpleITK's X, Y, Z), translation and
    centre (mm), its rotation angle (degrees) and shift (mm, at the centre), and the 3x3 matrix."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    angle = np.degrees(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)))
    return {
        "angles_rad": [transform.GetAngleX(), transform.GetAngleY(), transform.GetAngleZ()],
        "translation_mm": list(transform.GetTranslation()),
        "center_mm": list(transform.GetCenter()),
        "rotation_deg": float(angle),
        "shift_mm": float(np.linalg.norm(transform.GetTranslation())),
        "matrix": matrix.ravel().tolist(),
    }


def _background_sigma(array: np.ndarray) -> float:
    """Noise sigma of a magnitude image's air, from the grid's corners (Rayleigh: E[x^2] = 2 sigma^2)."""
    cut = [max(int(CORNER * n), 1) for n in array.shape]
    corners = [array[tuple(slice(None, c) if pick else slice(-c, None) for c, pick in zip(cut, picks))]
               for picks in np.ndindex(2, 2, 2)]
    values = np.concatenate([c.ravel() for c in corners]).astype(np.float64)
    return float(np.sqrt(np.mean(values * values) / 2.0))


def _moved(array: np.ndarray, grid: sitk.Image, transform: sitk.Transform, rng: np.random.Generator) -> np.ndarray:
    """The image content moved by ``transform`` (reference point p shows up at T(p)); voxels brought in from
    beyond the grid get background noise like the image's corners (0 for skull-stripped images)."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(grid)
    inverse = transform.GetInverse()
    out = sitk.GetArrayFromImage(sitk.Resample(image, grid, inverse, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    ones = sitk.Image(grid.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(grid)
    covered = sitk.GetArrayFromImage(sitk.Resample(ones, grid, inverse, sitk.sitkNearestNeighbor, 0)) > 0
    sigma = _background_sigma(array)
    if sigma > 0 and not covered.all():
        noise = sigma * rng.standard_normal((2, int((~covered).sum())))
        out[~covered] = np.hypot(noise[0], noise[1])
    return np.clip(np.rint(out), 0, np.iinfo(np.int16).max).astype(array.dtype)


def misalign(case, rng: np.random.Generator, degrees: float, mm: float, grid: sitk.Image):
    """``case`` with every sequence but ``REFERENCE`` moved rigidly (see the module docstring), and the
    record ``{"reference", "degrees", "mm", "convention", "moved": {modality: describe(T)}}``."""
    if degrees < 0 or mm < 0:
        raise ValueError(f"misalignment must be non-negative, not {degrees} degrees, {mm} mm")
    brain = case.brain if case.brain is not None else np.any([v != 0 for v in case.images.values()], axis=0)
    centre_index = np.argwhere(brain).mean(0)[::-1]  # (x, y, z)
    centre = grid.TransformContinuousIndexToPhysicalPoint(centre_index.tolist())
    images = dict(case.images)
    moved = {}
    for modality in MODALITIES:
        if modality == REFERENCE:
            continue
        transform = random_rigid(rng, degrees, mm, centre)
        images[modality] = _moved(case.images[modality], grid, transform, rng)
        moved[modality] = describe(transform)
    record = {
        "reference": REFERENCE, "degrees": float(degrees), "mm": float(mm),
        "convention": "T maps a point of the reference's frame to the same anatomy in the moved image "
                      "(SimpleITK fixed-to-moving); sitk.Euler3DTransform(center_mm, *angles_rad, translation_mm)",
        "moved": moved,
    }
    return replace(case, images=images, motion=record)
