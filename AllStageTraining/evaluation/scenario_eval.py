"""Evaluate a predictor on every test case of a split in each of the 15 availability scenarios.

For every test case (all four sequences on disk) and every scenario, the predictor sees only that scenario's
sequences (the others are ``None``), its label map is written to ``out_dir/pred/<case_id>/<short>.nii.gz``
(the layout ``evaluate --pred`` reads) and scored against the case's ground truth with and without the ET
post-processing. The table files (``table.csv``, ``table_summary.csv``, ``table.md``, ``summary.json``,
``heatmap.png``) go to ``out_dir``.

Resumable: a prediction file that already exists is read and scored, never recomputed; files are written
under a temporary name and renamed, so an interrupted run leaves no half-written prediction behind.
Each case's images are read from disk once and handed to the predictor as SimpleITK images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from AllStageTraining.constants import SCENARIOS, Scenario
from AllStageTraining.evaluation.tables import ScenarioTable
from AllStageTraining.fileio import write_image_atomically

#: Progress callback: (fraction done in [0, 1], short description of the current item).
ProgressFn = Callable[[float, str], None]


def prediction_path(out_dir: str | Path, case_id: str, scenario: Scenario) -> Path:
    """Where the label map of ``case_id`` predicted in ``scenario`` lives: ``out_dir/pred/<case>/<short>.nii.gz``."""
    return Path(out_dir) / "pred" / case_id / f"{scenario.short}.nii.gz"


def _on_grid_of(image, reference):
    """``image`` (a label map) on ``reference``'s grid: unchanged when the geometry matches, else resampled."""
    import SimpleITK as sitk

    same = (
        image.GetSize() == reference.GetSize()
        and np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
        and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
        and np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-4)
    )
    if same:
        return image
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())


class _Predictions:
    """Label maps of (case, scenario): read back when written earlier, else predicted (from only that
    scenario's sequences) and written; counts both. A case's images are read once, on its first prediction."""

    def __init__(self, predictor, out_dir: Path):
        self.predictor, self.out_dir = predictor, out_dir
        self.computed, self.reused, self.seconds = 0, 0, 0.0
        self._case_id: str | None = None
        self._images: dict = {}

    def labels(self, case, scenario: Scenario):
        import SimpleITK as sitk

        path = prediction_path(self.out_dir, case.case_id, scenario)
        if path.exists():
            self.reused += 1
            return sitk.ReadImage(str(path))
        if self._case_id != case.case_id:
            self._images = {m: sitk.ReadImage(str(p)) for m, p in case.images.items()}
            self._case_id = case.case_id
        inputs = {m: (image if m in scenario.modalities else None) for m, image in self._images.items()}
        start = time.perf_counter()
        labels = self.predictor.predict(inputs, postprocess=False).labels
        self.seconds += time.perf_counter() - start
        write_image_atomically(labels, path)
        self.computed += 1
        return labels

    def summary(self) -> dict:
        return {"predictions_computed": self.computed, "predictions_reused": self.reused,
                "seconds_per_prediction": round(self.seconds / self.computed, 3) if self.computed else None}


def _reporter(progress: ProgressFn | None, total: int, method: str | None) -> tuple[ProgressFn, Callable[[], None]]:
    """(report(fraction, what), close()): ``progress`` itself, or a tqdm bar when it is None."""
    if progress is not None:
        return progress, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"evaluating {method or 'predictor'}", unit="prediction", leave=False)

    def report(fraction: float, what: str) -> None:
        bar.update(1)
        bar.set_postfix_str(what)

    return report, bar.close


def evaluate_test_split(
    predictor,
    split: dict,
    out_dir: str | Path,
    *,
    scenarios: Iterable[Scenario] = SCENARIOS,
    postprocess: bool = True,
    progress: ProgressFn | None = None,
    data_root: str | Path | None = None,
    method: str | None = None,
) -> ScenarioTable:
    """Predict and score every (test case, scenario); write the predictions and the table files.

    predictor: an object with ``predict(images: dict[modality, sitk.Image | None], postprocess=False)``
        returning something with a ``labels`` SimpleITK image (``inference.Predictor``).
    split: a split dictionary (``data.splits``); its ``test`` cases are evaluated, found under ``data_root``
        (default: the split's ``data_root``).
    postprocess: also score the ET post-processed prediction (variant ``"postprocessed"``). The stored
        prediction files are always the raw ones.
    progress: called with (fraction, description) after each prediction; without it a tqdm bar is shown.
    method: a name recorded in the table and ``summary.json``.
    Returns the :class:`ScenarioTable` that was written.
    """
    import SimpleITK as sitk

    from AllStageTraining.data.labels import normalize_label_values
    from AllStageTraining.data.splits import cases_for_split
    from AllStageTraining.evaluation.metrics import score_prediction

    out_dir = Path(out_dir)
    scenarios = tuple(scenarios)
    cases = cases_for_split(split, "test", root=data_root)
    incomplete = [c.case_id for c in cases if not c.complete]
    if incomplete:
        raise ValueError(f"test case(s) without all four sequences and a label cannot be evaluated in every "
                         f"scenario: {', '.join(incomplete)}")
    total = len(cases) * len(scenarios)
    table, predictions = ScenarioTable(method), _Predictions(predictor, out_dir)
    report, close = _reporter(progress, total, method)
    for number, case in enumerate(cases):
        truth_image = sitk.ReadImage(str(case.label))
        truth = normalize_label_values(sitk.GetArrayFromImage(truth_image), case.case_id)
        spacing = truth_image.GetSpacing()[::-1]  # array (z, y, x) order
        for k, scenario in enumerate(scenarios):
            labels = _on_grid_of(predictions.labels(case, scenario), truth_image)
            pred = sitk.GetArrayFromImage(labels).astype(np.uint8, copy=False)
            table.add_variants(case.case_id, scenario.short,
                               score_prediction(pred, truth, spacing, postprocess=postprocess))
            report((number * len(scenarios) + k + 1) / total, f"{case.case_id} {scenario.short}")
    close()
    extra = {"test_cases": [c.case_id for c in cases], "scenarios": [s.short for s in scenarios],
             **predictions.summary()}
    table.write(out_dir, extra=extra)
    return table
