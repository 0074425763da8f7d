"""``benchmark.md``: the report of one benchmark run (``benchmark.json``) as Markdown tables."""

from __future__ import annotations

#: predict_process phases in the order of a run, with their words in the table.
PHASES = (("start_s", "start: interpreter, CLI, torch"), ("model_s", "loading the model (imports, bundle, networks)"),
          ("read_s", "reading the inputs"), ("checks_s", "input checks (registration, brain extraction)"),
          ("preprocess_s", "preprocessing"), ("networks_s", "**networks**"), ("map_back_s", "mapping back"),
          ("predict_other_s", "other (progress and log lines)"), ("writing_s", "writing the outputs"),
          ("exit_s", "exit"), ("total_s", "**total**"), ("overhead_s", "overhead (total - networks)"))


def _fmt(value, pattern: str) -> str:
    return pattern % value if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _header(report: dict) -> list[str]:
    peaks = report.get("conv3d_peak") or {}
    peak_words = peaks.get("error") or ", ".join(f"{p} {v['gflop_per_s']:.0f}" for p, v in peaks.items()
                                                 if isinstance(v, dict))
    return [f"Benchmark on {report['device']} ({report['device_name']}), {report['threads']} threads, torch "
            f"{report.get('torch')}; native bfloat16: {'yes' if report.get('cpu_native_bfloat16') else 'no'}; default "
            f"precision (auto): {report.get('default_precision')}; case: {report['case']}; timed model: "
            f"{report.get('architecture')}; load average (1, 5, 15 min) at start "
            f"{report.get('load_average_at_start')}, at end {report.get('load_average_at_end')}.", "",
            f"Measured conv3d peak (3x3x3 convolutions, the best of four sizes), GFLOP/s: {peak_words}.", ""]


def _inference(report: dict) -> list[str]:
    lines = ["| run | precision | time with I/O (s) | ratio to SegResNet | networks (s) | GFLOP | GFLOP/s "
             "| share of conv3d peak | peak RSS (MB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["runs"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | | | | | |")
            continue
        times = (" (median of " + ", ".join(f"{t:.1f}" for t in r["io_s_runs"]) + ")") if r.get("io_s_runs") else ""
        if r.get("window"):
            name += (f" (windows {'x'.join(map(str, r['window']))}, overlap {r['overlap']:g}, "
                     f"{r['windows_per_call']} per call)")
        lines.append(f"| {name} | {r.get('precision', '-')} | {_fmt(r.get('io_s'), '%.1f')}{times} | "
                     f"{_fmt(r.get('ratio_to_segresnet'), '%.2f')} | {_fmt(r.get('model_s'), '%.1f')} | "
                     f"{_fmt(r.get('gflops'), '%.0f')} | {_fmt(r.get('gflop_per_s'), '%.0f')} | "
                     f"{_fmt(100 * r['share_of_peak'] if 'share_of_peak' in r else None, '%.0f%%')} | "
                     f"{_fmt(r.get('peak_rss_mb'), '%.0f')} |")
    return lines


def _predict_process(report: dict) -> list[str]:
    processes = report.get("predict_process") or {}
    if not processes:
        return []
    names = list(processes)
    lines = ["", "Where the time of a whole `predict` process goes (s):", "",
             "| phase | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    if any("error" in p for p in processes.values()):
        lines.append("| error | " + " | ".join(p.get("error", "") for p in processes.values()) + " |")
    for key, words in PHASES:
        lines.append(f"| {words} | " + " | ".join(_fmt(p.get(key), "%.2f") for p in processes.values()) + " |")
    for name, p in processes.items():
        if "imports" in p:
            packages = ", ".join(f"{k} {v:.2f}" for k, v in p["imports"]["by_package"].items())
            lines.append(f"\n{name}: imports took {p['imports']['total_s']:.2f} s in all (-X importtime, self "
                         f"times): {packages}.")
    return lines


def _agreement(report: dict) -> list[str]:
    agreement = report.get("precision_agreement")
    if not agreement:
        return ["", "bfloat16 against float32 on trained weights: not measured (pass `--bundle TRAINED`, e.g. "
                "Resources/Models/demo_bundle.zip)."]
    if "error" in agreement:
        return ["", f"bfloat16 against float32 on {agreement['bundle']}: error: {agreement['error']}"]
    lines = ["", f"bfloat16 against float32 on trained weights ({agreement['bundle']}; case {agreement['case']}), "
             "bfloat16 forced in every scenario: Dice of the labels per region, the regions' voxels in float32, the "
             "largest and mean absolute difference of the synthesized sequences in z-score units, and what the "
             "default precision (auto) runs:", "",
             "| scenario | WT | TC | ET | voxels WT/TC/ET | synthesized: largest | mean | default |",
             "|---|---:|---:|---:|---|---:|---:|---|"]
    rows = {**agreement["scenarios"], "worst": {**agreement["worst"], "voxels": None},
            "worst where the default is bfloat16": {**(agreement.get("worst_default") or {}), "voxels": None}}
    for name, row in rows.items():
        if "WT" not in row:
            continue
        voxels = "/".join(str(v) for v in row["voxels"].values()) if row.get("voxels") else ""
        lines.append(f"| {name} | {row['WT']:.4f} | {row['TC']:.4f} | {row['ET']:.4f} | {voxels} | "
                     f"{_fmt(row['synth_max_abs_z'], '%.3f')} | {_fmt(row.get('synth_mean_abs_z'), '%.4f')} | "
                     f"{row.get('default', '')} |")
    return lines


def _training(report: dict) -> list[str]:
    rates = report.get("step_rates") or {}
    lines = ["", "Training step rates (random data; the ratio compares this machine now with issue 14's baseline, "
             "0.67 MAE and 0.50 segmenter steps/s at the cpu preset, batch 2 of 64^3, float32, measured before the "
             "issue's work on a quiet two-core Zen 4):", "",
             "| stage @ preset, crop | precision | steps/s | ratio to the baseline | batch | peak memory (MB) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, r in rates.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | | |")
            continue
        crop = "x".join(map(str, r["crop_size"]))
        lines.append(f"| {r['stage']} @ {r['preset']}, {crop} | {r['precision']} | {r['steps_per_s']:.3f} | "
                     f"{_fmt(r.get('ratio_to_baseline'), '%.2f')} | {r['batch_size']} | {r['peak_memory_mb']:.0f} |")
    return lines


def _targets(report: dict) -> list[str]:
    targets = report.get("targets") or []
    if not targets:
        return []
    lines = ["", "Issue 14's targets, as this run measured them (they are meant for a quiet machine):", ""]
    for t in targets:
        verdict = "not measured" if t["value"] is None else ("met" if t["met"] else "NOT met")
        lines.append(f"- {t['target']}: {_fmt(t['value'], '%.3g')} (limit {t['limit']:g}): {verdict}")
    return lines


def markdown_table(report: dict) -> str:
    """A Markdown summary of ``benchmark.json``."""
    lines = (_header(report) + _inference(report) + _predict_process(report) + _agreement(report)
             + _training(report) + _targets(report))
    return "\n".join(lines) + "\n"
