"""Inputs' geometry on a real scene (slicer-core): unhardened parent transforms carried into the written
files, transforms that cannot be followed refused, the notes for the status area, the reference grid."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

import vtk  # noqa: E402  (with slicer-core)

from AllStageSegLib import mrml_io
from AllStageSegLib.geometry import (TransformError, array_to_matrix, choose_reference, finest_grid,
                                     geometry_notes, ijk_to_ras)


#: A rotation of 30 degrees about the S axis and a shift, in RAS.
ROTATION = np.array([[np.cos(np.pi / 6), -np.sin(np.pi / 6), 0, 12.5],
                     [np.sin(np.pi / 6), np.cos(np.pi / 6), 0, -4.0],
                     [0, 0, 1, 7.0],
                     [0, 0, 0, 1]])


def _linear_transform(scene, name, matrix):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(array_to_matrix(matrix))
    return node


def test_a_volume_under_a_linear_transform_is_written_through_it(scene, write_image, load_volume, tmp_path):
    flair = load_volume(write_image("flair.nii.gz"), "FLAIR")
    t1 = load_volume(write_image("t1.nii.gz", seed=1), "T1")
    own_grid = ijk_to_ras(t1)
    t1.SetAndObserveTransformNodeID(_linear_transform(scene, "registration", ROTATION).GetID())

    files = mrml_io.write_inputs({"flair": flair, "t1": t1}, tmp_path / "inputs", "flair")
    written = load_volume(files["t1"], "written T1")
    np.testing.assert_allclose(ijk_to_ras(written), ROTATION @ own_grid, atol=1e-4)
    np.testing.assert_array_equal(mrml_io.voxels(written), mrml_io.voxels(t1))
    np.testing.assert_allclose(ijk_to_ras(t1), own_grid)  # the user's node is untouched
    notes = geometry_notes({"flair": flair, "t1": t1}, "flair")
    assert len(notes) == 1 and "under the transform 'registration'" in notes[0] and "resampled through it" in notes[0]


def test_a_transformed_reference_takes_the_others_into_its_own_frame(scene, write_image, load_volume, tmp_path):
    flair = load_volume(write_image("flair.nii.gz"), "FLAIR")
    t2 = load_volume(write_image("t2.nii.gz", seed=2), "T2")
    flair.SetAndObserveTransformNodeID(_linear_transform(scene, "to atlas", ROTATION).GetID())
    files = mrml_io.write_inputs({"flair": flair, "t2": t2}, tmp_path / "inputs", "flair")
    np.testing.assert_allclose(ijk_to_ras(load_volume(files["flair"], "f")), ijk_to_ras(flair), atol=1e-4)
    np.testing.assert_allclose(ijk_to_ras(load_volume(files["t2"], "t")), np.linalg.inv(ROTATION) @ ijk_to_ras(t2),
                               atol=1e-4)
    # both under the same transform: nothing between them, nothing to say
    t2.SetAndObserveTransformNodeID(flair.GetTransformNodeID())
    assert geometry_notes({"flair": flair, "t2": t2}, "flair") == []


def test_non_linear_and_shearing_transforms_are_refused_with_what_to_do(scene, write_image, load_volume, tmp_path):
    flair = load_volume(write_image("flair.nii.gz"), "FLAIR")
    t1 = load_volume(write_image("t1.nii.gz", seed=1), "T1")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    field = slicer.vtkOrientedGridTransform()
    displacement = vtk.vtkImageData()
    displacement.SetDimensions(4, 4, 4)
    displacement.AllocateScalars(vtk.VTK_DOUBLE, 3)
    field.SetDisplacementGridData(displacement)
    grid.SetAndObserveTransformToParent(field)
    t1.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(TransformError, match="non-linear transform .*'warp'.*Harden transform"):
        mrml_io.write_inputs({"flair": flair, "t1": t1}, tmp_path / "inputs", "flair")
    shear = np.eye(4)
    shear[0, 1] = 0.4
    t1.SetAndObserveTransformNodeID(_linear_transform(scene, "shear", shear).GetID())
    with pytest.raises(TransformError, match="shears"):
        geometry_notes({"flair": flair, "t1": t1}, "flair")


def test_geometry_notes_name_the_resampled_sequence(scene, write_image, load_volume):
    t1ce = load_volume(write_image("t1ce.nii.gz", shape=(30, 32, 32), spacing=(1.0, 1.0, 1.0)), "T1ce")
    flair = load_volume(write_image("flair.nii.gz", shape=(10, 32, 32), spacing=(1.0, 1.0, 3.0)), "FLAIR")
    same = load_volume(write_image("t2.nii.gz", shape=(30, 32, 32), spacing=(1.0, 1.0, 1.0)), "T2")
    notes = geometry_notes({"flair": flair, "t1ce": t1ce, "t2": same}, "t1ce")
    assert len(notes) == 1 and notes[0].startswith("FLAIR (1x1x3 mm") and "T1ce grid" in notes[0]


def test_the_reference_is_the_finest_grid_unless_one_is_chosen(scene, write_image, load_volume):
    flair = load_volume(write_image("flair.nii.gz", shape=(10, 32, 32), spacing=(1.0, 1.0, 3.0)), "FLAIR 3 mm")
    t1ce = load_volume(write_image("t1ce.nii.gz", shape=(30, 32, 32)), "T1ce 1 mm")
    t2 = load_volume(write_image("t2.nii.gz", shape=(30, 32, 32)), "T2 1 mm")
    inputs = {"flair": flair, "t1ce": t1ce, "t2": t2}
    assert choose_reference(inputs) == "t1ce"  # finest; T2 ties with it and comes later
    assert choose_reference(inputs, "auto") == "t1ce" and choose_reference(inputs, "flair") == "flair"
    with pytest.raises(ValueError, match="'t1' is not among the inputs"):
        choose_reference(inputs, "t1")
    # a transform that scales makes a grid finer or coarser than its own spacing says
    halve = np.diag([0.5, 0.5, 0.5, 1.0])
    t2.SetAndObserveTransformNodeID(_linear_transform(scene, "halve", halve).GetID())
    assert choose_reference(inputs) == "t2"


def test_finest_grid_compares_voxel_volumes():
    assert finest_grid({"flair": (1.0, 1.0, 3.0), "t1": (1.2, 1.2, 1.2)}) == "t1"
    assert finest_grid({"t1ce": (1.0, 1.0, 1.0), "t2": (1.0, 1.0, 1.0)}) == "t1ce"
    assert finest_grid({"t2": (0.5, 0.5, 6.0), "t1": (1.0, 1.0, 1.0)}) == "t1"
