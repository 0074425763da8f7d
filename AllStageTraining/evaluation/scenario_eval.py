"""Evaluate a predictor on every test (or validation) case of a split in each of the 15 availability scenarios,
and the optional extra evaluations of the same cases.

For every scored case (all four sequences on disk) and every scenario, the predictor sees only that scenario's
sequences (the others are ``None``), its label map is written to ``out_dir/pred/<case_id>/<short>.nii.gz``
(the layout ``evaluate --pred`` reads) and scored against the case's ground truth with and without the ET
post-processing. The table files (``table.csv``, ``table_summary.csv``, ``table.md``, ``summary.json``,
``heatmap.png``) go to ``out_dir``; ``summary.json`` says which subset was scored.

Resumable: a prediction file that already exists is read and scored, never recomputed; files are written
under a temporary name and renamed, so an interrupted run leaves no half-written prediction behind.
Each case's images are read from disk once and handed to the predictor as SimpleITK images.

Extra evaluations (``layout.EvalFolder`` names their files), each on cases read from their files with
``data.preprocess.load_case`` exactly as ``predict`` reads them, with the predictor's networks, device and
precision:

- :func:`evaluate_synthesis` (methods with an MAE): BraSyn-style synthesis quality over every scored case and
  every incomplete scenario (``synthesis_quality``): ``synthesis.csv``, ``synthesis.md``;
- :func:`evaluate_prompts` (personalizing methods): the 15 x 15 prompt-sensitivity table of the first ``n``
  scored cases (``prompt_sensitivity``; 225 segmenter passes per case): ``prompts.csv``, ``prompts.md`` and
  ``prompts.json`` (the summary, written last).

Both keep the rows of the cases they have finished in a partial file, so an interrupted run computes only the
cases that are left.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from AllStageTraining.constants import SCENARIOS, Scenario, scenario_from_mask
from AllStageTraining.evaluation.tables import ScenarioTable
from AllStageTraining.fileio import atomic_write_csv, atomic_write_json, write_image_atomically
from AllStageTraining.layout import EvalFolder

#: Progress callback: (fraction done in [0, 1], short description of the current item).
ProgressFn = Callable[[float, str], None]
#: The split subsets that can be scored: the test cases, or the validation cases (tuning runs).
SUBSETS: tuple[str, ...] = ("test", "val")
SUBSET_NAMES: dict[str, str] = {"test": "test", "val": "validation"}
#: Fields of the extra evaluations' rows that hold text (every other field is a number).
TEXT_FIELDS: frozenset[str] = frozenset({"case_id", "scenario", "sequence", "given", "prompt"})


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
        labels = self.predictor.predict(inputs, postprocess=False, synthesize=False).labels
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


def scored_cases(split: dict, subset: str = "test", *, data_root: str | Path | None = None) -> list:
    """The CaseFiles of the split's ``subset`` ("test" or "val"), each with all four sequences and a label;
    ValueError naming the cases that lack some (they cannot be scored in every scenario)."""
    from AllStageTraining.data.splits import cases_for_split

    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r} to score; expected one of {SUBSETS}")
    cases = cases_for_split(split, subset, root=data_root)
    incomplete = [c.case_id for c in cases if not c.complete]
    if incomplete:
        raise ValueError(f"{SUBSET_NAMES[subset]} case(s) without all four sequences and a label cannot be evaluated "
                         f"in every scenario: {', '.join(incomplete)}")
    return cases


def evaluate_split(
    predictor,
    split: dict,
    out_dir: str | Path,
    *,
    subset: str = "test",
    scenarios: Iterable[Scenario] = SCENARIOS,
    postprocess: bool = True,
    progress: ProgressFn | None = None,
    data_root: str | Path | None = None,
    method: str | None = None,
) -> ScenarioTable:
    """Predict and score every (case of ``subset``, scenario); write the predictions and the table files.

    predictor: an object with ``predict(images: dict[modality, sitk.Image | None], postprocess=False)``
        returning something with a ``labels`` SimpleITK image (``inference.Predictor``).
    split: a split dictionary (``data.splits``); its ``subset`` cases ("test", or "val" for tuning runs) are
        evaluated, found under ``data_root`` (default: the split's ``data_root``).
    postprocess: also score the ET post-processed prediction (variant ``"postprocessed"``). The stored
        prediction files are always the raw ones.
    progress: called with (fraction, description) after each prediction; without it a tqdm bar is shown.
    method: a name recorded in the table and ``summary.json``.
    Returns the :class:`ScenarioTable` that was written.
    """
    import SimpleITK as sitk

    from AllStageTraining.data.labels import normalize_label_values
    from AllStageTraining.evaluation.metrics import score_prediction

    out_dir = Path(out_dir)
    scenarios = tuple(scenarios)
    cases = scored_cases(split, subset, data_root=data_root)
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
    extra = {"scored_subset": subset, "scored_cases": [c.case_id for c in cases],
             "scenarios": [s.short for s in scenarios], **predictions.summary()}
    table.write(out_dir, extra=extra)
    return table


def read_rows(path: str | Path) -> list[dict]:
    """The rows of an extra evaluation's CSV (``synthesis.csv``, ``prompts.csv``): text fields as written
    (:data:`TEXT_FIELDS`), every other field as a float."""
    import csv

    with Path(path).open(newline="") as handle:
        return [{k: (v if k in TEXT_FIELDS else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


def _rows_per_case(cases: list, partial: Path, fields, compute: Callable[[object], list[dict]],
                   log: Callable[[str], None]) -> list[dict]:
    """``compute(case_files)`` for every case, keeping the rows of finished cases in ``partial`` (a CSV): cases
    whose rows are there already are not computed again. Returns every row, in case order."""
    rows = read_rows(partial) if partial.is_file() else []
    done = {r["case_id"] for r in rows}
    for number, case in enumerate(cases, 1):
        if case.case_id in done:
            continue
        rows += compute(case)
        atomic_write_csv(partial, fields, rows)
        log(f"{case.case_id} done ({number}/{len(cases)})")
    order = {c.case_id: i for i, c in enumerate(cases)}
    return sorted(rows, key=lambda r: order[r["case_id"]])


def _load_as_predict_reads(case):
    """A scored case preprocessed from its files as ``predict`` reads them (float32; not the training cache)."""
    from AllStageTraining.data.preprocess import load_case

    return load_case(case.images, case.label, case_id=case.case_id)


class _MAEAsPredicted:
    """The predictor's MAE run as ``predict`` runs it: under the predictor's autocast, completions in float32."""

    def __init__(self, predictor):
        self.predictor = predictor

    def complete(self, image, available, *args):
        """``MultimodalMAE.complete(image, available (1, 4) bool, box, brain)`` in float32."""
        with self.predictor.autocast(scenario_from_mask(tuple(available[0].tolist()))):
            return self.predictor.mae.complete(image, available, *args).float()


def evaluate_synthesis(predictor, split: dict, out_dir: str | Path, *, subset: str = "test",
                       scenarios: Iterable[Scenario] = SCENARIOS, data_root: str | Path | None = None,
                       log: Callable[[str], None] = lambda line: None) -> dict:
    """Synthesis quality of the predictor's MAE on every scored case, in each incomplete scenario of
    ``scenarios`` (``synthesis.csv``, ``synthesis.md`` in ``out_dir``); returns the per-sequence summary
    (``synthesis_quality.summarize``)."""
    from AllStageTraining.data.dataset import ValidationCases
    from AllStageTraining.evaluation.synthesis_quality import FIELDS, case_synthesis_scores, write_synthesis_tables

    if predictor.mae is None:
        raise ValueError("the synthesis-quality evaluation needs a method with an MAE")
    folder = EvalFolder(Path(out_dir))
    folder.root.mkdir(parents=True, exist_ok=True)
    mae, scenarios = _MAEAsPredicted(predictor), tuple(scenarios)

    def compute(case) -> list[dict]:
        item = ValidationCases([_load_as_predict_reads(case)], multiple=predictor.divisor)[0]
        return case_synthesis_scores(mae, item, predictor.device, scenarios)

    rows = _rows_per_case(scored_cases(split, subset, data_root=data_root), folder.partial("synthesis"), FIELDS,
                          compute, log)
    summary = write_synthesis_tables(rows, folder.root)
    folder.partial("synthesis").unlink(missing_ok=True)
    return summary


def evaluate_prompts(predictor, split: dict, out_dir: str | Path, *, subset: str = "test", n_cases: int = 6,
                     scenarios: Iterable[Scenario] = SCENARIOS, data_root: str | Path | None = None,
                     log: Callable[[str], None] = lambda line: None) -> dict:
    """The prompt-sensitivity table (``scenarios`` given x ``scenarios`` as prompt: 15 x 15 by default) of the
    first ``n_cases`` scored cases (``prompts.csv``, ``prompts.md``, then ``prompts.json`` with the summary of
    ``prompt_sensitivity.write_prompt_tables`` and the cases); returns that summary."""
    from AllStageTraining.evaluation.prompt_sensitivity import FIELDS, case_prompt_table, write_prompt_tables

    if n_cases < 1:
        raise ValueError(f"the prompt-sensitivity table needs at least one case, not {n_cases}")
    folder, scenarios = EvalFolder(Path(out_dir)), tuple(scenarios)
    folder.root.mkdir(parents=True, exist_ok=True)
    cases = scored_cases(split, subset, data_root=data_root)[:n_cases]
    rows = _rows_per_case(cases, folder.partial("prompts"), FIELDS,
                          lambda case: case_prompt_table(predictor, _load_as_predict_reads(case), scenarios), log)
    summary = {**write_prompt_tables(rows, folder.root, completed=predictor.completes_inputs), "scored_subset": subset,
               "cases": [c.case_id for c in cases], "scenarios": [s.short for s in scenarios]}
    atomic_write_json(folder.prompts_summary, summary)
    folder.partial("prompts").unlink(missing_ok=True)
    return summary
