"""The training commands: option handling, and a tiny end-to-end ``train`` that ends in a 15-row table."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

import pytest
import torch

from AllStageTraining.cli_options import add_method_options, add_training_options, config_from_args, training_fields
from AllStageTraining.config import ConfigError
from AllStageTraining.constants import SCENARIOS
from AllStageTraining.methods import own_segmenter_steps


def _args(*argv: str, stage: str = "both") -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_options(parser, stage=stage)
    add_method_options(parser)
    return parser.parse_args(["--split", "s.json", "--out", "o", *argv])


def resolve_config(args: argparse.Namespace, *, stage: str):
    return config_from_args(args, training_fields(args, stage=stage), device=torch.device("cpu"))


def test_options_resolve_in_order_preset_config_flags_then_set(tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"mae": {"w_pop": 0.5}, "optim_seg": {"lr": 0.01, "steps": 9}}))
    cfg = resolve_config(_args("--preset", "tiny", "--config", str(partial), "--steps", "7", "--batch-size", "3",
                               "--method", "zero-fill", "--no-logit-distill", "--allow-untrained-text-encoder",
                               "--set", "data.crop_size=[16,16,16]", "--set", "optim_seg.steps=11",
                               "--set", "seg.text.pretrained=none"), stage="both")
    assert cfg.preset == "tiny" and cfg.mae.w_pop == 0.5 and cfg.optim_seg.lr == 0.01
    assert cfg.optim_mae.steps == 7 and cfg.optim_seg.steps == 11 and cfg.optim_mae.batch_size == 3
    assert cfg.method == "zero-fill" and cfg.seg.w_logit_distill == 0.0 and cfg.seg.w_feat_distill > 0
    assert cfg.seg.personalize == "none"  # the method's own settings
    assert cfg.data.crop_size == (16, 16, 16) and cfg.seg.text.pretrained is None and cfg.seg.text.allow_untrained
    # the method's settings come last: m3ae-style trains stage 1 with L_rec only whatever the file says
    m3ae = resolve_config(_args("--preset", "tiny", "--config", str(partial), "--method", "m3ae-style"), stage="both")
    assert (m3ae.mae.w_pop, m3ae.mae.w_cons, m3ae.optim_seg.lr) == (0.0, 0.0, 0.01)
    only_mae = resolve_config(_args("--preset", "tiny", "--steps", "5", stage="mae"), stage="mae")
    assert only_mae.optim_mae.steps == 5 and own_segmenter_steps(only_mae) == 4  # the default adds stage 1's 5


@pytest.mark.parametrize("bad, message", [
    (["--set", "mae.nope=1"], "unknown config field mae.nope"),
    (["--set", "mae=1"], "group of fields"),
    (["--set", "w_pop"], "KEY=VALUE"),
    (["--steps", "0"], "at least 1"),
])
def test_bad_options_are_usage_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(_args("--preset", "tiny", *bad), stage="both")


def _train(split, run, text_cache, *extra):
    command = [sys.executable, "-m", "AllStageTraining", "train", "--split", str(split), "--out", str(run),
               "--preset", "tiny", "--device", "cpu", "--threads", "1", "--allow-untrained-text-encoder",
               "--set", f"data.cache_dir={split.parent / 'cache'}", "--set", f"seg.text.cache_dir={text_cache}",
               *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_train_seg_without_a_trained_mae_says_so_in_one_line(tmp_path, tiny_split):
    result = subprocess.run([sys.executable, "-m", "AllStageTraining", "train-seg", "--split", str(tiny_split),
                             "--out", str(tmp_path / "seg"), "--preset", "tiny", "--mae", str(tmp_path / "nothing"),
                             "--method", "ours", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR: method 'ours' needs a trained MAE")


@pytest.mark.slow
def test_tiny_train_end_to_end_then_continues_without_retraining(tmp_path, tiny_split):
    run, text_cache = tmp_path / "run", tmp_path / "text-cache"
    first = _train(tiny_split, run, text_cache)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for path in ("config.json", "mae/model.safetensors", "mae/config.json", "seg/model.safetensors",
                 "seg/config.json", "seg/embeddings.json", "eval/table.csv", "eval/table.md", "eval/summary.json",
                 "eval/heatmap.png"):
        assert (run / path).is_file(), path
    embeddings = json.loads((run / "seg" / "embeddings.json").read_text())
    assert len(embeddings["embeddings"]) == len(SCENARIOS) and embeddings["identity"]["untrained"] is True
    with open(run / "eval" / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    scenarios = {row.get("scenario") for row in rows}
    assert scenarios == {s.short for s in SCENARIOS}
    dice_section = (run / "eval" / "table.md").read_text().split("**Dice")[1].split("**HD95")[0]
    table_rows = [line for line in dice_section.splitlines() if line.startswith("| ") and "Scenario" not in line]
    assert [row.split("|")[1].strip() for row in table_rows][:15] == [s.short for s in SCENARIOS]
    assert "mean Dice" in first.stdout
    # the device given is the one both training stages and the evaluation ran on; the split is the provenance
    runtime = json.loads((run / "runtime.json").read_text())
    assert set(runtime) == {"mae", "seg", "eval"}, runtime
    assert all(r["device"] == "cpu" and r["threads"] == 1 for r in runtime.values())
    from AllStageTraining.runtime import resolve_precision

    expected = resolve_precision("auto", torch.device("cpu"))  # bfloat16 where the CPU runs it natively
    # evaluation under auto: bfloat16 for the sets with T1ce where the CPU runs it natively, float32 for the rest
    with_t1ce = f"{expected} with T1ce, float32 without"
    assert runtime["eval"]["precision"] == (expected if expected == "float32" else with_t1ce)
    training = expected if expected == "float32" else f"{expected} autocast"
    assert {runtime[s]["precision"] for s in ("mae", "seg")} == {training}
    assert (run / "split.json").read_bytes() == tiny_split.read_bytes()

    again = _train(tiny_split, run, text_cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage 1 already finished" in again.stdout and "stage 2 already finished" in again.stdout
    assert "[mae] step" not in again.stdout and "[seg] step" not in again.stdout

    changed = _train(tiny_split, run, text_cache, "--set", "seg.w_feat_distill=0")
    assert changed.returncode == 2 and "different configuration" in changed.stderr
