"""``evaluate``: score predictions laid out per case and scenario against ground truth (15 x 3 table).

Predictions: ``PRED/<case_id>/<scenario short>.nii.gz`` (or ``.nii``), e.g. ``pred/BraTS20_001/FC12.nii.gz``,
label maps with BraTS values {0,1,2,4} (or {0,1,2,3}, BraTS 2023), each on the grid of its case's ground-truth
label. Truth: any data folder that ``find_cases`` understands; cases without a label are not scored. Any
method's predictions can be scored this way. Writes ``table.csv`` (per case), ``table_summary.csv``,
``table.md``, ``summary.json`` and ``heatmap.png`` into ``--out`` and prints the Markdown table.
Exit codes (``exit_codes``): 0 scored, 2 bad input (no truth, no prediction at all, geometry mismatch, bad
label values), 1 anything unexpected.
"""

from __future__ import annotations

import sys
from pathlib import Path

from AllStageTraining.exit_codes import run_command

HELP = "score predictions laid out per case and scenario against ground truth (15 x 3 table)"

PREDICTION_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
#: Largest origin/spacing difference (mm) and direction-cosine difference tolerated between prediction and truth.
GEOMETRY_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-4


class EvaluationInputError(ValueError):
    """The predictions or the truth cannot be scored (the message says what to do)."""


def add_arguments(parser) -> None:
    from AllStageTraining.constants import ET_POSTPROCESS_MIN_MM3
    from AllStageTraining.evaluation.metrics import HD95_CAP_MM

    parser.add_argument("--pred", required=True, type=Path,
                        help="predictions folder: PRED/<case_id>/<scenario short>.nii.gz, e.g. PRED/case_001/FC12.nii.gz")
    parser.add_argument("--truth", required=True, type=Path,
                        help="ground-truth data folder in any BraTS layout (cases need a label file)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder for table.csv, table_summary.csv, table.md, summary.json, heatmap.png")
    parser.add_argument("--postprocess-et", action="store_true",
                        help="also score ET after BraTS post-processing (predicted ET below --et-min-mm3 becomes NCR)")
    parser.add_argument("--et-min-mm3", type=float, default=ET_POSTPROCESS_MIN_MM3, metavar="MM3",
                        help=f"post-processing threshold on the total ET volume in mm^3 (default {ET_POSTPROCESS_MIN_MM3:g})")
    parser.add_argument("--hd95-cap", type=float, default=HD95_CAP_MM, metavar="MM",
                        help=f"HD95 when exactly one of prediction and truth is empty (default {HD95_CAP_MM} mm, "
                             "the diagonal of the BraTS 240x240x155 1 mm grid)")
    parser.add_argument("--scenarios", default=None, metavar="LIST",
                        help="comma-separated scenario short names to expect (default: all 15, e.g. 2,C,...,FC12)")
    parser.add_argument("--method", default=None, help="name of the method in the table and summary (default: the --pred folder name)")


def _prediction_file(case_dir: Path, short: str) -> Path | None:
    for extension in PREDICTION_EXTENSIONS:
        path = case_dir / f"{short}{extension}"
        if path.is_file():
            return path
    return None


def _geometry_difference(pred, truth) -> str | None:
    """A sentence describing how two SimpleITK images' grids differ, or None when they match."""
    import numpy as np

    if pred.GetSize() != truth.GetSize():
        return f"size {pred.GetSize()} vs {truth.GetSize()}"
    checks = (
        ("spacing", pred.GetSpacing(), truth.GetSpacing(), GEOMETRY_TOLERANCE_MM),
        ("origin", pred.GetOrigin(), truth.GetOrigin(), GEOMETRY_TOLERANCE_MM),
        ("direction", pred.GetDirection(), truth.GetDirection(), DIRECTION_TOLERANCE),
    )
    for name, a, b, tolerance in checks:
        if not np.allclose(a, b, rtol=0.0, atol=tolerance):
            fmt = lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")"  # noqa: E731
            return f"{name} {fmt(a)} vs {fmt(b)}"
    return None


def score_folder(pred_dir: Path, truth_dir: Path, *, scenarios, postprocess: bool, hd95_cap: float,
                 et_min_mm3: float, method: str | None = None, progress=None):
    """Score every ``PRED/<case>/<scenario>.nii.gz`` against its case's label.

    Returns ``(table, missing, notes)``: the ScenarioTable, ``{case_id: [scenario shorts without a
    prediction]}`` and a list of warnings (unlabelled cases, prediction folders with no truth, stray files).
    Raises EvaluationInputError on a geometry mismatch, bad label values or when nothing can be scored.
    """
    import SimpleITK as sitk

    from AllStageTraining.data.discovery import DiscoveryError, find_cases
    from AllStageTraining.data.labels import LabelError, normalize_label_values
    from AllStageTraining.evaluation.metrics import score_prediction
    from AllStageTraining.evaluation.tables import ScenarioTable

    if not pred_dir.is_dir():
        raise EvaluationInputError(f"predictions folder {pred_dir} does not exist")
    try:
        cases, problems = find_cases(truth_dir, strict=False)
    except DiscoveryError as error:
        raise EvaluationInputError(f"truth folder {truth_dir}: " + "; ".join(error.problems)) from error
    notes = [f"truth: {p}" for p in problems]
    notes += [f"truth case {c.case_id} has no label file: not scored" for c in cases if c.label is None]
    labelled = [c for c in cases if c.label is not None]
    if not labelled:
        raise EvaluationInputError(f"no labelled case found in {truth_dir} (expected a BraTS layout with _seg files)")

    known = {c.case_id for c in labelled}
    expected = {s.short for s in scenarios}
    for folder in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
        if folder.name not in known:
            notes.append(f"prediction folder {folder.name} has no labelled truth case: ignored")
            continue
        for path in sorted(folder.iterdir()):
            stem = next((path.name[: -len(e)] for e in PREDICTION_EXTENSIONS if path.name.endswith(e)), None)
            if stem is None or stem not in expected:
                notes.append(f"{folder.name}/{path.name}: not a prediction for a scenario in {sorted(expected)}: ignored")

    table = ScenarioTable(method)
    missing: dict[str, list[str]] = {}
    for number, case in enumerate(labelled):
        case_dir = pred_dir / case.case_id
        files = {s.short: _prediction_file(case_dir, s.short) for s in scenarios}
        absent = [short for short, path in files.items() if path is None]
        if absent:
            missing[case.case_id] = absent
        present = {short: path for short, path in files.items() if path is not None}
        if present:
            truth_image = sitk.ReadImage(str(case.label))
            try:
                truth = normalize_label_values(sitk.GetArrayViewFromImage(truth_image), case.case_id)
            except LabelError as error:
                raise EvaluationInputError(f"ground truth {case.label}: {error}") from error
            spacing = truth_image.GetSpacing()[::-1]  # array axis order (z, y, x)
            for short, path in present.items():
                pred_image = sitk.ReadImage(str(path))
                difference = _geometry_difference(pred_image, truth_image)
                if difference:
                    raise EvaluationInputError(
                        f"prediction {path} is not on the grid of its ground truth {case.label}: {difference}; "
                        "resample the prediction onto the label's grid (nearest neighbour) and run again")
                try:
                    pred = normalize_label_values(sitk.GetArrayViewFromImage(pred_image), f"{case.case_id}/{short}")
                except LabelError as error:
                    raise EvaluationInputError(f"prediction {path}: {error}") from error
                table.add_variants(case.case_id, short, score_prediction(
                    pred, truth, spacing, postprocess=postprocess, hd95_cap=hd95_cap, min_et_mm3=et_min_mm3))
        if progress:
            progress(number + 1, len(labelled), case.case_id)
    if not len(table):
        raise EvaluationInputError(
            f"no prediction found in {pred_dir} for the {len(labelled)} labelled case(s) of {truth_dir}; "
            "expected files like PRED/<case_id>/<scenario short>.nii.gz, e.g. "
            f"{pred_dir / labelled[0].case_id / 'FC12.nii.gz'}")
    return table, missing, notes


def _missing_report(missing: dict[str, list[str]], n_scenarios: int) -> list[str]:
    lines = []
    for case_id, shorts in missing.items():
        what = "all scenarios" if len(shorts) == n_scenarios else ", ".join(shorts)
        lines.append(f"  {case_id}: {what}")
    return lines


def run(args) -> int:
    return run_command(lambda: _evaluate(args))


def _evaluate(args) -> int:
    from AllStageTraining.constants import SCENARIOS, scenario_by_short
    from AllStageTraining.exit_codes import UsageError

    try:
        scenarios = SCENARIOS if not args.scenarios else tuple(
            scenario_by_short(s.strip()) for s in args.scenarios.split(",") if s.strip())
    except ValueError as error:
        raise UsageError(f"--scenarios: {error}") from None

    def progress(done: int, total: int, case_id: str) -> None:
        print(f"PROGRESS {done / total:.3f} scored {case_id} ({done}/{total})", file=sys.stderr, flush=True)

    method = args.method or args.pred.resolve().name
    table, missing, notes = score_folder(
        args.pred, args.truth, scenarios=scenarios, postprocess=args.postprocess_et,
        hd95_cap=args.hd95_cap, et_min_mm3=args.et_min_mm3, method=method, progress=progress)
    for note in notes:
        print(f"WARNING: {note}", file=sys.stderr)
    n_missing = sum(len(v) for v in missing.values())
    extra = {
        "pred_dir": str(args.pred.resolve()),
        "truth_dir": str(args.truth.resolve()),
        "hd95_cap_mm": args.hd95_cap,
        "et_postprocess_min_mm3": args.et_min_mm3 if args.postprocess_et else None,
        "missing_predictions": missing,
    }
    paths = table.write(args.out, extra=extra)
    print(table.to_markdown())
    if n_missing:
        print(f"WARNING: {n_missing} prediction(s) missing (case: scenarios), not scored:", file=sys.stderr)
        print("\n".join(_missing_report(missing, len(scenarios))), file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
