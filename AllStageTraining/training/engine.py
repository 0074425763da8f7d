"""The training loop shared by stage 1 (MAE) and stage 2 (segmenter).

A stage hands the engine an *objective*: an ``nn.Module`` whose ``forward(batch, generator)`` computes the
whole training step's losses and returns ``{"loss": total, "<term>": value, ...}`` (scalar tensors). Putting
the entire step inside one ``forward`` lets ``DistributedDataParallel`` wrap it unchanged, even when a step
runs the network several times (two views).

Exact resume. Nothing in a step depends on hidden iterator state:
- data: the sample of global index ``i`` is ``dataset[i]``, and ``TrainingCrops`` draws crop, flips and
  intensity jitter from a generator seeded by ``(seed, i)``; step ``s`` on rank ``r`` of ``W`` reads the
  indices ``(s * B + j) * W + r`` (``j < B``): a ``DistributedSampler`` without shuffling over the samples
  from the current step on;
- the step's own randomness (visibility masks, student subsets) comes from ``step_generator(seed, s, r)``;
- model, optimizer, scheduler, AMP scaler, global RNG states and step live in ``checkpoint.pt``.
So k steps, a kill, and a resume for k more give the weights of 2k uninterrupted steps.

Outputs in ``out_dir`` (rank 0 only): ``checkpoint.pt`` (every ``ckpt_every`` steps and at the end), ``tb/``
(TensorBoard: every term, the learning rate, steps/s; the stage adds validation scalars and images),
progress on stderr (tqdm on a terminal) and plain log lines on stdout otherwise.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..config import OptimConfig, fingerprint_differences
from ..nets.unet import use_channels_last
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .distributed import Runtime, barrier

#: ``validate(module, step, writer) -> {name: value}``: run on rank 0 at validation steps (module in eval mode).
Validator = Callable[[nn.Module, int, Any], Mapping[str, float]]


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed + rank``."""
    value = int(seed) + int(rank)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. ``(seed, step, rank)``), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def step_generator(seed: int, step: int, rank: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator for the random choices of training step ``step`` on ``rank``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derived_seed(seed, 0x57E9, step, rank))
    return generator


def build_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int = 0):
    """Cosine decay to 0 over ``steps`` optimizer steps, after an optional linear warmup."""
    warmup_steps = max(0, min(int(warmup_steps), steps - 1))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps - warmup_steps))
    if warmup_steps == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def samples_per_step(batch_size: int, runtime: Runtime) -> int:
    """Global samples consumed by one optimizer step (all ranks)."""
    return batch_size * runtime.world_size


def make_loader(
    dataset: Dataset, batch_size: int, runtime: Runtime, *, start_step: int, total_steps: int, num_workers: int = 0, seed: int = 0
) -> DataLoader:
    """Batches for steps ``start_step..total_steps-1`` of this rank; ``len(dataset)`` must cover all steps."""
    per_step = samples_per_step(batch_size, runtime)
    if len(dataset) < total_steps * per_step:
        raise ValueError(f"dataset has {len(dataset)} samples; {total_steps} steps need {total_steps * per_step}")
    subset = Subset(dataset, range(start_step * per_step, total_steps * per_step))
    sampler = None
    if runtime.distributed:
        sampler = DistributedSampler(subset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=False, drop_last=True)
    return DataLoader(
        subset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=runtime.device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # keeps the loader off the global RNG
        persistent_workers=False,
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values are left alone."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def place_on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """Move ``module`` to ``device``; on the CPU also switch its 3-D convolutions to channels-last (8x faster steps)."""
    module.to(device)
    if device.type == "cpu":
        use_channels_last(module)
    return module


def training_precision(name: str, device: torch.device) -> str:
    """How a training step computes for ``OptimConfig.precision``: "float16" (autocast with loss scaling, CUDA
    only), "bfloat16" (autocast) or "float32". ``auto``: float16 on CUDA, bfloat16 on a CPU that runs it natively
    (``runtime.cpu_has_native_bfloat16``), float32 elsewhere."""
    from ..runtime import resolve_precision

    if name == "float16" or (name == "auto" and device.type == "cuda"):
        if device.type != "cuda":
            raise ValueError("float16 training needs a CUDA GPU; use precision auto, bfloat16 or float32 on the CPU")
        return "float16"
    return resolve_precision(name, device)


class TrainStep:
    """One optimizer step of an objective: autocast forward, scaled backward, clipping, AdamW and scheduler.

    ``model`` is the objective, possibly wrapped in DDP; ``params`` are its trainable parameters.
    """

    def __init__(self, model: nn.Module, objective: nn.Module, optim: OptimConfig, device: torch.device):
        self.model = model
        self.objective = objective
        self.params = [p for p in objective.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the objective has no trainable parameters")
        self.optim = optim
        self.device = device
        self.precision = training_precision(optim.precision, device)
        self.use_amp = self.precision == "float16"  # float16 needs loss scaling; bfloat16 does not
        self.optimizer = torch.optim.AdamW(self.params, lr=optim.lr, weight_decay=optim.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, optim.steps, optim.warmup_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def __call__(self, batch: Any, generator: torch.Generator) -> dict[str, Tensor]:
        """Run the step; returns the objective's terms, detached."""
        dtype = torch.float16 if self.use_amp else torch.bfloat16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.precision != "float32"):
            terms = self.model(batch, generator)
        loss = terms["loss"]
        if not self.use_amp and not bool(torch.isfinite(loss.detach())):
            values = {k: float(v.detach()) for k, v in terms.items()}
            raise FloatingPointError(f"non-finite training loss {values}; lower the learning rate or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.optim.grad_clip and self.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {key: value.detach() for key, value in terms.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.use_amp and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLog:
    """Rank-0 progress: a tqdm bar on a terminal, else one plain line every ``log_every`` steps; TensorBoard."""

    def __init__(self, name: str, out_dir: Path, total: int, start: int, log_every: int, runtime: Runtime):
        self.name = name
        self.total = total
        self.start = start
        self.log_every = max(1, int(log_every))
        self.enabled = runtime.is_main
        self.writer = None
        self.bar = None
        self.t0 = time.perf_counter()
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tb"))
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc=name, unit="step", dynamic_ncols=True)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def update(self, step: int, terms: Mapping[str, Tensor], lr: float) -> None:
        """Record the terms of step ``step`` (1-based count of finished steps)."""
        if not self.enabled:
            return
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.float()
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_every and step != self.total:
            return
        means = {key: float(value) / self.count for key, value in self.sums.items()}
        self.sums, self.count = {}, 0
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.start) / elapsed if elapsed > 0 else float("nan")
        for key, value in means.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/steps_per_s", rate, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
        else:
            others = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k != "loss")
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(
                f"[{self.name}] step {step}/{self.total} loss {means['loss']:.4f} {others} lr {lr:.2e} "
                f"{rate:.2f} steps/s ETA {_format_eta(eta)}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


@dataclass
class LoopResult:
    """What ``train_loop`` leaves: the trained objective (unwrapped) and the number of finished steps."""

    objective: nn.Module
    step: int
    resumed_from: int


def _check_resumable(saved: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint made with a different configuration (names the differing fields)."""
    differences = fingerprint_differences(saved, config)
    if differences:
        raise ValueError(
            f"cannot resume from {path}: the configuration changed ({'; '.join(differences)}). "
            "Resume with the original settings, or start afresh without --resume."
        )


def _ddp_model(objective: nn.Module, runtime: Runtime) -> nn.Module:
    """``objective`` wrapped in DistributedDataParallel under torchrun, itself otherwise."""
    if not runtime.distributed:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    device = runtime.device
    return DistributedDataParallel(
        objective,
        device_ids=[device.index] if device.type == "cuda" else None,
        # every parameter of both stages' objectives takes part in every step; an objective that leaves
        # some idle declares ``find_unused_parameters = True``
        find_unused_parameters=bool(getattr(objective, "find_unused_parameters", False)),
    )


@dataclass
class _Session:
    """A stage's training between steps: its checkpoint file, what must not change on resume, validation."""

    name: str
    objective: nn.Module
    step_runner: TrainStep
    optim: OptimConfig
    runtime: Runtime
    ckpt_path: Path
    config: dict[str, Any]
    validate: Validator | None

    def resume(self) -> int:
        """Load the checkpoint (model, optimizer, scheduler, scaler, RNG states); the step it was written at."""
        runtime = self.runtime
        state = load_checkpoint(self.ckpt_path, map_location=runtime.device)
        if state.get("stage") != self.name:
            raise ValueError(f"{self.ckpt_path} belongs to stage {state.get('stage')!r}, not {self.name!r}")
        _check_resumable(state.get("config", {}), self.config, self.ckpt_path)
        self.step_runner.load_state_dict(state)
        set_rng_states(state["rng"][min(runtime.rank, len(state["rng"]) - 1)])
        if int(state.get("world_size", runtime.world_size)) != runtime.world_size and runtime.is_main:
            print(f"[{self.name}] warning: checkpoint was written with {state['world_size']} processes, resuming "
                  f"with {runtime.world_size}: the data order differs from an uninterrupted run", flush=True)
        return int(state["step"])

    def checkpoint(self, step: int) -> None:
        runtime = self.runtime
        states: list[Any] = [rng_states()]  # one entry per rank
        if runtime.distributed:
            states = [None] * runtime.world_size
            torch.distributed.all_gather_object(states, rng_states())
        if runtime.is_main:
            save_checkpoint(self.ckpt_path, {
                "stage": self.name, "step": step,
                "samples_seen": step * samples_per_step(self.optim.batch_size, runtime),
                "world_size": runtime.world_size, "config": self.config, "rng": states,
                **self.step_runner.state_dict(),
            })

    def validation(self, step: int, log: ProgressLog) -> None:
        if self.validate is not None and self.runtime.is_main:
            self.objective.eval()
            with torch.no_grad():
                values = self.validate(self.objective, step, log.writer)
            self.objective.train()
            if values:
                log.line(f"[{self.name}] validation at step {step}: "
                         + " ".join(f"{k} {v:.4f}" for k, v in values.items()))
        barrier(self.runtime)

    def run_steps(self, dataset: Dataset, start: int, seed: int, num_workers: int, log: ProgressLog) -> None:
        """Steps ``start + 1 .. optim.steps``: checkpoints every ``ckpt_every``, validation every ``val_every``,
        both at the end."""
        optim, runtime = self.optim, self.runtime
        loader = make_loader(dataset, optim.batch_size, runtime, start_step=start, total_steps=optim.steps,
                             num_workers=num_workers, seed=seed)
        step = start
        for batch in loader:
            terms = self.step_runner(to_device(batch, runtime.device), step_generator(seed, step, runtime.rank))
            step += 1
            log.update(step, terms, self.step_runner.lr)
            if step % max(1, optim.ckpt_every) == 0 or step == optim.steps:
                self.checkpoint(step)
            if (optim.val_every and step % optim.val_every == 0) or step == optim.steps:
                self.validation(step, log)
            if step >= optim.steps:
                break


def train_loop(
    *,
    name: str,
    objective: nn.Module,
    dataset: Dataset,
    optim: OptimConfig,
    out_dir: str | Path,
    seed: int,
    runtime: Runtime,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
    validate: Validator | None = None,
    num_workers: int = 0,
) -> LoopResult:
    """Train ``objective`` for ``optim.steps`` steps over ``dataset`` and return it (unwrapped, on the device).

    ``config`` (the stage's ``RunConfig.fingerprint``) and ``optim.fingerprint()`` are stored in the
    checkpoint; resuming under different ones is refused (the logging, validation and checkpoint cadence may
    change). ``validate`` runs on rank 0 every ``optim.val_every`` steps and at the end.
    """
    out_dir = Path(out_dir)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick the fastest kernels once
    seed_everything(seed, runtime.rank)
    place_on_device(objective, runtime.device)
    objective.train()
    session = _Session(name, objective, TrainStep(_ddp_model(objective, runtime), objective, optim, runtime.device),
                       optim, runtime, out_dir / CHECKPOINT_NAME,
                       {"run": dict(config or {}), "optim": optim.fingerprint()}, validate)
    start = 0
    if resume and session.ckpt_path.exists():
        start = session.resume()
    elif resume and runtime.is_main:
        print(f"[{name}] no checkpoint in {out_dir}: starting from step 0", flush=True)
    log = ProgressLog(name, out_dir, optim.steps, start, optim.log_every, runtime)
    if start > 0:
        log.line(f"[{name}] resumed from step {start}/{optim.steps}")
    try:
        if start < optim.steps:
            session.run_steps(dataset, start, seed, num_workers, log)
        else:
            log.line(f"[{name}] checkpoint is already at the last step ({start}); nothing to train")
    finally:
        log.close()
    barrier(runtime)
    objective.eval()
    return LoopResult(objective=objective, step=max(start, optim.steps), resumed_from=start)
