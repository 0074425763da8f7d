"""``demo --quick`` end to end in real subprocesses: interrupted after stage 1, continued without redoing the
finished stages, then the report, its figures and the exported bundle are checked (the bundle loads and
predicts a test case from two sequences)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from AllStageTraining.constants import MODALITIES, SCENARIOS
from AllStageTraining.methods import DEFAULT_METHOD

FIGURES = ("dice.png", "means.png", "synthesis.png", "overlays.png", "curves.png")


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "AllStageTraining", "demo", "--quick", "--out", str(out),
                           "--threads", "2", "--device", "cpu", *extra], capture_output=True, text=True, env=env,
                          timeout=1200)


def _mtimes(paths) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


@pytest.mark.slow
def test_quick_demo_interrupted_then_completed(tmp_path):
    out = tmp_path / "demo"
    start = time.perf_counter()
    first = _demo(out, "--stop-after", "ours-mae")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after stage 'ours-mae'" in first.stdout
    assert "all-MiniLM-L6-v2" in first.stdout and "UNTRAINED" not in first.stdout  # offline, pretrained, said
    finished = ("synth", "prepare", "ours-mae")
    for name in finished:
        assert (out / "stages" / f"{name}.json").is_file()
    assert not (out / "stages" / "ours-seg.json").exists()
    assert not (out / "runs" / DEFAULT_METHOD / "seg" / "model.safetensors").exists()
    outputs = [*sorted((out / "data").rglob("*.nii.gz")), out / "split.json",
               out / "runs" / DEFAULT_METHOD / "mae" / "model.safetensors"]
    before = _mtimes(outputs)

    second = _demo(out)
    elapsed = time.perf_counter() - start
    assert second.returncode == 0, second.stderr[-3000:]
    for name in finished:
        assert f"{name}: skipped" in second.stdout
    for name in ("ours-seg", "zero-fill-seg", "ours-eval", "zero-fill-eval", "export", "report"):
        assert f"{name}: done in" in second.stdout
    assert _mtimes(outputs) == before, "a finished stage's outputs were rewritten"
    assert "skipped" in (out / "demo.log").read_text()

    # the report: both 15-row tables, the means, the figures, the warnings, the commands
    report = (out / "report" / "report.md").read_text()
    html = (out / "report" / "report.html").read_text()
    for scenario in SCENARIOS:
        assert f"| {scenario.short} | {scenario.display} |" in report
    ours, base = DEFAULT_METHOD, "zero-fill-long"
    assert (f"| Scenario | Sequences | {ours} WT | {ours} TC | {ours} ET | {base} WT | {base} TC | {base} ET |"
            in report)
    assert f"| `{ours}` |" in report and f"| `{base}` |" in report
    assert "not for clinical use" in report and "UNTRAINED" not in report
    assert "embedded by `sentence-transformers/all-MiniLM-L6-v2`" in report
    assert "python -m AllStageTraining demo --quick" in report
    for name in FIGURES:
        figure = out / "report" / "figures" / name
        assert figure.is_file() and figure.stat().st_size > 10_000, name
        assert f"figures/{name}" in report and f'src="figures/{name}"' in html
    for method, stages in ((DEFAULT_METHOD, {"mae", "seg", "eval"}), ("zero-fill-long", {"seg", "eval"})):
        summary = json.loads((out / "runs" / method / "eval" / "summary.json").read_text())
        assert summary["n_scenarios_scored"] == len(SCENARIOS)
        # the device given is the one training and evaluation used, and the report says so
        runtime = json.loads((out / "runs" / method / "runtime.json").read_text())
        assert set(runtime) == stages and {r["device"] for r in runtime.values()} == {"cpu"}, runtime
        for stage in stages:
            assert f"| `{method}` | {stage} | cpu | 2 |" in report

    # the bundle: says what it is, loads, and segments a test case given FLAIR and T1 only
    import SimpleITK as sitk

    from AllStageTraining.data.splits import cases_for_split, load_split
    from AllStageTraining.inference.predictor import Predictor

    bundle = out / "demo_bundle.zip"
    predictor = Predictor.from_bundle(bundle, device="cpu")
    assert predictor.meta["text_encoder"]["untrained"] is False
    assert predictor.meta["text_encoder"]["encoder"] == "minilm" and predictor.cfg.seg.embedding_norm == "centre"
    assert "synthetic" in predictor.meta["note"].lower()
    case = cases_for_split(load_split(out / "split.json"), "test")[0]
    given = {m: (case.images[m] if m in ("flair", "t1") else None) for m in MODALITIES}
    prediction = predictor.predict(given)
    reference = sitk.ReadImage(str(case.images["flair"]))
    assert prediction.labels.GetSize() == reference.GetSize()
    assert set(prediction.reconstructions) == {"t1ce", "t2"}
    assert set(np.unique(sitk.GetArrayViewFromImage(prediction.labels)).tolist()) <= {0, 1, 2, 4}
    print(f"quick demo (interrupted + continued): {elapsed:.0f} s")
