"""From a split file to preprocessed cases and weights on disk: the glue both stages share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from ..config import RunConfig
from .distributed import Runtime, barrier

if TYPE_CHECKING:
    from ..data.preprocess import PreprocessedCase

def cache_dir_for(cfg: RunConfig, split_path: str | Path) -> Path:
    """``cfg.data.cache_dir``, or ``cache/`` beside the split file."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(split_path).resolve().parent / "cache"


def load_split_cases(cfg: RunConfig, split_path: str | Path, subset: str, runtime: Runtime) -> list[PreprocessedCase]:
    """The preprocessed cases of ``subset`` ("train", "val", "test"), only their available sequences read.

    Rank 0 fills the cache first; the other ranks then read it (no duplicate preprocessing under torchrun).
    """
    from ..data.cache import CaseCache
    from ..data.splits import cases_for_split, load_split

    split = load_split(split_path)
    if not split[subset]:
        return []
    cache = CaseCache(cache_dir_for(cfg, split_path))
    files = cases_for_split(split, subset)
    cases = [cache.get(case) for case in files] if runtime.is_main else None
    barrier(runtime)
    if cases is None:
        cases = [cache.get(case) for case in files]
    return cases


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """``module.state_dict()`` as safetensors (contiguous CPU copies), written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    tmp.replace(path)
    return path


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors state dict into ``module`` (strict: every key and shape must match)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"{path} does not fit the configured network (width/levels/method?): {error}") from None
    return module


def with_grad_disabled(module: nn.Module) -> nn.Module:
    """Freeze ``module``: no parameter requires a gradient, eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()

