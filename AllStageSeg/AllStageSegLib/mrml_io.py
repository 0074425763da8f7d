"""MRML glue: volume nodes to NIfTI files for ``predict``, and its output files back to MRML nodes.

Every function takes the scene as an argument. Files are written and read by Slicer's own volume storage
node, which converts between the node's IJK-to-RAS geometry and NIfTI's LPS convention, so geometry survives
the round trip exactly. Segments keep the BraTS label values (NCR 1, ED 2, ET 4) on export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from AllStageTraining.constants import MODALITY_DISPLAY

from .labels import color_table_node, terminology_string

#: Node attribute naming the sequence a synthesized volume stands for (e.g. "t2").
SYNTHESIZED_ATTRIBUTE = "AllStageSeg.Synthesized"
#: Node attribute on a result segmentation: the sequences it was computed from, e.g. "flair,t1".
INPUTS_ATTRIBUTE = "AllStageSeg.Inputs"


def _volume_storage_node(path: Path):
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(1 if str(path).endswith(".gz") else 0)
    return storage


def write_volume(node, path: Path) -> Path:
    """Write a volume node's voxels and geometry to ``path`` (.nii: uncompressed, fast; .nii.gz)."""
    path = Path(path)
    if not _volume_storage_node(path).WriteData(node):
        raise OSError(f"cannot write volume {node.GetName()!r} to {path}")
    return path


def write_inputs(inputs: dict, folder: Path) -> dict[str, Path]:
    """Write each chosen input volume (sequence -> node; None = not chosen) to ``folder/<sequence>.nii``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {m: write_volume(node, folder / f"{m}.nii") for m, node in inputs.items() if node is not None}


def read_volume(scene, path: Path, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node (``class_name``) in ``scene`` holding the image file ``path``, geometry included."""
    node = scene.AddNewNodeByClass(class_name, name)
    if not _volume_storage_node(path).ReadData(node):
        remove_node(scene, node)
        raise OSError(f"cannot read {path}")
    return node


def remove_node(scene, node) -> None:
    """Remove ``node`` with its display and storage nodes (the scene alone keeps those)."""
    if node is None:
        return
    helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] \
        if hasattr(node, "GetNumberOfDisplayNodes") else []
    helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())] \
        if hasattr(node, "GetNumberOfStorageNodes") else []
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None:
            scene.RemoveNode(helper)


def _copy_transform(node, reference_node) -> None:
    node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())


def place_beside(scene, node, reference_node) -> None:
    """Put ``node`` under the same subject-hierarchy parent (patient/study/folder) as ``reference_node``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    reference_item = hierarchy.GetItemByDataNode(reference_node)
    parent = hierarchy.GetItemParent(reference_item) if reference_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:  # no subject hierarchy logic observes the scene (plain MRML, no Slicer application)
        hierarchy.CreateItem(parent, node)


def load_segmentation(scene, label_file: Path, reference_node, name: str):
    """A segmentation node from ``predict``'s label map, with segments NCR, ED and ET (always all three).

    Segment names, colours and terminology come from the shipped colour table; each segment keeps its BraTS
    label value (``vtkSegment.GetLabelValue``), and the node's labelmap-conversion colour table makes
    exporting to a labelmap write 1, 2 and 4 again. Geometry follows ``reference_node``.
    """
    colors = color_table_node(scene)
    labelmap = read_volume(scene, Path(label_file), name + " labels", "vtkMRMLLabelMapVolumeNode")
    segmentation = None
    try:
        display = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
        display.SetAndObserveColorNodeID(colors.GetID())
        labelmap.SetAndObserveDisplayNodeID(display.GetID())
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        segmentation.SetLabelmapConversionColorTableNodeID(colors.GetID())
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise OSError(f"cannot import the label map {label_file} into a segmentation")
        _complete_segments(segmentation, colors)
        _copy_transform(segmentation, reference_node)
        place_beside(scene, segmentation, reference_node)
    except Exception:
        remove_node(scene, segmentation)
        raise
    finally:
        remove_node(scene, labelmap)
    return segmentation


def _complete_segments(segmentation_node, colors) -> None:
    """Name, colour and tag every label of the colour table's segment; add empty ones for absent labels."""
    segmentation = segmentation_node.GetSegmentation()
    by_value = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        by_value[segment.GetLabelValue()] = segmentation.GetNthSegmentID(index)
    unknown = set(by_value) - {v for v in range(colors.GetNumberOfColors()) if colors.GetColorDefined(v)}
    if unknown:
        raise ValueError(f"the label map holds values {sorted(unknown)} outside the label convention")
    for value in range(1, colors.GetNumberOfColors()):
        if not colors.GetColorDefined(value):
            continue
        segment_id = by_value.get(value)
        if segment_id is None:
            segment_id = segmentation.AddEmptySegment("", colors.GetColorName(value))
        segment = segmentation.GetSegment(segment_id)
        rgba = [0.0, 0.0, 0.0, 0.0]
        colors.GetColor(value, rgba)
        segment.SetName(colors.GetColorName(value))
        segment.SetColor(rgba[:3])
        segment.SetLabelValue(value)
        segment.SetTerminology(terminology_string(colors, value))


def load_synthesized(scene, files: dict[str, Path], reference_node) -> dict:
    """Scalar volumes named like "T2 (synthesized)" from ``predict``'s reconstructions (sequence -> file).

    Each carries the attribute ``AllStageSeg.Synthesized = <sequence>`` and sits beside ``reference_node``.
    """
    nodes = {}
    try:
        for modality, path in files.items():
            node = read_volume(scene, Path(path), f"{MODALITY_DISPLAY[modality]} (synthesized)")
            nodes[modality] = node
            node.SetAttribute(SYNTHESIZED_ATTRIBUTE, modality)
            node.CreateDefaultDisplayNodes()
            _copy_transform(node, reference_node)
            place_beside(scene, node, reference_node)
    except Exception:
        for node in nodes.values():
            remove_node(scene, node)
        raise
    return nodes


def export_labelmap(scene, segmentation_node, reference_node, name: str = "exported labels"):
    """A labelmap node of all segments on ``reference_node``'s grid, with the segments' BraTS label values."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    ids = vtk.vtkStringArray()
    segmentation_node.GetSegmentation().GetSegmentIDs(ids)
    colors = segmentation_node.GetLabelmapConversionColorTableNode()
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_node, 0, colors):
        remove_node(scene, labelmap)
        raise OSError(f"cannot export {segmentation_node.GetName()!r} to a labelmap")
    return labelmap


def voxels(volume_node) -> np.ndarray:
    """A copy of a volume node's voxels as a (K, J, I) array (slowest axis first, like SimpleITK)."""
    image = volume_node.GetImageData()
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()


def ijk_to_ras(volume_node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def geometry_notes(inputs: dict, reference: str, tolerance: float = 1e-3) -> list[str]:
    """One sentence per input whose voxel grid differs from the reference's (it will be resampled onto it).

    ``inputs`` maps sequences to volume nodes (present ones only); ``reference`` is one of its keys.
    """
    ref = inputs[reference]
    ref_dims = ref.GetImageData().GetDimensions()
    ref_matrix = ijk_to_ras(ref)
    notes = []
    for modality, node in inputs.items():
        if modality == reference:
            continue
        dims = node.GetImageData().GetDimensions()
        if dims == ref_dims and np.allclose(ijk_to_ras(node), ref_matrix, atol=tolerance):
            continue
        spacing = "x".join(f"{s:g}" for s in node.GetSpacing())
        ref_spacing = "x".join(f"{s:g}" for s in ref.GetSpacing())
        notes.append(f"{MODALITY_DISPLAY[modality]} ({spacing} mm, {dims[0]}x{dims[1]}x{dims[2]}) is resampled onto "
                     f"the {MODALITY_DISPLAY[reference]} grid ({ref_spacing} mm, "
                     f"{ref_dims[0]}x{ref_dims[1]}x{ref_dims[2]}).")
    return notes
