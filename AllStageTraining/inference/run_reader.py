"""Reading a finished run folder (``layout.RunFolder``): its configuration, weights, scenario embeddings and
provenance. ``Predictor.from_run`` and ``bundle.export_bundle`` build on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..constants import SCENARIOS
from ..fileio import sha256_file
from ..layout import MODEL_FILE, RunFolder
from ..methods import get_method
from .errors import BundleFormatError, BundleNotFoundError
from .weights import StateDicts, load_safetensors_file


def read_embeddings_json(path: str | Path) -> tuple[torch.Tensor, dict]:
    """``RUN/seg/embeddings.json`` -> (embeddings float32 (15, E), text-encoder identity dict).

    Accepts ``{"embeddings": [[...] x 15], "identity": {...}}`` and the flat variant in which the identity keys
    sit beside ``"embeddings"``.
    """
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        data = {"embeddings": data}
    if "embeddings" not in data:
        raise BundleFormatError(f"{path}: no 'embeddings' list; expected the file that train-seg writes")
    embeddings = torch.tensor(data["embeddings"], dtype=torch.float32)
    if embeddings.dim() != 2 or embeddings.shape[0] != len(SCENARIOS):
        raise BundleFormatError(f"{path}: embeddings have shape {tuple(embeddings.shape)}, expected ({len(SCENARIOS)}, E)")
    identity = data.get("identity")
    if identity is None:
        identity = {k: v for k, v in data.items() if k != "embeddings"}
    return embeddings, dict(identity)


def read_run(run_dir: str | Path) -> tuple[RunConfig, StateDicts, torch.Tensor | None, dict]:
    """A run folder -> (config, {"mae": state or None, "seg": state}, embeddings (15, E) or None, text-encoder
    identity). Reads ``config.json``, ``mae/model.safetensors`` (when the method has an MAE),
    ``seg/model.safetensors`` and ``seg/embeddings.json`` (when present)."""
    run = RunFolder(run_dir)
    if not run.config.is_file():
        raise BundleNotFoundError(f"{run.root}: no {run.config.name}; expected a run folder written by `train` "
                                  f"(RUN/config.json, RUN/seg/...)")
    try:
        cfg = RunConfig.load(run.config)
        method = get_method(cfg.method)
    except (ValueError, TypeError) as error:
        raise BundleFormatError(f"{run.config}: not a RunConfig ({error})") from None
    if not run.finished("seg"):
        raise BundleNotFoundError(f"{run.root}: no seg/{MODEL_FILE}; has stage 2 (train-seg) finished?")
    states: StateDicts = {"mae": None, "seg": load_safetensors_file(run.weights("seg"), "the segmenter")}
    if method.has_mae:
        if not run.finished("mae"):
            raise BundleNotFoundError(f"{run.root}: no mae/{MODEL_FILE}; method {cfg.method!r} needs the stage-1 MAE")
        states["mae"] = load_safetensors_file(run.weights("mae"), "the MAE")
    embeddings, identity = None, {}
    if run.embeddings.is_file():
        embeddings, identity = read_embeddings_json(run.embeddings)
    elif isinstance(states["seg"].get("embeddings"), torch.Tensor):
        embeddings = states["seg"]["embeddings"].float()
    return cfg, states, embeddings, identity


def split_provenance(split_path: str | Path | None) -> dict[str, Any]:
    """Provenance of a split file: its path, sha256, data root and case counts (empty when there is none)."""
    if split_path is None or not Path(split_path).is_file():
        return {}
    path = Path(split_path)
    info: dict[str, Any] = {"split_file": str(path.resolve()), "split_sha256": sha256_file(path)}
    try:
        split = json.loads(path.read_text())
    except ValueError:
        return info
    info["data_root"] = split.get("data_root")
    info["cases"] = {part: len(split.get(part, [])) for part in ("train", "val", "test")}
    info["missing"] = split.get("missing")
    ids = [i for part in ("train", "val", "test") for i in split.get(part, [])]
    info["synthetic_data"] = bool(ids) and all(str(i).startswith("SynthBraTS") for i in ids)
    return info


def run_provenance(run_dir: str | Path, split_path: str | Path | None = None) -> dict[str, Any]:
    """Where a run's model came from: the run folder, its split (``RUN/split.json``, or ``split_path`` for a
    folder that has none) and the evaluation summary when there is one."""
    run = RunFolder(run_dir)
    provenance: dict[str, Any] = {"run_dir": str(run.root.resolve()),
                                  **split_provenance(split_path or (run.split if run.split.is_file() else None))}
    if run.eval_summary.is_file():
        try:
            provenance["evaluation"] = json.loads(run.eval_summary.read_text())
        except ValueError:
            provenance["evaluation"] = None
    return provenance
