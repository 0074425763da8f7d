"""Small BraTS-like cases written as real NIfTI files with SimpleITK, for the data-layer tests.

A case is a 40 x 48 x 36 voxel grid (x, y, z) holding an ellipsoidal "brain" and a tumour made of an
enhancing shell (ET) around a necrotic core (NCR) inside edema (ED); each sequence has its own contrast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AllStageTraining.constants import MODALITIES

SIZE_XYZ = (40, 48, 36)
#: BraTS 2023 file suffixes per modality, as written by ``write_case(..., convention="brats2023")``.
SUFFIX_2023 = {"flair": "t2f", "t1ce": "t1c", "t1": "t1n", "t2": "t2w", "seg": "seg"}
#: Mean intensity per tissue (background-brain, ED, NCR, ET) and sequence.
CONTRAST = {"flair": (300, 700, 400, 500), "t1ce": (400, 350, 150, 900),
            "t1": (500, 400, 200, 450), "t2": (350, 750, 900, 600)}


def make_arrays(seed: int = 0, size_xyz=SIZE_XYZ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(images per modality int16 (z, y, x), label uint8 (z, y, x) in {0, 1, 2, 4})."""
    rng = np.random.default_rng(seed)
    shape = tuple(reversed(size_xyz))
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(np.float32)
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2
    radii = np.array(shape, dtype=np.float32)[:, None, None, None] * 0.38
    brain = (((grid - centre) / radii) ** 2).sum(0) <= 1.0
    tumour_centre = centre + rng.uniform(-3, 3, size=(3, 1, 1, 1)).astype(np.float32)
    distance = np.sqrt(((grid - tumour_centre) ** 2).sum(0))
    label = np.zeros(shape, dtype=np.uint8)
    label[(distance <= 8) & brain] = 2
    label[distance <= 5] = 4
    label[distance <= 3] = 1
    images = {}
    for m in MODALITIES:
        tissue = np.select([label == 0, label == 2, label == 1, label == 4], CONTRAST[m]).astype(np.float32)
        noisy = tissue + rng.normal(0, 20, size=shape).astype(np.float32)
        images[m] = np.where(brain, np.clip(noisy, 1, None), 0).astype(np.int16)
    return images, label


def to_image(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write_case(folder: Path, case_id: str, *, convention: str = "brats2020", modalities=MODALITIES,
               label: bool = True, extension: str = ".nii.gz", seed: int = 0, label_array=None,
               geometry: dict | None = None) -> dict[str, Path]:
    """Write one case as ``folder/case_id/...``; returns role (modality or "seg") -> path.

    geometry: optional keyword arguments of ``to_image`` (spacing, origin, direction) for every file.
    """
    images, seg = make_arrays(seed)
    if label_array is not None:
        seg = label_array
    case_dir = Path(folder) / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    roles = list(modalities) + (["seg"] if label else [])
    for role in roles:
        array = seg if role == "seg" else images[role]
        suffix = f"-{SUFFIX_2023[role]}" if convention == "brats2023" else f"_{role}"
        path = case_dir / f"{case_id}{suffix}{extension}"
        sitk.WriteImage(to_image(array, **(geometry or {})), str(path))
        paths[role] = path
    return paths
