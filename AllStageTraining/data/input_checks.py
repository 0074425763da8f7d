"""Checks of the input sequences before any network runs: what each one is, said as short findings.

Pure functions on SimpleITK images (nothing is changed). Each finding is one line for a ``LOG`` line or a
status bar, with a severity: ``info`` (what was seen), ``warning`` (the result may suffer; said loudly) or
``error`` (the input cannot be used).

- ``intensity_findings``: pixel type, NaN/Inf voxels, negative values, empty or constant images.
- ``geometry_findings``: orientation (and obliquity), voxel size, anisotropy, extent.
- ``skull_evidence``: is the sequence skull-stripped? A stripped image is constant (usually 0) outside a
  brain-sized region. Not stripped when (1) the air at the grid's border is not constant (scanner noise:
  below ``CONSTANT_BORDER`` of the border voxels share one value), or (2) the non-background region is
  head-sized (over ``HEAD_ML``). Limit: a head whose air was zeroed and of which the field of view holds
  less than ``HEAD_ML`` passes for stripped.
- ``alignment_evidence``: is a sequence aligned with the reference? Mattes mutual information inside the
  reference's head (or brain) at identity and after moving the sequence by +-``PROBE_MM`` along each axis
  and rotating it about each axis (through the mask's centre) by the angle that moves the mask's points
  ``PROBE_MM`` (rms; about 2 degrees for a head); aligned images are at a maximum, so
  misaligned when a probe raises the information by more than ``MISALIGNED_GAIN`` (relative). The
  per-axis parabola through the three values estimates the offset.

Thresholds were chosen on the project's synthetic cases (``synth --head --misalign``; see the README,
"Scans that are not BraTS-ready"): stripped and unstripped heads, with and without a zeroed background, at
1 and 2 mm, motions of 0 to 5 degrees / 0 to 5 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ..constants import MODALITY_DISPLAY

SEVERITIES = ("info", "warning", "error")
ANALYSIS_MM = 3.0  # the skull check runs on a copy subsampled to about this voxel size
ALIGN_MM = 4.0  # the alignment check samples the reference on a grid of this voxel size (or finer, see below)
MIN_SAMPLES = 8000  # ... fine enough for this many samples inside the mask (never finer than the reference)
CONSTANT_BORDER = 0.9  # share of border voxels holding the background value, above which the air is constant
HEAD_ML = 2200.0  # a non-background region larger than this is a head, not a brain (brains: 1.0-1.9 l)
ANISOTROPY_WARN = 3.0  # largest / smallest voxel side
SPACING_WARN_MM = 3.0  # coarser voxels than this lose detail
PROBE_MM = 2.0  # probes: shifts of this size, and rotations that move the mask's points this far (rms)
MISALIGNED_GAIN = 0.005  # relative gain of mutual information under a probe that flags misalignment
HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class Finding:
    """One thing seen in the inputs. ``code`` is a short stable name (for tests and GUIs)."""

    severity: str
    code: str
    text: str
    modality: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    def line(self) -> str:
        """The finding as one line: ``"warning: T1ce: ..."`` (``info`` lines carry no prefix)."""
        who = f"{MODALITY_DISPLAY[self.modality]}: " if self.modality else ""
        prefix = "" if self.severity == "info" else f"{self.severity}: "
        return f"{prefix}{who}{self.text}"


def _fmt(values, digits: int = 2) -> str:
    return " x ".join(f"{v:.{digits}g}" for v in values)


def finite_array(image: sitk.Image) -> np.ndarray:
    """float32 copy of the voxels, NaN and +-Inf replaced by 0."""
    view = sitk.GetArrayViewFromImage(image)
    array = view.astype(np.float32)  # a copy, also of float32 voxels: the view is the image's own memory
    if np.issubdtype(view.dtype, np.integer):  # nothing to replace
        return array
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0, copy=False)


def _finite_values(array: np.ndarray) -> tuple[np.ndarray, int]:
    """The finite voxel values (all of them for integer images) and the number of NaN/Inf voxels."""
    if np.issubdtype(array.dtype, np.integer):
        return array, 0
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    return (array[~bad] if n_bad else array), n_bad


def value_problem(image: sitk.Image) -> str | None:
    """None for an image with something in it, else what it holds instead (to follow "<sequence> image"):
    ``"is all NaN"``, ``"holds nothing but NaN (N voxels) and zeros"``, ``"is empty (all zero)"``."""
    values, n_bad = _finite_values(sitk.GetArrayViewFromImage(image))
    if values.size == 0:
        return "is all NaN (or infinite): the file holds no image"
    if values.any():
        return None
    if n_bad:
        return f"holds nothing but NaN or infinite values ({n_bad} voxels) and zeros: there is no image to use"
    return "is empty (all zero)"


def intensity_findings(image: sitk.Image, modality: str) -> list[Finding]:
    """Pixel type, NaN/Inf voxels, negative values; an error for an image with nothing in it."""
    problem = value_problem(image)
    if problem is not None:
        return [Finding("error", "empty", f"the image {problem}", modality)]
    array = sitk.GetArrayViewFromImage(image)
    values, n_bad = _finite_values(array)
    findings = []
    if n_bad:
        findings.append(Finding("warning", "nan-values", f"{n_bad} NaN or infinite voxels "
                                f"({100.0 * n_bad / array.size:.1f}%) are read as 0", modality))
    low, high = float(values.min()), float(values.max())
    kind = "integer" if np.issubdtype(array.dtype, np.integer) else "floating-point"
    if low == high:
        return [*findings, Finding("warning", "constant", f"every voxel is {low:g}: it carries no information",
                                   modality)]
    findings.append(Finding("info", "intensity", f"{kind} voxels ({image.GetPixelIDTypeAsString()}), "
                            f"range {low:.4g} to {high:.4g}", modality))
    if low < 0:
        share = float(np.mean(values < 0))
        findings.append(Finding("info", "negative", f"{100.0 * share:.1f}% of voxels are negative (min {low:.4g}): "
                                "an already normalized image? It is z-scored again inside the brain", modality))
    return findings


def _obliquity_deg(direction) -> float:
    """Largest angle (degrees) between an image axis and the nearest axis of the patient frame."""
    matrix = np.abs(np.array(direction, dtype=float).reshape(3, 3))
    return float(np.degrees(np.arccos(np.clip(matrix.max(axis=0), -1.0, 1.0))).max())


def geometry_findings(image: sitk.Image, modality: str) -> list[Finding]:
    """Orientation, voxel size, anisotropy and extent of one sequence."""
    spacing = image.GetSpacing()
    size = image.GetSize()
    direction = image.GetDirection()
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)
    oblique = _obliquity_deg(direction)
    tilt = f", oblique by {oblique:.0f} degrees" if oblique >= 1.0 else ""
    findings = [Finding("info", "geometry", f"{'x'.join(map(str, size))} voxels of {_fmt(spacing)} mm, "
                        f"orientation {code}{tilt}", modality)]
    if np.linalg.det(np.array(direction).reshape(3, 3)) < 0:
        findings.append(Finding("warning", "left-handed", "its axes form a left-handed frame: check that left and "
                                "right are not swapped", modality))
    anisotropy = max(spacing) / min(spacing)
    if anisotropy >= ANISOTROPY_WARN or max(spacing) > SPACING_WARN_MM:
        findings.append(Finding("warning", "coarse-voxels", f"voxels of {_fmt(spacing)} mm (anisotropy "
                                f"{anisotropy:.1f}): thick slices lose detail across them; the segmentation "
                                "follows the reference grid", modality))
    extent = [n * s for n, s in zip(size, spacing)]
    if min(extent) < 100.0:
        findings.append(Finding("warning", "small-extent", f"covers only {_fmt(extent, 3)} mm: the brain may not "
                                "be covered whole", modality))
    return findings


@dataclass
class SkullEvidence:
    """What the skull check measured on one sequence.

    stripped: the verdict. constant_border: share of the grid's border voxels at the background value.
    foreground_ml: volume of the non-background region (filled), ml. reason: the words behind the verdict. foreground: the non-background region (uint8 sitk.Image on a
    subsampled grid), used as the mask of the alignment check.
    """

    stripped: bool
    constant_border: float
    foreground_ml: float
    reason: str
    foreground: sitk.Image = field(repr=False, default=None)

    def finding(self, modality: str) -> Finding:
        verdict = "skull-stripped" if self.stripped else "NOT skull-stripped"
        return Finding("info", "stripped" if self.stripped else "not-stripped", f"{verdict} ({self.reason})", modality)


def _subsampled(image: sitk.Image, target_mm: float) -> sitk.Image:
    factors = [max(1, int(round(target_mm / s))) for s in image.GetSpacing()]
    return sitk.Shrink(image, factors) if max(factors) > 1 else image


def _border(array: np.ndarray) -> np.ndarray:
    faces = [array[0], array[-1], array[:, 0], array[:, -1], array[:, :, 0], array[:, :, -1]]
    return np.concatenate([f.ravel() for f in faces])


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n > 1:
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndi.binary_fill_holes(mask)


def _as_mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(like)
    return out


def skull_evidence(image: sitk.Image) -> SkullEvidence:
    """Is this sequence skull-stripped? See the module docstring for the two tests and their thresholds."""
    small = _subsampled(image, ANALYSIS_MM)
    array = finite_array(small)
    spacing = np.array(small.GetSpacing())[::-1]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    border = _border(array)
    values, counts = np.unique(border, return_counts=True)
    background = float(values[np.argmax(counts)])
    tolerance = 1e-3 * max(float(np.percentile(array, 99.5)) - background, 1e-6)
    constant_border = float(counts.max()) / border.size
    if constant_border >= CONSTANT_BORDER:
        foreground = np.abs(array - background) > tolerance
    else:  # noisy air: the head is what rises clearly above it
        low, high = np.percentile(array, [2.0, 98.0])
        foreground = array > low + 0.1 * (high - low)
        foreground = ndi.binary_closing(foreground, iterations=2)
    foreground = _largest_filled(foreground)
    volume = float(foreground.sum()) * voxel_ml
    if constant_border < CONSTANT_BORDER:
        stripped, reason = False, f"the air around it holds noise: only {100 * constant_border:.0f}% of the border is constant"
    elif volume > HEAD_ML:
        stripped, reason = False, f"the non-zero region is head-sized: {volume:.0f} ml"
    else:
        stripped, reason = True, f"constant outside a brain-sized region of {volume:.0f} ml"
    return SkullEvidence(stripped, constant_border, volume, reason, _as_mask_image(foreground, small))


@dataclass
class AlignmentEvidence:
    """What the alignment check measured: ``gain`` the largest relative rise of mutual information under a
    probe (negative: identity is best), ``offset_mm`` / ``offset_deg`` the per-axis parabola estimates of the
    remaining shift and rotation (x, y, z), the rotation probe's angle, and the verdict ``aligned``."""

    aligned: bool
    gain: float
    offset_mm: tuple[float, float, float]
    offset_deg: tuple[float, float, float]
    probe_deg: float

    def finding(self, modality: str, reference: str) -> Finding:
        ref = MODALITY_DISPLAY[reference]
        if self.aligned:
            return Finding("info", "aligned", f"aligned with {ref}", modality)
        shift = float(np.linalg.norm(self.offset_mm))
        turn = float(np.linalg.norm(self.offset_deg))
        return Finding("warning", "misaligned", f"NOT aligned with {ref}: moving it by {PROBE_MM:g} mm or "
                       f"{self.probe_deg:.1f} degrees raises their mutual information by {100 * self.gain:.1f}% "
                       f"(about {shift:.1f} mm and {turn:.1f} degrees off)", modality)


def _bins(values: np.ndarray) -> np.ndarray:
    """Histogram bin (0..HISTOGRAM_BINS-1) of each value, over its 0.5-99.5 percentile range."""
    low, high = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    scaled = (values - low) * (HISTOGRAM_BINS / max(float(high - low), 1e-6))
    return np.clip(scaled, 0, HISTOGRAM_BINS - 1).astype(np.int64)


def mutual_information(a_bins: np.ndarray, b_bins: np.ndarray) -> float:
    """Mutual information (nats) of two equally long arrays of histogram bins."""
    joint = np.bincount(a_bins * HISTOGRAM_BINS + b_bins, minlength=HISTOGRAM_BINS**2).astype(np.float64)
    joint = joint.reshape(HISTOGRAM_BINS, HISTOGRAM_BINS) / max(joint.sum(), 1.0)
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


class AlignmentSampler:
    """Mutual information of any sequence against ``reference`` inside ``mask`` (any grid, resampled),
    sampled on a grid of ``ALIGN_MM`` (finer for small masks, to keep ``MIN_SAMPLES``) after Gaussian
    smoothing with sigma half that size. ``centre`` (mm) and ``probe_deg`` serve the probes."""

    def __init__(self, reference: sitk.Image, mask: sitk.Image):
        inside_ml = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) * float(np.prod(mask.GetSpacing()))
        self.spacing = float(np.clip((inside_ml / MIN_SAMPLES) ** (1 / 3), min(reference.GetSpacing()), ALIGN_MM))
        size = [max(int(round(n * s / self.spacing)), 1) for n, s in zip(reference.GetSize(), reference.GetSpacing())]
        grid = sitk.Image(size, sitk.sitkUInt8)
        grid.SetSpacing([self.spacing] * 3)
        grid.SetDirection(reference.GetDirection())
        # an origin off the inputs' voxel centres: identity interpolates as much as any probe does
        offset = np.array(reference.GetDirection()).reshape(3, 3) @ np.full(3, 0.37 * self.spacing)
        grid.SetOrigin((np.array(reference.GetOrigin()) + offset).tolist())
        self.grid = grid
        inside = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        self.inside = sitk.GetArrayViewFromImage(inside) > 0
        points = np.argwhere(self.inside)[:, ::-1] * self.spacing  # (x, y, z) mm in the grid's frame
        self.centre = grid.TransformContinuousIndexToPhysicalPoint((points.mean(0) / self.spacing).tolist())
        radius = float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))
        self.probe_deg = float(np.clip(np.degrees(PROBE_MM / max(radius, 1.0)), 1.0, 10.0))
        self.fixed_bins = _bins(self._sample(self.smoothed(reference), sitk.Transform()))

    def smoothed(self, image: sitk.Image) -> sitk.Image:
        return smoothed(image, self.spacing / 2.0)

    def _sample(self, image: sitk.Image, transform: sitk.Transform) -> np.ndarray:
        warped = sitk.Resample(image, self.grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.GetArrayViewFromImage(warped)[self.inside]

    def similarity(self, moving: sitk.Image, transform: sitk.Transform, moving_range=None) -> float:
        """Mutual information (nats) of ``moving`` (already ``smoothed``) seen through ``transform``
        (reference point -> moving point). ``moving_range``: ``(low, high)`` fixing its histogram range."""
        values = self._sample(moving, transform)
        if moving_range is None:
            return mutual_information(self.fixed_bins, _bins(values))
        low, high = moving_range
        scaled = (values - low) * (HISTOGRAM_BINS / max(high - low, 1e-6))
        return mutual_information(self.fixed_bins, np.clip(scaled, 0, HISTOGRAM_BINS - 1).astype(np.int64))

    def moving_range(self, moving: sitk.Image) -> tuple[float, float]:
        """The histogram range of ``moving`` at identity, to be kept fixed while it is probed."""
        low, high = np.percentile(self._sample(moving, sitk.Transform()), [0.5, 99.5])
        return float(low), float(high)


def smoothed(image: sitk.Image, sigma_mm: float = ALIGN_MM / 2.0) -> sitk.Image:
    """float32 copy, NaN and Inf as 0, Gaussian-smoothed (sigma in mm). Voxels much finer than sigma are first
    averaged in blocks of at most sigma (``BinShrink``: a 1 mm image smoothed by 2 mm has 8x fewer voxels to
    smooth; the block's own blur, a variance of (k^2 - 1) / 12 voxels, is small beside sigma^2)."""
    if np.issubdtype(sitk.GetArrayViewFromImage(image).dtype, np.integer):
        clean = sitk.Cast(image, sitk.sitkFloat32)  # no NaN or Inf to replace
    else:
        clean = sitk.GetImageFromArray(finite_array(image))
        clean.CopyInformation(image)
    factors = [max(1, int(sigma_mm // s)) for s in image.GetSpacing()]
    if max(factors) > 1:
        clean = sitk.BinShrink(clean, factors)
    return sitk.SmoothingRecursiveGaussian(clean, sigma_mm)


def mask_centre(mask: sitk.Image) -> tuple[float, float, float]:
    """Physical centre (mm) of the non-zero voxels of ``mask``."""
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0).mean(0)[::-1]
    return mask.TransformContinuousIndexToPhysicalPoint(index.tolist())


def _probe(centre, axis: int, step: float, rotation: bool) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)
    params = [0.0] * 6
    params[axis + (0 if rotation else 3)] = np.deg2rad(step) if rotation else step
    transform.SetParameters(params)
    return transform


def alignment_evidence(sampler: AlignmentSampler, moving: sitk.Image) -> AlignmentEvidence:
    """Probe the mutual information of ``moving`` with the reference around identity (module docstring)."""
    moving = sampler.smoothed(moving)
    fixed_range = sampler.moving_range(moving)

    def similarity(_, transform):
        return sampler.similarity(moving, transform, fixed_range)

    base = similarity(moving, sitk.Euler3DTransform())
    gains, offsets = [], {False: [], True: []}
    for rotation in (False, True):
        step = sampler.probe_deg if rotation else PROBE_MM
        for axis in range(3):
            minus = similarity(moving, _probe(sampler.centre, axis, -step, rotation))
            plus = similarity(moving, _probe(sampler.centre, axis, step, rotation))
            gains.extend([(minus - base) / abs(base), (plus - base) / abs(base)])
            curvature = plus + minus - 2.0 * base
            vertex = 0.5 * (minus - plus) / curvature * step if curvature < 0 else np.sign(plus - minus) * 2 * step
            offsets[rotation].append(float(np.clip(vertex, -2 * step, 2 * step)))
    gain = float(max(gains))
    return AlignmentEvidence(gain <= MISALIGNED_GAIN, gain, tuple(offsets[False]), tuple(offsets[True]),
                             sampler.probe_deg)
