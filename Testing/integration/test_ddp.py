"""DistributedDataParallel on CPU: two processes with the gloo backend under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch



@pytest.mark.slow
def test_two_gloo_processes_train_and_end_with_identical_weights(tmp_path, tiny_split):
    from safetensors.torch import load_file

    split = json.loads(tiny_split.read_text())
    split["val"] = []
    split_path = tmp_path / "split.json"
    split_path.write_text(json.dumps(split))
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
               str(split_path), str(out), str(tiny_split.parent / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 finished 3 steps" in result.stdout and "rank 1 finished 3 steps" in result.stdout
    rank0, rank1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # rank 0 alone logged and checkpointed: one progress stream, and the checkpoint knows both ranks
    assert result.stdout.count("[mae] step 3/3") == 1
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and state["samples_seen"] == 3 * 2 * 2 and len(state["rng"]) == 2
