"""MRML glue on a real scene (slicer-core): volumes to NIfTI and back, label maps to segments NCR/ED/ET with
BraTS label values, synthesized volumes (new, and reused into their nodes), an existing segmentation
replaced, subject hierarchy."""

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from AllStageSegLib import mrml_io
from AllStageSegLib.geometry import ijk_to_ras
from AllStageSegLib.labels import read_label_definitions
from AllStageTraining.constants import LABEL_NAMES

from mrml_images import make_image


def test_inputs_are_written_with_their_geometry(scene, write_image, load_volume, tmp_path):
    source = make_image(spacing=(0.9, 1.1, 3.0), origin=(-5.0, 7.5, 20.0))
    node = load_volume(write_image("t1.nii.gz", source), "T1")
    files = mrml_io.write_inputs({"flair": None, "t1": node}, tmp_path / "inputs")
    assert list(files) == ["t1"] and files["t1"].name == "t1.nii"
    back = sitk.ReadImage(str(files["t1"]))
    assert back.GetSize() == source.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), source.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), source.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(source))


def test_label_map_becomes_ncr_ed_et_and_exports_back_to_1_2_4(scene, write_image, load_volume):
    reference = load_volume(write_image("flair.nii.gz"), "case_flair")
    labels = make_image(kind="labels")
    segmentation = mrml_io.load_segmentation(scene, write_image("seg.nii.gz", labels), reference, "case tumour")

    segments = segmentation.GetSegmentation()
    found = {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i)
             for i in range(segments.GetNumberOfSegments())}
    assert sorted(found) == sorted(LABEL_NAMES.values())
    definitions = {d.name: d for d in read_label_definitions()}
    for name, segment in found.items():
        assert segment.GetLabelValue() == definitions[name].value
        np.testing.assert_allclose(segment.GetColor(), definitions[name].color, atol=1e-6)
        assert definitions[name].type[2] in segment.GetTerminology()  # Necrosis / Edema / Neoplasm
    assert "SCT^79654002^Edema" in found["ED"].GetTerminology()

    exported = mrml_io.export_labelmap(scene, segmentation, reference)
    np.testing.assert_array_equal(mrml_io.voxels(exported), sitk.GetArrayFromImage(labels))
    np.testing.assert_allclose(ijk_to_ras(exported), ijk_to_ras(reference), atol=1e-6)
    # the temporary label-map node is gone; only the result and the shared colour table remain
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 1  # `exported`


def test_absent_labels_still_get_their_segment(scene, write_image, load_volume):
    reference = load_volume(write_image("t1.nii.gz"), "t1")
    only_edema = make_image(kind="labels")
    array = sitk.GetArrayFromImage(only_edema)
    array[array != 2] = 0
    empty_ok = sitk.GetImageFromArray(array)
    empty_ok.CopyInformation(only_edema)
    segmentation = mrml_io.load_segmentation(scene, write_image("seg.nii.gz", empty_ok), reference, "tumour")
    segments = segmentation.GetSegmentation()
    assert sorted(segments.GetNthSegment(i).GetName() for i in range(3)) == ["ED", "ET", "NCR"]
    assert segments.GetNumberOfSegments() == 3
    np.testing.assert_array_equal(mrml_io.voxels(mrml_io.export_labelmap(scene, segmentation, reference)), array)


def test_label_values_outside_the_convention_are_refused_and_leave_nothing(scene, write_image, load_volume):
    reference = load_volume(write_image("t1.nii.gz"), "t1")
    labels = make_image(kind="labels")
    array = sitk.GetArrayFromImage(labels)
    array[array == 4] = 3  # BraTS 2023 ET: predict never writes it
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(labels)
    before = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"values \[3\]"):
        mrml_io.load_segmentation(scene, write_image("seg.nii.gz", bad), reference, "tumour")
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0
    assert scene.GetNumberOfNodes() == before + 2  # the shared colour table and its storage node


def test_synthesized_volumes_are_named_marked_and_placed_beside_the_input(scene, write_image, load_volume):
    reference = load_volume(write_image("flair.nii.gz"), "case_flair")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient"), "MR study")
    hierarchy.CreateItem(study, reference)
    files = {m: write_image(f"{m}.nii.gz", seed=i) for i, m in enumerate(["t1ce", "t2"])}
    nodes = mrml_io.load_synthesized(scene, files, reference)
    assert {m: n.GetName() for m, n in nodes.items()} == {"t1ce": "T1ce (synthesized)", "t2": "T2 (synthesized)"}
    for modality, node in nodes.items():
        assert node.GetAttribute(mrml_io.SYNTHESIZED_ATTRIBUTE) == modality
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study
        np.testing.assert_allclose(ijk_to_ras(node), ijk_to_ras(reference), atol=1e-6)
        np.testing.assert_array_equal(mrml_io.voxels(node),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(files[modality]))))


def test_synthesized_names_are_not_repeated_and_reused_nodes_keep_theirs(scene, write_image, load_volume):
    reference = load_volume(write_image("flair.nii.gz"), "case_flair")
    first = mrml_io.load_synthesized(scene, {"t2": write_image("a_t2.nii.gz", seed=1)}, reference)
    second = mrml_io.load_synthesized(scene, {"t2": write_image("b_t2.nii.gz", seed=2)}, reference)
    assert first["t2"].GetName() == "T2 (synthesized)" and second["t2"].GetName() != "T2 (synthesized)"
    before = scene.GetNumberOfNodes()
    other_grid = make_image(shape=(20, 28, 32), spacing=(1.0, 1.0, 2.0), seed=3)
    reused = mrml_io.load_synthesized(scene, {"t2": write_image("c_t2.nii.gz", other_grid)}, reference,
                                      reuse={"t2": first["t2"]})
    assert reused["t2"] is first["t2"] and reused["t2"].GetName() == "T2 (synthesized)"
    assert scene.GetNumberOfNodes() == before  # the voxels moved into the existing node, nothing added
    np.testing.assert_array_equal(mrml_io.voxels(first["t2"]), sitk.GetArrayFromImage(other_grid))
    assert first["t2"].GetSpacing() == pytest.approx((1.0, 1.0, 2.0))


def test_an_existing_segmentation_is_replaced_and_linked_to_its_synthesized_volumes(scene, write_image, load_volume):
    reference = load_volume(write_image("flair.nii.gz"), "case_flair")
    chosen = mrml_io.load_segmentation(scene, write_image("old.nii.gz", kind="labels"), reference, "my tumour")
    chosen.GetSegmentation().RemoveSegment(chosen.GetSegmentation().GetNthSegmentID(0))
    synthesized = mrml_io.load_synthesized(scene, {"t1": write_image("t1.nii.gz", seed=1)}, reference)
    mrml_io.link_synthesized(chosen, synthesized)
    assert mrml_io.linked_synthesized(chosen) == synthesized

    labels = make_image(kind="labels", seed=4)
    loaded = mrml_io.load_segmentation(scene, write_image("new.nii.gz", labels), reference, "temporary")
    result = mrml_io.replace_segments(scene, chosen, loaded, reference)
    assert result is chosen and result.GetName() == "my tumour"
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1  # `loaded` is gone
    segments = chosen.GetSegmentation()
    assert {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i).GetLabelValue()
            for i in range(segments.GetNumberOfSegments())} == {"NCR": 1, "ED": 2, "ET": 4}
    np.testing.assert_array_equal(mrml_io.voxels(mrml_io.export_labelmap(scene, chosen, reference)),
                                  sitk.GetArrayFromImage(labels))
    mrml_io.link_synthesized(chosen, {})  # a run that synthesized nothing unlinks the old volumes
    assert mrml_io.linked_synthesized(chosen) == {} and scene.IsNodePresent(synthesized["t1"])


def test_colour_table_must_match_the_label_convention(tmp_path):
    good = read_label_definitions()
    assert {d.value: d.name for d in good} == LABEL_NAMES
    bad = tmp_path / "bad.csv"
    from AllStageSegLib.resources import COLOR_TABLE, resource_path

    bad.write_text(resource_path(COLOR_TABLE).read_text().replace("\n4,ET,", "\n3,ET,"))
    with pytest.raises(ValueError, match="label convention|convention"):
        read_label_definitions(bad)


def test_glue_overhead_is_measured_per_step():
    from AllStageSegLib.glue_overhead import measure_glue_overhead

    times = measure_glue_overhead(shape=(40, 48, 48), present=("t1ce",))
    assert set(times) == {"write_inputs_s", "start_process_s", "load_outputs_s", "total_s"}
    assert all(value > 0 for value in times.values())
    assert times["total_s"] == pytest.approx(sum(v for k, v in times.items() if k != "total_s"))
    assert times["total_s"] < 30  # generous: a small case on a loaded 2-core machine
