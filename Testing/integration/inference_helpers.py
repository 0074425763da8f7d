"""Helpers for the inference tests: a tiny random model as a run folder, and a small synthetic head.

Importable by test modules in this folder (pytest puts it on sys.path); conftest.py builds fixtures on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

TINY_SHAPE = (28, 36, 32)  # array (z, y, x)
TINY_SPACING = (1.1, 0.9, 1.3)  # (x, y, z) mm
TINY_ORIGIN = (12.0, -30.5, 7.25)
TINY_DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # an in-plane rotation: not LPS


def save_tiny_run(run: Path, seed: int = 0, method: str = "ours") -> Path:
    """Write a ``train``-style run folder of ``method`` with the tiny preset's networks, randomly initialized
    (default ``ours``: its MAE completes the segmenter's inputs)."""
    from safetensors.torch import save_file

    from AllStageTraining.config import preset
    from AllStageTraining.constants import SCENARIOS
    from AllStageTraining.methods import configure
    from AllStageTraining.nets.build import build_models

    torch.manual_seed(seed)
    cfg = configure(preset("tiny"), method)
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), 32), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    (run / "mae").mkdir(parents=True, exist_ok=True)
    (run / "seg").mkdir(exist_ok=True)
    cfg.save(run / "config.json")
    save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, run / "mae" / "model.safetensors")
    save_file({k: v.contiguous() for k, v in segmenter.state_dict().items()}, run / "seg" / "model.safetensors")
    identity = {"model_name": "random-unit-vectors", "pretrained": None, "untrained": True, "seed": seed,
                "prompts": [s.prompt for s in SCENARIOS]}
    (run / "seg" / "embeddings.json").write_text(json.dumps({"identity": identity, "embeddings": embeddings.tolist()}))
    return run


def synthetic_head(seed: int = 0, shape=TINY_SHAPE) -> dict[str, np.ndarray]:
    """{modality: float32 (z, y, x)}: an ellipsoidal 'brain' with a brighter 'tumour', zero outside."""
    from AllStageTraining.constants import MODALITIES

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = (zz / 0.8) ** 2 + (yy / 0.85) ** 2 + (xx / 0.8) ** 2 < 1
    tumour = (zz - 0.2) ** 2 + (yy + 0.1) ** 2 + (xx - 0.25) ** 2 < 0.1
    out = {}
    for i, modality in enumerate(MODALITIES):
        values = 400 + 60 * i + 40 * rng.standard_normal(shape) + (250 - 80 * i) * tumour
        out[modality] = np.where(brain, values, 0).astype(np.float32)
    return out


def to_image(array: np.ndarray, spacing=TINY_SPACING, origin=TINY_ORIGIN, direction=TINY_DIRECTION) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image
