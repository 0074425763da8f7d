"""Training step rates for the benchmark, each in its own process (``training.step_rate.stage_step_rate``).

On the CPU: both stages of the ``cpu`` preset (batch 2) at its 64^3 crop, the size issue 14's baseline was
measured at, and at the 48^3 crop of the science grid, each in float32 and in bfloat16 autocast. On a GPU:
the ``cpu`` and ``paper`` presets at their own crops in the default precision (float16 AMP).
"""

from __future__ import annotations

from ..runtime import set_threads

#: Issue 14's baseline: optimizer steps/s at the ``cpu`` preset, batch 2 of 64^3, float32, before the issue's
#: work, measured on a quiet two-core AMD Zen 4. Ratios to it compare a measurement now with that one.
BASELINE_STEPS_PER_S = {"mae": 0.67, "seg": 0.50}
BASELINE_CROP = 64


def training_plan(device: str) -> list[dict]:
    """The step-rate measurements: [{"stage", "preset", "crop" (side or None: the preset's), "precision"}]."""
    if device.startswith("cuda"):
        return [{"stage": stage, "preset": name, "crop": None, "precision": "auto"}
                for name in ("cpu", "paper") for stage in ("mae", "seg")]
    return [{"stage": stage, "preset": "cpu", "crop": crop, "precision": precision}
            for crop in (BASELINE_CROP, 48) for stage in ("mae", "seg") for precision in ("float32", "bfloat16")]


def row_name(entry: dict) -> str:
    crop = f" {entry['crop']}^3" if entry["crop"] else ""
    return f"{entry['stage']}@{entry['preset']}{crop} {entry['precision']}"


def child_step_rate(spec: dict) -> dict:
    """``stage_step_rate`` of one plan entry. spec: a ``training_plan`` entry, device, threads, steps, warmup.
    Adds ``ratio_to_baseline`` at the baseline's preset and crop."""
    set_threads(spec["threads"])
    from ..config import preset
    from ..methods import configure
    from ..training.step_rate import stage_step_rate

    stage = spec["stage"]
    fields = {f"optim_{stage}.precision": spec["precision"]}
    if spec["crop"]:
        fields["data.crop_size"] = [spec["crop"]] * 3
    cfg = configure(preset(spec["preset"]).with_fields(fields), "ours")  # stage 2: co-distillation, as the baseline
    result = stage_step_rate(stage, cfg, spec["device"], steps=spec["steps"], warmup=spec["warmup"])
    if spec["preset"] == "cpu" and list(result["crop_size"]) == [BASELINE_CROP] * 3:
        result["ratio_to_baseline"] = result["steps_per_s"] / BASELINE_STEPS_PER_S[stage]
    return result
