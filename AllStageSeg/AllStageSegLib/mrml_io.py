"""MRML glue: volume nodes to NIfTI files for ``predict``, and its output files back to MRML nodes.

Every function takes the scene as an argument. Files are written and read by Slicer's own volume storage
node, which converts between the node's IJK-to-RAS geometry and NIfTI's LPS convention, so geometry survives
the round trip exactly. Segments keep the BraTS label values (NCR 1, ED 2, ET 4) on export. Results either
go into new nodes or replace the content of existing ones (an output segmentation the user chose, and the
synthesized volumes and brain mask linked to it), so that re-running does not pile up nodes of the same name.
The brain mask the model was given (``predict --out-brain-mask``) becomes a hidden label map volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY

from .geometry import array_to_matrix, grid_in_reference_frame, ijk_to_ras
from .labels import color_table_node, terminology_string

#: Node attribute naming the sequence a synthesized volume stands for (e.g. "t2").
SYNTHESIZED_ATTRIBUTE = "AllStageSeg.Synthesized"
#: Node attribute on a result segmentation: the sequences it was computed from, e.g. "flair,t1".
INPUTS_ATTRIBUTE = "AllStageSeg.Inputs"
#: Node-reference role (+ sequence) from a result segmentation to the volume synthesized with it.
SYNTHESIZED_ROLE = "AllStageSeg.Synthesized."
#: Node-reference role from a result segmentation to the brain mask its model was given; node attribute
#: (value "1") marking such a mask.
BRAIN_MASK_ROLE = "AllStageSeg.BrainMask"


def headless_scene():
    """A new MRML scene set up as Slicer's application sets up its own, for use without the application
    (tests, measurements): the default colour tables and the segmentation logic, which registers the
    segmentation converter rules."""
    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    slicer.vtkSlicerSegmentationsModuleLogic().SetMRMLScene(scene)
    return scene


def _volume_storage_node(path: Path):
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(1 if str(path).endswith(".gz") else 0)
    return storage


def write_volume(node, path: Path, grid: np.ndarray | None = None) -> Path:
    """Write a volume node's voxels to ``path`` (.nii: uncompressed, fast; .nii.gz) with its own geometry, or
    with the IJK-to-RAS matrix ``grid`` (4x4) instead; the node itself is not changed."""
    path = Path(path)
    source = node
    if grid is not None:
        source = slicer.vtkMRMLScalarVolumeNode()  # outside the scene: shares the voxels, not the geometry
        source.SetAndObserveImageData(node.GetImageData())
        source.SetIJKToRASMatrix(array_to_matrix(grid))
    if not _volume_storage_node(path).WriteData(source):
        raise OSError(f"cannot write volume {node.GetName()!r} to {path}")
    return path


def write_inputs(inputs: dict, folder: Path, reference: str | None = None) -> dict[str, Path]:
    """Write each chosen input volume (sequence -> node; None = not chosen) to ``folder/<sequence>.nii``.

    Each file carries its volume's grid in the frame of ``reference``'s volume (default: the first input), so
    an unhardened linear transform between them is applied (see ``geometry``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    present = {m: node for m, node in inputs.items() if node is not None}
    reference_node = present[reference or next(iter(present))]
    files = {}
    for modality, node in present.items():
        grid = grid_in_reference_frame(node, reference_node)
        files[modality] = write_volume(node, folder / f"{modality}.nii",
                                       None if np.allclose(grid, ijk_to_ras(node), atol=1e-9) else grid)
    return files


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


def replace_segments(scene, target, loaded, reference_node):
    """Give the segmentation node ``target`` the segments, geometry and colour table of ``loaded`` (a node
    from :func:`load_segmentation`), then remove ``loaded``; returns ``target``."""
    target.GetSegmentation().DeepCopy(loaded.GetSegmentation())  # label values and shared labelmaps kept
    target.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    target.SetLabelmapConversionColorTableNodeID(loaded.GetLabelmapConversionColorTableNodeID())
    if target.GetDisplayNode() is None:
        target.CreateDefaultDisplayNodes()
    _copy_transform(target, reference_node)
    remove_node(scene, loaded)
    return target


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


def linked_synthesized(segmentation_node) -> dict:
    """Sequence -> the synthesized volume node linked to a result segmentation (by an earlier run)."""
    if segmentation_node is None:
        return {}
    linked = {m: segmentation_node.GetNodeReference(SYNTHESIZED_ROLE + m) for m in MODALITIES}
    return {m: node for m, node in linked.items() if node is not None}


def link_synthesized(segmentation_node, synthesized: dict) -> None:
    """Make ``synthesized`` (sequence -> volume node) the volumes linked to the segmentation; unlink the rest."""
    for modality in MODALITIES:
        node = synthesized.get(modality)
        segmentation_node.SetNodeReferenceID(SYNTHESIZED_ROLE + modality, node.GetID() if node else None)


def load_synthesized(scene, files: dict[str, Path], reference_node, reuse: dict | None = None) -> dict:
    """Scalar volumes named like "T2 (synthesized)" from ``predict``'s reconstructions (sequence -> file).

    Each carries the attribute ``AllStageSeg.Synthesized = <sequence>`` and sits beside ``reference_node``.
    A sequence in ``reuse`` (sequence -> existing volume node) has that node's voxels and geometry replaced
    (its name and display kept); the others get new nodes with names that no other node has. Nothing is
    replaced until every file has been read.
    """
    reuse = reuse or {}
    loaded = {}
    try:
        for modality, path in files.items():
            name = f"{MODALITY_DISPLAY[modality]} (synthesized)"
            unique = name if modality in reuse else scene.GenerateUniqueName(name)  # a reused node keeps its own
            loaded[modality] = read_volume(scene, Path(path), unique)
    except Exception:
        for node in loaded.values():
            remove_node(scene, node)
        raise
    nodes = {}
    for modality, node in loaded.items():
        if modality in reuse:
            node = _replace_voxels(scene, reuse[modality], node)
        else:
            node.CreateDefaultDisplayNodes()
        node.SetAttribute(SYNTHESIZED_ATTRIBUTE, modality)
        _copy_transform(node, reference_node)
        place_beside(scene, node, reference_node)
        nodes[modality] = node
    return nodes


def linked_brain_mask(segmentation_node):
    """The brain-mask volume linked to a result segmentation (by an earlier run), or None."""
    return None if segmentation_node is None else segmentation_node.GetNodeReference(BRAIN_MASK_ROLE)


def read_brain_mask(scene, path: Path, name: str):
    """A new label map volume node holding ``predict``'s brain mask (1 = brain); see :func:`show_brain_mask`."""
    return read_volume(scene, Path(path), scene.GenerateUniqueName(name), "vtkMRMLLabelMapVolumeNode")


def show_brain_mask(scene, loaded, segmentation_node, reference_node, reuse=None):
    """Make ``loaded`` (from :func:`read_brain_mask`) the brain mask of ``segmentation_node``: linked to it,
    marked (attribute BRAIN_MASK_ROLE), beside ``reference_node``, hidden until the user shows it. ``reuse``:
    the mask of an earlier run, which takes the voxels instead (name kept). Returns the mask's node."""
    node = loaded if reuse is None else _replace_voxels(scene, reuse, loaded)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetVisibility(False)
    node.SetAttribute(BRAIN_MASK_ROLE, "1")
    _copy_transform(node, reference_node)
    place_beside(scene, node, reference_node)
    segmentation_node.SetNodeReferenceID(BRAIN_MASK_ROLE, node.GetID())
    return node


def _replace_voxels(scene, target, loaded):
    """Move ``loaded``'s voxels and geometry into ``target`` and remove ``loaded``; returns ``target``."""
    target.SetAndObserveImageData(loaded.GetImageData())
    target.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras(loaded)))
    remove_node(scene, loaded)
    if target.GetDisplayNode() is None:
        target.CreateDefaultDisplayNodes()
    return target


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
