"""Where the input volumes lie relative to the reference: parent transforms, grids, the reference choice.

A volume may sit under a parent transform that Slicer applies on display but that is not in its voxels'
geometry (a registration the user has not hardened). ``predict`` sees only files, so each input is written
with its grid carried through the linear transform chain into the reference volume's frame (the space of
the reference's own parent transform); the outputs come back on the reference's grid, under the reference's
parent transform. Non-linear transforms are refused with a message that says what to do.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from AllStageTraining.constants import MODALITY_DISPLAY


class TransformError(ValueError):
    """An input's parent transform cannot be carried into its file (non-linear, or a shear)."""


def matrix_to_array(matrix) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_matrix(array: np.ndarray):
    """A 4x4 numpy array as a vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(volume_node) -> np.ndarray:
    """The node's own 4x4 IJK-to-RAS matrix (its parent transform not applied)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def _transform_name(node) -> str:
    transform = node.GetParentTransformNode()
    return transform.GetName() if transform is not None else "none"


def transform_to_reference(node, reference_node) -> np.ndarray:
    """4x4 matrix from ``node``'s parent-transform space to ``reference_node``'s (identity when they share one).

    Raises TransformError when the transforms between them are not linear.
    """
    matrix = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
            node.GetParentTransformNode(), reference_node.GetParentTransformNode(), matrix):
        raise TransformError(
            f"{node.GetName()!r} is under a non-linear transform ({_transform_name(node)!r}), which the "
            f"segmentation cannot follow: harden the transform on a copy of the volume (Data module: right-click "
            f"the transform, 'Harden transform') and choose that copy.")
    return matrix_to_array(matrix)


def grid_in_reference_frame(node, reference_node) -> np.ndarray:
    """``node``'s IJK-to-RAS matrix carried into the reference's frame; TransformError for a shear."""
    grid = transform_to_reference(node, reference_node) @ ijk_to_ras(node)
    axes = grid[:3, :3] / np.linalg.norm(grid[:3, :3], axis=0)
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-4):
        raise TransformError(
            f"the transform of {node.GetName()!r} ({_transform_name(node)!r}) shears the volume, which a voxel "
            f"grid cannot hold: resample the volume through it (Resample Scalar/Vector/DWI Volume module) and "
            f"choose the result.")
    return grid


def is_transformed(node, reference_node, tolerance: float = 1e-6) -> bool:
    """True when a non-identity transform lies between ``node`` and the reference's frame."""
    return not np.allclose(transform_to_reference(node, reference_node), np.eye(4), atol=tolerance)


def spacing_in_reference_frame(node, reference_node) -> tuple[float, float, float]:
    """Voxel size (mm) along I, J, K after the transforms to the reference's frame (a scaling changes it)."""
    return tuple(float(s) for s in np.linalg.norm(grid_in_reference_frame(node, reference_node)[:3, :3], axis=0))


def finest_grid(spacings: dict[str, tuple[float, float, float]]) -> str:
    """The sequence with the smallest voxel volume (ties: the first in ``spacings``' order)."""
    return min(spacings, key=lambda m: (float(np.prod(spacings[m])), list(spacings).index(m)))


def choose_reference(inputs: dict, requested: str | None = None) -> str:
    """The reference sequence: ``requested`` when it is one of the inputs, else the finest grid among them.

    ``inputs`` maps sequences to volume nodes (present ones, MODALITIES order); ``requested`` is a sequence
    name, or None / "auto". Raises ValueError for a requested sequence that is not among the inputs.
    """
    if requested and requested != "auto":
        if requested not in inputs:
            raise ValueError(f"the reference sequence {requested!r} is not among the inputs {list(inputs)}")
        return requested
    first = next(iter(inputs.values()))
    return finest_grid({m: spacing_in_reference_frame(node, first) for m, node in inputs.items()})


def _grid_text(spacing, dims) -> str:
    return f"{'x'.join(f'{s:g}' for s in spacing)} mm, {dims[0]}x{dims[1]}x{dims[2]}"


def geometry_notes(inputs: dict, reference: str, tolerance: float = 1e-3) -> list[str]:
    """One sentence per input that is not on the reference's grid: under a transform, or another grid.

    ``inputs`` maps sequences to volume nodes (present ones only); ``reference`` is one of its keys.
    Raises TransformError for a transform that cannot be followed.
    """
    ref = inputs[reference]
    ref_dims = ref.GetImageData().GetDimensions()
    ref_grid = ijk_to_ras(ref)
    ref_text = f"the {MODALITY_DISPLAY[reference]} grid ({_grid_text(ref.GetSpacing(), ref_dims)})"
    notes = []
    for modality, node in inputs.items():
        grid = grid_in_reference_frame(node, ref)
        if modality == reference:
            continue
        dims = node.GetImageData().GetDimensions()
        if is_transformed(node, ref):
            notes.append(f"{MODALITY_DISPLAY[modality]} is under the transform {_transform_name(node)!r}: it is "
                         f"resampled through it onto {ref_text}.")
        elif dims != ref_dims or not np.allclose(grid, ref_grid, atol=tolerance):
            notes.append(f"{MODALITY_DISPLAY[modality]} ({_grid_text(node.GetSpacing(), dims)}) is resampled onto "
                         f"{ref_text}.")
    return notes
