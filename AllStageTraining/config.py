"""Run configuration: dataclasses with the presets ``tiny`` (tests), ``cpu`` (demo) and ``paper`` (GPU).

A run writes its resolved configuration as JSON beside its outputs (``RunConfig.save``); a bundle stores
the network parts of it. Lengths are in voxels, learning rates per step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DataConfig:
    crop_size: tuple[int, int, int] = (128, 128, 128)  # training crop, voxels; multiple of 8
    foreground_crop_fraction: float = 0.5  # share of crops centred on tumour voxels (rest: inside the brain)
    flip_prob: float = 0.5  # per-axis random flip
    intensity_shift: float = 0.1  # random shift, in normalized units (z-scores)
    intensity_scale: float = 0.1  # random scale factor range +-
    num_workers: int = 0  # DataLoader workers
    cache_dir: str | None = None  # preprocessed-case cache; default: <split dir>/cache


@dataclass
class NetConfig:
    width: int = 16  # channels of the first level; doubles per level
    levels: int = 4  # resolution levels (3 downsamplings): crop and window sizes must be multiples of 8
    groups: int = 8  # GroupNorm groups
    deep_supervision: bool = True


@dataclass
class MAEConfig:
    patch_size: int = 16  # cubic masking patch, voxels
    mask_ratio: float = 0.875  # fraction of patch tokens hidden (12.5% stay visible)
    fill_grid: tuple[int, int, int] = (16, 16, 16)  # learned-fill resolution over the whole brain box
    w_rec_visible: float = 0.1  # weight of the reconstruction loss on visible voxels
    w_pop: float = 0.1  # L_pop: population-prior Wasserstein distance for absent sequences (0: off)
    w_cons: float = 0.5  # L_cons: cross-view consistency for absent sequences (0: off)
    w_fill_reg: float = 1e-3  # smoothness regularizer of the learned fill (0: off)
    n_quantiles: int = 64  # quantiles describing each sequence's intensity distribution in the brain
    ema_momentum: float = 0.99  # quantile EMA: new = m * old + (1 - m) * batch


@dataclass
class TextConfig:
    model_name: str = "ViT-B-32"  # open_clip model name
    pretrained: str | None = "openai"  # open_clip pretrained tag or a local checkpoint path
    allow_untrained: bool = False  # run the text encoder on random weights (offline tests/demo); recorded loudly
    cache_dir: str | None = None  # where scenario embeddings are cached; default ~/.cache/allstageseg


@dataclass
class SegConfig:
    method: str = "ours"  # "ours" | "zero-fill" | "m3ae-style"
    personalize: str = "both"  # "both" | "head" | "norm" | "none"
    head_channels: int = 8  # hidden width of the dynamic head: C -> h -> h -> 3
    code_dim: int = 64  # scenario code from the projection MLP
    w_seg_teacher: float = 1.0
    w_seg_student: float = 1.0
    w_logit_distill: float = 1.0  # 0: off
    w_feat_distill: float = 0.1  # 0: off
    distill_kind: str = "mse"  # "mse" on probabilities | "kl" with temperature
    temperature: float = 2.0
    deep_supervision_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass
class OptimConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    val_every: int = 250  # steps; 0: only at the end
    ckpt_every: int = 100  # steps
    log_every: int = 10  # steps


@dataclass
class InferenceConfig:
    window: tuple[int, int, int] | None = None  # None: one pass over the whole brain crop
    overlap: float = 0.0
    threshold: float = 0.5
    postprocess_et: bool = False


@dataclass
class RunConfig:
    preset: str = "paper"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    net: NetConfig = field(default_factory=NetConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    optim_mae: OptimConfig = field(default_factory=OptimConfig)
    optim_seg: OptimConfig = field(default_factory=OptimConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return _build(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _build(kind, data: dict[str, Any]):
    """Rebuild a (nested) config dataclass from a dict, turning lists back into tuples."""
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for name, value in data.items():
        if name not in fields:
            raise ValueError(f"unknown config field {kind.__name__}.{name}")
        default = getattr(kind(), name)
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return kind(**kwargs)


def preset(name: str) -> RunConfig:
    """A fresh RunConfig for ``tiny``, ``cpu`` or ``paper``."""
    if name == "paper":
        cfg = RunConfig(preset="paper")
        cfg.optim_mae = OptimConfig(steps=60000, val_every=2000, ckpt_every=1000)
        cfg.optim_seg = OptimConfig(steps=30000, val_every=2000, ckpt_every=1000)
        return cfg
    if name == "cpu":
        cfg = RunConfig(preset="cpu")
        cfg.data = DataConfig(crop_size=(64, 64, 64))
        cfg.net = NetConfig(width=8, levels=4, groups=4)
        cfg.mae = MAEConfig(patch_size=8, fill_grid=(12, 12, 12))
        cfg.seg.head_channels = 8
        cfg.seg.code_dim = 32
        cfg.optim_mae = OptimConfig(steps=300, batch_size=2, lr=1e-3, amp=False, val_every=0, ckpt_every=50)
        cfg.optim_seg = OptimConfig(steps=300, batch_size=2, lr=1e-3, amp=False, val_every=0, ckpt_every=50)
        return cfg
    if name == "tiny":
        cfg = RunConfig(preset="tiny")
        cfg.data = DataConfig(crop_size=(32, 32, 32))
        cfg.net = NetConfig(width=4, levels=4, groups=2)
        cfg.mae = MAEConfig(patch_size=8, fill_grid=(8, 8, 8), n_quantiles=16)
        cfg.seg.head_channels = 4
        cfg.seg.code_dim = 8
        cfg.seg.text = TextConfig(model_name="ViT-B-32", pretrained=None, allow_untrained=True)
        cfg.optim_mae = OptimConfig(steps=4, batch_size=2, lr=1e-3, amp=False, val_every=0, ckpt_every=2, log_every=1)
        cfg.optim_seg = OptimConfig(steps=4, batch_size=2, lr=1e-3, amp=False, val_every=0, ckpt_every=2, log_every=1)
        return cfg
    raise ValueError(f"unknown preset {name!r}; expected tiny, cpu or paper")


PRESETS: tuple[str, ...] = ("tiny", "cpu", "paper")
