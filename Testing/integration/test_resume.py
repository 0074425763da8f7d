"""Resume: a train-mae process killed (SIGKILL) after its step-k checkpoint, resumed with --resume for k
more steps, ends with the weights of an uninterrupted 2k-step run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from AllStageTraining.config import preset

K = 3


def _split_without_validation(tiny_split, folder):
    """The shared split minus its val case (validation is not what this test is about), same cache."""
    split = json.loads(tiny_split.read_text())
    split["val"] = []
    path = folder / "split.json"
    path.write_text(json.dumps(split))
    return path


def _command(split, out, cache_dir, *extra):
    return [sys.executable, "-m", "AllStageTraining", "train-mae", "--split", str(split), "--out", str(out),
            "--preset", "tiny", "--device", "cpu", "--threads", "1", "--steps", str(2 * K),
            "--set", f"optim_mae.ckpt_every={K}", "--set", f"data.cache_dir={cache_dir}", *extra]


@pytest.mark.slow
def test_killed_and_resumed_run_matches_an_uninterrupted_run(tmp_path, tiny_split):
    from safetensors.torch import load_file

    from AllStageTraining.training.stage1 import train_mae

    split = _split_without_validation(tiny_split, tmp_path)
    cache_dir = tiny_split.parent / "cache"
    out = tmp_path / "killed"
    process = subprocess.Popen(_command(split, out, cache_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    log = process.communicate()[0].decode()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{log}"
    assert not (out / "model.safetensors").exists()
    assert torch.load(checkpoint, weights_only=True)["step"] == K
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    resumed = subprocess.run(_command(split, out, cache_dir, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from step {K}/{2 * K}" in resumed.stdout
    assert f"step {K + 1}/{2 * K}" in resumed.stdout and f"step 1/{2 * K}" not in resumed.stdout

    cfg = preset("tiny")
    cfg.optim_mae.steps = 2 * K
    cfg.optim_mae.ckpt_every = K
    cfg.data.cache_dir = str(cache_dir)
    torch.set_num_threads(1)
    straight = train_mae(cfg, split, tmp_path / "straight", device="cpu")

    a, b = load_file(straight), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-4, atol=1e-6), key
    # and the run did learn something in between: weights differ from the initial ones
    initial = preset("tiny")
    torch.manual_seed(initial.seed)
    from AllStageTraining.nets.mae import MultimodalMAE

    fresh = MultimodalMAE(initial.net, initial.mae).state_dict()
    assert any(not torch.allclose(fresh[k].float(), a[k].float()) for k in a if k in fresh)


def test_resume_with_a_changed_configuration_is_refused_with_one_line(tmp_path, tiny_split):
    split = _split_without_validation(tiny_split, tmp_path)
    cache_dir = tiny_split.parent / "cache"
    out = tmp_path / "run"
    out.mkdir()
    from AllStageTraining.training.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint.pt", {"stage": "mae", "step": 1, "config": {"run": {"seed": 99}, "optim": {}},
                                            "rng": [], "world_size": 1})
    result = subprocess.run(_command(split, out, cache_dir, "--resume"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "configuration changed" in errors[0] and "seed" in errors[0]
