"""Tensors from disk into networks, safely: pickle detection, safetensors reading, and the one check that
a set of state dicts fits the networks a configuration builds (used for run folders and bundles alike)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig
from .errors import BundleFormatError, BundleMismatchError, BundlePickleError

#: {"mae": state dict or None (methods without an MAE), "seg": state dict}
StateDicts = dict[str, dict[str, torch.Tensor] | None]
#: File name endings that mean pickled content (PyTorch checkpoints, pickles, joblib dumps).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def looks_pickled(name: str, head: bytes) -> bool:
    """True when a file's name or first bytes say it holds a pickle (or a PyTorch ``torch.save`` archive).

    ``head``: at least the first 4 bytes; pickle protocols 2-5 start with 0x80 followed by the protocol number;
    a torch.save archive is a zip file whose members include ``data.pkl``.
    """
    if name.lower().endswith(PICKLE_SUFFIXES):
        return True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return False


def load_safetensors_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; BundlePickleError for pickled or zipped content, BundleFormatError for
    anything unreadable. ``what`` names the file's role in messages (e.g. "the MAE")."""
    from safetensors.torch import load

    data = Path(path).read_bytes()
    if looks_pickled(path.name, data[:4]) or data[:4] == b"PK\x03\x04":
        raise BundlePickleError(f"{path}: {what} is pickled content, which is never loaded; export weights with safetensors")
    try:
        return load(data)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise BundleFormatError(f"{path}: not a readable safetensors file ({error})") from None


def describe_shape(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _problems(cfg: RunConfig, states: StateDicts, models: dict) -> list[str]:
    """Missing, unexpected and differently shaped tensors between ``states`` and ``models``."""
    problems: list[str] = []
    for prefix, model in models.items():
        state = states.get(prefix)
        if model is None:
            if state:
                problems.append(f"{len(state)} unexpected mae.* tensors (method {cfg.method!r} has no MAE)")
            continue
        if state is None:
            problems.append(f"no {prefix}.* tensors (method {cfg.method!r} needs them)")
            continue
        expected = model.state_dict()
        for key, value in expected.items():
            if key not in state:
                problems.append(f"missing {prefix}.{key} {describe_shape(value.shape)}")
            elif tuple(state[key].shape) != tuple(value.shape):
                problems.append(f"{prefix}.{key} has shape {describe_shape(state[key].shape)}, "
                                f"the config builds {describe_shape(value.shape)}")
        problems += [f"unexpected {prefix}.{key}" for key in state if key not in expected]
    return problems


def build_checked_models(cfg: RunConfig, states: StateDicts, embeddings: torch.Tensor | None, *, source: str):
    """Build the networks for ``cfg`` and load ``states`` into them after checking names and shapes.

    Returns (mae or None, segmenter), in eval mode on the CPU. Raises BundleMismatchError listing the first
    differences (missing, unexpected and differently shaped tensors) with ``source`` in the message.
    """
    from ..nets.build import build_models

    try:
        mae, segmenter = build_models(cfg, embeddings)
    except (ValueError, TypeError, RuntimeError) as error:
        raise BundleMismatchError(f"{source}: its config does not build the networks ({error})") from None
    models = {"mae": mae, "seg": segmenter}
    problems = _problems(cfg, states, models)
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise BundleMismatchError(f"{source}: tensors do not match the networks built from its config: {shown}")
    for prefix, model in models.items():
        if model is not None:
            model.load_state_dict(states[prefix], strict=True)
            model.eval()
    return mae, segmenter
