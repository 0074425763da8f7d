"""Preprocessing of one case: read, check geometry, orient to LPS, crop to the brain, normalize.

Only the sequences that are given are opened. Arrays use SimpleITK's array order ``(z, y, x)`` of the image
oriented to LPS. Intensities: per sequence z-score over the brain, clipped to [-5, 5], 0 outside the brain
and in every unavailable channel. ``uncrop`` and ``to_reference_image`` map a result back onto the grid of
the input reference image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..constants import MODALITIES, NUM_MODALITIES
from .input_checks import value_problem
from .labels import LabelError, normalize_label_values

__all__ = [
    "GeometryError", "ImageError", "LabelError", "Geometry", "PreprocessedCase", "load_case", "read_image",
    "uncrop", "to_reference_image", "ORIENTATION", "CROP_MARGIN", "CLIP_Z",
]

ORIENTATION = "LPS"
CROP_MARGIN = 2  # voxels kept around the brain's bounding box
CLIP_Z = 5.0  # normalized intensities are clipped to [-CLIP_Z, CLIP_Z]
SPACING_RTOL = 1e-3  # relative tolerance on spacing
ORIGIN_TOL = 1e-3  # origin tolerance, as a fraction of the largest voxel spacing
DIRECTION_ATOL = 1e-4  # absolute tolerance on direction cosines


class GeometryError(ValueError):
    """The sequences (or the label) of a case do not share one voxel grid."""


class ImageError(ValueError):
    """An image cannot be used: no sequence given, empty (all zero), all NaN, or not a scalar volume."""


@dataclass(frozen=True)
class Geometry:
    """A voxel grid: size, spacing (mm), origin (mm) in SimpleITK (x, y, z) order, direction row-major 3x3."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(int(s) for s in image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(**{k: tuple(v) for k, v in data.items()})

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    def apply(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def to_image(self) -> sitk.Image:
        """An empty uint8 image on this grid (for resampling onto it)."""
        return self.apply(sitk.Image(list(self.size), sitk.sitkUInt8))

    def difference(self, other: "Geometry") -> tuple[str, str] | None:
        """None when ``other`` is the same grid within tolerance, else ``(what, expected)``, for example
        ``("spacing (1, 1, 3) differs from", "(1, 1, 1)")``."""
        fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"  # noqa: E731
        if self.size != other.size:
            return f"size {fmt(other.size)} differs from", fmt(self.size)
        if not np.allclose(other.spacing, self.spacing, rtol=SPACING_RTOL, atol=0):
            return f"spacing {fmt(other.spacing)} differs from", fmt(self.spacing)
        if not np.allclose(other.origin, self.origin, rtol=0, atol=ORIGIN_TOL * max(self.spacing)):
            return f"origin {fmt(other.origin)} differs from", fmt(self.origin)
        if not np.allclose(other.direction, self.direction, rtol=0, atol=DIRECTION_ATOL):
            return f"direction {fmt(other.direction)} differs from", fmt(self.direction)
        return None


@dataclass
class PreprocessedCase:
    """One case after preprocessing, cropped to the brain's bounding box (margin CROP_MARGIN).

    image: float32 or float16 (4, Z, Y, X), MODALITIES order, 0 outside the brain and in unavailable channels.
    available: bool (4,). brain: bool (Z, Y, X). label: uint8 (Z, Y, X) in {0, 1, 2, 4} or None.
    bbox: (start, stop) per array axis (z, y, x) in the oriented full grid.
    grid: the oriented (LPS) full grid; input_grid: the grid of the input reference image.
    """

    case_id: str
    image: np.ndarray
    available: np.ndarray
    brain: np.ndarray
    label: np.ndarray | None
    bbox: tuple[tuple[int, int], ...]
    grid: Geometry | None = None
    input_grid: Geometry | None = None

    @property
    def reference(self) -> sitk.Image | None:
        """The oriented reference grid as an (empty) image, for mapping results back."""
        return None if self.grid is None else self.grid.to_image()

    @property
    def full_shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x) of the oriented full grid."""
        return tuple(reversed(self.grid.size)) if self.grid is not None else tuple(b[1] for b in self.bbox)


def read_image(source, case_id: str, what: str) -> sitk.Image:
    """A 3D scalar image from a path (or an sitk.Image, passed through); float64 becomes float32.

    Raises ImageError saying what is wrong: no such file, a folder instead of a file, an unreadable format,
    not a 3D scalar volume. Messages start with ``case <case_id>: ``.
    """
    if isinstance(source, sitk.Image):
        image = source
    else:
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"case {case_id}: {what} {path} is a folder, not an image file; give the NIfTI or NRRD "
                             f"file itself (a DICOM series folder: convert it to NIfTI or load it in Slicer)")
        if not path.exists():
            raise ImageError(f"case {case_id}: {what} file {path} does not exist; check the path")
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ImageError(f"case {case_id}: cannot read {what} from {source}: {first}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(f"case {case_id}: {what} is not a 3D scalar volume "
                         f"(dimension {image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} components)")
    if image.GetPixelID() == sitk.sitkFloat64:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def _matched(image: sitk.Image, reference: sitk.Image, ref_name: str, what: str, case_id: str,
             resample: bool, is_label: bool) -> sitk.Image:
    """``image`` on the reference grid: checked, or resampled when ``resample`` is set."""
    found = Geometry.of(reference).difference(Geometry.of(image))
    if found is None:
        return image
    if not resample:
        differs, expected = found
        raise GeometryError(f"case {case_id}: {what} {differs} {ref_name} {expected}; pass resample=True / "
                            f"--resample to resample onto {ref_name}")
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    pixel = image.GetPixelID() if is_label else sitk.sitkFloat32
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, pixel)


def _as_float32(image: sitk.Image, case_id: str, modality: str) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image)  # valid while ``image`` lives: copied below
    out = np.asarray(array, dtype=np.float32)
    if out is array:
        out = out.copy()
    nan = np.isnan(out)
    if nan.all():
        raise ImageError(f"case {case_id}: {modality} image is all NaN")
    if nan.any():
        out[nan] = 0.0
    if not out.any():  # the image as read was checked: only resampling can have emptied it
        raise ImageError(f"case {case_id}: {modality} image is all zero on the reference grid: it does not overlap "
                         f"the reference's field of view")
    return out


def _brain_from_mask(mask, reference: sitk.Image, ref_name: str, case_id: str, resample: bool) -> np.ndarray:
    """bool (Z, Y, X) on the oriented grid from a brain-mask image on the reference grid; ImageError if empty."""
    image = _matched(read_image(mask, case_id, "brain mask"), reference, ref_name, "brain mask", case_id, resample,
                     is_label=True)
    brain = sitk.GetArrayFromImage(sitk.DICOMOrient(image, ORIENTATION)) != 0
    if not brain.any():
        raise ImageError(f"case {case_id}: the brain mask is empty")
    return brain


def _bbox(mask: np.ndarray, margin: int) -> tuple[tuple[int, int], ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def load_case(images: dict, label=None, *, case_id: str = "case", resample: bool = False,
              reference=None, brain_mask: sitk.Image | None = None) -> PreprocessedCase:
    """Preprocess one case.

    images: modality -> file path, sitk.Image or None; only non-None entries are opened.
    label: path, sitk.Image or None. reference: a modality name or an sitk.Image whose grid the others must
    share (default: the first available sequence in MODALITIES order). resample: resample sequences (linear)
    and label (nearest) onto the reference grid instead of raising GeometryError.
    brain_mask: the brain as an image on the reference grid (non-zero = brain), for inputs that are not
    skull-stripped (``prepare_inputs``); None (default): the union of the non-zero voxels of the sequences.
    Images that are empty, all NaN, or nothing but NaN and zeros raise ImageError before any resampling.
    """
    unknown = set(images) - set(MODALITIES)
    if unknown:
        raise ImageError(f"case {case_id}: unknown sequence name(s) {sorted(unknown)}; expected {MODALITIES}")
    present = [m for m in MODALITIES if images.get(m) is not None]
    if not present:
        raise ImageError(f"case {case_id}: no sequence given; at least one of {', '.join(MODALITIES)} is needed")
    read = {m: read_image(images[m], case_id, m) for m in present}
    for m, image in read.items():
        problem = value_problem(image)
        if problem is not None:
            raise ImageError(f"case {case_id}: {m} image {problem}")
    if isinstance(reference, sitk.Image):
        ref_image, ref_name = reference, "the reference image"
    else:
        ref_name = reference or present[0]
        if ref_name not in read:
            raise ImageError(f"case {case_id}: reference sequence {ref_name!r} is not among the given {present}")
        ref_image = read[ref_name]
    input_grid = Geometry.of(ref_image)

    oriented: dict[str, sitk.Image] = {}
    for m in present:
        image = _matched(read.pop(m), ref_image, ref_name, m, case_id, resample, is_label=False)
        oriented[m] = sitk.DICOMOrient(image, ORIENTATION)
    grid = Geometry.of(oriented[present[0]])

    shape = tuple(reversed(grid.size))
    brain = np.zeros(shape, dtype=bool)
    arrays: dict[str, np.ndarray] = {}
    for m in present:
        arrays[m] = _as_float32(oriented.pop(m), case_id, m)
        if brain_mask is None:
            brain |= arrays[m] != 0
    if brain_mask is not None:
        brain = _brain_from_mask(brain_mask, ref_image, ref_name, case_id, resample)
    bbox = _bbox(brain, CROP_MARGIN)
    crop = tuple(slice(a, b) for a, b in bbox)
    brain = np.ascontiguousarray(brain[crop])

    image = np.zeros((NUM_MODALITIES, *brain.shape), dtype=np.float32)
    for channel, m in enumerate(MODALITIES):
        if m not in arrays:
            continue
        values = arrays.pop(m)[crop]
        inside = values[brain]
        mean = float(inside.mean(dtype=np.float64))
        std = float(inside.std(dtype=np.float64))
        out = image[channel]
        np.subtract(values, mean, out=out)
        if std > 1e-8:
            out /= std
        np.clip(out, -CLIP_Z, CLIP_Z, out=out)
        out[~brain] = 0.0

    label_array = None
    if label is not None:
        label_image = read_image(label, case_id, "label")
        label_image = _matched(label_image, ref_image, ref_name, "label", case_id, resample, is_label=True)
        label_image = sitk.DICOMOrient(label_image, ORIENTATION)
        values = normalize_label_values(sitk.GetArrayFromImage(label_image), case_id)  # whole map checked
        label_array = np.ascontiguousarray(values[crop])

    available = np.array([m in present for m in MODALITIES], dtype=bool)
    return PreprocessedCase(case_id=case_id, image=image, available=available, brain=brain, label=label_array,
                            bbox=bbox, grid=grid, input_grid=input_grid)


def uncrop(array: np.ndarray, case: PreprocessedCase, fill=0) -> np.ndarray:
    """Put a cropped array (..., Z, Y, X) back on the oriented full grid (..., *full_shape), ``fill`` outside."""
    array = np.asarray(array)
    crop_shape = tuple(b - a for a, b in case.bbox)
    if array.shape[-3:] != crop_shape:
        raise ValueError(f"case {case.case_id}: array shape {array.shape[-3:]} is not the cropped shape {crop_shape}")
    out = np.full(array.shape[:-3] + case.full_shape, fill, dtype=array.dtype)
    out[(...,) + tuple(slice(a, b) for a, b in case.bbox)] = array
    return out


def to_reference_image(array: np.ndarray, case: PreprocessedCase, *, is_label: bool) -> sitk.Image:
    """A (Z, Y, X) array, cropped or on the oriented full grid, as an image on the input reference grid.

    The oriented grid is a permutation/flip of the input grid, so orienting back is exact. Should the
    orientation round trip not reproduce the input grid, the image is resampled onto it (nearest neighbour
    for labels, linear for intensities). Labels come back as uint8, intensities as float32.
    """
    if case.grid is None or case.input_grid is None:
        raise ValueError(f"case {case.case_id}: no geometry recorded; cannot map back to the input grid")
    array = np.asarray(array)
    if array.shape != case.full_shape:
        array = uncrop(array, case)
    array = array.astype(np.uint8 if is_label else np.float32, copy=False)
    image = case.grid.apply(sitk.GetImageFromArray(array))
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(case.input_grid.direction)
    image = sitk.DICOMOrient(image, code)
    if case.input_grid.difference(Geometry.of(image)) is None:
        return case.input_grid.apply(image)
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(image, case.input_grid.to_image(), sitk.Transform(), interpolator, 0.0,
                         image.GetPixelID())
