"""The input selectors' fill-or-keep rule on a real scene (slicer-core): a selector the user set to "not
available" stays so when Segment adds the synthesized volumes, and when the module is entered again."""

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

import vtk  # noqa: E402  (with slicer-core)

from AllStageSegLib.input_choices import InputChoices, candidate_volumes
from AllStageSegLib.predict_process import SUCCEEDED
from AllStageSegLib.segmentation_run import SegmentationRun
from AllStageTraining.constants import MODALITIES

from mrml_images import make_image


class ModuleState:
    """What the widget does around its parameter node, without Qt: the four selectors are node references of
    a scripted-module node (as the parameter-node wrapper keeps them); every Modified event of that node is
    observed (the widget's _onParameterNodeModified) while a fill sets the selectors one by one, and a volume
    added to the scene asks for a fill once the scene
    is idle (here: when ``idle()`` is called)."""

    def __init__(self, scene):
        self.scene = scene
        self.node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "AllStageSeg")
        self.pending_fill = False
        scene.AddObserver(scene.NodeAddedEvent, self._node_added)
        self.node.AddObserver(vtk.vtkCommand.ModifiedEvent,
                              lambda caller, event: InputChoices(self.node).observe(self.current()))

    def _node_added(self, caller, event):
        self.pending_fill = True

    def current(self) -> dict:
        return {m: self.node.GetNodeReferenceID(f"{m}Volume") for m in MODALITIES}

    def user_sets(self, modality, node) -> None:
        self.node.SetNodeReferenceID(f"{modality}Volume", node.GetID() if node else None)

    def fill(self, also_cleared=False) -> None:
        """The widget's fillInputsFromNames (on entering the module, on the button, after a volume is added)."""
        def apply(chosen):
            for modality, node_id in chosen.items():
                self.node.SetNodeReferenceID(f"{modality}Volume", node_id)

        InputChoices(self.node).fill(candidate_volumes(self.scene), self.current(), apply, also_cleared=also_cleared)

    def idle(self) -> None:
        if self.pending_fill:
            self.pending_fill = False
            self.fill()


def _load_case(scene, write_image, load_volume):
    nodes = {}
    for i, modality in enumerate(MODALITIES):
        image = make_image(shape=(32, 40, 36), spacing=(1.2, 1.0, 1.1), seed=i)
        nodes[modality] = load_volume(write_image(f"case_{modality}.nii.gz", image), f"case_{modality}")
    return nodes


def test_not_available_stays_across_segment_and_module_reentry(scene, write_image, load_volume, demo_bundle):
    volumes = _load_case(scene, write_image, load_volume)
    state = ModuleState(scene)
    state.fill()  # the module is entered
    assert state.current() == {m: volumes[m].GetID() for m in MODALITIES}  # filled from the names

    state.user_sets("t1ce", None)
    state.user_sets("t2", None)
    inputs = {m: scene.GetNodeByID(key) for m, key in state.current().items() if key}
    assert sorted(inputs) == ["flair", "t1"]
    run = SegmentationRun(scene, inputs, demo_bundle, device="cpu").start()
    update = run.wait(timeout=180)
    assert update.state == SUCCEEDED, update.message
    assert sorted(run.result.synthesized) == ["t1ce", "t2"] and state.pending_fill  # NodeAdded fired
    state.idle()  # the deferred fill after the synthesized volumes were added
    assert state.current()["t1ce"] is None and state.current()["t2"] is None

    state.fill()  # entering the module again fills from names, with the memory the parameter node keeps
    assert state.current() == {"flair": volumes["flair"].GetID(), "t1ce": None, "t1": volumes["t1"].GetID(), "t2": None}
    load_volume(write_image("other_t2w.nii.gz", seed=9), "other_t2w")
    state.idle()
    assert state.current()["t2"] is None  # a new T2 volume does not override "not available" either

    state.fill(also_cleared=True)  # "Fill from volume names" asks for it
    assert state.current()["t1ce"] == volumes["t1ce"].GetID() and state.current()["t2"] == volumes["t2"].GetID()


def test_a_volume_the_user_chose_is_kept_and_empty_selectors_still_fill(scene, write_image, load_volume):
    state = ModuleState(scene)
    odd = load_volume(write_image("scan_a.nii.gz"), "series 7")  # a name that says nothing
    state.fill()
    assert state.current() == {m: None for m in MODALITIES}
    state.user_sets("flair", odd)
    t1 = load_volume(write_image("t1.nii.gz", seed=1), "case_t1")
    flair = load_volume(write_image("flair.nii.gz", seed=2), "case_flair")
    state.idle()
    assert state.current() == {"flair": odd.GetID(), "t1ce": None, "t1": t1.GetID(), "t2": None}
    assert flair.GetID() not in state.current().values()
    # the memory lives in the parameter node: another InputChoices on it (the module re-entered) knows it
    assert InputChoices(state.node).set_by_user() == {"flair"}


def test_synthesized_and_label_volumes_are_never_candidates(scene, write_image, load_volume):
    real = load_volume(write_image("t2.nii.gz"), "case_t2")
    synthesized = load_volume(write_image("s.nii.gz"), "case_t2 copy")
    synthesized.SetAttribute("AllStageSeg.Synthesized", "t2")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "case_t2 labels")
    assert candidate_volumes(scene) == {real.GetID(): "case_t2"}
    assert labels.GetID() not in candidate_volumes(scene)
