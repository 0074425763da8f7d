"""How much time the module's glue adds around ``predict`` on a BraTS-sized case.

Run from the AllStageSeg folder: ``python -m AllStageSegLib.glue_overhead`` prints the seconds of each step
for two inputs and for four (``Testing/mrml/test_mrml_glue.py`` runs it on a small case).

Measures, on a real MRML scene: writing the present input volumes to NIfTI, starting a background Python
process until its first output line arrives (the interpreter only; the model's own start-up belongs to
``predict``), and loading a label map plus the synthesized sequences back as segmentation and volume nodes.
Needs the slicer-core wheel (the ``mrml`` extra).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from AllStageTraining.constants import MODALITIES

from . import mrml_io
from .predict_process import PredictProcess

BRATS_SHAPE = (155, 240, 240)  # (z, y, x), 1 mm


def _write_case(folder: Path, shape, present, seed: int = 0) -> dict[str, Path]:
    """Synthetic NIfTI files: the present inputs, a label map and a reconstruction per missing sequence."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    radius = ((z - shape[0] / 2) / (shape[0] / 2.4)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 2.4)) ** 2 \
        + ((x - shape[2] / 2) / (shape[2] / 2.6)) ** 2
    brain = radius < 1

    def save(array, name):
        path = folder / name
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))  # 1 mm voxels, like BraTS
        return path

    files = {}
    for modality in MODALITIES:
        array = (brain * rng.normal(500, 80, shape)).astype(np.float32)
        files[modality] = save(array, f"{modality}.nii.gz" if modality not in present else f"in_{modality}.nii.gz")
    labels = np.zeros(shape, np.uint8)
    labels[radius < 0.2] = 2
    labels[radius < 0.08] = 1
    labels[radius < 0.03] = 4
    files["labels"] = save(labels, "segmentation.nii")
    return files


def measure_glue_overhead(shape=BRATS_SHAPE, present=("flair", "t1"), python_executable=sys.executable,
                          repeats: int = 1) -> dict[str, float]:
    """Seconds spent in the glue for one Segment on a ``shape`` case with ``present`` sequences (best of
    ``repeats``): ``write_inputs_s``, ``start_process_s``, ``load_outputs_s`` and their ``total_s``."""
    best: dict[str, float] = {}
    folder = Path(tempfile.mkdtemp(prefix="AllStageSeg-glue-"))
    try:
        files = _write_case(folder, shape, present)
        for attempt in range(repeats):
            scene = mrml_io.headless_scene()
            inputs = {m: mrml_io.read_volume(scene, files[m], m) for m in present}
            times = {}

            tick = time.perf_counter()
            mrml_io.write_inputs(inputs, folder / f"written{attempt}")
            times["write_inputs_s"] = time.perf_counter() - tick

            tick = time.perf_counter()
            process = PredictProcess([str(python_executable), "-c", "print('PROGRESS 0.0 starting', flush=True)"])
            process.start()
            while process.poll().fraction == 0.0 and not process.log:
                time.sleep(0.001)
            times["start_process_s"] = time.perf_counter() - tick
            process.wait(timeout=60)

            tick = time.perf_counter()
            reference = inputs[present[0]]
            mrml_io.load_segmentation(scene, files["labels"], reference, "tumour")
            mrml_io.load_synthesized(scene, {m: files[m] for m in MODALITIES if m not in present}, reference)
            times["load_outputs_s"] = time.perf_counter() - tick
            times["total_s"] = sum(times.values())
            scene.Clear(True)
            if not best or times["total_s"] < best["total_s"]:
                best = times
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return best


def main() -> int:
    print("| present sequences | write inputs (s) | start process (s) | load outputs (s) | total (s) |")
    print("|---|---:|---:|---:|---:|")
    for present in (("flair", "t1"), tuple(MODALITIES)):
        t = measure_glue_overhead(present=present, repeats=2)
        print(f"| {' + '.join(present)} | {t['write_inputs_s']:.2f} | {t['start_process_s']:.2f} | "
              f"{t['load_outputs_s']:.2f} | {t['total_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
