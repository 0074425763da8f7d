"""Rigid co-registration of one sequence onto the reference, with SimpleITK only.

``register_rigid(fixed, moving, fixed_mask=...) -> RigidResult``: an ``Euler3DTransform`` (6 degrees of
freedom, rotation about the centre of the fixed mask) found by Mattes mutual information
(``HISTOGRAM_BINS`` bins, ``SAMPLES`` random voxels of the mask per iteration, fixed seed), regular-step gradient
descent with scales from physical shifts, over three levels (``SHRINK_FACTORS`` of the working grid, with
Gaussians of ``SMOOTHING_MM``), starting at identity (both images are in the scanner's patient frame).
The transform maps a point of the reference's frame to the same anatomy in the moving image
(SimpleITK's fixed-to-moving convention), so ``resample_onto(moving, reference, transform)`` puts the moving
image on the reference grid.

A result is ``ok`` only when the optimizer stopped before its iteration limit at every level, the motion
is plausible for a patient (at most ``MAX_DEG`` / ``MAX_MM``) and mutual information inside the mask
(measured independently of the optimizer, by ``input_checks.AlignmentSampler``) rose; otherwise
``problem`` says why, and the caller must not use the transform silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .input_checks import AlignmentSampler, mask_centre

WORKING_MM = 2.0  # isotropic voxel size of the copies that are registered
SHRINK_FACTORS = (3, 2, 1)  # levels: 6, 4 and 2 mm
SMOOTHING_MM = (3.0, 2.0, 1.0)
HISTOGRAM_BINS = 32
SAMPLES = 20000  # voxels of the fixed mask sampled (at random) per iteration, at each level
SEED = 1  # sampling seed: the same inputs give the same transform
MAX_ITERATIONS = 200  # per level
MAX_DEG = 30.0  # larger rotations or shifts are not patient motion: refused
MAX_MM = 40.0


@dataclass
class RigidResult:
    """A rigid registration: ``transform`` (Euler3D, fixed point -> moving point), its rotation angle
    ``rotation_deg`` and shift ``shift_mm`` at the mask centre, the Euler angles (x, y, z, degrees), the mutual
    information inside the mask before and after (nats), iterations per level, the optimizer's last stop
    condition, ``problem`` (None when the result can be used) and ``seconds``."""

    transform: sitk.Euler3DTransform
    rotation_deg: float
    shift_mm: float
    angles_deg: tuple[float, float, float]
    similarity_before: float
    similarity_after: float
    iterations: list[int]
    stop: str
    problem: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        """``"moved 5.1 degrees and 4.9 mm (rotations x/y/z 1.0/-4.2/2.7 degrees; translation ...)"``."""
        translation = "/".join(f"{v:.1f}" for v in self.transform.GetTranslation())
        angles = "/".join(f"{v:.1f}" for v in self.angles_deg)
        return (f"{self.rotation_deg:.1f} degrees and {self.shift_mm:.1f} mm (rotation x/y/z {angles} degrees, "
                f"translation x/y/z {translation} mm, LPS)")


def rotation_angle_deg(matrix) -> float:
    """The angle (degrees) of a 3x3 rotation matrix (row-major, 9 numbers or 3x3)."""
    matrix = np.asarray(matrix, dtype=float).reshape(3, 3)
    return float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0))))


def working_copy(image: sitk.Image, *, is_mask: bool = False) -> sitk.Image:
    """``image`` on an isotropic ``WORKING_MM`` grid over the same extent (float32; masks: uint8, nearest)."""
    spacing = np.array(image.GetSpacing())
    if not is_mask:
        factors = [max(1, int(WORKING_MM / s + 1e-6)) for s in spacing]
        if max(factors) > 1:  # block averaging first: cheap anti-aliasing of fine images
            image = sitk.BinShrink(image, factors)
        image = sitk.Cast(image, sitk.sitkFloat32)
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    grid = sitk.Image([max(int(round(e / WORKING_MM)), 1) for e in extent], sitk.sitkUInt8)
    grid.SetSpacing([WORKING_MM] * 3)
    grid.SetDirection(image.GetDirection())
    corner = np.array(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))  # the grid's outer corner
    grid.SetOrigin((corner + np.array(image.GetDirection()).reshape(3, 3) @ np.full(3, WORKING_MM / 2)).tolist())
    if is_mask:
        return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def register_rigid(fixed: sitk.Image, moving: sitk.Image, *, fixed_mask: sitk.Image) -> RigidResult:
    """Register ``moving`` onto ``fixed`` rigidly, inside ``fixed_mask`` (the reference's head or brain, any
    grid in the same frame). Never raises for a poor result: see ``RigidResult.problem``."""
    started = time.perf_counter()
    fixed_f = working_copy(fixed)
    moving_f = working_copy(moving)
    mask = sitk.Resample(fixed_mask, fixed_f, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    centre = mask_centre(fixed_mask)
    initial = sitk.Euler3DTransform()
    initial.SetCenter(centre)

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(HISTOGRAM_BINS)
    inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel([min(1.0, SAMPLES * f**3 / max(inside, 1.0)) for f in SHRINK_FACTORS],
                                               SEED)
    method.SetMetricFixedMask(mask)
    method.SetMetricUseFixedImageGradientFilter(False)  # gradients at the sampled points only: much faster
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=MAX_ITERATIONS,
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)
    iterations: list[int] = []
    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: iterations.append(0))
    method.AddCommand(sitk.sitkIterationEvent, lambda: iterations.__setitem__(-1, method.GetOptimizerIteration() + 1))
    method.Execute(fixed_f, moving_f)
    transform = initial  # optimized in place
    stop = method.GetOptimizerStopConditionDescription()

    sampler = AlignmentSampler(fixed_f, fixed_mask)
    moving_smooth = sampler.smoothed(moving_f)
    before = sampler.similarity(moving_smooth, sitk.Euler3DTransform())
    after = sampler.similarity(moving_smooth, transform)
    rotation = rotation_angle_deg(transform.GetMatrix())
    shift = float(np.linalg.norm(transform.GetTranslation()))
    problem = None
    if "Maximum number of iterations" in stop:
        problem = f"the optimizer did not converge in {MAX_ITERATIONS} iterations"
    elif rotation > MAX_DEG or shift > MAX_MM:
        problem = (f"it found an implausible motion ({rotation:.0f} degrees, {shift:.0f} mm; patient motion stays "
                   f"under {MAX_DEG:g} degrees and {MAX_MM:g} mm)")
    elif after < before:
        problem = f"it lowered the similarity with the reference (mutual information {before:.3f} -> {after:.3f})"
    angles = tuple(float(np.degrees(a)) for a in (transform.GetAngleX(), transform.GetAngleY(), transform.GetAngleZ()))
    return RigidResult(transform, rotation, shift, angles, before, after, iterations, stop, problem,
                       time.perf_counter() - started)


def resample_onto(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None) -> sitk.Image:
    """``moving`` on the grid of ``reference`` (linear, float32, 0 outside ``moving``), through ``transform``
    (reference point -> moving point; identity when None)."""
    transform = transform if transform is not None else sitk.Transform()
    return sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def save_transform(transform: sitk.Transform, path: str | Path) -> Path:
    """Write ``transform`` as an ITK transform file (``.tfm`` or ``.txt``; read back with sitk.ReadTransform).
    It maps reference points to the sequence's points: Slicer applies its inverse to move the sequence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(transform, str(path))
    return path
