"""Every training command in a real subprocess: ``--config`` merges over the preset (a partial file changes
only its fields, then the command's flags and ``--set`` apply), and ``--device cuda`` without a GPU is the
device error (exit code 5, one ``ERROR:`` line) before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from AllStageTraining.config import fingerprint_differences
from AllStageTraining.exit_codes import EXIT_DEVICE

#: command -> the arguments that make it valid (paths need not exist: --print-config and the device check
#: come before any file is read)
COMMANDS = {
    "train": ["--split", "s.json", "--out", "run", "--preset", "tiny"],
    "train-mae": ["--split", "s.json", "--out", "mae", "--preset", "tiny"],
    "train-seg": ["--split", "s.json", "--out", "seg", "--preset", "tiny", "--mae", "mae"],
    "experiment": ["--data", "data", "--out", "grid", "--preset", "tiny", "--methods", "ours-no-da"],
    "demo": ["--out", "demo", "--quick"],
}
PARTIAL = {"mae": {"w_rec_visible": 0.3}, "seg": {"head_channels": 6}, "inference": {"threshold": 0.4}}


def _cli(command: str, *extra: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AllStageTraining", command, *COMMANDS[command], *extra],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def _configs(result: subprocess.CompletedProcess) -> list[dict]:
    """The printed configuration(s): one for the train commands, one per method for experiment and demo."""
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return [data] if "method" in data else list(data.values())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_partial_config_changes_only_its_fields_in_every_command(command, tmp_path):
    (tmp_path / "partial.json").write_text(json.dumps(PARTIAL))
    plain = _configs(_cli(command, "--device", "cpu", "--print-config", cwd=tmp_path))
    merged = _configs(_cli(command, "--device", "cpu", "--print-config", "--config", "partial.json",
                           "--set", "seg.code_dim=5", cwd=tmp_path))
    assert len(plain) == len(merged) >= 1
    for before, after in zip(plain, merged):
        assert fingerprint_differences(before, after) == [
            "inference.threshold: 0.5 -> 0.4", "mae.w_rec_visible: 0.1 -> 0.3",
            f"seg.code_dim: {before['seg']['code_dim']} -> 5", f"seg.head_channels: {before['seg']['head_channels']} -> 6"]
    if command == "experiment":  # the method's own settings still apply over the merged file
        assert merged[0]["method"] == "ours-no-da" and merged[0]["mae"]["w_pop"] == 0.0
    if command == "demo":  # the demo's own size still applies over the merged file
        assert merged[0]["data"]["crop_size"] == [32, 32, 32] and merged[0]["optim_mae"]["steps"] == 60


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("command", ["train", "experiment", "demo"])
def test_an_unavailable_gpu_is_the_device_error(command, tmp_path):
    result = _cli(command, "--device", "cuda", cwd=tmp_path)
    assert result.returncode == EXIT_DEVICE == 5, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "no CUDA GPU" in errors[0] and "--device cpu" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written before the device is known"
