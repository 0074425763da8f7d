"""Segment on a real MRML scene with a real ``python -m AllStageTraining predict`` process on a tiny bundle:
one, two and four input sequences; a mismatched input; cancel; a failing process."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from AllStageSegLib import mrml_io
from AllStageSegLib.predict_process import CANCELLED, FAILED, SUCCEEDED
from AllStageSegLib.segmentation_run import SegmentationRun
from AllStageTraining.constants import LABEL_NAMES, MODALITIES

from mrml_images import make_image

SHAPE = (36, 48, 40)
SPACING = (1.1, 0.9, 1.3)


def _case(write_image, load_volume, modalities, **geometry):
    nodes = {}
    for i, modality in enumerate(modalities):
        image = make_image(shape=geometry.get("shape", SHAPE), spacing=geometry.get("spacing", SPACING), seed=i)
        nodes[modality] = load_volume(write_image(f"case_{modality}.nii.gz", image), f"case_{modality}")
    return nodes


def _check_result(scene, run, inputs, reference):
    result = run.result
    segments = result.segmentation.GetSegmentation()
    by_name = {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i).GetLabelValue()
               for i in range(segments.GetNumberOfSegments())}
    assert by_name == {name: value for value, name in LABEL_NAMES.items()}
    exported = mrml_io.export_labelmap(scene, result.segmentation, inputs[reference])
    assert set(np.unique(mrml_io.voxels(exported))) <= {0, 1, 2, 4}
    assert sorted(result.synthesized) == sorted(m for m in MODALITIES if m not in inputs)
    reference_matrix = mrml_io.ijk_to_ras(inputs[reference])
    reference_dims = inputs[reference].GetImageData().GetDimensions()
    for modality, node in result.synthesized.items():
        assert node.GetAttribute(mrml_io.SYNTHESIZED_ATTRIBUTE) == modality
        assert node.GetImageData().GetDimensions() == reference_dims
        np.testing.assert_allclose(mrml_io.ijk_to_ras(node), reference_matrix, atol=1e-4)
    assert run._folder is None  # the temporary folder is gone
    return exported


def test_one_input_gives_segments_and_three_synthesized(scene, write_image, load_volume, tiny_bundle):
    inputs = _case(write_image, load_volume, ["t1ce"])
    run = SegmentationRun(scene, inputs, tiny_bundle, device="cpu").start()
    stages = []
    update = run.wait(timeout=180, on_update=lambda u: stages.append(u.stage))
    assert update.state == SUCCEEDED, update.message
    assert any("reconstruct" in s for s in stages) and update.fraction == 1.0
    _check_result(scene, run, inputs, "t1ce")
    assert sorted(n.GetName() for n in run.result.synthesized.values()) == ["FLAIR (synthesized)", "T1 (synthesized)",
                                                                             "T2 (synthesized)"]


def test_two_inputs_of_different_geometry_are_resampled(scene, write_image, load_volume, tiny_bundle):
    t1ce = _case(write_image, load_volume, ["t1ce"], spacing=(1.0, 1.0, 1.0))["t1ce"]
    flair_image = make_image(shape=(12, 48, 40), spacing=(1.0, 1.0, 3.0), seed=5)
    flair = load_volume(write_image("thick_flair.nii.gz", flair_image), "thick FLAIR")
    inputs = {"flair": flair, "t1ce": t1ce}
    run = SegmentationRun(scene, inputs, tiny_bundle, device="cpu", reference="t1ce").start()
    assert any(note.startswith("FLAIR (1x1x3 mm") for note in run.notes)  # told before the run ends
    update = run.wait(timeout=180)
    assert update.state == SUCCEEDED, update.message
    _check_result(scene, run, inputs, "t1ce")
    assert run.result.reference == "t1ce"
    assert "--reference" in run.process.command


def test_four_inputs_synthesize_nothing_and_match_the_cli(scene, write_image, load_volume, tiny_bundle, tmp_path):
    inputs = _case(write_image, load_volume, list(MODALITIES))
    run = SegmentationRun(scene, inputs, tiny_bundle, device="cpu", postprocess_et=True).start()
    update = run.wait(timeout=180)
    assert update.state == SUCCEEDED, update.message
    exported = _check_result(scene, run, inputs, "flair")
    assert run.result.synthesized == {} and "--postprocess-et" in run.process.command
    # the same files through the CLI directly give exactly the label map the segmentation exports
    command = [sys.executable, "-m", "AllStageTraining", "predict", "--bundle", str(tiny_bundle), "--device", "cpu",
               "--postprocess-et", "--out-seg", str(tmp_path / "direct.nii.gz")]
    for modality in MODALITIES:
        command += [f"--{modality}", str(tmp_path / f"case_{modality}.nii.gz")]
    subprocess.run(command, check=True, capture_output=True, timeout=180)
    direct = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "direct.nii.gz")))
    np.testing.assert_array_equal(mrml_io.voxels(exported), direct)


def test_cancel_mid_run_leaves_no_half_made_nodes(scene, write_image, load_volume, tiny_bundle):
    inputs = _case(write_image, load_volume, ["flair", "t2"])
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    run = SegmentationRun(scene, inputs, tiny_bundle, device="cpu").start()
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


def test_a_failing_process_surfaces_its_message(scene, write_image, load_volume, tiny_bundle, tmp_path):
    broken = Path(shutil.copytree(tiny_bundle, tmp_path / "broken_bundle"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    inputs = _case(write_image, load_volume, ["t1"])
    before = scene.GetNumberOfNodes()
    run = SegmentationRun(scene, inputs, broken, device="cpu").start()
    update = run.wait(timeout=120)
    assert update.state == FAILED and run.process.process.returncode == 3
    assert update.message and not update.message.startswith("ERROR") and "exit code" not in update.message
    assert update.message == run.process.error_line
    assert scene.GetNumberOfNodes() == before


def test_invalid_requests_are_refused_before_starting(scene, write_image, load_volume, tiny_bundle, tmp_path):
    inputs = _case(write_image, load_volume, ["t1"])
    with pytest.raises(ValueError, match="at least one input sequence"):
        SegmentationRun(scene, {"t1": None}, tiny_bundle)
    with pytest.raises(ValueError, match="does not exist"):
        SegmentationRun(scene, inputs, tmp_path / "nowhere.zip")
    with pytest.raises(ValueError, match="reference sequence 't2'"):
        SegmentationRun(scene, inputs, tiny_bundle, reference="t2")
