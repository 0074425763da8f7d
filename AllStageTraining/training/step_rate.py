"""Training-step throughput of each stage on random data, for the ``benchmark`` command.

The timed step is the real one (``TrainStep`` over ``MAEObjective`` or ``SegObjective``: autocast when
``precision`` asks for it, backward, clipping, AdamW, scheduler); only the data are random: a batch of the configured
size and crop, half the samples with all four sequences and half with flair and t1 only (so that the
absent-sequence terms and the MAE completion run too).
"""

from __future__ import annotations

import resource
import time

import torch

from ..config import RunConfig
from ..constants import NUM_MODALITIES, REGIONS, SCENARIOS
from ..runtime import resolve_device
from .engine import TrainStep, place_on_device, step_generator


def random_batch(cfg: RunConfig, batch_size: int, device: torch.device, seed: int = 0) -> dict:
    """A training batch of random tensors with the shapes ``TrainingCrops`` yields (see data/dataset.py)."""
    g = torch.Generator().manual_seed(seed)
    crop = tuple(cfg.data.crop_size)
    available = torch.ones(batch_size, NUM_MODALITIES, dtype=torch.bool)
    available[1::2] = torch.tensor([True, False, True, False])
    image = torch.randn(batch_size, NUM_MODALITIES, *crop, generator=g) * available[:, :, None, None, None]
    label = (torch.rand(batch_size, len(REGIONS), *crop, generator=g) > 0.9).float()
    box = torch.tensor([[-0.5, 0.5]] * 3).expand(batch_size, 3, 2).clone()
    batch = {"image": image, "available": available, "label": label,
             "brain": torch.ones(batch_size, 1, *crop), "box": box}
    return {k: v.to(device) for k, v in batch.items()}


def _objective(stage: str, cfg: RunConfig, device: torch.device):
    from ..methods import configure, get_method
    from ..nets.build import build_models
    from ..nets.mae import MultimodalMAE
    from .stage1 import MAEObjective
    from .stage2 import SegObjective

    cfg = configure(cfg)
    if stage == "mae":
        return MAEObjective(MultimodalMAE(cfg.net, cfg.mae), cfg.mae), cfg.optim_mae
    if stage == "seg":
        embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), 512), dim=-1)  # CLIP ViT-B-32 size
        mae, segmenter = build_models(cfg, embeddings)
        if mae is not None:
            place_on_device(mae, device)
        return SegObjective(segmenter, mae, cfg.seg, get_method(cfg.method).objective), cfg.optim_seg
    raise ValueError(f"stage must be 'mae' or 'seg', not {stage!r}")


def stage_step_rate(stage: str, cfg: RunConfig, device="auto", steps: int = 5, warmup: int = 2) -> dict:
    """Optimizer steps per second of ``stage`` ("mae" | "seg") at ``cfg``'s batch size and crop.

    Returns ``{"steps_per_s", "peak_memory_mb", "batch_size", "crop_size", "device", "precision"}``. Peak memory is
    the CUDA allocator's peak during the timed steps on a GPU, and the process's peak resident set on the CPU.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as in training
    torch.manual_seed(cfg.seed)
    objective, optim = _objective(stage, cfg, device)
    place_on_device(objective, device).train()
    runner = TrainStep(objective, objective, optim, device)
    batch = random_batch(cfg, optim.batch_size, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for k in range(warmup):
        runner(batch, step_generator(cfg.seed, k))
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for k in range(steps):
        runner(batch, step_generator(cfg.seed, warmup + k))
    sync()
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {
        "steps_per_s": steps / elapsed,
        "peak_memory_mb": float(peak_mb),
        "batch_size": optim.batch_size,
        "crop_size": list(cfg.data.crop_size),
        "device": str(device),
        "precision": runner.precision,
    }
