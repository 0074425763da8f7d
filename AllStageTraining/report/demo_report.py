"""The demo's report: ``OUT/report/report.md`` and ``report.html`` (same content) with figures in
``OUT/report/figures``, built from what the demo left on disk (``demo.json``, stage markers, the split, the run
folders and their evaluations).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY, REGIONS, SCENARIOS, scenario_by_short

#: Scenarios drawn in the overlay figure: everything, T1ce missing, T1 + T2 missing, and single sequences.
OVERLAY_SCENARIOS: tuple[str, ...] = ("FC12", "F12", "FC", "C", "1")
#: The one sequence the synthesis figure's last column starts from.
SINGLE_SOURCE = "t1"
#: TensorBoard tags that are not losses.
_NOT_LOSSES = ("train/lr", "train/steps_per_s")


def _oriented_array(image) -> np.ndarray:
    """(z, y, x) array of a SimpleITK image after orienting it to LPS (the project's array convention)."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100.0 * value:.1f}"


def _loss_series(log_dir: Path) -> dict:
    from AllStageTraining.report.figures import read_scalars

    if not log_dir.is_dir():
        return {}
    scalars = read_scalars(log_dir)
    series = {}
    for tag in sorted(scalars, key=lambda t: (t != "train/loss", t)):
        if tag.startswith("train/") and tag not in _NOT_LOSSES:
            name = tag[len("train/"):]
            series["total loss" if name == "loss" else name] = scalars[tag]
    return series


def _synthesis_figure(out: Path, predictor, case, png: Path) -> tuple[Path, int]:
    """Real sequences of ``case`` beside the MAE's synthesis of each (from the other three; from T1 alone)."""
    import SimpleITK as sitk

    from AllStageTraining.report.figures import synthesis_grid, tumour_slice

    images = {m: sitk.ReadImage(str(p)) for m, p in case.images.items()}
    truth = _oriented_array(sitk.ReadImage(str(case.label)))
    real = {MODALITY_DISPLAY[m]: _oriented_array(images[m]).astype(np.float32) for m in MODALITIES}
    leave_one_out = {}
    for m in MODALITIES:
        prediction = predictor.predict({k: (None if k == m else images[k]) for k in MODALITIES}, postprocess=False)
        leave_one_out[MODALITY_DISPLAY[m]] = _oriented_array(prediction.reconstructions[m])
    single = predictor.predict({k: (images[k] if k == SINGLE_SOURCE else None) for k in MODALITIES},
                               postprocess=False)
    from_single = {MODALITY_DISPLAY[m]: _oriented_array(img) for m, img in single.reconstructions.items()}
    brain = np.any([v != 0 for v in real.values()], axis=0)
    index = tumour_slice(truth)
    synthesis_grid(real, [("synthesized from\nthe other three", leave_one_out),
                          (f"synthesized from\n{MODALITY_DISPLAY[SINGLE_SOURCE]} alone", from_single)],
                   png, slice_index=index, brain=brain,
                   title=f"{case.case_id} (test case), axial slice {index}: real vs. synthesized by the MAE")
    return png, index


def _overlay_figure(runs: Path, methods: Sequence[str], tables: dict, case, png: Path) -> Path:
    import SimpleITK as sitk

    from AllStageTraining.report.figures import segmentation_overlays, tumour_slice

    truth = _oriented_array(sitk.ReadImage(str(case.label)))
    flair = _oriented_array(sitk.ReadImage(str(case.images["flair"]))).astype(np.float32)
    rows = []
    for method in methods:
        columns = []
        for short in OVERLAY_SCENARIOS:
            path = runs / method / "eval" / "pred" / case.case_id / f"{short}.nii.gz"
            if not path.exists():
                continue
            scores = " ".join(f"{r} {100 * tables[method].value(case.case_id, short, r):.0f}" for r in REGIONS)
            title = f"{scenario_by_short(short).display}\nDice {scores}"
            columns.append((title, _oriented_array(sitk.ReadImage(str(path)))))
        rows.append((method, columns))
    index = tumour_slice(truth)
    return segmentation_overlays(flair, truth, rows, png, slice_index=index,
                                 title=f"{case.case_id} (test case), FLAIR, axial slice {index}: ground truth and "
                                       "predictions with the sequences named above each panel")


def write_demo_report(out: str | Path, *, methods: Sequence[str] = ("ours", "zero-fill"),
                      log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Write ``OUT/report/report.md`` and ``report.html`` for the demo in ``out``; return both paths."""
    from AllStageTraining.data.splits import cases_for_split, format_summary, load_split
    from AllStageTraining.evaluation.tables import ScenarioTable
    from AllStageTraining.inference.predictor import Predictor
    from AllStageTraining.report.figures import dice_side_by_side, training_curves
    from AllStageTraining.report.writer import Report

    out = Path(out)
    runs = out / "runs"
    report_dir = out / "report"
    figures = report_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    demo = json.loads((out / "demo.json").read_text())
    settings = demo["settings"]
    split = load_split(out / "split.json")
    tables = {m: ScenarioTable.from_csv(runs / m / "eval" / "table.csv", m) for m in methods}
    configs = {m: json.loads((runs / m / "config.json").read_text()) for m in methods}
    predictor = Predictor.from_run(runs / methods[0], device="cpu")
    identity = predictor.meta.get("text_encoder") or {}
    untrained = bool(identity.get("untrained", settings.get("text_pretrained") is None))
    test_case = cases_for_split(split, "test")[0]

    log("  drawing figures")
    dice_png = dice_side_by_side({m: tables[m].mean_table("dice") for m in methods}, figures / "dice.png")
    from AllStageTraining.evaluation.figures import method_comparison

    means_png = method_comparison(tables, figures / "means.png",
                                  title="Mean Dice over the 15 scenarios (test cases, synthetic data)")
    synth_png, _ = _synthesis_figure(out, predictor, test_case, figures / "synthesis.png")
    overlay_png = _overlay_figure(runs, methods, tables, test_case, figures / "overlays.png")
    curve_panels = [("MAE, stage 1 (ours)", _loss_series(runs / methods[0] / "mae" / "tb"))]
    curve_panels += [(f"segmenter, stage 2 ({m})", _loss_series(runs / m / "seg" / "tb")) for m in methods]
    curves_png = training_curves(curve_panels, figures / "curves.png",
                                 title="Training losses (faint: per logged step; strong: smoothed)")

    stage_times = {}
    for marker in sorted((out / "stages").glob("*.json")):
        content = json.loads(marker.read_text())
        if "stage" in content:
            stage_times[content["stage"]] = content
    rel = lambda p: str(Path(p).relative_to(report_dir))  # noqa: E731

    r = Report("AllStageSeg demo report")
    r.warning("Everything here was trained and tested on **synthetic** images (SynthBraTS, built on the MNI152 "
              "anatomy) with a CPU-sized budget. The numbers show that the pipeline works end to end; they say "
              "nothing about real MRI. The model is **not for clinical use**.")
    if untrained:
        r.warning("The scenario prompts were embedded by an **UNTRAINED** open_clip text encoder "
                  f"(`{identity.get('model_name', settings.get('text_model'))}`, no pretrained weights offline): the "
                  "15 embeddings are fixed random codes, not CLIP semantics. Rerun with `--text-pretrained` to use "
                  "real CLIP weights.")
    ours, base = methods[0], methods[1]
    mean_ours, mean_base = tables[ours].overall_means("dice"), tables[base].overall_means("dice")
    r.paragraph(
        f"**What was done.** {settings['n_cases']} synthetic brain-tumour cases at 2 mm were split into "
        f"{len(split['train'])} training, {len(split['val'])} validation and {len(split['test'])} test cases. "
        f"Half of the training cases (missing ratio {settings['missing_ratio']}) lost a random subset of their "
        f"sequences, and no stage ever read the lost files. `{ours}` (multimodal MAE with distribution "
        f"approximation, then co-distillation with the prompt-driven hyper-network) and the `{base}` baseline "
        f"(missing sequences set to zero) were trained with the same data, crops ({settings['crop']}^3), network "
        f"width and steps ({settings['steps_mae']} MAE + {settings['steps_seg']} segmenter steps), and each was "
        f"tested on every test case in all 15 availability scenarios.")
    r.paragraph(
        f"**Result.** Mean Dice over the 15 scenarios: `{ours}` WT {_pct(mean_ours['WT'])}, TC "
        f"{_pct(mean_ours['TC'])}, ET {_pct(mean_ours['ET'])}; `{base}` WT {_pct(mean_base['WT'])}, TC "
        f"{_pct(mean_base['TC'])}, ET {_pct(mean_base['ET'])} (percent; {len(tables[ours].case_ids)} test "
        f"case(s), so differences of a few points are noise).")
    if settings.get("mode") == "quick":
        r.warning(f"This is the **quick** demo: {settings['steps_mae']} + {settings['steps_seg']} training steps are "
                  "enough to run every stage, not to learn to segment, so expect Dice near zero and blurry "
                  "reconstructions. The full demo (`python -m AllStageTraining demo`, without `--quick`) trains "
                  "long enough to show the comparison.")

    r.heading("Mean Dice over the 15 scenarios")
    header = ["Method", "WT", "TC", "ET", "ET (post-processed)", "Mean"]
    rows = []
    for m in methods:
        means = tables[m].overall_means("dice")
        pp = (tables[m].overall_means("dice", "postprocessed")["ET"]
              if "postprocessed" in tables[m].variants else math.nan)
        rows.append([f"`{m}`", _pct(means["WT"]), _pct(means["TC"]), _pct(means["ET"]), _pct(pp), _pct(means["mean"])])
    r.table(header, rows)
    r.image(rel(means_png), "bar chart of mean Dice per region and method")

    r.heading("Dice per scenario (15 x 3, percent)")
    r.paragraph("Rows: the sequences given to the model at test time, in the literature's order (F = FLAIR, "
                "C = T1ce, 1 = T1, 2 = T2). The heatmap shows the same numbers; its last panel is the difference "
                f"`{ours}` - `{base}` (blue: `{ours}` better).")
    r.image(rel(dice_png), "scenario x region Dice heatmaps of both methods and their difference")
    header = ["Scenario", "Sequences"] + [f"{m} {reg}" for m in methods for reg in REGIONS]
    values = {m: tables[m].mean_table("dice") for m in methods}
    rows = [[s.short, s.display] + [_pct(values[m][i, j]) for m in methods for j in range(len(REGIONS))]
            for i, s in enumerate(SCENARIOS)]
    rows.append(["**Mean**", ""] + [f"**{_pct(tables[m].overall_means('dice')[reg])}**"
                                    for m in methods for reg in REGIONS])
    r.table(header, rows, numeric=range(2, len(header)))
    r.paragraph("Per-case scores, HD95 and the post-processed ET: "
                + ", ".join(f"[{m}](../runs/{m}/eval/table.md)" for m in methods) + ".")

    r.heading("Synthesized sequences")
    r.paragraph(f"For the test case {test_case.case_id}: each real sequence (left) beside what the MAE made of it "
                f"when it was missing and the other three were given (middle), and when only "
                f"{MODALITY_DISPLAY[SINGLE_SOURCE]} was given (right). The synthesized images are in the model's "
                "normalized intensity units; each panel has its own grey window.")
    r.image(rel(synth_png), "real and synthesized sequences of a test case")

    r.heading("Segmentations")
    r.paragraph("Ground truth and the predictions of both methods on the same slice, for a few scenarios (the "
                "sequences given are named above each panel, with that case's Dice). Red: necrotic core (NCR, 1); "
                "green: edema (ED, 2); yellow: enhancing tumour (ET, 4).")
    r.image(rel(overlay_png), "segmentation overlays for a few scenarios")

    r.heading("Training curves")
    r.paragraph("Losses logged by the training engine (TensorBoard files under `runs/<method>/{mae,seg}/tb`; "
                "`tensorboard --logdir runs` shows them interactively).")
    r.image(rel(curves_png), "training loss curves")

    r.heading("Data and split")
    r.code(format_summary(split))

    r.heading("Time per stage")
    from AllStageTraining.commands.demo import STAGES

    order = [name for name in STAGES if name in stage_times]
    rows = [[name, f"{stage_times[name]['seconds']:.0f}", stage_times[name]["finished"]] for name in order]
    total = sum(stage_times[name]["seconds"] for name in order)
    rows.append(["**total**", f"**{total:.0f}**", ""])
    r.paragraph("Seconds each stage took when it ran (a stage finished in an earlier, interrupted invocation keeps "
                "its time; the report stage itself is not included while it is being written).")
    r.table(["Stage", "Seconds", "Finished"], rows, numeric=[1])

    r.heading("How this was produced")
    r.paragraph("The command(s) that ran this demo in this folder (a rerun continues where it stopped):")
    r.code("\n".join(i["command"] for i in demo.get("invocations", [])), "sh")
    r.paragraph("The demo's settings and the configuration of each run (`runs/<method>/config.json`); the "
                "methods differ only in `seg.method`.")
    r.code(json.dumps(settings, indent=2), "json")
    r.code(json.dumps(configs[ours], indent=2), "json")
    differences = _differences(configs[ours], configs[base])
    r.paragraph(f"`{base}` differs from `{ours}` in: " + (", ".join(f"`{d}`" for d in differences) or "nothing") + ".")
    r.paragraph("Files: the bundle [demo_bundle.zip](../demo_bundle.zip) (open it in 3D Slicer's AllStageSeg "
                "module or with `python -m AllStageTraining predict --bundle`), the split [split.json](../split.json), "
                "the log [demo.log](../demo.log).")
    md, html = r.write(report_dir)
    log(f"  report written: {md} and {html.name}")
    return md, html


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the config fields whose values differ between ``a`` and ``b``."""
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _differences(a[key], b[key], name + ".")
        elif a.get(key) != b.get(key):
            out.append(f"{name}: {a.get(key)!r} -> {b.get(key)!r}")
    return out
