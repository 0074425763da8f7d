"""The MNI152 2009 anatomy shipped inside the nilearn wheel, on the BraTS grid, and its random deformation.

Files (read directly, offline): the symmetric 2009a T1 template (skull-stripped) and its grey- and
white-matter probability maps. The brain mask is the template's non-zero region with holes filled; CSF is
what the brain holds beyond grey and white matter (ventricles, sulci).

BraTS geometry as SimpleITK reads BraTS 2020 files: 240 x 240 x 155 voxels of 1 mm, direction identity in
LPS (x to the patient's left, y posterior, z superior), origin (0, -239, 0) mm. The 2 mm grid covers the same
extent with 120 x 120 x 78 voxels. The template brain is scaled by ``TEMPLATE_SCALE`` (MNI152 brains are
larger than typical patients') and centred in the grid.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .fields import smooth_field

TEMPLATE_FILES: dict[str, str] = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
BRATS_SIZE_1MM: tuple[int, int, int] = (240, 240, 155)  # (x, y, z) voxels, SimpleITK order
BRATS_ORIGIN_1MM: tuple[float, float, float] = (0.0, -239.0, 0.0)  # LPS mm
SPACINGS: tuple[int, ...] = (1, 2)
TEMPLATE_SCALE = 0.93  # shrink of the MNI152 brain (1.9 l including CSF) towards a typical patient's
BOX_MARGIN_MM = 12.0  # room around the brain for the random deformation


def nilearn_data_dir() -> Path:
    """The folder of the nilearn wheel that holds the MNI152 files (found without importing nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("synth needs the 'nilearn' package (it ships the MNI152 anatomy): pip install nilearn")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"nilearn at {folder} lacks the MNI152 files {missing}; reinstall nilearn >= 0.10")
    return folder


def brats_grid(spacing: int) -> sitk.Image:
    """An empty uint8 image with the BraTS geometry at ``spacing`` mm (1 or 2)."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS} mm, not {spacing!r}")
    size = [int(np.ceil(n / spacing)) for n in BRATS_SIZE_1MM]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([float(spacing)] * 3)
    # voxel centres of the coarse grid sit at the centres of the 1 mm voxel blocks they cover
    grid.SetOrigin([o + (spacing - 1) / 2.0 for o in BRATS_ORIGIN_1MM])
    grid.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return grid


@dataclass(frozen=True)
class Anatomy:
    """Anatomy maps inside ``box`` (a brain bounding box of the BraTS grid); arrays are (Z, Y, X) float32.

    ``t1``: the T1 template with white matter at about 1, 0 outside the brain; ``gm``, ``wm``: tissue
    probabilities; ``brain``: brain-mask fraction 0..1; ``cerebrum``: the
    brain without the posterior fossa (cerebellum, brainstem), 0..1; ``eligible`` (bool): where a glioma's centre may lie
    (cerebral white matter outside the posterior fossa, at least 18 mm inside the brain).
    """

    spacing: int
    box: tuple[slice, slice, slice]
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    cerebrum: np.ndarray
    eligible: np.ndarray

    @property
    def csf(self) -> np.ndarray:
        return np.clip(self.brain - self.gm - self.wm, 0.0, 1.0)


def _template_images() -> dict[str, sitk.Image]:
    """Template maps on the native MNI grid (1 mm, LPS as SimpleITK reads them), float32 in 0..1 (t1: WM ~ 1)."""
    folder = nilearn_data_dir()
    raw = {k: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f))).astype(np.float32) for k, f in TEMPLATE_FILES.items()}
    reference = sitk.ReadImage(str(folder / TEMPLATE_FILES["t1"]))
    brain = ndi.binary_fill_holes(raw["t1"] > 20)
    labels, _ = ndi.label(brain)
    brain = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    gm, wm = raw["gm"] / 255.0, raw["wm"] / 255.0
    t1 = raw["t1"] * brain / float(np.mean(raw["t1"][wm > 0.9]))
    # posterior fossa (cerebellum, brainstem): below a plane sloping down posteriorly like the tentorium,
    # plus the brainstem below the midbrain; gliomas neither start nor grow there
    z_index, y_index, x_index = np.indices(brain.shape, sparse=True)
    origin, direction = reference.GetOrigin(), reference.GetDirection()
    x_mni = -(origin[0] + direction[0] * x_index)  # LPS -> RAS (MNI) millimetres
    y_mni = -(origin[1] + direction[4] * y_index)
    z_mni = origin[2] + direction[8] * z_index
    posterior_fossa = ((y_mni < -40) & (z_mni < -5 + 0.35 * (y_mni + 40))) | (
        (np.abs(x_mni) < 20) & (y_mni < -10) & (z_mni < -5)
    )
    cerebrum = brain & ~posterior_fossa
    # glioma centres: cerebral white matter deep inside the brain, off the midline; found on a 2 mm
    # subsample (plenty for a centre, and the distance transform is 8x cheaper)
    sub = (slice(None, None, 2),) * 3
    depth_mm = ndi.distance_transform_edt(brain[sub], sampling=2.0)
    eligible = (wm[sub] > 0.5) & cerebrum[sub] & (depth_mm > 18) & (np.abs(x_mni[sub]) > 8) & (z_mni[sub] < 55)
    arrays = {"t1": t1, "gm": gm, "wm": wm, "brain": brain.astype(np.float32), "cerebrum": cerebrum.astype(np.float32)}
    images = {}
    for key, array in arrays.items():
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        images[key] = image
    images["eligible"] = sitk.GetImageFromArray(eligible.astype(np.float32))
    images["eligible"].SetOrigin(origin)
    images["eligible"].SetDirection(direction)
    images["eligible"].SetSpacing([2.0 * s for s in reference.GetSpacing()])
    return images


@lru_cache(maxsize=len(SPACINGS))
def template_anatomy(spacing: int) -> Anatomy:
    """The undeformed anatomy on the BraTS grid at ``spacing`` mm (computed once per process and spacing)."""
    grid = brats_grid(spacing)
    images = _template_images()
    brain_array = sitk.GetArrayFromImage(images["brain"])
    nonzero = np.argwhere(brain_array > 0)
    centre_index = (nonzero.min(0) + nonzero.max(0)) / 2.0  # (z, y, x)
    centre_in = np.array(images["brain"].TransformContinuousIndexToPhysicalPoint(centre_index[::-1].tolist()))
    centre_out = np.array(grid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in grid.GetSize()]))
    transform = sitk.AffineTransform(3)  # output point p -> template point centre_in + (p - centre_out) / scale
    transform.SetMatrix((np.eye(3) / TEMPLATE_SCALE).ravel().tolist())
    transform.SetCenter(centre_out.tolist())
    transform.SetTranslation((centre_in - centre_out).tolist())
    arrays = {}
    for key, image in images.items():
        if spacing > 1 and key != "eligible":  # anti-aliasing before sampling the coarser grid
            smoothed = sitk.GetImageFromArray(ndi.gaussian_filter(sitk.GetArrayViewFromImage(image), 0.4 * spacing))
            smoothed.CopyInformation(image)
            image = smoothed
        resampled = sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        arrays[key] = sitk.GetArrayFromImage(resampled)
    inside = np.argwhere(arrays["brain"] > 0.01)
    margin = int(np.ceil(BOX_MARGIN_MM / spacing))
    lo = np.maximum(inside.min(0) - margin, 0)
    hi = np.minimum(inside.max(0) + 1 + margin, arrays["brain"].shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    cut = {k: np.ascontiguousarray(v[box]) for k, v in arrays.items()}
    for value in cut.values():
        value.setflags(write=False)
    return Anatomy(
        spacing=spacing, box=box, t1=cut["t1"], gm=cut["gm"], wm=cut["wm"], brain=cut["brain"],
        cerebrum=cut["cerebrum"],
        eligible=cut["eligible"] > 0.5,
    )


@dataclass(frozen=True)
class Deformation:
    """A smooth random warp of the box: output voxel x samples the template at ``centre + matrix (x - centre)
    + displacement(x)`` (voxel units, array axis order)."""

    matrix: np.ndarray  # (3, 3)
    centre: np.ndarray  # (3,)
    displacement: np.ndarray  # float32 (3, Z, Y, X), voxels

    def to_output(self, template_point: np.ndarray) -> np.ndarray:
        """Approximate output position of a template voxel (ignores the small displacement)."""
        return self.centre + np.linalg.solve(self.matrix, np.asarray(template_point, float) - self.centre)


def random_deformation(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: int,
    *,
    amplitude_mm: float,
    max_rotation_deg: float = 4.0,
    max_scale_change: float = 0.05,
) -> Deformation:
    """Small random rotation and scaling about the box centre plus a low-frequency displacement field whose
    per-axis std is ``amplitude_mm`` (features about 50 mm wide)."""
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rotation = rotation @ r
    scales = 1.0 + rng.uniform(-max_scale_change, max_scale_change) + rng.uniform(-0.02, 0.02, 3)
    matrix = rotation @ np.diag(1.0 / scales)
    scale_vox = 50.0 / spacing
    displacement = np.stack([smooth_field(rng, shape, scale_vox) for _ in range(3)])
    displacement *= amplitude_mm / spacing
    return Deformation(matrix=matrix, centre=(np.array(shape) - 1) / 2.0, displacement=displacement)


def add_mass_effect(deformation: Deformation, centre: np.ndarray, radius_vox: float, strength: float) -> None:
    """Push tissue away from ``centre`` (output voxel coordinates): within about ``radius_vox`` the template
    is sampled closer to the centre, by at most ``0.6 * strength * radius_vox`` voxels (strength < 1 keeps
    the warp invertible)."""
    shape = deformation.displacement.shape[1:]
    lo = np.maximum(np.floor(centre - 3 * radius_vox).astype(int), 0)
    hi = np.minimum(np.ceil(centre + 3 * radius_vox).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    offsets = [np.arange(a, b, dtype=np.float32) - c for a, b, c in zip(lo, hi, centre)]
    dz, dy, dx = np.meshgrid(*offsets, indexing="ij", sparse=True)
    weight = strength * np.exp(-(dz**2 + dy**2 + dx**2) / (2.0 * radius_vox**2))
    for axis in range(3):  # sample at matrix (x - centre) * (1 - weight) relative to the centre's template point
        push = sum(deformation.matrix[axis, k] * d for k, d in enumerate((dz, dy, dx)))
        deformation.displacement[axis][box] -= (weight * push).astype(np.float32)


def deform(anatomy: Anatomy, deformation: Deformation) -> dict[str, np.ndarray]:
    """The anatomy maps warped by ``deformation``: float32 (Z, Y, X) arrays t1, gm, wm, brain, cerebrum."""
    shape = anatomy.brain.shape
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - deformation.centre[:, None].astype(np.float32)
    coords = deformation.matrix.astype(np.float32) @ grid
    coords += deformation.centre[:, None].astype(np.float32)
    coords += deformation.displacement.reshape(3, -1)
    out = {}
    for key in ("t1", "gm", "wm", "brain", "cerebrum"):
        sampled = ndi.map_coordinates(getattr(anatomy, key), coords, order=1, mode="constant", cval=0.0)
        out[key] = sampled.reshape(shape).astype(np.float32, copy=False)
    return out
