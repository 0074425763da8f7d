"""Inference benchmark against MONAI's BraTS-tutorial SegResNet, and training step rates.

What is measured (``run_benchmark``), on one synthetic 240x240x155 case (``synth``, 1 mm; random data in a
brain-shaped mask if ``synth`` fails) and the ``paper`` architecture with random weights (untrained;
scenario embeddings are random unit vectors, E=512, which costs the same as CLIP's):

- ``ours``: ``Predictor.from_bundle`` then ``predict`` from the NIfTI files to written NIfTI outputs, for the
  full set (no MAE pass) and for FLAIR+T1ce (T1 and T2 reconstructed by the MAE), one pass over the brain
  crop (``inference.window=None``), channels-last on CPU (the Predictor's default); without ``--quick``
  also under bfloat16 autocast (with the label agreement to float32, Dice per region), without
  channels-last, and with the ``paper`` preset's own sliding window (128^3, overlap 0.5).
- ``segresnet``: the reference a user would otherwise pick, as MONAI's BraTS tutorial runs it:
  ``SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16, in_channels=4, out_channels=3)``
  (random weights), channel-wise nonzero z-score, ``sliding_window_inference(roi_size=(240,240,160),
  sw_batch_size=1, overlap=0.5)``, sigmoid > 0.5; from the same files to a written label map.

Each prediction runs in a fresh subprocess with the same thread count (``torch.set_num_threads``), so the
peak resident memory (``VmHWM``, the whole process: Python, torch, data, activations) is that prediction's
alone. Times: ``io_s`` = reading the inputs through writing the outputs (the model already built);
``model_s`` = the networks alone. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over the
networks on meta tensors of the exact input shapes (multiply-add = 2 FLOPs); GFLOP/s = FLOPs / ``model_s``.
Training step rates come from ``training.step_rate.stage_step_rate`` (``cpu`` preset; ``paper`` on CUDA).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .runtime import set_threads

SEGRESNET_KWARGS = dict(blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), init_filters=16, in_channels=4, out_channels=3)
SEGRESNET_ROI = (240, 240, 160)
SEGRESNET_OVERLAP = 0.5
#: The "two sequences missing" scenario: FLAIR + T1ce available, T1 and T2 reconstructed.
MISSING_SCENARIO = ("flair", "t1ce")
EMBED_DIM = 512


# ------------------------------------------------------------------------------------------ process stats
def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM`` from /proc; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


# ------------------------------------------------------------------------------------------------ inputs
def make_case(out_dir: Path, seed: int = 0) -> tuple[dict[str, Path], str]:
    """One 240x240x155 case as NIfTI files: ({modality: path}, how it was made)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from .synth import synthesize

        case_dir = synthesize(out_dir, 1, spacing=1, seed=seed)[0]
        from .data.discovery import find_cases

        case = find_cases(case_dir.parent)[0]
        return dict(case.images), "synth (MNI152 anatomy, 1 mm)"
    except Exception as error:  # fall back to random data in a brain-shaped mask
        import numpy as np
        import SimpleITK as sitk

        from .constants import MODALITIES

        rng = np.random.default_rng(seed)
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in (155, 240, 240)], indexing="ij")
        brain = (zz / 0.75) ** 2 + (yy / 0.72) ** 2 + (xx / 0.58) ** 2 < 1
        paths = {}
        for i, modality in enumerate(MODALITIES):
            array = np.where(brain, rng.normal(500 + 50 * i, 80, brain.shape), 0).astype(np.float32)
            paths[modality] = out_dir / f"random_{modality}.nii.gz"
            sitk.WriteImage(sitk.GetImageFromArray(array), str(paths[modality]))
        return paths, f"random data in an ellipsoidal brain mask (synth failed: {type(error).__name__}: {error})"


def make_paper_bundle(out: Path, seed: int = 0) -> Path:
    """The ``paper`` architecture with random weights and random unit-vector scenario embeddings, as a bundle."""
    import torch

    from .config import preset
    from .constants import SCENARIOS
    from .inference.bundle import write_bundle
    from .nets.build import build_models

    torch.manual_seed(seed)
    cfg = preset("paper")
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), EMBED_DIM), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    identity = {"model_name": "random-unit-vectors", "pretrained": None, "untrained": True, "seed": seed}
    return write_bundle(out, cfg, {"mae": mae.state_dict(), "seg": segmenter.state_dict()}, embeddings, identity,
                        note="benchmark: random weights; not for any use")


# ------------------------------------------------------------------------------------------------- FLOPs
def count_flops_ours(cfg, padded_shape, missing: bool) -> int:
    """FLOPs of one pass of (MAE when ``missing``) + segmenter over a (1, 4, *padded_shape) input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .nets.build import build_models

    with torch.device("meta"):
        mae, segmenter = build_models(cfg, torch.zeros(15, EMBED_DIM))
        x = torch.zeros(1, 4, *padded_shape)
        box = torch.zeros(1, 3, 2)
        available = torch.ones(1, 4, dtype=torch.bool)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            if missing:
                x = mae.complete(x, available, box, torch.ones(1, 1, *padded_shape))
            segmenter(x, torch.zeros(1, dtype=torch.long))
    return int(counter.get_total_flops())


def count_flops_segresnet(window) -> int:
    import torch
    from monai.networks.nets import SegResNet
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = SegResNet(**{k: list(v) if isinstance(v, tuple) else v for k, v in SEGRESNET_KWARGS.items()})
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 4, *window))
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------------- children (one each)
def child_ours(spec: dict) -> dict:
    """One prediction with our Predictor, from files to written files, in this (fresh) process."""
    set_threads(spec["threads"])
    from .fileio import write_image_atomically
    from .inference.predictor import Predictor

    start = time.perf_counter()
    predictor = Predictor.from_bundle(spec["bundle"], spec["device"], precision=spec["precision"],
                                      channels_last=spec.get("channels_last"))
    predictor.cfg.inference.window = tuple(spec["window"]) if spec["window"] else None
    predictor.cfg.inference.overlap = spec["overlap"]
    load_s = time.perf_counter() - start
    out = Path(spec["out"])
    start = time.perf_counter()
    prediction = predictor.predict(spec["images"])
    write_image_atomically(prediction.labels, out / "seg.nii.gz")
    for modality, image in prediction.reconstructions.items():
        write_image_atomically(image, out / f"recon_{modality}.nii.gz")
    _sync(spec["device"])
    io_s = time.perf_counter() - start
    model_s = prediction.timings.get("reconstruct", 0.0) + prediction.timings["segment"]
    shape, flops = prediction.padded_shape, None
    if not spec["window"]:
        flops = count_flops_ours(predictor.cfg, shape, bool(prediction.scenario.missing))
    del prediction, predictor
    return {"load_s": load_s, "io_s": io_s, "model_s": model_s, "peak_rss_mb": peak_rss_mb(),
            "gpu_peak_mb": _gpu_peak_mb(spec["device"]), "flops": flops,
            "labels": str(out / "seg.nii.gz"), "padded_shape": list(shape)}


def child_segresnet(spec: dict) -> dict:
    """MONAI's BraTS-tutorial SegResNet with sliding-window inference, from files to a written label map."""
    set_threads(spec["threads"])
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet
    from monai.transforms import NormalizeIntensity

    from .constants import MODALITIES
    from .data.labels import labels_from_regions
    from .fileio import write_image_atomically

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = SegResNet(**{k: list(v) if isinstance(v, tuple) else v for k, v in SEGRESNET_KWARGS.items()})
    model = model.to(device).eval()
    start = time.perf_counter()
    images = [sitk.ReadImage(str(spec["images"][m])) for m in MODALITIES]
    # nibabel-style (x, y, z) axes, as the tutorial's LoadImaged gives: 240x240x155 -> roi 240x240x160.
    volume = np.stack([sitk.GetArrayViewFromImage(im).astype(np.float32).transpose(2, 1, 0) for im in images])
    volume = NormalizeIntensity(nonzero=True, channel_wise=True)(volume)
    inputs = torch.as_tensor(np.asarray(volume), dtype=torch.float32)[None].to(device)
    del volume
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    model_start = time.perf_counter()
    with torch.inference_mode(), autocast:
        logits = sliding_window_inference(inputs, SEGRESNET_ROI, 1, model, overlap=SEGRESNET_OVERLAP)
    _sync(spec["device"])
    model_s = time.perf_counter() - model_start
    del inputs
    labels = labels_from_regions(logits[0].float(), 0.0).cpu().numpy().transpose(2, 1, 0)
    del logits
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    image.CopyInformation(images[0])
    write_image_atomically(image, Path(spec["out"]) / "seg.nii.gz")
    io_s = time.perf_counter() - start
    return {"io_s": io_s, "model_s": model_s, "peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": _gpu_peak_mb(spec["device"]),
            "flops": count_flops_segresnet(SEGRESNET_ROI)}


def _run_child(kind: str, spec: dict, timeout: float) -> dict:
    """Run ``child_<kind>(spec)`` in a fresh Python process; its result, or {"error": ...}."""
    command = [sys.executable, "-m", "AllStageTraining.benchmark", kind, json.dumps(spec, default=str)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------- the run
def _dice(a, b) -> float:
    import numpy as np

    inter, total = np.count_nonzero(a & b), np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * inter / total


def label_agreement(path_a: str, path_b: str) -> dict[str, float]:
    """Dice per region (WT, TC, ET) between two label-map files (1.0 = identical), and ``voxels``: how many
    voxels each region holds in the first (0 or the whole brain means the comparison says little)."""
    import SimpleITK as sitk

    from .constants import REGIONS
    from .data.labels import regions_from_labels

    a = regions_from_labels(sitk.GetArrayFromImage(sitk.ReadImage(path_a)))
    b = regions_from_labels(sitk.GetArrayFromImage(sitk.ReadImage(path_b)))
    out: dict = {region: round(_dice(a[i], b[i]), 5) for i, region in enumerate(REGIONS)}
    out["voxels"] = {region: int(a[i].sum()) for i, region in enumerate(REGIONS)}
    return out


def _step_rates(device: str, quick: bool, say: Callable[[str], None]) -> dict:
    try:
        from .training.step_rate import stage_step_rate
    except ImportError as error:
        return {"error": f"training.step_rate unavailable ({error})"}
    from .config import preset

    presets = ["cpu"] + (["paper"] if device.startswith("cuda") else [])
    rates = {}
    for name in presets:
        for stage in ("mae", "seg"):
            say(f"training step rate: {stage} at the {name} preset")
            try:
                rates[f"{stage}@{name}"] = stage_step_rate(stage, preset(name), device, steps=3 if quick else 5,
                                                           warmup=1 if quick else 2)
            except Exception as error:  # report, do not hide the other numbers
                rates[f"{stage}@{name}"] = {"error": f"{type(error).__name__}: {error}"}
    return rates


def _plan(quick: bool) -> list[tuple[str, str, dict]]:
    """The measured runs: (name, child kind, spec entries over the base spec); ``images`` names the inputs:
    "full" (all four sequences) or "missing" (MISSING_SCENARIO only)."""
    from .config import preset

    runs = [
        ("segresnet", "segresnet", {"images": "full"}),
        ("ours full set", "ours", {"images": "full"}),
        ("ours FLAIR+T1ce (T1, T2 missing)", "ours", {"images": "missing"}),
    ]
    if quick:
        return runs
    window = preset("paper").inference
    if window.window is None:  # nothing windowed to compare against: use the classic 128^3 / 0.5
        window.window, window.overlap = (128, 128, 128), 0.5
    return runs + [
        ("ours full set, bf16", "ours", {"images": "full", "precision": "bfloat16"}),
        ("ours FLAIR+T1ce, bf16", "ours", {"images": "missing", "precision": "bfloat16"}),
        ("ours FLAIR+T1ce, channels-last off", "ours", {"images": "missing", "channels_last": False}),
        (f"ours FLAIR+T1ce, paper preset window {window.window} overlap {window.overlap}",
         "ours", {"images": "missing", "window": list(window.window), "overlap": window.overlap}),
    ]


def _measure(runs, base: dict, inputs: dict[str, dict], out: Path, timeout: float, say) -> dict[str, dict]:
    """Run every planned child process; {name: result} with GFLOP/s and the ratio to SegResNet."""
    results: dict[str, dict] = {}
    for i, (name, kind, extra) in enumerate(runs):
        say(f"[{i + 1}/{len(runs)}] {name}")
        spec = {**base, **extra, "images": inputs[extra["images"]], "out": str(out / f"run{i}")}
        Path(spec["out"]).mkdir(parents=True, exist_ok=True)
        result = _run_child(kind, spec, timeout)
        result["kind"] = kind
        result["precision"] = spec["precision"] if kind == "ours" else (
            "float16 autocast" if base["device"].startswith("cuda") else "float32")
        if result.get("flops") and result.get("model_s"):
            result["gflops"] = result["flops"] / 1e9
            result["gflop_per_s"] = result["flops"] / 1e9 / result["model_s"]
        results[name] = result
        say("    " + ", ".join(f"{k} {v:.2f}" for k, v in result.items() if isinstance(v, float))
            + (f" {result['error']}" if "error" in result else ""))
    reference = results["segresnet"].get("io_s")
    for result in results.values():
        if reference and result.get("io_s"):
            result["ratio_to_segresnet"] = result["io_s"] / reference
    return results


def _bf16_agreement(results: dict[str, dict]) -> dict:
    agreement = {}
    for a, b in (("ours full set", "ours full set, bf16"), ("ours FLAIR+T1ce (T1, T2 missing)", "ours FLAIR+T1ce, bf16")):
        if b in results and "labels" in results.get(a, {}) and "labels" in results.get(b, {}):
            agreement[b] = label_agreement(results[a]["labels"], results[b]["labels"])
    return agreement


def run_benchmark(out_dir: str | Path, *, threads: int = 2, device: str = "cpu", quick: bool = False,
                  bundle: str | Path | None = None, say: Callable[[str], None] = print, timeout: float = 1800) -> dict:
    """Run everything described in the module docstring; write ``benchmark.json`` and ``benchmark.md``.

    bundle: benchmark this (trained) bundle instead of the random-weight ``paper`` one; with random weights
    the bf16/float32 label agreement is close to meaningless (the labels are nearly constant)."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say("writing the synthetic 240x240x155 case")
    images, origin = make_case(out / "case")
    if bundle is None:
        say("writing the paper-size bundle (random weights)")
        bundle = make_paper_bundle(out / "paper_bundle")
        architecture = "paper preset (width 16, 4 levels), random weights; random unit-vector embeddings (E=512)"
    else:
        architecture = f"bundle {bundle}"
    base = {"bundle": str(bundle), "device": device, "threads": threads, "precision": "float32", "window": None,
            "overlap": 0.0}
    inputs = {"full": {m: str(p) for m, p in images.items()},
              "missing": {m: (str(p) if m in MISSING_SCENARIO else None) for m, p in images.items()}}
    results = _measure(_plan(quick), base, inputs, out, timeout, say)
    report = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "case": origin,
        "architecture": architecture,
        "runs": results,
        "bf16_label_agreement_dice": _bf16_agreement(results),
        "step_rates": _step_rates(device, quick, say),
        "targets": {"ratio_to_segresnet_max": 1.0, "peak_rss_mb_max": 2500.0, "cuda_seconds_per_case_max": 2.0},
        "torch": torch.__version__,
    }
    report["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "benchmark.md").write_text(markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    """A short Markdown summary of ``benchmark.json``."""
    lines = [
        f"Benchmark on {report['device']} ({report['device_name']}), {report['threads']} threads; case: {report['case']}; "
        f"load average at start {report['load_average_at_start']}.",
        "",
        "| run | time with I/O (s) | ratio to SegResNet | networks (s) | GFLOP | GFLOP/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["runs"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | | | |")
            continue
        fmt = lambda v, f: (f % v) if isinstance(v, (int, float)) else "-"  # noqa: E731
        lines.append(f"| {name} | {fmt(r.get('io_s'), '%.1f')} | {fmt(r.get('ratio_to_segresnet'), '%.2f')} | "
                     f"{fmt(r.get('model_s'), '%.1f')} | {fmt(r.get('gflops'), '%.0f')} | {fmt(r.get('gflop_per_s'), '%.1f')} | "
                     f"{fmt(r.get('peak_rss_mb'), '%.0f')} |")
    if report.get("bf16_label_agreement_dice"):
        lines += ["", "bf16 vs float32 label agreement (Dice WT/TC/ET; voxels per region in float32): " + "; ".join(
            f"{k}: {v['WT']:.4f}/{v['TC']:.4f}/{v['ET']:.4f} ({v['voxels']['WT']}/{v['voxels']['TC']}/{v['voxels']['ET']})"
            for k, v in report["bf16_label_agreement_dice"].items())]
        if report["architecture"].startswith("paper preset"):
            lines.append("(random weights: the labels are nearly constant, so this agreement says little; run "
                         "`benchmark --bundle TRAINED` for a meaningful one)")
    rates = report.get("step_rates") or {}
    if rates and "error" not in rates:
        lines += ["", "| training stage @ preset | steps/s | peak memory (MB) | batch | crop |", "|---|---|---|---|---|"]
        for name, r in rates.items():
            if "error" in r:
                lines.append(f"| {name} | error: {r['error']} | | | |")
            else:
                lines.append(f"| {name} | {r['steps_per_s']:.3f} | {r.get('peak_memory_mb', 0):.0f} | {r.get('batch_size')} | "
                             f"{r.get('crop_size')} |")
    elif rates:
        lines += ["", f"training step rates: {rates['error']}"]
    return "\n".join(lines) + "\n"


def _child_main(argv: list[str]) -> int:
    kind, spec = argv[0], json.loads(argv[1])
    result = {"ours": child_ours, "segresnet": child_segresnet}[kind](spec)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
