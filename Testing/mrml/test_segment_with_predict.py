"""Segment on a real MRML scene with a real ``predict`` process (started through the module's launcher) and
the shipped demo bundle: one, two and four input sequences; the output grid; a volume under a transform; an
existing output replaced; the bundle's warnings; cancel; a failing process."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from AllStageSegLib import mrml_io
from AllStageSegLib.geometry import array_to_matrix, ijk_to_ras
from AllStageSegLib.predict_process import CANCELLED, FAILED, SUCCEEDED
from AllStageSegLib.segmentation_run import SegmentationRun
from AllStageTraining.constants import LABEL_NAMES, MODALITIES
from AllStageTraining.runtime import cpu_has_native_bfloat16

from mrml_images import make_image

SHAPE = (36, 48, 40)
SPACING = (1.1, 0.9, 1.3)


def _case(write_image, load_volume, modalities, **geometry):
    nodes = {}
    for i, modality in enumerate(modalities):
        image = make_image(shape=geometry.get("shape", SHAPE), spacing=geometry.get("spacing", SPACING), seed=i)
        nodes[modality] = load_volume(write_image(f"case_{modality}.nii.gz", image), f"case_{modality}")
    return nodes


def _run(scene, inputs, bundle, **options):
    run = SegmentationRun(scene, inputs, bundle, device="cpu", **options).start()
    update = run.wait(timeout=180)
    assert update.state == SUCCEEDED, update.message
    return run


def _check_result(scene, run, inputs, reference):
    result = run.result
    segments = result.segmentation.GetSegmentation()
    by_name = {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i).GetLabelValue()
               for i in range(segments.GetNumberOfSegments())}
    assert by_name == {name: value for value, name in LABEL_NAMES.items()}
    exported = mrml_io.export_labelmap(scene, result.segmentation, inputs[reference])
    assert set(np.unique(mrml_io.voxels(exported))) <= {0, 1, 2, 4}
    assert sorted(result.synthesized) == sorted(m for m in MODALITIES if m not in inputs)
    reference_matrix = ijk_to_ras(inputs[reference])
    reference_dims = inputs[reference].GetImageData().GetDimensions()
    for modality, node in result.synthesized.items():
        assert node.GetAttribute(mrml_io.SYNTHESIZED_ATTRIBUTE) == modality
        assert node.GetImageData().GetDimensions() == reference_dims
        np.testing.assert_allclose(ijk_to_ras(node), reference_matrix, atol=1e-4)
    assert run._folder is None  # the temporary folder is gone
    return exported


def test_one_input_gives_segments_three_synthesized_and_the_bundle_warnings(scene, write_image, load_volume,
                                                                           demo_bundle):
    inputs = _case(write_image, load_volume, ["t1ce"])
    run = SegmentationRun(scene, inputs, demo_bundle, device="cpu").start()
    assert run.process.command[1].endswith("run_predict.py")  # the launcher script, not `-m`
    stages = []
    update = run.wait(timeout=180, on_update=lambda u: stages.append(u.stage))
    assert update.state == SUCCEEDED, update.message
    assert any("reconstruct" in s for s in stages) and update.fraction == 1.0
    _check_result(scene, run, inputs, "t1ce")
    assert sorted(n.GetName() for n in run.result.synthesized.values()) == ["FLAIR (synthesized)", "T1 (synthesized)",
                                                                             "T2 (synthesized)"]
    warnings = " ".join(run.result.warnings)
    assert "not for clinical use" in warnings and "UNTRAINED" not in warnings  # MiniLM's weights are pretrained
    precision = "bfloat16" if cpu_has_native_bfloat16() else "float32"  # predict's default, auto
    assert any("device cpu, " + precision in note for note in run.result.notes), run.result.notes


def test_the_finest_input_is_the_default_output_grid(scene, write_image, load_volume, demo_bundle):
    t1ce = _case(write_image, load_volume, ["t1ce"], spacing=(1.0, 1.0, 1.0))["t1ce"]
    flair_image = make_image(shape=(12, 48, 40), spacing=(1.0, 1.0, 3.0), seed=5)
    flair = load_volume(write_image("thick_flair.nii.gz", flair_image), "thick FLAIR")
    inputs = {"flair": flair, "t1ce": t1ce}
    run = SegmentationRun(scene, inputs, demo_bundle, device="cpu").start()  # FLAIR comes first, T1ce is finer
    assert run.reference == "t1ce" and any(note.startswith("FLAIR (1x1x3 mm") for note in run.notes)
    assert run.wait(timeout=180).state == SUCCEEDED
    _check_result(scene, run, inputs, "t1ce")
    assert "--reference" in run.process.command
    chosen = _run(scene, inputs, demo_bundle, reference="flair")
    _check_result(scene, chosen, inputs, "flair")


def test_a_volume_under_a_linear_transform_is_segmented_through_it(scene, write_image, load_volume, demo_bundle):
    flair = load_volume(write_image("flair.nii.gz", make_image(shape=SHAPE, spacing=SPACING, seed=0)), "case_flair")
    t1_image = make_image(shape=SHAPE, spacing=SPACING, seed=1)
    aligned = load_volume(write_image("t1.nii.gz", t1_image), "t1 aligned")
    moved_image = sitk.Image(t1_image)
    moved_image.SetOrigin(tuple(o + d for o, d in zip(t1_image.GetOrigin(), (30.0, -12.0, 5.0))))
    moved = load_volume(write_image("t1_moved.nii.gz", moved_image), "t1 moved")  # 33 mm off: ignoring the
    # transform would resample a shifted T1 onto the FLAIR grid and give other results than the hardened one
    registration = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    back = ijk_to_ras(aligned) @ np.linalg.inv(ijk_to_ras(moved))  # moved grid -> aligned grid
    registration.SetMatrixTransformToParent(array_to_matrix(back))
    moved.SetAndObserveTransformNodeID(registration.GetID())

    through = _run(scene, {"flair": flair, "t1": moved}, demo_bundle, reference="flair")
    assert any("under the transform 'registration'" in note for note in through.result.notes)
    hardened = _run(scene, {"flair": flair, "t1": aligned}, demo_bundle, reference="flair")
    np.testing.assert_array_equal(mrml_io.voxels(mrml_io.export_labelmap(scene, through.result.segmentation, flair)),
                                  mrml_io.voxels(mrml_io.export_labelmap(scene, hardened.result.segmentation, flair)))
    for modality in ("t1ce", "t2"):
        np.testing.assert_allclose(mrml_io.voxels(through.result.synthesized[modality]),
                                   mrml_io.voxels(hardened.result.synthesized[modality]), atol=1e-3)


def test_a_rerun_into_the_output_replaces_it_and_reuses_the_synthesized_nodes(scene, write_image, load_volume,
                                                                            demo_bundle):
    inputs = _case(write_image, load_volume, ["flair", "t1"])
    first = _run(scene, inputs, demo_bundle)
    nodes_after_first = scene.GetNumberOfNodes()
    again = _run(scene, inputs, demo_bundle, output=first.result.segmentation, postprocess_et=True)
    assert again.result.segmentation is first.result.segmentation
    assert {m: n.GetID() for m, n in again.result.synthesized.items()} == \
        {m: n.GetID() for m, n in first.result.synthesized.items()}
    assert scene.GetNumberOfNodes() == nodes_after_first  # nothing new, no "T2 (synthesized)_1"
    _check_result(scene, again, inputs, "flair")


def test_four_inputs_synthesize_nothing_and_match_the_cli(scene, write_image, load_volume, demo_bundle, tmp_path):
    inputs = _case(write_image, load_volume, list(MODALITIES))
    run = _run(scene, inputs, demo_bundle, postprocess_et=True)
    exported = _check_result(scene, run, inputs, "flair")
    assert run.result.synthesized == {} and "--postprocess-et" in run.process.command
    # the same files through the CLI directly give exactly the label map the segmentation exports
    command = [sys.executable, "-m", "AllStageTraining", "predict", "--bundle", str(demo_bundle), "--device", "cpu",
               "--postprocess-et", "--out-seg", str(tmp_path / "direct.nii.gz")]
    for modality in MODALITIES:
        command += [f"--{modality}", str(tmp_path / f"case_{modality}.nii.gz")]
    subprocess.run(command, check=True, capture_output=True, timeout=180)
    direct = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "direct.nii.gz")))
    np.testing.assert_array_equal(mrml_io.voxels(exported), direct)


def test_cancel_mid_run_leaves_no_half_made_nodes(scene, write_image, load_volume, demo_bundle):
    inputs = _case(write_image, load_volume, ["flair", "t2"])
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    run = SegmentationRun(scene, inputs, demo_bundle, device="cpu").start()
    folder = run._folder
    update = run.poll()
    while update.state == "running" and update.fraction < 0.05:  # the model is loading: mid-run
        update = run.poll()
    run.cancel()
    update = run.wait(timeout=60)
    assert update.state == CANCELLED and run.result is None
    after = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    assert after == before
    assert not folder.exists()


def test_a_failing_process_surfaces_its_message(scene, write_image, load_volume, demo_bundle, tmp_path):
    broken = tmp_path / "broken_bundle.zip"
    with zipfile.ZipFile(demo_bundle) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data[:-100] if name == "model.safetensors" else data)
    inputs = _case(write_image, load_volume, ["t1"])
    before = scene.GetNumberOfNodes()
    run = SegmentationRun(scene, inputs, broken, device="cpu").start()
    update = run.wait(timeout=120)
    assert update.state == FAILED and run.process.process.returncode == 3
    assert update.message and not update.message.startswith("ERROR") and "exit code" not in update.message
    assert update.message == run.process.error_line
    assert scene.GetNumberOfNodes() == before


def test_invalid_requests_are_refused_before_starting(scene, write_image, load_volume, demo_bundle, tmp_path):
    inputs = _case(write_image, load_volume, ["t1"])
    with pytest.raises(ValueError, match="at least one input sequence"):
        SegmentationRun(scene, {"t1": None}, demo_bundle)
    with pytest.raises(ValueError, match="does not exist"):
        SegmentationRun(scene, inputs, tmp_path / "nowhere.zip")
    with pytest.raises(ValueError, match="reference sequence 't2'"):
        SegmentationRun(scene, inputs, demo_bundle, reference="t2")
