"""The demo's report: ``OUT/report/report.md`` and ``report.html`` (same content) with figures in
``OUT/report/figures``, built from what the demo left on disk (``layout.DemoFolder``: ``demo.json``, stage
markers, the split, the run folders with their evaluations and ``runtime.json``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from AllStageTraining.config import fingerprint_differences
from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY, REGIONS, SCENARIOS, scenario_by_short
from AllStageTraining.evaluation.scenario_eval import prediction_path
from AllStageTraining.layout import DemoFolder
from AllStageTraining.methods import get_method
from AllStageTraining.report.writer import Report
from AllStageTraining.runtime import code_text

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


def _synthesis_figure(predictor, case, png: Path) -> tuple[Path, int]:
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


def _overlay_figure(demo: DemoFolder, methods: Sequence[str], tables: dict, case, png: Path) -> Path:
    import SimpleITK as sitk

    from AllStageTraining.report.figures import segmentation_overlays, tumour_slice

    truth = _oriented_array(sitk.ReadImage(str(case.label)))
    flair = _oriented_array(sitk.ReadImage(str(case.images["flair"]))).astype(np.float32)
    rows = []
    for method in methods:
        columns = []
        for short in OVERLAY_SCENARIOS:
            path = prediction_path(demo.run(method).eval, case.case_id, scenario_by_short(short))
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


@dataclass
class DemoRecord:
    """What a demo left on disk, read once: its settings and invocations, the split, and per method the
    evaluation table, the configuration and where each stage ran (``runtime.json``); the stage markers."""

    folder: DemoFolder
    methods: tuple[str, ...]
    settings: dict
    invocations: list[dict]
    split: dict
    tables: dict
    configs: dict
    runtimes: dict
    stage_times: list[dict]

    @classmethod
    def read(cls, out: str | Path, methods: Sequence[str]) -> "DemoRecord":
        from AllStageTraining.data.splits import load_split
        from AllStageTraining.evaluation.tables import ScenarioTable

        folder = DemoFolder(Path(out))
        demo = json.loads(folder.settings.read_text())
        runs = {m: folder.run(m) for m in methods}
        markers = [json.loads(p.read_text()) for p in sorted(folder.stages.glob("*.json"))]
        markers = sorted((m for m in markers if "stage" in m), key=lambda m: (m.get("index", 99), m["finished"]))
        return cls(folder=folder, methods=tuple(methods), settings=demo["settings"],
                   invocations=demo.get("invocations", []), split=load_split(folder.split),
                   tables={m: ScenarioTable.from_csv(run.eval_table_csv, m) for m, run in runs.items()},
                   configs={m: json.loads(run.config.read_text()) for m, run in runs.items()},
                   runtimes={m: run.read_runtime() for m, run in runs.items()}, stage_times=markers)

    def relative(self, path: Path) -> str:
        """``path`` as a link from the report's folder."""
        return Path(os.path.relpath(path, self.folder.report)).as_posix()


def _draw_figures(record: DemoRecord, predictor, case, figures: Path) -> dict[str, Path]:
    """Every figure of the report, by name: means, dice, synthesis, overlays, curves."""
    from AllStageTraining.evaluation.figures import method_comparison
    from AllStageTraining.report.figures import dice_side_by_side, training_curves

    methods, tables = record.methods, record.tables
    out = {"dice": dice_side_by_side({m: tables[m].mean_table("dice") for m in methods}, figures / "dice.png"),
           "means": method_comparison(tables, figures / "means.png",
                                      title="Mean Dice over the 15 scenarios (test cases, synthetic data)"),
           "synthesis": _synthesis_figure(predictor, case, figures / "synthesis.png")[0],
           "overlays": _overlay_figure(record.folder, methods, tables, case, figures / "overlays.png")}
    panels = [(f"MAE, stage 1 ({methods[0]})", _loss_series(record.folder.run(methods[0]).mae / "tb"))]
    panels += [(f"segmenter, stage 2 ({m})", _loss_series(record.folder.run(m).seg / "tb")) for m in methods]
    out["curves"] = training_curves(panels, figures / "curves.png",
                                    title="Training losses (faint: per logged step; strong: smoothed)")
    return out


def _seg_steps(record: DemoRecord, method: str) -> int:
    """The steps ``method``'s segmenter trained for (its run's configuration, the method's budget rule applied)."""
    return int(record.configs[method]["optim_seg"]["steps"])


def _introduction(r: Report, record: DemoRecord, identity: dict) -> None:
    """The warnings, what was done and the result in two sentences."""
    settings, split, (ours, base) = record.settings, record.split, record.methods[:2]
    r.warning("Everything here was trained and tested on **synthetic** images (SynthBraTS, built on the MNI152 "
              "anatomy) with a CPU-sized budget. The numbers show that the pipeline works end to end; they say "
              "nothing about real MRI. The model is **not for clinical use**.")
    if identity.get("untrained"):
        r.warning("The scenario prompts were embedded by an **UNTRAINED** open_clip text encoder "
                  f"(`{identity.get('model_name', settings.get('text_model'))}`, no pretrained weights): the "
                  "15 embeddings are fixed random codes, not CLIP semantics. Rerun with `--text-pretrained` to use "
                  "real CLIP weights.")
    elif identity:
        instead = (f", instead of the unavailable `{identity['unavailable_pretrained']}`"
                   if identity.get("unavailable_pretrained") else "")
        norm = record.configs[ours]["seg"].get("embedding_norm", "none")
        r.paragraph(f"The scenario prompts were embedded by `{identity.get('model_name')}` (pretrained: "
                    f"`{identity.get('pretrained')}`{instead}); embeddings normalized: {norm}.")
    mean_ours, mean_base = (record.tables[m].overall_means("dice") for m in (ours, base))
    r.paragraph(
        f"**What was done.** {settings['n_cases']} synthetic brain-tumour cases at 2 mm were split into "
        f"{len(split['train'])} training, {len(split['val'])} validation and {len(split['test'])} test cases. "
        f"Half of the training cases (missing ratio {settings['missing_ratio']}) lost a random subset of their "
        f"sequences, and no stage ever read the lost files. `{ours}` ({get_method(ours).description}) and the "
        f"`{base}` baseline ({get_method(base).description}) were trained with the same data, crops "
        f"({settings['crop']}^3) and network width, their segmenters for {_seg_steps(record, ours)} and "
        f"{_seg_steps(record, base)} steps (`{ours}`'s MAE for {settings['steps_mae']}), and each was tested on "
        f"every test case in all 15 availability scenarios.")
    r.paragraph(
        f"**Result.** Mean Dice over the 15 scenarios: `{ours}` WT {_pct(mean_ours['WT'])}, TC "
        f"{_pct(mean_ours['TC'])}, ET {_pct(mean_ours['ET'])}; `{base}` WT {_pct(mean_base['WT'])}, TC "
        f"{_pct(mean_base['TC'])}, ET {_pct(mean_base['ET'])} (percent; {len(record.tables[ours].case_ids)} test "
        f"case(s), so differences of a few points are noise).")
    if settings.get("mode") == "quick":
        r.warning(f"This is the **quick** demo: {settings['steps_mae']} + {settings['steps_seg']} training steps are "
                  "enough to run every stage, not to learn to segment, so expect Dice near zero and blurry "
                  "reconstructions. The full demo (`python -m AllStageTraining demo`, without `--quick`) trains "
                  "long enough to show the comparison.")


def _dice_sections(r: Report, record: DemoRecord, figures: dict[str, Path]) -> None:
    """The mean Dice table and chart, and the 15 x 3 tables with their heatmaps."""
    methods, tables, (ours, base) = record.methods, record.tables, record.methods[:2]
    r.heading("Mean Dice over the 15 scenarios")
    rows = []
    for m in methods:
        means = tables[m].overall_means("dice")
        pp = (tables[m].overall_means("dice", "postprocessed")["ET"]
              if "postprocessed" in tables[m].variants else math.nan)
        rows.append([f"`{m}`", _pct(means["WT"]), _pct(means["TC"]), _pct(means["ET"]), _pct(pp), _pct(means["mean"])])
    r.table(["Method", "WT", "TC", "ET", "ET (post-processed)", "Mean"], rows)
    r.image(record.relative(figures["means"]), "bar chart of mean Dice per region and method")

    r.heading("Dice per scenario (15 x 3, percent)")
    r.paragraph("Rows: the sequences given to the model at test time, in the literature's order (F = FLAIR, "
                "C = T1ce, 1 = T1, 2 = T2). The heatmap shows the same numbers; its last panel is the difference "
                f"`{ours}` - `{base}` (blue: `{ours}` better).")
    r.image(record.relative(figures["dice"]), "scenario x region Dice heatmaps of both methods and their difference")
    header = ["Scenario", "Sequences"] + [f"{m} {reg}" for m in methods for reg in REGIONS]
    values = {m: tables[m].mean_table("dice") for m in methods}
    rows = [[s.short, s.display] + [_pct(values[m][i, j]) for m in methods for j in range(len(REGIONS))]
            for i, s in enumerate(SCENARIOS)]
    rows.append(["**Mean**", ""] + [f"**{_pct(tables[m].overall_means('dice')[reg])}**"
                                    for m in methods for reg in REGIONS])
    r.table(header, rows, numeric=range(2, len(header)))
    r.paragraph("Per-case scores, HD95 and the post-processed ET: "
                + ", ".join(f"[{m}]({record.relative(record.folder.run(m).eval_table_md)})" for m in methods) + ".")


def _picture_sections(r: Report, record: DemoRecord, figures: dict[str, Path], case_id: str) -> None:
    """Synthesized sequences, segmentations and training curves."""
    r.heading("Synthesized sequences")
    r.paragraph(f"For the test case {case_id}: each real sequence (left) beside what the MAE made of it "
                f"when it was missing and the other three were given (middle), and when only "
                f"{MODALITY_DISPLAY[SINGLE_SOURCE]} was given (right). The synthesized images are in the model's "
                "normalized intensity units; each panel has its own grey window.")
    r.image(record.relative(figures["synthesis"]), "real and synthesized sequences of a test case")
    r.heading("Segmentations")
    r.paragraph("Ground truth and the predictions of both methods on the same slice, for a few scenarios (the "
                "sequences given are named above each panel, with that case's Dice). Red: necrotic core (NCR, 1); "
                "green: edema (ED, 2); yellow: enhancing tumour (ET, 4).")
    r.image(record.relative(figures["overlays"]), "segmentation overlays for a few scenarios")
    r.heading("Training curves")
    r.paragraph("Losses logged by the training engine (TensorBoard files under `runs/<method>/{mae,seg}/tb`; "
                "`tensorboard --logdir runs` shows them interactively).")
    r.image(record.relative(figures["curves"]), "training loss curves")


def _provenance_sections(r: Report, record: DemoRecord) -> None:
    """The split, the time and device of every stage, the commands and the configurations."""
    from AllStageTraining.data.splits import format_summary

    r.heading("Data and split")
    r.code(format_summary(record.split))
    r.heading("Time per stage")
    rows = [[m["stage"], f"{m['seconds']:.0f}", m["finished"]] for m in record.stage_times]
    rows.append(["**total**", f"**{sum(m['seconds'] for m in record.stage_times):.0f}**", ""])
    r.paragraph("Seconds each stage took when it ran (a stage finished in an earlier, interrupted invocation keeps "
                "its time; the report stage itself is not included while it is being written).")
    r.table(["Stage", "Seconds", "Finished"], rows, numeric=[1])
    r.paragraph("Where each training and evaluation stage ran (`runs/<method>/runtime.json`):")
    rows = [[f"`{m}`", stage, rec.get("device", "?"), str(rec.get("threads", "?")), rec.get("precision", "?"),
             code_text({stage: rec}) or "not recorded"]
            for m in record.methods for stage, rec in record.runtimes[m].items()]
    r.table(["Method", "Stage", "Device", "CPU threads", "Precision", "Code (git commit)"], rows)

    ours, base = record.methods[:2]
    r.heading("How this was produced")
    r.paragraph("The command(s) that ran this demo in this folder (a rerun continues where it stopped):")
    r.code("\n".join(i["command"] for i in record.invocations), "sh")
    r.paragraph("The demo's settings and the configuration of each run (`runs/<method>/config.json`); the "
                "methods differ only in `method` and the fields the method sets.")
    r.code(json.dumps(record.settings, indent=2), "json")
    r.code(json.dumps(record.configs[ours], indent=2), "json")
    differences = fingerprint_differences(record.configs[ours], record.configs[base])
    r.paragraph(f"`{base}` differs from `{ours}` in: " + (", ".join(f"`{d}`" for d in differences) or "nothing") + ".")
    folder = record.folder
    r.paragraph(f"Files: the bundle [{folder.bundle.name}]({record.relative(folder.bundle)}) (open it in 3D Slicer's "
                "AllStageSeg module or with `python -m AllStageTraining predict --bundle`), the split "
                f"[{folder.split.name}]({record.relative(folder.split)}), the log "
                f"[{folder.log.name}]({record.relative(folder.log)}).")


def write_demo_report(out: str | Path, *, methods: Sequence[str], log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Write ``OUT/report/report.md`` and ``report.html`` for the demo in ``out`` comparing ``methods`` (the
    method first, the baseline second); return both paths. The figures' predictions run on the device the
    demo's evaluation used (``runs/<method>/runtime.json``)."""
    from AllStageTraining.data.splits import cases_for_split
    from AllStageTraining.inference.predictor import Predictor

    record = DemoRecord.read(out, methods)
    figures_dir = record.folder.report / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    device = record.runtimes[methods[0]].get("eval", {}).get("device", "cpu")
    predictor = Predictor.from_run(record.folder.run(methods[0]).root, device=device)
    test_case = cases_for_split(record.split, "test")[0]
    log(f"  drawing figures (predictions on {predictor.device})")
    figures = _draw_figures(record, predictor, test_case, figures_dir)

    r = Report("AllStageSeg demo report")
    _introduction(r, record, predictor.meta.get("text_encoder") or {})
    _dice_sections(r, record, figures)
    _picture_sections(r, record, figures, test_case.case_id)
    _provenance_sections(r, record)
    md, html = r.write(record.folder.report)
    log(f"  report written: {md} and {html.name}")
    return md, html
