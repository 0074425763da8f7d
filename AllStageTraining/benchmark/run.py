"""The benchmark run: what is measured in which order, and the report it writes (``benchmark.json``, ``.md``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from .processes import run_child

#: The "two sequences missing" scenario: FLAIR + T1ce available, T1 and T2 reconstructed.
MISSING_SCENARIO = ("flair", "t1ce")
#: A set without T1ce (float32 under "auto"), for the trained bundle's windows one and several per call.
NO_T1CE_SCENARIO = ("flair", "t2")
#: Issue 14's targets, for the default precision on a quiet two-core machine.
TARGETS = {"ratio_full_max": 0.15, "ratio_missing_max": 0.25, "peak_rss_mb_max": 1700.0, "agreement_dice_min": 0.99,
           "training_ratio_min": 1.5, "cuda_seconds_per_case_max": 2.0}
FULL, MISSING = "ours full set", "ours FLAIR+T1ce (T1, T2 missing)"
#: The reference as MONAI's tutorial runs (PyTorch's default allocator: no transparent huge pages).
REFERENCE = "segresnet"
#: Our full-set run again with PyTorch's allocator asking for transparent huge pages (``runtime.HUGE_PAGES_ENV``).
FULL_HUGE = f"{FULL}, transparent huge pages"
#: The runs the time targets compare run this many times each (fresh processes), and the one with the median
#: time stands for them: single runs of the same command varied by 10-30% on the two-core machine.
TARGET_REPEATS = 3


def other_precision(default: str) -> str:
    """The precision shown beside the default one: float32, or bfloat16 where the default is float32."""
    return "bfloat16" if default == "float32" else "float32"


def plan(quick: bool, default_precision: str, trained: str | None = None) -> list[tuple[str, str, dict]]:
    """The timed inference runs: (name, child kind, spec entries over the base spec); ``images`` names the
    inputs: "full" (all four sequences), "missing" (MISSING_SCENARIO only) or "no_t1ce" (NO_T1CE_SCENARIO
    only). Ours run at the default precision ("auto") unless the entries say otherwise. ``trained``: a trained
    bundle (CPU runs only), also timed in its own sliding windows on the set without T1ce, with one window per
    network call and with the predictor's default (``predictor.CPU_FLOAT32_WINDOWS_PER_CALL``)."""
    from ..config import preset
    from ..inference.predictor import CPU_FLOAT32_WINDOWS_PER_CALL

    repeat = 1 if quick else TARGET_REPEATS
    runs = [(REFERENCE, "segresnet", {"images": "full", "huge_pages": False, "repeat": repeat}),
            (FULL, "ours", {"images": "full", "repeat": repeat}),
            (MISSING, "ours", {"images": "missing", "repeat": repeat})]
    if trained:  # (a bundle without a sliding window makes these two one-pass runs, which the table shows)
        own = {"bundle": trained, "images": "no_t1ce", "window": "bundle", "repeat": repeat}
        runs += [("trained bundle, its windows, FLAIR+T2, one window per call", "ours",
                  {**own, "cpu_float32_windows": 1}),
                 (f"trained bundle, its windows, FLAIR+T2, {CPU_FLOAT32_WINDOWS_PER_CALL} windows per float32 call "
                  "(the default)", "ours", own)]
    if quick:
        return runs
    other = other_precision(default_precision)
    window = preset("paper").inference
    if window.window is None:  # nothing windowed to compare against: use the classic 128^3 / 0.5
        window.window, window.overlap = (128, 128, 128), 0.5
    return runs + [
        (FULL_HUGE, "ours", {"images": "full", "huge_pages": True}),
        (f"{FULL}, {other}", "ours", {"images": "full", "precision": other}),
        (f"{MISSING}, {other}", "ours", {"images": "missing", "precision": other}),
        (f"{MISSING}, no synthesized sequences written", "ours", {"images": "missing", "synthesize": False}),
        ("ours FLAIR+T1ce, channels-last off", "ours", {"images": "missing", "channels_last": False}),
        (f"ours FLAIR+T1ce, paper preset window {window.window} overlap {window.overlap}",
         "ours", {"images": "missing", "window": list(window.window), "overlap": window.overlap}),
    ]


def measure(runs, base: dict, inputs: dict[str, dict], out: Path, timeout: float, say, peaks: dict) -> dict[str, dict]:
    """Run every planned child process; {name: result} with GFLOP/s, its share of the conv3d peak of the
    run's precision (``peaks``: precision -> GFLOP/s) and the ratio of ``io_s`` to SegResNet's."""
    results: dict[str, dict] = {}
    for i, (name, kind, extra) in enumerate(runs):
        say(f"[{i + 1}/{len(runs)}] {name}")
        spec = {**base, **extra, "images": inputs[extra["images"]], "out": str(out / f"run{i}")}
        huge_pages, repeat = spec.pop("huge_pages", None), spec.pop("repeat", 1)
        Path(spec["out"]).mkdir(parents=True, exist_ok=True)
        result = {**_median_run([run_child(kind, spec, timeout, huge_pages) for _ in range(repeat)]), "kind": kind}
        if result.get("flops") and result.get("model_s"):
            result["gflops"] = result["flops"] / 1e9
            result["gflop_per_s"] = result["flops"] / 1e9 / result["model_s"]
            peak = peaks.get(result.get("precision"), {}).get("gflop_per_s")
            if peak:
                result["share_of_peak"] = result["gflop_per_s"] / peak
        results[name] = result
        say("    " + ", ".join(f"{k} {v:.2f}" for k, v in result.items() if isinstance(v, float))
            + (f" {result['error']}" if "error" in result else ""))
    seconds = results.get(REFERENCE, {}).get("io_s")
    for result in results.values():
        if seconds and result.get("io_s"):
            result["ratio_to_segresnet"] = result["io_s"] / seconds
    return results


def _median_run(results: list[dict]) -> dict:
    """The run with the median ``io_s`` of repeated runs (an error if any failed), with ``io_s_runs``: all
    their times, and ``peak_rss_mb``: the largest of their peaks."""
    failed = [r for r in results if "error" in r]
    if failed or len(results) == 1:
        return failed[0] if failed else results[0]
    ordered = sorted(results, key=lambda r: r["io_s"])
    return {**ordered[len(ordered) // 2], "io_s_runs": [r["io_s"] for r in results],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def step_rates(device: str, threads: int, quick: bool, timeout: float, say) -> dict[str, dict]:
    """Each ``training.training_plan`` entry measured in its own process."""
    from .training import row_name, training_plan

    rates = {}
    for entry in training_plan(device):
        say(f"training step rate: {row_name(entry)}")
        spec = {**entry, "device": device, "threads": threads, "steps": 2 if quick else 5, "warmup": 1 if quick else 2}
        rates[row_name(entry)] = {**entry, **run_child("step_rate", spec, timeout)}
    return rates


def predict_processes(bundle: str, inputs: dict[str, dict], out: Path, device: str, threads: int, timeout: float,
                      say) -> dict[str, dict]:
    """``predict_process.time_predict_process`` for the full set and for FLAIR + T1ce."""
    from .predict_process import time_predict_process

    out_of = {}
    for name, key in (("full set", "full"), ("FLAIR+T1ce", "missing")):
        say(f"predict process, {name}")
        out_of[name] = time_predict_process(bundle, inputs[key], out / f"predict_{key}", device=device,
                                            threads=threads, timeout=timeout)
    return out_of


def _agreement(bundle, images: dict, device: str, threads: int, timeout: float, say) -> dict:
    say(f"bfloat16 against float32 on {bundle}: 15 scenarios")
    spec = {"bundle": str(bundle), "device": device, "threads": threads, "images": images}
    return {"bundle": str(bundle), **run_child("agreement", spec, timeout)}


def _machine(device: str) -> dict:
    import torch

    from ..runtime import cpu_has_native_bfloat16, cpu_name

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name()
    return {"device": device, "device_name": name, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "cpu_native_bfloat16": cpu_has_native_bfloat16(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run_benchmark(out_dir: str | Path, *, threads: int = 2, device: str = "cpu", quick: bool = False,
                  bundle: str | Path | None = None, timed_bundle: str | Path | None = None,
                  agreement_case: str | Path | None = None, say: Callable[[str], None] = print,
                  timeout: float = 1800) -> dict:
    """Run everything described in the package docstring; write ``benchmark.json`` and ``benchmark.md``.

    bundle: a trained bundle for the bfloat16/float32 agreement (skipped without one). timed_bundle: time this
    bundle instead of the ``paper`` architecture with random weights. agreement_case: a case folder (all four
    sequences) for the agreement instead of the synthetic case."""
    import torch

    from ..runtime import resolve_precision
    from .inputs import make_case, make_paper_bundle
    from .report import markdown_table

    case_images = agreement_images(agreement_case) if agreement_case else None  # a bad folder fails first
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _machine(device) | {"threads": threads}
    say("writing the synthetic 240x240x155 case")
    images, report["case"] = make_case(out / "case")
    if timed_bundle is None:
        say("writing the paper-size bundle (random weights)")
        timed_bundle = make_paper_bundle(out / "paper_bundle")
        report["architecture"] = "paper preset (width 16, 4 levels), random weights; random unit-vector embeddings"
    else:
        report["architecture"] = f"bundle {timed_bundle}"
    default = resolve_precision("auto", torch.device(device))
    report["default_precision"] = default
    inputs = {"full": {m: str(p) for m, p in images.items()},
              **{name: {m: (str(p) if m in given else None) for m, p in images.items()}
                 for name, given in (("missing", MISSING_SCENARIO), ("no_t1ce", NO_T1CE_SCENARIO))}}
    precisions = ["float32", "bfloat16"] + (["float16"] if device.startswith("cuda") else [])
    say("conv3d peak per precision")
    report["conv3d_peak"] = run_child("conv_peak", {"device": device, "threads": threads, "precisions": precisions},
                                      timeout)
    base = {"bundle": str(timed_bundle), "device": device, "threads": threads, "precision": "auto", "window": None,
            "overlap": 0.0}
    trained = str(bundle) if bundle is not None and device == "cpu" else None
    report["runs"] = measure(plan(quick, default, trained), base, inputs, out, timeout, say, report["conv3d_peak"])
    report["predict_process"] = predict_processes(str(timed_bundle), inputs, out, device, threads, timeout, say)
    if bundle is not None:
        agreement = _agreement(bundle, case_images or inputs["full"], device, threads, timeout, say)
        report["precision_agreement"] = {**agreement, "case": str(agreement_case or report["case"])}
    report["step_rates"] = step_rates(device, threads, quick, timeout, say)
    report["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report["targets"] = check_targets(report, TARGETS)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "benchmark.md").write_text(markdown_table(report))
    return report


def agreement_images(folder: str | Path) -> dict[str, str]:
    """The four sequences of a case folder (BraTS layout, ``data.discovery``); ValueError otherwise."""
    from ..constants import MODALITIES
    from ..data.discovery import find_cases

    folder = Path(folder).resolve()
    cases = find_cases(folder.parent, strict=False)[0] if folder.is_dir() else []
    found = [c for c in cases if c.images and Path(next(iter(c.images.values()))).resolve().parent == folder]
    if not found or any(found[0].images.get(m) is None for m in MODALITIES):
        raise ValueError(f"{folder}: not a case folder with all four sequences (BraTS layout)")
    return {m: str(found[0].images[m]) for m in MODALITIES}


def check_targets(report: dict, targets: dict = TARGETS) -> list[dict]:
    """Issue 14's targets against this run: [{"target", "value" (None: not measured), "limit", "met"}]."""
    from ..constants import REGIONS

    runs, cuda = report["runs"], report["device"].startswith("cuda")
    out = []

    def add(target: str, value, limit: float, at_most: bool = True) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": target, "value": value, "limit": limit, "met": met})

    full, missing = runs.get(FULL, {}), runs.get(MISSING, {})
    add("all four sequences: time with I/O / SegResNet's", full.get("ratio_to_segresnet"), targets["ratio_full_max"])
    add("FLAIR + T1ce: time with I/O / SegResNet's", missing.get("ratio_to_segresnet"), targets["ratio_missing_max"])
    if cuda:
        add("all four sequences: seconds per case with I/O", full.get("io_s"), targets["cuda_seconds_per_case_max"])
    else:
        peaks = [r["peak_rss_mb"] for r in (full, missing) if r.get("peak_rss_mb")]
        add("peak RSS of those two runs (MB)", max(peaks) if peaks else None, targets["peak_rss_mb_max"])
    worst = (report.get("precision_agreement") or {}).get("worst_default")
    add("bfloat16 vs float32 labels on trained weights: lowest Dice of WT, TC, ET over the scenarios the default "
        "precision runs in bfloat16", min(worst[r] for r in REGIONS) if worst else None,
        targets["agreement_dice_min"], at_most=False)
    default = "float16" if cuda else report["default_precision"]
    ratios = [r["ratio_to_baseline"] for r in report["step_rates"].values()
              if r.get("ratio_to_baseline") is not None and r.get("precision") == default]
    add(f"cpu preset, 64^3, {default}: training steps/s / the baseline's (the lower of MAE and segmenter)",
        min(ratios) if ratios else None, targets["training_ratio_min"], at_most=False)
    return out
