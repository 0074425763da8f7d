"""The shared training engine on a small regression problem: exact resume, schedule, checkpoints, logging."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from AllStageTraining.config import OptimConfig
from AllStageTraining.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from AllStageTraining.runtime import DeviceError, resolve_device
from AllStageTraining.training.distributed import Runtime
from AllStageTraining.training.engine import build_scheduler, derived_seed, make_loader, train_loop

torch.set_num_threads(1)


class IndexedNoise(Dataset):
    """Sample ``i`` depends only on ``(seed, i)``, as TrainingCrops' samples do."""

    def __init__(self, length: int, seed: int = 0):
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(derived_seed(self.seed, index))
        x = torch.randn(8, generator=g)
        return {"x": x, "y": x.sum(0, keepdim=True) * 0.5, "index": index}


class Regression(nn.Module):
    """A tiny objective that also uses the step generator (random input dropout), like the stages do."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.register_buffer("seen", torch.zeros(()))  # a buffer updated by the step, like QuantileEMA

    def forward(self, batch, generator):
        keep = (torch.rand(batch["x"].shape, generator=generator) > 0.2).float()
        prediction = self.net(batch["x"] * keep)
        self.seen += batch["index"].float().sum()
        mse = nn.functional.mse_loss(prediction, batch["y"])
        reg = 1e-3 * sum(p.square().sum() for p in self.net.parameters())
        return {"loss": mse + reg, "mse": mse, "reg": reg}


def _optim(steps: int, **kw) -> OptimConfig:
    values = dict(steps=steps, batch_size=4, lr=1e-2, warmup_steps=2, val_every=0, ckpt_every=3, log_every=2, precision="float32")
    values.update(kw)
    return OptimConfig(**values)


class KilledAfter(IndexedNoise):
    """Raises KeyboardInterrupt when the sample after step ``stop_after`` is loaded: the run dies there."""

    def __init__(self, length: int, stop_at_index: int):
        super().__init__(length)
        self.stop_at_index = stop_at_index

    def __getitem__(self, index: int) -> dict:
        if index >= self.stop_at_index:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def _train(out: Path, stop_after: int, total: int, resume: bool = False, **kw):
    """Train toward ``total`` steps; with ``stop_after < total`` the run is interrupted after that step."""
    torch.manual_seed(123)
    optim = _optim(total, **kw)
    if stop_after < total:
        data = KilledAfter(total * optim.batch_size, stop_after * optim.batch_size)
    else:
        data = IndexedNoise(total * optim.batch_size)
    kwargs = dict(name="toy", objective=Regression(), dataset=data, optim=optim, out_dir=out, seed=7,
                  runtime=Runtime(device=torch.device("cpu")), resume=resume, config={"toy": 1})
    if stop_after < total:
        with pytest.raises(KeyboardInterrupt):
            train_loop(**kwargs)
        return None
    return train_loop(**kwargs)


def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    straight = _train(tmp_path / "straight", 6, 6)
    _train(tmp_path / "killed", 3, 6)  # checkpoint at step 3, then killed
    ckpt = load_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)
    assert ckpt["step"] == 3 and ckpt["samples_seen"] == 12
    resumed = _train(tmp_path / "killed", 6, 6, resume=True)
    assert resumed.resumed_from == 3 and resumed.step == 6
    a, b = straight.objective.state_dict(), resumed.objective.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the buffer saw every sample index exactly once: 0 + 1 + ... + 23
    assert float(b["seen"]) == sum(range(24))


def test_a_fresh_run_without_resume_ignores_an_old_checkpoint_and_changed_config_is_refused(tmp_path):
    _train(tmp_path / "run", 3, 6)
    again = _train(tmp_path / "run", 6, 6, resume=False)
    assert again.resumed_from == 0
    _train(tmp_path / "other", 3, 6)
    with pytest.raises(ValueError, match="configuration changed.*lr"):
        _train(tmp_path / "other", 6, 6, resume=True, lr=5e-3)


def test_checkpoint_holds_everything_needed_and_loads_without_unpickling(tmp_path):
    _train(tmp_path / "run", 6, 6)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "step", "samples_seen", "config"} <= set(ckpt)
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"][0])
    assert "seen" in ckpt["model"]
    assert ckpt["config"]["run"] == {"toy": 1} and ckpt["config"]["optim"]["lr"] == 1e-2


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(2)}})
    with pytest.raises(Exception):
        save_checkpoint(path, {"step": 2, "model": lambda: None})  # cannot be serialized halfway through
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name != CHECKPOINT_NAME and not p.name.endswith(".tmp")] == []


def test_warmup_then_cosine_schedule():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = build_scheduler(optimizer, steps=12, warmup_steps=2)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1 / 3) and lrs[1] == pytest.approx(2 / 3)
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def test_loader_reads_global_indices_by_step_and_rank():
    data = IndexedNoise(4 * 2 * 5)
    for rank in range(2):
        runtime = Runtime(device=torch.device("cpu"), rank=rank, world_size=2)
        loader = make_loader(data, 4, runtime, start_step=2, total_steps=5)
        indices = [batch["index"].tolist() for batch in loader]
        assert indices == [[(s * 4 + j) * 2 + rank for j in range(4)] for s in range(2, 5)]


def test_plain_log_lines_and_tensorboard_when_not_a_terminal(tmp_path, capsys):
    _train(tmp_path / "run", 6, 6)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[toy] step")]
    assert [line.split()[2] for line in lines] == ["2/6", "4/6", "6/6"]
    assert "mse" in lines[0] and "ETA" in lines[0] and "lr" in lines[0]
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def test_non_finite_loss_stops_with_a_message(tmp_path):
    class Exploding(Regression):
        def forward(self, batch, generator):
            terms = super().forward(batch, generator)
            terms["loss"] = terms["loss"] * float("nan")
            return terms

    optim = _optim(2)
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        train_loop(name="toy", objective=Exploding(), dataset=IndexedNoise(8), optim=optim, out_dir=tmp_path,
                   seed=0, runtime=Runtime(device=torch.device("cpu")))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("stage", ["mae", "seg"])
def test_step_rate_times_real_training_steps(stage):
    from AllStageTraining.config import preset
    from AllStageTraining.training.step_rate import stage_step_rate

    cfg = preset("tiny")
    cfg.data.crop_size = (16, 16, 16)
    rate = stage_step_rate(stage, cfg, "cpu", steps=1, warmup=1)
    assert rate["steps_per_s"] > 0 and rate["peak_memory_mb"] > 0
    assert rate["batch_size"] == 2 and rate["crop_size"] == [16, 16, 16] and rate["device"] == "cpu"
    with pytest.raises(ValueError, match="stage must be"):
        stage_step_rate("both", cfg, "cpu")
