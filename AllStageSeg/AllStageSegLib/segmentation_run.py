"""One Segment press, start to finish: write inputs, run ``predict`` in the background, load its outputs.

No Qt: the widget calls :meth:`SegmentationRun.poll` from a timer; scripts and tests call :meth:`wait`.
Nothing is added to the scene until ``predict`` has succeeded, and a failure while loading removes what
was added, so a cancelled or failed run leaves no half-made nodes. The temporary folder is always removed.

``predict`` prepares scans that are not BraTS-ready (skull-stripping and co-registration when needed, each
an option); what it did (resampled, co-registered, the brain mask it made) and the seconds of each step
become the run's notes, its warnings the run's warnings, and the brain mask it gave the model a hidden
label map volume beside the inputs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from AllStageTraining.constants import MODALITIES

from . import mrml_io
from .geometry import choose_reference, geometry_notes
from .predict_process import (CANCELLED, FAILED, RUNNING, SUCCEEDED, PredictOptions, PredictProcess,
                              ProgressUpdate, child_environment, predict_command, wait_until_finished)
from .readiness import segment_blocker


@dataclass
class RunResult:
    """The nodes a successful run added to the scene."""

    segmentation: object  # vtkMRMLSegmentationNode with segments NCR, ED, ET
    synthesized: dict  # sequence -> vtkMRMLScalarVolumeNode, for each sequence that was not given
    reference: str  # the sequence whose geometry the outputs share
    seconds: float  # wall time of the whole run
    notes: list[str] = field(default_factory=list)  # what was done to the inputs (resampling, registration, ...)
    warnings: list[str] = field(default_factory=list)  # predict's warnings and notes (the bundle's, ...)
    brain_mask: object = None  # vtkMRMLLabelMapVolumeNode (1 = brain), hidden: what the model was told is brain


#: ``predict`` LOG lines that say what was done to the inputs, how the networks ran (device and precision:
#: ``scenario ...; device cpu, bfloat16, channels-last``) and the seconds of each step (matched in lower case
#: anywhere in the line): they go to the status area as notes.
NOTE_MARKERS = ("resampl", "co-registered", "brain mask:", "timings (s):", "; device ")


def is_note(line: str) -> bool:
    """True for a ``predict`` log line that the status area shows as a note (see NOTE_MARKERS)."""
    lowered = line.lower()
    return not lowered.startswith("warning") and any(marker in lowered for marker in NOTE_MARKERS)


class SegmentationRun:
    """Segment the inputs (sequence -> volume node, None = absent) with a model bundle, in the background.

    ``reference``: the sequence whose grid the outputs take (None or "auto": the finest among the inputs).
    ``output``: an existing segmentation node whose segments the result replaces (None: a new node); the
    synthesized volumes and brain mask linked to it by an earlier run are reused.
    ``skull_strip``, ``co_register``: the module's two options: brain extraction and co-registration of the
    inputs that need them (``predict --skull-strip auto``, ``--register auto``), or never (``never``).
    """

    def __init__(self, scene, inputs: dict, bundle: str | Path, *, device: str = "auto",
                 postprocess_et: bool = False, synthesize: bool = True, reference: str | None = None,
                 output=None, python_executable: str | Path = sys.executable, name: str | None = None,
                 skull_strip: bool = True, co_register: bool = True):
        self.scene = scene
        self.inputs = {m: inputs[m] for m in MODALITIES if inputs.get(m) is not None}
        blocker = segment_blocker({m: node.GetID() for m, node in self.inputs.items()}, bundle)
        if blocker:
            raise ValueError(blocker)
        self.reference = choose_reference(self.inputs, reference)
        self.notes = geometry_notes(self.inputs, self.reference)  # also refuses transforms it cannot follow
        self.bundle = Path(bundle)
        self.device = device
        self.postprocess_et = postprocess_et
        self.synthesize = synthesize
        self.skull_strip = "auto" if skull_strip else "never"
        self.register = "auto" if co_register else "never"
        self.output = output
        self.python_executable = python_executable
        self.name = name or f"{self.inputs[self.reference].GetName()} tumour"
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self.result: RunResult | None = None
        self.error = ""
        self.process: PredictProcess | None = None
        self._folder: Path | None = None
        self._started = 0.0

    def start(self) -> "SegmentationRun":
        """Write the inputs to a temporary folder and start ``predict``; returns at once."""
        self._started = time.perf_counter()
        self._folder = Path(tempfile.mkdtemp(prefix="AllStageSeg-"))
        try:
            files = mrml_io.write_inputs(self.inputs, self._folder / "inputs", self.reference)
            self.timings["write_inputs_s"] = time.perf_counter() - self._started
            options = PredictOptions(
                inputs=files, bundle=self.bundle, out_seg=self._folder / "segmentation.nii",
                out_recon_dir=self._folder / "synthesized" if self.synthesize else None, device=self.device,
                postprocess_et=self.postprocess_et,
                reference=self.reference if self.reference != next(iter(self.inputs)) else None,
                skull_strip=self.skull_strip, register=self.register, out_brain_mask=self._folder / "brain_mask.nii")
            tick = time.perf_counter()
            self.process = PredictProcess(predict_command(options, self.python_executable),
                                          child_environment()).start()
            self.timings["start_process_s"] = time.perf_counter() - tick
        except Exception:
            self._cleanup()
            raise
        return self

    @property
    def state(self) -> str:
        if self.result is not None:
            return SUCCEEDED
        if self.error:
            return FAILED
        return self.process.state if self.process else RUNNING

    def poll(self) -> ProgressUpdate:
        """Progress since the last call; loads the outputs into the scene once ``predict`` has succeeded."""
        update = self.process.poll()
        self.notes += [line.strip() for line in update.new_log if is_note(line)]
        self.warnings += [line.strip() for line in update.new_log if line.lower().startswith(("warning", "note:"))]
        if update.state == SUCCEEDED and self.result is None and not self.error:
            try:
                self._load_outputs()
                update.message = f"done in {self.result.seconds:.1f} s"
            except Exception as exc:  # a broken output file: report it, keep the scene clean
                self.error = f"cannot load the results: {exc}"
                update.state, update.message = FAILED, self.error
            finally:
                self._cleanup()
        elif update.state in (FAILED, CANCELLED):
            self.error = update.message if update.state == FAILED else "cancelled"
            self._cleanup()
        return update

    def _load_outputs(self) -> None:
        tick = time.perf_counter()
        reference_node = self.inputs[self.reference]
        files = {m: self._folder / "synthesized" / f"{m}.nii.gz" for m in MODALITIES if m not in self.inputs} \
            if self.synthesize else {}
        lost = [p.name for p in files.values() if not p.is_file()]
        if lost:
            raise OSError(f"predict wrote no synthesized {', '.join(lost)}")
        reuse = mrml_io.linked_synthesized(self.output)
        segmentation = mrml_io.load_segmentation(self.scene, self._folder / "segmentation.nii", reference_node,
                                                 self.scene.GenerateUniqueName(self.name))
        brain_mask = None
        try:  # everything read first: a failure must leave a chosen output and its linked volumes untouched
            brain_mask = mrml_io.read_brain_mask(self.scene, self._folder / "brain_mask.nii",
                                                 f"{reference_node.GetName()} brain mask")
            synthesized = mrml_io.load_synthesized(self.scene, files, reference_node,
                                                   {m: reuse[m] for m in files if m in reuse})
        except Exception:
            mrml_io.remove_node(self.scene, segmentation)
            mrml_io.remove_node(self.scene, brain_mask)
            raise
        previous_mask = mrml_io.linked_brain_mask(self.output)
        if self.output is not None:
            segmentation = mrml_io.replace_segments(self.scene, self.output, segmentation, reference_node)
        mrml_io.link_synthesized(segmentation, synthesized)
        brain_mask = mrml_io.show_brain_mask(self.scene, brain_mask, segmentation, reference_node, previous_mask)
        segmentation.SetAttribute(mrml_io.INPUTS_ATTRIBUTE, ",".join(self.inputs))
        self.timings["load_outputs_s"] = time.perf_counter() - tick
        self.result = RunResult(segmentation, synthesized, self.reference, time.perf_counter() - self._started,
                                list(self.notes), list(self.warnings), brain_mask)

    def cancel(self) -> None:
        """End the process tree; the next :meth:`poll` reports ``cancelled`` and removes the temporary folder."""
        if self.process is not None:
            self.process.cancel()

    def wait(self, timeout: float | None = None, interval: float = 0.05, on_update=None) -> ProgressUpdate:
        """Poll until the run ends; raises TimeoutError (after cancelling) when ``timeout`` seconds pass."""
        return wait_until_finished(self, "segmentation", timeout, interval, on_update)

    @property
    def log(self) -> list[str]:
        return self.process.log if self.process else []

    def _cleanup(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
