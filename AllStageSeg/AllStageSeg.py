"""AllStageSeg: brain-tumour segmentation in 3D Slicer from any subset of FLAIR, T1ce, T1 and T2.

The only file of the module that imports qt, ctk or slicer.ScriptedLoadableModule; every decision is in
AllStageSegLib (plain Python, tested without Qt). The networks run in a separate ``PythonSlicer
AllStageSegLib/run_predict.py predict ...`` process, so torch is never imported into Slicer's GUI process.
Needs Slicer 5.10 or newer (AllStageSegLib.slicer_release); this file still loads in older releases, to say so.
"""

import importlib
import importlib.util
import logging
import shutil
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from AllStageSegLib.resources import training_package_parent

MODULE_DIR = Path(__file__).resolve().parent
_TRAINING_PARENT = training_package_parent()  # installed: this folder (the inference part); source tree: one up
if _TRAINING_PARENT and str(_TRAINING_PARENT) not in sys.path:
    sys.path.append(str(_TRAINING_PARENT))

from AllStageSegLib import dependencies, models, mrml_io  # noqa: E402
from AllStageSegLib.input_choices import InputChoices, candidate_volumes  # noqa: E402
from AllStageSegLib.predict_process import CANCELLED, RUNNING, SUCCEEDED  # noqa: E402
from AllStageSegLib.readiness import (  # noqa: E402
    SEGMENT_TOOLTIP, run_blocker, segment_blocker, self_test_skip_reason, status_text)
from AllStageSegLib.resources import DEMO_BUNDLE, SAMPLE_CASE_FILES, SAMPLE_DATA_DIR, resource_path  # noqa: E402
from AllStageSegLib.segmentation_run import SegmentationRun  # noqa: E402
from AllStageSegLib.slicer_release import minimum_slicer_text, slicer_version_blocker  # noqa: E402
from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY  # noqa: E402

HELP_TEXT = f"""
Segments a brain tumour from whatever MRI sequences a patient has (any subset of FLAIR, T1ce, T1 and T2),
and synthesizes the missing sequences so you can look at them. Needs 3D Slicer {minimum_slicer_text()} or newer.
<ul>
<li>Choose the available sequences (the selectors fill themselves from volume names such as "_flair",
"T1ce", "t2w"; a selector you set, even to "not available", keeps your choice), a model and a device, then
press <b>Segment</b>. Press <b>Cancel</b> to stop.</li>
<li>Result: a segmentation with the BraTS labels <b>NCR</b> = 1 (necrotic / non-enhancing tumour core),
<b>ED</b> = 2 (peritumoral edema) and <b>ET</b> = 4 (enhancing tumour); exporting it to a labelmap keeps
these values. Evaluated regions: whole tumour WT = {{1, 2, 4}}, tumour core TC = {{1, 4}}, enhancing tumour
ET = {{4}}. Choose an existing segmentation as output to replace its segments (and reuse its synthesized
volumes) instead of creating a new one.</li>
<li>Synthesized sequences are added as volumes named like "T2 (synthesized)". They are model output, not
measurements.</li>
<li>Inputs on different grids (for example a 3 mm FLAIR and a 1 mm T1ce) are resampled onto the output grid
(by default the finest among the inputs); a volume under a linear transform is resampled through it. The
status area says so.</li>
<li>Scans straight from the scanner are prepared first (Options): <b>skull-strip when needed</b> (deepbet, a
Python package the module offers to install, on the inputs that still show the skull) and <b>co-register when
needed</b> (rigid, onto the output grid's sequence, for inputs that moved). The status area says what was
found and done, and how long each step took. The brain mask the model was given is added as a hidden label
map volume ("... brain mask"): show it to check it.</li>
</ul>
<b>The shipped demo model was trained on synthetic data only. It is not for clinical use.</b>
Train your own model with <code>python -m AllStageTraining train</code> and add its exported bundle.
"""

ACKNOWLEDGEMENT_TEXT = """
Method: "Dealing with All-stage Missing Modality: Towards A Universal Model with Robust Reconstruction and
Personalization" (Zhao et al., arXiv 2406.01987), implemented with MONAI and PyTorch. The module's structure
follows lassoan/SlicerMONAIAuto3DSeg and lassoan/SlicerTotalSegmentator.
"""

DEVICES = (("auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda"))
REFERENCES = (("Finest grid among the inputs", "auto"),) + tuple((MODALITY_DISPLAY[m], m) for m in MODALITIES)
CONTRIBUTORS = ["AllStageSeg maintainers (AllStageSeg project)"]


#
# Module
#


class AllStageSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AllStageSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = CONTRIBUTORS
        self.parent.helpText = HELP_TEXT
        self.parent.acknowledgementText = ACKNOWLEDGEMENT_TEXT
        slicer.app.connect("startupCompleted()", registerSampleData)


def sampleCaseFiles():
    """{sequence: path} of the synthetic sample case shipped in Resources/SampleData (those that exist)."""
    folder = resource_path(SAMPLE_DATA_DIR)
    return {m: folder / name for m, name in SAMPLE_CASE_FILES.items() if (folder / name).is_file()}


def registerSampleData():
    """Add the synthetic sample case (four sequences of one SynthBraTS case) to the Sample Data module."""
    import SampleData

    files = sampleCaseFiles()
    if not files:
        logging.info("AllStageSeg: no sample case in %s; nothing registered with Sample Data",
                     resource_path(SAMPLE_DATA_DIR))
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="AllStageSeg",
        sampleName="SynthBraTS_001",
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "AllStageSeg.png"),
        uris=[path.as_uri() for path in files.values()],
        fileNames=[path.name for path in files.values()],
        nodeNames=[f"SynthBraTS_001_{m}" for m in files],
        checksums=None,
        loadFileType="VolumeFile",
    )


#
# Parameter node
#


@parameterNodeWrapper
class AllStageSegParameterNode:
    """The module's state; saved with the scene. ``model`` is "demo" or a bundle path."""

    flairVolume: vtkMRMLScalarVolumeNode
    t1ceVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    reference: Annotated[str, Choice(["auto", "flair", "t1ce", "t1", "t2"])] = "auto"
    model: str = models.DEMO
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    showSynthesized: bool = True
    postprocessEt: bool = False
    skullStrip: bool = True  # brain extraction when an input is not skull-stripped
    coRegister: bool = True  # rigid co-registration of inputs that are not aligned with the reference


#
# Widget
#


class AllStageSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runInputs = {}
        self._dependenciesChecked = False
        self._brainExtractionOffered = False
        self._models = models.ModelList()
        self._shownModel = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._onTimer)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AllStageSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AllStageSegLogic()

        for combo, items in ((self.ui.deviceComboBox, DEVICES), (self.ui.referenceComboBox, REFERENCES)):
            for text, value in items:
                combo.addItem(text, value)
        self._models = models.ModelList.from_setting(qt.QSettings().value(models.SETTINGS_KEY, ""))
        self._fillModelComboBox()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)

        self.ui.modelComboBox.currentIndexChanged.connect(self._onModelChanged)
        self.ui.addModelButton.clicked.connect(self._onAddModel)
        self.ui.removeModelButton.clicked.connect(self._onRemoveModel)
        self.ui.deviceComboBox.currentIndexChanged.connect(self._onDeviceChanged)
        self.ui.referenceComboBox.currentIndexChanged.connect(self._onReferenceChanged)
        self.ui.autoFillButton.clicked.connect(lambda: self.fillInputsFromNames(alsoCleared=True))
        self.ui.applyButton.clicked.connect(self.onApplyButton)

        self.initializeParameterNode()

    def cleanup(self):
        self._timer.stop()
        if self._run is not None:
            self._run.cancel()
            self._run.poll()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.fillInputsFromNames()

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._shownModel = None
        self._onParameterNodeModified()

    # --- inputs (the fill-or-keep rule is AllStageSegLib.input_choices)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node):
        if isinstance(node, vtkMRMLScalarVolumeNode) and not node.IsA("vtkMRMLLabelMapVolumeNode"):
            # the name is set after the node is added: look once the scene is idle
            qt.QTimer.singleShot(0, self.fillInputsFromNames)

    def fillInputsFromNames(self, alsoCleared=False):
        """Put volumes into the empty input selectors by their names, never over the user's choice."""
        if not self._parameterNode or self._run is not None:
            return

        def apply(chosen):
            for modality, nodeId in chosen.items():
                setattr(self._parameterNode, f"{modality}Volume", slicer.mrmlScene.GetNodeByID(nodeId))

        InputChoices(self._parameterNode.parameterNode).fill(candidate_volumes(slicer.mrmlScene), self._inputIds(),
                                                            apply, also_cleared=alsoCleared)

    def _inputNodes(self):
        if not self._parameterNode:
            return {m: None for m in MODALITIES}
        return {m: getattr(self._parameterNode, f"{m}Volume") for m in MODALITIES}

    def _inputIds(self):
        return {m: node.GetID() if node else None for m, node in self._inputNodes().items()}

    # --- model, device and output grid (their combo boxes hold display texts, so they are synced by hand)

    def _bundlePath(self):
        if not self._parameterNode:
            return None
        return models.bundle_path(self._parameterNode.model, self.logic.demoBundlePath())

    def _fillModelComboBox(self):
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for text, key in self._models.entries():
            self.ui.modelComboBox.addItem(text, key)
        self.ui.modelComboBox.blockSignals(wasBlocked)

    def _saveModels(self):
        qt.QSettings().setValue(models.SETTINGS_KEY, self._models.to_setting())
        self._fillModelComboBox()

    def _onAddModel(self):
        path = qt.QFileDialog.getOpenFileName(self.parent, "Add a model bundle", "",
                                              "Model bundles (*.zip);;All files (*)")
        if not path:
            return
        info = models.bundle_info(path)
        if info.error:
            slicer.util.errorDisplay(f"Cannot add this model: {info.error}")
            return
        stored = self._models.add(path)
        self._saveModels()
        if self._parameterNode:
            self._parameterNode.model = str(stored)

    def _onRemoveModel(self):
        if self._parameterNode and self._parameterNode.model != models.DEMO:
            self._models.remove(self._parameterNode.model)
            self._saveModels()
            self._parameterNode.model = models.DEMO

    def _onModelChanged(self, index):
        if self._parameterNode:
            self._parameterNode.model = self.ui.modelComboBox.itemData(index)

    def _onDeviceChanged(self, index):
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceComboBox.itemData(index)

    def _onReferenceChanged(self, index):
        if self._parameterNode:
            self._parameterNode.reference = self.ui.referenceComboBox.itemData(index)

    def _showModel(self):
        """The chosen model's metadata in the model section, its warnings in the status area."""
        self._shownModel = self._parameterNode.model if self._parameterNode else None
        path = self._bundlePath()
        info = models.bundle_info(path) if path else None
        self.ui.modelInfoLabel.text = "\n".join(info.lines()) if info else ""
        if info and self._run is None:
            self.ui.statusLabel.text = status_text(slicer_version_blocker(*self.logic.slicerVersion()) or
                                                   f"Model: {path.name}", warnings=info.warnings)

    def _onParameterNodeModified(self, caller=None, event=None):
        if self._parameterNode:
            InputChoices(self._parameterNode.parameterNode).observe(self._inputIds())
            model = self._parameterNode.model
            if model != models.DEMO and self.ui.modelComboBox.findData(model) < 0:  # e.g. from a loaded scene
                self._models.add(model)
                self._saveModels()
            for combo, value in ((self.ui.modelComboBox, model), (self.ui.deviceComboBox, self._parameterNode.device),
                                 (self.ui.referenceComboBox, self._parameterNode.reference)):
                wasBlocked = combo.blockSignals(True)
                combo.setCurrentIndex(max(combo.findData(value), 0))
                combo.blockSignals(wasBlocked)
            self.ui.removeModelButton.enabled = model != models.DEMO
            if model != self._shownModel:
                self._showModel()
        self._updateApplyButton()

    def _updateApplyButton(self):
        if self._run is not None:
            self.ui.applyButton.text = "Cancel"
            self.ui.applyButton.toolTip = "Stop the segmentation; nothing is added to the scene."
            self.ui.applyButton.enabled = True
            return
        self.ui.applyButton.text = "Segment"
        reference = self._parameterNode.reference if self._parameterNode else None
        blocker = segment_blocker(self._inputIds(), self._bundlePath(), reference=reference)
        self.ui.applyButton.enabled = not blocker
        self.ui.applyButton.toolTip = blocker or SEGMENT_TOOLTIP

    # --- running

    def onApplyButton(self):
        if self._run is not None:
            self.ui.statusLabel.text = "Cancelling..."
            self._run.cancel()
            return
        tooOld = slicer_version_blocker(*self.logic.slicerVersion())
        if tooOld:  # before any work: this Slicer could not load the results
            self.ui.statusLabel.text = tooOld
            slicer.util.errorDisplay(tooOld)
            return
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        self._runInputs = {m: node for m, node in self._inputNodes().items() if node}
        try:
            self._run = self.logic.startSegmentation(
                self._runInputs, self._bundlePath(), device=p.device, postprocessEt=p.postprocessEt,
                showSynthesized=p.showSynthesized, reference=p.reference, output=p.outputSegmentation,
                skullStrip=p.skullStrip, coRegister=p.coRegister)
        except Exception as error:
            self.ui.statusLabel.text = f"Not started: {error}"
            slicer.util.errorDisplay(f"Cannot start the segmentation: {error}")
            return
        self.ui.logTextEdit.clear()
        self.ui.logTextEdit.appendPlainText(" ".join(self._run.process.command))
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = status_text("Starting...", self._run.notes)
        self._updateApplyButton()
        self._timer.start()

    def _onTimer(self):
        update = self._run.poll()
        for line in update.new_log:
            self.ui.logTextEdit.appendPlainText(line)
        self.ui.progressBar.value = int(round(100 * update.fraction))
        self.ui.progressBar.format = f"{update.stage} (%p%)" if update.stage else "%p%"
        if update.state == RUNNING:
            self.ui.statusLabel.text = status_text(update.stage.capitalize() + "...", self._run.notes,
                                                   self._run.warnings)
            return
        self._timer.stop()
        run, self._run = self._run, None
        if update.state == SUCCEEDED:
            result = run.result
            self.ui.statusLabel.text = status_text(f"Done in {result.seconds:.1f} s.", result.notes, result.warnings)
            self.logic.showResults(result, self._runInputs)
            if self._parameterNode:
                self._parameterNode.outputSegmentation = result.segmentation  # a re-run replaces it
        elif update.state == CANCELLED:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Cancelled."
        else:
            self.ui.statusLabel.text = f"Failed: {update.message}"
            slicer.util.errorDisplay(f"Segmentation failed: {update.message}", detailedText="\n".join(run.log))
        self._updateApplyButton()

    def _ensureDependencies(self):
        """On the first Segment: check the packages predict needs (and their versions); offer to install. Then,
        with skull-stripping on, offer brain extraction's package once (declining still segments)."""
        if not self._ensureRequired():
            return False
        if self._parameterNode and self._parameterNode.skullStrip and not self._brainExtractionOffered:
            self._brainExtractionOffered = True
            found = dependencies.problems(dependencies.BRAIN_EXTRACTION)
            plan = dependencies.install_plan(found, pytorch_utils_available=False)
            if found and slicer.util.confirmYesNoDisplay(plan.describe_optional(), "AllStageSeg: brain extraction"):
                failed = self._install(plan, plan.pip_requirements)
                if failed:
                    slicer.util.errorDisplay(f"Installation failed: {failed}. Scans must be skull-stripped.")
        return True

    def _ensureRequired(self):
        if self._dependenciesChecked:
            return True
        found = dependencies.problems()
        if found:
            plan = dependencies.install_plan(found, pytorch_utils_available=self.logic.pytorchUtilsAvailable())
            if not slicer.util.confirmOkCancelDisplay(plan.describe(), "AllStageSeg: Python packages needed"):
                self.ui.statusLabel.text = "Not started: " + dependencies.describe_problems(found) + "."
                return False
            failed = self._install(plan, [p.requirement for p in found])
            if failed:
                slicer.util.errorDisplay(f"Installation failed: {failed}")
                return False
            still = dependencies.problems()
            if still:
                slicer.util.errorDisplay("Still not usable after installation: " +
                                         dependencies.describe_problems(still) + ". Restart Slicer and try again.")
                return False
        self._dependenciesChecked = True
        return True

    def _install(self, plan, requirements):
        """Install what ``plan`` lists behind a wait cursor; returns the error's message, or "" on success."""
        try:
            with slicer.util.WaitCursor():
                self.ui.statusLabel.text = "Installing " + ", ".join(requirements) + "..."
                slicer.app.processEvents()
                self.logic.installDependencies(plan)
        except Exception as error:
            return str(error)
        return ""


#
# Logic
#


class AllStageSegLogic(ScriptedLoadableModuleLogic):
    """Runs ``predict`` on MRML volumes. Usable from the Python console::

        logic = slicer.util.getModuleLogic("AllStageSeg")
        result = logic.process({"flair": getNode("case_flair"), "t1": getNode("case_t1")})
        result.segmentation, result.synthesized["t2"]
    """

    def getParameterNode(self):
        return AllStageSegParameterNode(super().getParameterNode())

    @staticmethod
    def demoBundlePath():
        return resource_path(DEMO_BUNDLE)

    @staticmethod
    def slicerVersion():
        return slicer.app.majorVersion, slicer.app.minorVersion

    @staticmethod
    def pythonExecutable():
        """Slicer's standalone Python (PythonSlicer), which shares the application's packages."""
        found = shutil.which("PythonSlicer")
        if found:
            return found
        for folder in (Path(sys.executable).parent, Path(slicer.app.slicerHome) / "bin"):
            for name in ("PythonSlicer", "PythonSlicer.exe"):
                if (folder / name).is_file():
                    return str(folder / name)
        return sys.executable

    @staticmethod
    def pytorchUtilsAvailable():
        return hasattr(slicer.modules, "pytorchutils") or importlib.util.find_spec("PyTorchUtils") is not None

    @staticmethod
    def installDependencies(plan):
        """Install or upgrade what ``plan`` (AllStageSegLib.dependencies.InstallPlan) lists; the caller has
        asked the user. torch goes through the PyTorch extension with the version requirement."""
        if plan.torch_requirement:
            import PyTorchUtils

            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=plan.torch_version_requirement)
            if torch is None:
                raise RuntimeError(f"PyTorch ({plan.torch_requirement}) could not be installed; see the PyTorch "
                                   f"Utils module")
        if plan.pip_requirements:
            slicer.util.pip_install(plan.pip_requirements)
        importlib.invalidate_caches()

    def startSegmentation(self, inputs, bundle=None, device="auto", postprocessEt=False, showSynthesized=True,
                          reference=None, output=None, skullStrip=True, coRegister=True):
        """Start a background run and return it (AllStageSegLib.segmentation_run.SegmentationRun).

        ``inputs``: {sequence: volume node or node ID/name}; sequences are "flair", "t1ce", "t1", "t2".
        ``bundle``: a model bundle path; default the shipped demo model. ``reference``: the sequence whose
        grid the outputs take (default: the finest input). ``output``: a segmentation node to replace
        (default: a new one). ``skullStrip``, ``coRegister``: brain extraction and co-registration of the
        inputs that need them (else never). Raises RuntimeError, before any work, when this Slicer or its
        Python packages cannot run the segmentation.
        """
        blocker = run_blocker(self.slicerVersion(), dependencies.problems())
        if blocker:
            raise RuntimeError(blocker)
        nodes = {m: slicer.util.getNode(v) if isinstance(v, str) else v for m, v in inputs.items() if v}
        unknown = set(nodes) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown sequence names {sorted(unknown)}; use {', '.join(MODALITIES)}")
        return SegmentationRun(slicer.mrmlScene, nodes, bundle or self.demoBundlePath(), device=device,
                               postprocess_et=postprocessEt, synthesize=showSynthesized, reference=reference,
                               output=output, python_executable=self.pythonExecutable(), skull_strip=skullStrip,
                               co_register=coRegister).start()

    def process(self, inputs, bundle=None, device="auto", postprocessEt=False, showSynthesized=True,
                reference=None, output=None, waitForCompletion=True, timeout=None, skullStrip=True, coRegister=True):
        """Segment ``inputs`` (see :meth:`startSegmentation`).

        With ``waitForCompletion`` (default) returns the RunResult (``.segmentation``, ``.synthesized``,
        ``.brain_mask``, ``.notes``, ``.warnings``) or raises RuntimeError with predict's message; without it,
        returns the running SegmentationRun: call its ``poll()`` until ``state`` is not "running", or ``cancel()``.
        """
        run = self.startSegmentation(inputs, bundle, device, postprocessEt, showSynthesized, reference, output,
                                     skullStrip, coRegister)
        if not waitForCompletion:
            return run
        update = run.wait(timeout=timeout, on_update=lambda u: slicer.app.processEvents())
        if update.state != SUCCEEDED:
            raise RuntimeError(f"AllStageSeg: {update.message}")
        for line in run.result.notes + run.result.warnings:
            logging.info("AllStageSeg: %s", line)
        return run.result

    @staticmethod
    def showResults(result, inputs):
        """Reference sequence in the background, first synthesized sequence in the foreground, segments on top."""
        reference = inputs[result.reference]
        synthesized = next(iter(result.synthesized.values()), None)
        slicer.util.setSliceViewerLayers(background=reference, foreground=synthesized,
                                         foregroundOpacity=0.5 if synthesized else 0.0, fit=True)
        displayNode = result.segmentation.GetDisplayNode()
        if displayNode:
            displayNode.SetVisibility(True)
        result.segmentation.CreateClosedSurfaceRepresentation()


#
# Test
#


class AllStageSegTest(ScriptedLoadableModuleTest):
    """Self-test for a real Slicer: segments the shipped sample case from FLAIR and T1 with the demo model,
    where this Slicer can (release, torch and the other packages, the sample case); else says why and skips."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentSampleCaseFromTwoSequences()

    def test_SegmentSampleCaseFromTwoSequences(self):
        files = sampleCaseFiles()
        demo = AllStageSegLogic.demoBundlePath()
        reason = self_test_skip_reason(AllStageSegLogic.slicerVersion(), dependencies.problems(), files, demo)
        if reason:
            logging.warning("AllStageSeg self-test: %s", reason)
            self.delayDisplay(reason)
            return
        self.delayDisplay("Segmenting the sample case from FLAIR and T1")
        inputs = {m: slicer.util.loadVolume(str(files[m])) for m in ("flair", "t1")}
        result = AllStageSegLogic().process(inputs, demo, device="cpu", timeout=600)

        segmentation = result.segmentation.GetSegmentation()
        names = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i).GetLabelValue()
                 for i in range(segmentation.GetNumberOfSegments())}
        self.assertEqual(names, {"NCR": 1, "ED": 2, "ET": 4})
        self.assertEqual(sorted(result.synthesized), ["t1ce", "t2"])
        for modality, node in result.synthesized.items():
            self.assertEqual(node.GetName(), f"{MODALITY_DISPLAY[modality]} (synthesized)")
            self.assertEqual(node.GetImageData().GetDimensions(), inputs["flair"].GetImageData().GetDimensions())
        self.assertTrue(any("not for clinical use" in w for w in result.warnings), result.warnings)
        labelmap = mrml_io.export_labelmap(slicer.mrmlScene, result.segmentation, inputs["flair"])
        values = set(slicer.util.arrayFromVolume(labelmap).ravel().tolist())
        self.assertTrue(values <= {0, 1, 2, 4}, values)
        self.delayDisplay("Test passed")
