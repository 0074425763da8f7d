"""``evaluate``: score predictions laid out per case and scenario against ground truth (15 x 3 table).

Predictions: ``PRED/<case_id>/<scenario short>.nii.gz`` (or ``.nii``), e.g. ``pred/BraTS20_001/FC12.nii.gz``,
label maps with BraTS values {0,1,2,4} (or {0,1,2,3}, BraTS 2023), each on the grid of its case's ground-truth
label. Truth: a folder of label files, with or without the images beside them: ``TRUTH/<case>_seg.nii.gz``,
``TRUTH/<case>/<case>_seg.nii.gz`` or ``TRUTH/<group>/<case>/...`` (BraTS 2023 ``-seg`` names too; the case is
the folder, or the file's stem for files directly in TRUTH); cases without a label are not scored. Any
method's predictions can be scored this way. Writes ``table.csv`` (per case), ``table_summary.csv``,
``table.md``, ``summary.json`` and ``heatmap.png`` into ``--out`` and prints the Markdown table.

``--bundle B --split S`` scores a model bundle instead: it segments every case of the split's ``--subset``
in each scenario as ``predict`` would (the bundle's windows and precision), keeps the predictions in
``OUT/pred`` (a rerun scores those already written) and writes the same tables; ``--prompt-table-cases N``
adds the prompt-sensitivity table of the first N cases with the real-vs-synthesized check (``prompts.*``),
``--synthesis-table`` the synthesis quality of the bundle's MAE (``synthesis.*``; with ``--against``, paired with
that evaluation's: ``synthesis_paired.*``), and ``--no-segmentation-table`` leaves out the segmentation table.
Exit codes (``exit_codes``): 0 scored, 2 bad input (no truth, no prediction at all, geometry mismatch, bad
label values), 1 anything unexpected.
"""

from __future__ import annotations

import sys
from pathlib import Path

from AllStageTraining.exit_codes import run_command

HELP = "score predictions, or a model bundle on a split, per case and scenario against ground truth (15 x 3 table)"

PREDICTION_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
#: Largest origin/spacing difference (mm) and direction-cosine difference tolerated between prediction and truth.
GEOMETRY_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-4


class EvaluationInputError(ValueError):
    """The predictions or the truth cannot be scored (the message says what to do)."""


def add_arguments(parser) -> None:
    from AllStageTraining.constants import ET_POSTPROCESS_MIN_MM3
    from AllStageTraining.evaluation.metrics import HD95_CAP_MM

    parser.add_argument("--pred", type=Path,
                        help="predictions folder: PRED/<case_id>/<scenario short>.nii.gz, e.g. PRED/case_001/FC12.nii.gz")
    parser.add_argument("--truth", type=Path,
                        help="ground-truth folder: label files in any BraTS layout (TRUTH/<case>_seg.nii.gz or "
                             "TRUTH/<case>/<case>_seg.nii.gz; the images need not be there)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder for table.csv, table_summary.csv, table.md, summary.json, heatmap.png "
                             "(and the extra tables asked for)")
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
    parser.add_argument("--bundle", type=Path, help="score this model bundle instead of --pred/--truth: it segments "
                        "the cases of --split's --subset in every scenario (predictions kept in OUT/pred)")
    parser.add_argument("--split", type=Path, help="with --bundle: the split file (prepare) whose cases are scored")
    parser.add_argument("--subset", choices=("test", "val"), default="test",
                        help="with --bundle: the split's cases to score (default test; val to choose settings)")
    parser.add_argument("--prompt-table-cases", type=int, default=0, metavar="N",
                        help="with --bundle: also the prompt-sensitivity table and the real-vs-synthesized check "
                             "on the first N cases (default 0: none)")
    parser.add_argument("--synthesis-table", action="store_true",
                        help="with --bundle: also the synthesis quality of the bundle's MAE (PSNR, SSIM in and around "
                             "the tumour, per missing sequence, over the incomplete scenarios scored: 14 of all 15): "
                             "synthesis.csv, synthesis.md; with --against, synthesis_paired.md and .json")
    parser.add_argument("--no-segmentation-table", action="store_true",
                        help="with --bundle: no segmentation table (no predictions in OUT/pred, no table.csv or "
                             "summary.json); only the tables --synthesis-table and --prompt-table-cases ask for")
    parser.add_argument("--completions-as-inputs", action="store_true",
                        help="with --bundle: pass the MAE's completions to the segmenter as if they were real, also "
                             "where the bundle's MAE only synthesizes for display (mae_completes_inputs false): "
                             "with --prompt-table-cases, the real-vs-synthesized check of such a model")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="with --bundle: where it runs (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="with --bundle: CPU threads")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="an earlier evaluation's folder of the same cases (its table.csv, and its synthesis.csv "
                             "with --synthesis-table): also the paired differences of the means (this minus that) "
                             "with their intervals")
    parser.add_argument("--lesion-wise", action="store_true",
                        help="also the official BraTS lesion-wise Dice and HD95 (brats-evaluation on panoptica; "
                             'pip install ".[brats]"): lesion_wise.csv and their means in summary.json')


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


def _truth_files(truth_dir: Path) -> list[tuple[Path, str | None]]:
    """Every NIfTI file at most two folders below ``truth_dir`` with the folder that names its case (None for
    files directly in ``truth_dir``: their stem names the case). Hidden and ``_`` folders are skipped."""
    from AllStageTraining.data.discovery import is_nifti

    if not truth_dir.is_dir():
        raise EvaluationInputError(f"truth folder {truth_dir} is not a folder; give the folder that holds the labels")
    found, folders = [], [(truth_dir, 0)]
    while folders:
        folder, depth = folders.pop()
        for path in sorted(folder.iterdir()):
            if path.name.startswith((".", "_")):
                continue
            if is_nifti(path):
                found.append((path, None if depth == 0 else folder.name))
            elif path.is_dir() and depth < 2:
                folders.append((path, depth + 1))
    return found


def find_labels(truth_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """``({case_id: label file}, notes)`` for a truth folder of label files, with or without images beside them.

    A label is a file named like ``<case>_seg.nii.gz`` or ``<case>-seg.nii.gz``; its case is its folder's name,
    or its stem when it lies directly in ``truth_dir``. notes: cases whose images are there but not their label.
    Raises EvaluationInputError when a case has two labels.
    """
    from AllStageTraining.data.discovery import LABEL_KEY, split_nifti_name

    labels: dict[str, list[Path]] = {}
    with_images: set[str] = set()
    for path, folder in _truth_files(truth_dir):
        stem, role, _ = split_nifti_name(path.name)
        case_id = folder or stem
        if role == LABEL_KEY:
            labels.setdefault(case_id, []).append(path)
        elif role is not None:
            with_images.add(case_id)
    twice = {c: paths for c, paths in labels.items() if len(paths) > 1}
    if twice:
        raise EvaluationInputError("two or more label files for one case in " + str(truth_dir) + ": " + "; ".join(
            f"{c}: {', '.join(str(p.relative_to(truth_dir)) for p in paths)}" for c, paths in sorted(twice.items())))
    notes = [f"truth case {c} has no label file: not scored" for c in sorted(with_images - set(labels))]
    return {c: paths[0] for c, paths in sorted(labels.items())}, notes


def _check_predictions(pred_dir: Path, known: set[str], scenarios) -> list[str]:
    """Notes about prediction folders without a truth case and files that are no scenario's prediction."""
    notes = []
    expected = {s.short for s in scenarios}
    for folder in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
        if folder.name not in known:
            notes.append(f"prediction folder {folder.name} has no labelled truth case: ignored")
            continue
        for path in sorted(folder.iterdir()):
            stem = next((path.name[: -len(e)] for e in PREDICTION_EXTENSIONS if path.name.endswith(e)), None)
            if stem is None or stem not in expected:
                notes.append(f"{folder.name}/{path.name}: not a prediction for a scenario in {sorted(expected)}: ignored")
    return notes


def _read_labels(path: Path, what: str, reference=None):
    """(image, label array) of a label file; EvaluationInputError for bad values or, given ``reference`` (the
    truth image), another grid."""
    import SimpleITK as sitk

    from AllStageTraining.data.labels import LabelError, normalize_label_values

    image = sitk.ReadImage(str(path))
    if reference is not None:
        difference = _geometry_difference(image, reference)
        if difference:
            raise EvaluationInputError(
                f"prediction {path} is not on the grid of its ground truth: {difference}; "
                "resample the prediction onto the label's grid (nearest neighbour) and run again")
    try:
        return image, normalize_label_values(sitk.GetArrayViewFromImage(image), what)
    except LabelError as error:
        raise EvaluationInputError(f"{'ground truth' if reference is None else 'prediction'} {path}: {error}") from error


def _score_case(table, case_id: str, label: Path, present: dict[str, Path], *, lesion_evaluator=None,
                **scoring) -> list[dict]:
    """Add the scores of ``present`` ({scenario short: prediction file}) to ``table``; the lesion-wise rows
    (``evaluation.brats_metrics``) when ``lesion_evaluator`` is given. scoring: score_prediction's options."""
    from AllStageTraining.evaluation.metrics import score_prediction

    truth_image, truth = _read_labels(label, case_id)
    spacing = truth_image.GetSpacing()[::-1]  # array axis order (z, y, x)
    rows = []
    for short, path in present.items():
        _, pred = _read_labels(path, f"{case_id}/{short}", reference=truth_image)
        table.add_variants(case_id, short, score_prediction(pred, truth, spacing, **scoring))
        if lesion_evaluator is not None:
            from AllStageTraining.evaluation.brats_metrics import lesion_wise_scores

            scores = lesion_wise_scores(lesion_evaluator, pred, truth, spacing)
            rows += [{"case_id": case_id, "scenario": short, "region": region, **values}
                     for region, values in scores.items()]
    return rows


def score_folder(pred_dir: Path, truth_dir: Path, *, scenarios, postprocess: bool, hd95_cap: float,
                 et_min_mm3: float, method: str | None = None, progress=None, lesion_evaluator=None):
    """Score every ``PRED/<case>/<scenario>.nii.gz`` against its case's label.

    Returns ``(table, missing, notes, lesion_rows)``: the ScenarioTable, ``{case_id: [scenario shorts without
    a prediction]}``, a list of warnings (unlabelled cases, prediction folders with no truth, stray files) and
    the lesion-wise rows (empty unless ``lesion_evaluator``, ``brats_metrics.brats_evaluator()``, is given).
    Raises EvaluationInputError on a geometry mismatch, bad label values or when nothing can be scored.
    """
    from AllStageTraining.evaluation.tables import ScenarioTable

    if not pred_dir.is_dir():
        raise EvaluationInputError(f"predictions folder {pred_dir} does not exist")
    labels, notes = find_labels(truth_dir)
    if not labels:
        raise EvaluationInputError(f"no label file found in {truth_dir} (expected <case>_seg.nii.gz files, in "
                                   "case folders or directly in the folder)")
    notes += _check_predictions(pred_dir, set(labels), scenarios)
    table, missing, lesion_rows = ScenarioTable(method), {}, []
    for number, (case_id, label) in enumerate(labels.items()):
        files = {s.short: _prediction_file(pred_dir / case_id, s.short) for s in scenarios}
        absent = [short for short, path in files.items() if path is None]
        if absent:
            missing[case_id] = absent
        present = {short: path for short, path in files.items() if path is not None}
        if present:
            lesion_rows += _score_case(table, case_id, label, present, lesion_evaluator=lesion_evaluator,
                                       postprocess=postprocess, hd95_cap=hd95_cap, min_et_mm3=et_min_mm3)
        if progress:
            progress(number + 1, len(labels), case_id)
    if not len(table):
        raise EvaluationInputError(
            f"no prediction found in {pred_dir} for the {len(labels)} labelled case(s) of {truth_dir}; "
            "expected files like PRED/<case_id>/<scenario short>.nii.gz, e.g. "
            f"{pred_dir / next(iter(labels)) / 'FC12.nii.gz'}")
    return table, missing, notes, lesion_rows


def _missing_report(missing: dict[str, list[str]], n_scenarios: int) -> list[str]:
    lines = []
    for case_id, shorts in missing.items():
        what = "all scenarios" if len(shorts) == n_scenarios else ", ".join(shorts)
        lines.append(f"  {case_id}: {what}")
    return lines


def write_intervals(out: Path, table, against: Path | None, extra: dict | None = None) -> None:
    """Add the means' 95% bootstrap intervals over the cases (``comparison.table_intervals``; paired differences
    to the evaluation in ``against``) to ``OUT/summary.json`` as ``intervals``, with the keys of ``extra``, and
    print them (Dice, %)."""
    import json

    from AllStageTraining.evaluation.comparison import table_intervals
    from AllStageTraining.evaluation.tables import ScenarioTable
    from AllStageTraining.fileio import atomic_write_json

    other = ScenarioTable.from_csv(against / "table.csv") if against is not None else None
    intervals = table_intervals(table, other)
    summary = {**json.loads((out / "summary.json").read_text()), **(extra or {})}
    summary["intervals"] = {"level": 0.95, "over": "cases", "against": against.name if against else None,
                            **{group: {part: i.to_json() for part, i in parts.items()}
                               for group, parts in intervals.items()}}
    atomic_write_json(out / "summary.json", summary)
    for group, parts in intervals.items():
        print(f"Dice (%), {group}, 95% interval over the cases: "
              + ", ".join(f"{part} {i.format()}" for part, i in parts.items()))


def print_prompt_intervals(out: Path, *, completed: bool) -> None:
    """The prompt table's per-case statistics (``comparison.prompt_statistics``) with their 95% intervals over
    the cases, printed and added to ``OUT/prompts.json`` as ``intervals``. ``completed``: whether the MAE
    completed the missing T1 and T2 (False: they were zero), which the labels say."""
    import json
    import math

    from AllStageTraining.constants import SCENARIOS
    from AllStageTraining.evaluation.comparison import prompt_statistics
    from AllStageTraining.evaluation.scenario_eval import read_rows
    from AllStageTraining.fileio import atomic_write_json

    per_case: dict[tuple[int, str], list[dict]] = {}
    for row in read_rows(out / "prompts.csv"):
        per_case.setdefault((0, row["case_id"]), []).append(row)
    stats = prompt_statistics(per_case)
    lacking = "synthesized" if completed else "zero"
    named = {"gap_mean": f"all four real minus T1 and T2 {lacking}, mean",
             "gap_WT": f"all four real minus T1 and T2 {lacking}, WT"}
    if len({row["prompt"] for rows in per_case.values() for row in rows}) == len(SCENARIOS):  # the 15 x 15 table
        named["advantage"] = "matched prompt minus its row's mean"
    summary = json.loads((out / "prompts.json").read_text())
    summary["intervals"] = {key: stats[key].to_json() for key in named}
    atomic_write_json(out / "prompts.json", summary)
    for key, text in named.items():
        if math.isfinite(stats[key].mean):
            print(f"Dice points, {text}, 95% interval over the cases: {stats[key].format()}")


def print_synthesis_differences(out: Path, against: Path | None) -> None:
    """Print ``OUT/synthesis.md``; with an ``against`` evaluation (its ``synthesis.csv``), also write and print
    ``OUT/synthesis_paired.md`` and ``.json`` (this MAE minus that one on the cases and scenarios both scored,
    ``synthesis_quality.write_paired_table``); without, remove those an earlier run left."""
    from AllStageTraining.evaluation.synthesis_quality import read_synthesis_rows, write_paired_table
    from AllStageTraining.exit_codes import UsageError

    print((out / "synthesis.md").read_text())
    if against is None:
        for name in ("synthesis_paired.md", "synthesis_paired.json"):
            (out / name).unlink(missing_ok=True)
        return
    names = (out.resolve().name, against.resolve().name)
    if names[0] == names[1]:
        names = (str(out), str(against))
    try:
        write_paired_table(read_synthesis_rows(out / "synthesis.csv"), read_synthesis_rows(against / "synthesis.csv"),
                           out, name=names[0], other_name=names[1])
    except ValueError as error:
        raise UsageError(f"--against {against}: {error}") from None
    print((out / "synthesis_paired.md").read_text())


def run(args) -> int:
    return run_command(lambda: _evaluate(args))


def _lesion_evaluator():
    """The official BraTS metrics' evaluator; UsageError (exit code 2) saying how to install it when absent."""
    from AllStageTraining.evaluation.brats_metrics import BratsMetricsUnavailable, brats_evaluator
    from AllStageTraining.exit_codes import UsageError

    try:
        return brats_evaluator()
    except BratsMetricsUnavailable as error:
        raise UsageError(f"--lesion-wise: {error}") from None


def _lesion_summary(rows: list[dict]) -> dict:
    """Per region, the mean lesion-wise Dice and HD95 (mm) over the scored predictions (NaN rows left out)."""
    import math

    from AllStageTraining.constants import REGIONS

    def mean(values: list[float]) -> float | None:
        finite = [v for v in values if math.isfinite(v)]
        return round(sum(finite) / len(finite), 6) if finite else None

    return {"source": "brats-evaluation (panoptica), gli configuration; HD95 in mm",
            **{region: {key: mean([r[key] for r in rows if r["region"] == region])
                        for key in ("lesion_dice", "lesion_hd95")} for region in REGIONS}}


def _claim_predictions(pred_dir: Path, identity: dict) -> None:
    """Mark ``pred_dir`` as holding the predictions of the bundle ``identity`` describes (``bundle.json``
    there); UsageError when it holds another bundle's, which a rerun would otherwise score as this one's."""
    import json

    from AllStageTraining.exit_codes import UsageError
    from AllStageTraining.fileio import atomic_write_json

    marker = pred_dir / "bundle.json"
    if marker.is_file():
        held = json.loads(marker.read_text())
        if held.get("content_sha256") != identity["content_sha256"]:
            raise UsageError(f"{pred_dir} holds the predictions of another bundle ({held.get('bundle')}); "
                             "give another --out")
        if held.get("completions_as_inputs", False) != identity.get("completions_as_inputs", False):
            raise UsageError(f"{pred_dir} holds predictions made "
                             + ("with" if held.get("completions_as_inputs") else "without")
                             + " --completions-as-inputs; give another --out")
    elif pred_dir.is_dir() and any(pred_dir.iterdir()):
        raise UsageError(f"{pred_dir} holds predictions of an unknown model; give another --out")
    pred_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, identity)


def _check_options(args) -> None:
    """UsageError for options that would be ignored or meaningless in the mode chosen (--bundle or --pred)."""
    from AllStageTraining.constants import ET_POSTPROCESS_MIN_MM3
    from AllStageTraining.evaluation.metrics import HD95_CAP_MM
    from AllStageTraining.exit_codes import UsageError

    if args.against is not None:
        segments = args.bundle is None or not args.no_segmentation_table
        needed = [name for name, wanted in (("table.csv", segments), ("synthesis.csv", args.synthesis_table)) if wanted]
        if not needed:
            raise UsageError("--against pairs the segmentation or synthesis table; neither is written here")
        missing = [name for name in needed if not (args.against / name).is_file()]
        if missing:
            raise UsageError(f"--against {args.against}: no {' or '.join(missing)} there (give a folder that evaluate "
                             "wrote with the same tables)")
        if args.against.resolve() == args.out.resolve():
            raise UsageError("--against must be another evaluation's folder than --out")
    if args.prompt_table_cases < 0:
        raise UsageError(f"--prompt-table-cases must be 0 or more, not {args.prompt_table_cases}")
    if args.bundle is not None:
        if args.split is None or args.pred is not None or args.truth is not None or args.lesion_wise:
            raise UsageError("--bundle needs --split and goes without --pred, --truth and --lesion-wise")
        if args.no_segmentation_table and not (args.synthesis_table or args.prompt_table_cases):
            raise UsageError("--no-segmentation-table leaves nothing to do without --synthesis-table or "
                             "--prompt-table-cases")
        if args.hd95_cap != HD95_CAP_MM or args.et_min_mm3 != ET_POSTPROCESS_MIN_MM3:
            raise UsageError("--hd95-cap and --et-min-mm3 apply to --pred only (--bundle uses the defaults)")
        return
    if args.pred is None or args.truth is None:
        raise UsageError("give --pred and --truth (prediction files to score), or --bundle and --split")
    if (args.split is not None or args.prompt_table_cases or args.threads is not None or args.subset != "test"
            or args.completions_as_inputs or args.synthesis_table or args.no_segmentation_table):
        raise UsageError("--split, --subset, --prompt-table-cases, --synthesis-table, --no-segmentation-table, "
                         "--completions-as-inputs and --threads go with --bundle only")


def _evaluate_bundle(args, scenarios) -> int:
    """``--bundle``: segment and score the split's subset (``evaluation.scenario_eval``), as an experiment cell
    does (unless ``--no-segmentation-table``); the synthesis-quality table with ``--synthesis-table`` and the
    prompt-sensitivity table with ``--prompt-table-cases``."""
    import json

    from AllStageTraining.evaluation.scenario_eval import evaluate_prompts, evaluate_split, evaluate_synthesis
    from AllStageTraining.exit_codes import UsageError
    from AllStageTraining.inference.predictor import Predictor
    from AllStageTraining.runtime import resolve_device, set_threads

    set_threads(args.threads)
    predictor = Predictor.from_bundle(args.bundle, resolve_device(args.device))
    identity = {"bundle": str(args.bundle), "content_sha256": predictor.meta.get("content_sha256")}
    if args.synthesis_table and predictor.mae is None:
        raise UsageError(f"--synthesis-table: {args.bundle} has no MAE")
    if args.completions_as_inputs:
        if predictor.mae is None:
            raise UsageError(f"--completions-as-inputs: {args.bundle} has no MAE")
        predictor.completes_inputs = True
        identity["completions_as_inputs"] = True
    _claim_predictions(args.out / "pred", identity)
    split = json.loads(args.split.read_text())
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if not args.no_segmentation_table:
        table = evaluate_split(predictor, split, args.out, subset=args.subset, scenarios=scenarios,
                               postprocess=args.postprocess_et, method=args.method or args.bundle.stem)
        print(table.to_markdown())
        write_intervals(args.out, table, args.against, identity)
    if args.synthesis_table:
        evaluate_synthesis(predictor, split, args.out, subset=args.subset, scenarios=scenarios, log=log)
        print_synthesis_differences(args.out, args.against)
    if args.prompt_table_cases > 0:
        evaluate_prompts(predictor, split, args.out, subset=args.subset, n_cases=args.prompt_table_cases,
                         scenarios=scenarios, log=log)
        print_prompt_intervals(args.out, completed=predictor.completes_inputs)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    from AllStageTraining.constants import SCENARIOS, scenario_by_short
    from AllStageTraining.exit_codes import UsageError

    try:
        scenarios = SCENARIOS if not args.scenarios else tuple(
            scenario_by_short(s.strip()) for s in args.scenarios.split(",") if s.strip())
    except ValueError as error:
        raise UsageError(f"--scenarios: {error}") from None
    _check_options(args)
    if args.bundle is not None:
        return _evaluate_bundle(args, scenarios)

    def progress(done: int, total: int, case_id: str) -> None:
        print(f"PROGRESS {done / total:.3f} scored {case_id} ({done}/{total})", file=sys.stderr, flush=True)

    method = args.method or args.pred.resolve().name
    table, missing, notes, lesion_rows = score_folder(
        args.pred, args.truth, scenarios=scenarios, postprocess=args.postprocess_et,
        hd95_cap=args.hd95_cap, et_min_mm3=args.et_min_mm3, method=method, progress=progress,
        lesion_evaluator=_lesion_evaluator() if args.lesion_wise else None)
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
    if args.lesion_wise:
        extra["lesion_wise"] = _lesion_summary(lesion_rows)
    paths = table.write(args.out, extra=extra)
    if args.lesion_wise:
        from AllStageTraining.evaluation.brats_metrics import FIELDS
        from AllStageTraining.fileio import atomic_write_csv

        paths["lesion_wise.csv"] = atomic_write_csv(args.out / "lesion_wise.csv",
                                                    ("case_id", "scenario", "region", *FIELDS), lesion_rows)
    print(table.to_markdown())
    write_intervals(args.out, table, args.against)
    if n_missing:
        print(f"WARNING: {n_missing} prediction(s) missing (case: scenarios), not scored:", file=sys.stderr)
        print("\n".join(_missing_report(missing, len(scenarios))), file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
