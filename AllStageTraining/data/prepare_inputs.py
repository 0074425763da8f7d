"""Real scans in: checks, co-registration and brain extraction before ``load_case``.

``prepare_inputs(images, reference=..., skull_strip="auto", register="auto") -> PreparedInputs``:

1. every sequence is read and checked (``input_checks``): values (an image with nothing in it raises
   ``PreparationError``), geometry, skull-stripped or not;
2. co-registration (``registration``) of each other sequence onto the reference: ``auto`` when the
   alignment check finds it misaligned, ``always``, or ``never`` (the check still runs and warns). A
   registration that fails keeps the sequence as it lies, with a loud warning;
3. every sequence ends on the reference grid (the reference itself untouched);
4. the brain mask: ``auto``: none (``load_case``'s union of non-zero voxels) when every sequence is
   stripped; the non-zero voxels of the stripped ones when only some are; deepbet (``skull_strip``) when
   none is, on the first of T1, T1ce, FLAIR, T2 (FLAIR or T2 with a warning: deepbet learnt on T1-weighted
   images), on that sequence's own grid, then carried onto the reference grid. ``always``: deepbet even on
   stripped inputs; ``never``: no mask (a warning when a sequence is not stripped). A mask that is empty,
   covers (nearly) the whole volume or has no brain's size raises ``PreparationError``.

A BraTS-ready case (stripped, aligned, one grid) comes out untouched: the same image objects, no mask, so
``load_case(prepared.images, reference=..., brain_mask=prepared.brain_mask)`` gives exactly today's arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import SimpleITK as sitk

from ..constants import MODALITIES, MODALITY_DISPLAY
from .input_checks import (AlignmentSampler, Finding, alignment_evidence, geometry_findings, intensity_findings,
                           skull_evidence)
from .preprocess import Geometry, ImageError, read_image
from .registration import register_rigid, resample_onto, save_transform

MODES = ("auto", "always", "never")
EXTRACTION_ORDER = ("t1", "t1ce", "flair", "t2")  # deepbet learnt on T1-weighted images
ProgressFn = Callable[[float, str], None]


class PreparationError(ValueError):
    """The inputs cannot be prepared (an empty or NaN image, a brain mask that cannot be a brain). The
    message is one line saying what to do."""


@dataclass
class PreparedInputs:
    """The sequences ready for ``load_case``.

    images: modality -> sitk.Image on the reference grid (the given objects where nothing was done).
    brain_mask: uint8 sitk.Image on the reference grid, or None: use the non-zero voxels (stripped inputs).
    mask_source: how the mask was made ("non-zero voxels", "deepbet on T1", ...).
    findings: everything seen and done, in order. transforms: modality -> Euler3DTransform of the
    registered sequences (reference point -> that sequence's point). timings: seconds per step
    ("checks", "registration", "skull_strip"). reference: the reference sequence's name.
    """

    images: dict[str, sitk.Image]
    brain_mask: sitk.Image | None
    mask_source: str
    findings: list[Finding]
    transforms: dict[str, sitk.Euler3DTransform] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    reference: str = MODALITIES[0]

    def log_lines(self) -> list[str]:
        """One line per finding, then the time each step took."""
        lines = [f.line() for f in self.findings]
        lines.append("preparation (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return lines

    def save_transforms(self, folder: str | Path) -> dict[str, Path]:
        """Write each registration transform to ``folder/<modality>_to_<reference>.tfm``."""
        return {m: save_transform(t, Path(folder) / f"{m}_to_{self.reference}.tfm") for m, t in self.transforms.items()}


def _check_mode(name: str, value: str) -> None:
    if value not in MODES:
        raise ValueError(f"{name} must be one of {', '.join(MODES)}, not {value!r}")


def _read_all(images: Mapping[str, object]) -> dict[str, sitk.Image]:
    unknown = sorted(set(images) - set(MODALITIES))
    if unknown:
        raise PreparationError(f"unknown sequence name(s) {unknown}; expected some of {', '.join(MODALITIES)}")
    try:
        read = {m: read_image(images[m], "input", m) for m in MODALITIES if images.get(m) is not None}
    except ImageError as error:
        raise PreparationError(str(error).replace("case input: ", "")) from None
    if not read:
        raise PreparationError("no sequence given: at least one of FLAIR, T1ce, T1, T2 is needed")
    return read


def _checks(read: dict[str, sitk.Image]) -> tuple[list[Finding], dict]:
    """Findings on values, geometry and skull of every sequence; raises PreparationError on an error."""
    findings: list[Finding] = []
    skulls = {}
    for modality, image in read.items():
        found = intensity_findings(image, modality)
        errors = [f for f in found if f.severity == "error"]
        if errors:
            raise PreparationError(f"{MODALITY_DISPLAY[modality]}: {errors[0].text}")
        findings += found + geometry_findings(image, modality)
        skulls[modality] = skull_evidence(image)
        findings.append(skulls[modality].finding(modality))
    return findings, skulls


def _register(read, ref_name: str, ref_mask: sitk.Image, mode: str, findings: list[Finding]) -> dict:
    """Check the alignment of each sequence with the reference and register it when asked or needed;
    replaces ``read[m]`` by the registered image on the reference grid. Returns the transforms used."""
    reference = read[ref_name]
    sampler = AlignmentSampler(reference, ref_mask)
    transforms = {}
    for modality in [m for m in read if m != ref_name]:
        evidence = alignment_evidence(sampler, read[modality])
        findings.append(evidence.finding(modality, ref_name))
        if mode == "never" or (mode == "auto" and evidence.aligned):
            if not evidence.aligned:
                findings.append(Finding("warning", "not-registered", "left unregistered (co-registration is off): "
                                        "the segmentation may be wrong", modality))
            continue
        result = register_rigid(reference, read[modality], fixed_mask=ref_mask)
        ref = MODALITY_DISPLAY[ref_name]
        if not result.ok:
            findings.append(Finding("warning", "registration-failed", f"co-registration onto {ref} failed: "
                                    f"{result.problem}; it is used as it lies, unregistered: the segmentation "
                                    "may be wrong", modality))
            continue
        read[modality] = resample_onto(read[modality], reference, result.transform)
        transforms[modality] = result.transform
        findings.append(Finding("info", "registered", f"co-registered onto {ref}: moved {result.summary()}; "
                                f"mutual information {result.similarity_before:.3f} -> {result.similarity_after:.3f}",
                                modality))
        if not alignment_evidence(sampler, read[modality]).aligned:
            findings.append(Finding("warning", "still-misaligned", f"still not aligned with {ref} after "
                                    "co-registration: check the result", modality))
    return transforms


def _onto_reference_grid(read, ref_name: str, findings: list[Finding]) -> None:
    """Resample (linear, identity) every sequence not on the reference grid; the reference stays as it is."""
    ref_grid = Geometry.of(read[ref_name])
    for modality in [m for m in read if m != ref_name]:
        difference = ref_grid.difference(Geometry.of(read[modality]))
        if difference is not None:
            read[modality] = resample_onto(read[modality], read[ref_name])
            findings.append(Finding("info", "resampled", f"resampled (linear) onto the grid of "
                                    f"{MODALITY_DISPLAY[ref_name]}: its {difference[0]} {difference[1]}", modality))


def _nonzero_mask(images: list[sitk.Image]) -> sitk.Image:
    union = np.any([sitk.GetArrayViewFromImage(image) != 0 for image in images], axis=0)
    mask = sitk.GetImageFromArray(union.astype(np.uint8))
    mask.CopyInformation(images[0])
    return mask


def _extracted_mask(original: dict[str, sitk.Image], transforms: dict, reference: sitk.Image, device: str,
                    findings: list[Finding]) -> tuple[sitk.Image, str]:
    """deepbet's mask of the first sequence in EXTRACTION_ORDER, carried onto the reference grid."""
    from .skull_strip import extract_brain

    source = next(m for m in EXTRACTION_ORDER if m in original)
    if source in ("flair", "t2"):
        findings.append(Finding("warning", "extraction-not-t1", f"brain extraction runs on "
                                f"{MODALITY_DISPLAY[source]}: deepbet learnt on T1-weighted images, so the mask may "
                                "be poor; give T1 or T1ce for a better one, or check the brain mask", source))
    mask = sitk.Cast(extract_brain(original[source], device=device), sitk.sitkFloat32)
    carried = sitk.Resample(mask, reference, transforms.get(source, sitk.Transform()), sitk.sitkLinear, 0.0,
                            sitk.sitkFloat32)
    return sitk.Cast(carried > 0.5, sitk.sitkUInt8), f"deepbet on {MODALITY_DISPLAY[source]}"


def _brain_mask(read, original, skulls, transforms, mode: str, ref_name: str, device: str,
                findings: list[Finding]) -> tuple[sitk.Image | None, str]:
    """The brain mask on the reference grid (None: the non-zero voxels) and where it came from."""
    from .skull_strip import mask_problem, mask_volume_ml

    stripped = [m for m in read if skulls[m].stripped]
    unstripped = [MODALITY_DISPLAY[m] for m in read if not skulls[m].stripped]
    if mode == "never" or (mode == "auto" and not unstripped):
        if unstripped:
            findings.append(Finding("warning", "not-stripped-kept", f"{', '.join(unstripped)} not skull-stripped and "
                                    "brain extraction is off: the skull counts as brain; the segmentation may be wrong"))
        return None, "non-zero voxels"
    if mode == "auto" and stripped:
        mask = _nonzero_mask([read[m] for m in stripped])
        source = "the non-zero voxels of the skull-stripped " + ", ".join(MODALITY_DISPLAY[m] for m in stripped)
    else:
        if not unstripped:
            findings.append(Finding("info", "extract-anyway", "the inputs look skull-stripped; extracting the brain "
                                    "anyway, as asked"))
        mask, source = _extracted_mask(original, transforms, read[ref_name], device, findings)
    problem = mask_problem(mask)
    if problem is not None:
        raise PreparationError(f"brain extraction failed ({source}): {problem}; pass skull-stripped sequences, or "
                               "turn brain extraction off if they are")
    findings.append(Finding("info", "brain-mask", f"brain mask: {source}, {mask_volume_ml(mask):.0f} ml"))
    return mask, source


def prepare_inputs(images: Mapping[str, object], *, reference: str | None = None, skull_strip: str = "auto",
                   register: str = "auto", device: str = "cpu", progress: ProgressFn | None = None) -> PreparedInputs:
    """Check, co-register and (when needed) skull-strip the given sequences; see the module docstring.

    images: modality -> sitk.Image, file path or None. reference: the sequence whose grid the outputs use
    (default: the first given in MODALITIES order). device: where deepbet runs ("cpu" or "cuda").
    progress(fraction, stage words). Raises PreparationError for inputs that cannot be used, and
    skull_strip.BrainExtractionUnavailable (an ImportError) when deepbet is needed but not installed.
    """
    _check_mode("skull_strip", skull_strip)
    _check_mode("register", register)
    report = progress or (lambda fraction, stage: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    report(0.0, "checking the inputs")
    read = _read_all(images)
    ref_name = reference or next(iter(read))
    if ref_name not in read:
        raise PreparationError(f"reference sequence {ref_name!r} was not given; choose one of {', '.join(read)}")
    findings, skulls = _checks(read)
    original = dict(read)
    timings["checks"] = time.perf_counter() - started
    started = time.perf_counter()
    transforms = {}
    if len(read) > 1:
        report(0.2, "checking the alignment")
        transforms = _register(read, ref_name, skulls[ref_name].foreground, register, findings)
    _onto_reference_grid(read, ref_name, findings)
    timings["registration"] = time.perf_counter() - started
    started = time.perf_counter()
    report(0.6, "finding the brain")
    mask, source = _brain_mask(read, original, skulls, transforms, skull_strip, ref_name, device, findings)
    timings["skull_strip"] = time.perf_counter() - started
    report(1.0, "inputs ready")
    return PreparedInputs(read, mask, source, findings, transforms, {k: round(v, 3) for k, v in timings.items()},
                          ref_name)
