"""The module's two preparation options ("skull-strip when needed", "co-register when needed") and the brain
mask it shows, on a real MRML scene with a real ``predict`` process and the shipped demo bundle."""

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

from AllStageSegLib import mrml_io
from AllStageSegLib.geometry import ijk_to_ras
from AllStageSegLib.predict_process import SUCCEEDED
from AllStageSegLib.segmentation_run import SegmentationRun
from AllStageTraining.synth import generate_case

from mrml_images import make_image


def _run(scene, inputs, bundle, **options):
    run = SegmentationRun(scene, inputs, bundle, device="cpu", **options).start()
    update = run.wait(timeout=300)
    assert update.state == SUCCEEDED, (update.message, run.log[-20:])
    return run


def _synth_volumes(write_image, load_volume, modalities, **options):
    """Case 3 of ``generate_case`` (2 mm, seed 0; ``head``, ``misalign``) as volume nodes, and the case."""
    case = generate_case(3, 2, 0, **options)
    nodes = {}
    for modality in modalities:
        image = sitk.GetImageFromArray(case.images[modality])
        image.CopyInformation(case.grid())
        nodes[modality] = load_volume(write_image(f"{modality}.nii.gz", image), f"case_{modality}")
    return nodes, case


def _dice(scene, run, reference_node, truth: np.ndarray, values=(1, 2, 4)) -> float:
    """Dice of the region of label ``values`` (default: the whole tumour) between the result and ``truth``."""
    labels = np.isin(mrml_io.voxels(mrml_io.export_labelmap(scene, run.result.segmentation, reference_node)), values)
    truth = np.isin(truth, values)
    return 2.0 * float((labels & truth).sum()) / float(labels.sum() + truth.sum())


def test_the_brain_mask_is_a_hidden_label_volume_linked_to_the_result(scene, write_image, load_volume, demo_bundle):
    inputs = {}
    for i, modality in enumerate(("flair", "t2")):
        path = write_image(f"{modality}.nii.gz", make_image(shape=(36, 48, 40), spacing=(1.1, 0.9, 1.3), seed=i))
        inputs[modality] = load_volume(path, f"case_{modality}")
    run = _run(scene, inputs, demo_bundle)
    command = " ".join(run.process.command)
    assert "--skull-strip auto --register auto" in command and "--out-brain-mask" in command
    mask = run.result.brain_mask
    assert mask.IsA("vtkMRMLLabelMapVolumeNode") and mask.GetName() == "case_flair brain mask"
    assert mask.GetAttribute(mrml_io.BRAIN_MASK_ROLE) == "1" and not mask.GetDisplayNode().GetVisibility()
    assert run.result.segmentation.GetNodeReference(mrml_io.BRAIN_MASK_ROLE) is mask
    np.testing.assert_allclose(ijk_to_ras(mask), ijk_to_ras(inputs["flair"]), atol=1e-4)
    # skull-stripped inputs: the brain is the union of their non-zero voxels, exactly
    union = np.any([mrml_io.voxels(node) != 0 for node in inputs.values()], axis=0)
    np.testing.assert_array_equal(mrml_io.voxels(mask), union.astype(np.uint8))
    assert any(note.startswith("timings (s):") and "registration" in note for note in run.result.notes)
    # a re-run into the same output gives its mask the new voxels: no second mask node
    nodes = scene.GetNumberOfNodes()
    again = _run(scene, inputs, demo_bundle, output=run.result.segmentation, skull_strip=False, co_register=False)
    assert again.result.brain_mask is mask and scene.GetNumberOfNodes() == nodes
    assert "--skull-strip never --register never" in " ".join(again.process.command)


@pytest.mark.slow
def test_co_register_when_needed_aligns_a_moved_input(scene, write_image, load_volume, demo_bundle):
    inputs, case = _synth_volumes(write_image, load_volume, ["flair", "t1ce"], misalign=(5.0, 5.0))
    registered = _run(scene, inputs, demo_bundle)
    assert any(note.startswith("T1ce: co-registered onto FLAIR: moved") for note in registered.result.notes), \
        registered.result.notes
    as_it_lies = _run(scene, inputs, demo_bundle, co_register=False)
    assert any("T1ce: left unregistered" in warning for warning in as_it_lies.result.warnings), \
        as_it_lies.result.warnings
    # the enhancing tumour is seen on T1ce, so where T1ce lies matters
    et = [_dice(scene, run, inputs["flair"], case.labels, (4,)) for run in (registered, as_it_lies)]
    assert et[0] > et[1], et


@pytest.mark.slow
def test_skull_strip_when_needed_gives_the_model_the_brain_only(scene, write_image, load_volume, demo_bundle):
    pytest.importorskip("deepbet")
    inputs, case = _synth_volumes(write_image, load_volume, ["flair", "t1"], head=True)
    stripped = _run(scene, inputs, demo_bundle)
    assert any(note.startswith("brain mask: deepbet on T1") for note in stripped.result.notes), stripped.result.notes
    brain = mrml_io.voxels(stripped.result.brain_mask) > 0
    head = mrml_io.voxels(inputs["t1"]) > 0
    true_brain, tumour = case.brain, case.labels > 0
    assert 2.0 * (brain & true_brain).sum() / (brain.sum() + true_brain.sum()) > 0.9
    assert (brain & tumour).sum() >= 0.99 * tumour.sum() and brain.sum() < 0.6 * head.sum()
    kept = _run(scene, inputs, demo_bundle, skull_strip=False)
    assert any("not skull-stripped and brain extraction is off" in warning for warning in kept.result.warnings)
    assert (mrml_io.voxels(kept.result.brain_mask) > 0).sum() > 0.9 * head.sum()
    assert _dice(scene, stripped, inputs["flair"], case.labels) > _dice(scene, kept, inputs["flair"], case.labels)
