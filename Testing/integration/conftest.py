"""Integration fixtures: a tiny randomly initialized model as a ``train`` run folder and as an exported bundle.

``tiny_run``: a run folder in the layout ``train`` writes (config.json, mae/model.safetensors,
seg/model.safetensors, seg/embeddings.json) holding the ``tiny`` preset's networks with random weights.
The scenario embeddings are random unit vectors (seed 0) recorded as an untrained encoder named
"random-unit-vectors", because running even an untrained CLIP text tower costs seconds; the bundle's
``text_encoder.untrained`` flag is therefore True.

``tiny_bundle``: that run exported with ``export_bundle`` as a bundle folder (session-scoped; read-only for
tests: copy it before tampering). ``make_case``: writes a small synthetic head (40x48x36 voxels, non-trivial
spacing, origin and direction) as NIfTI files and returns {modality: path}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

TINY_SHAPE = (36, 48, 40)  # array (z, y, x)
TINY_SPACING = (1.1, 0.9, 1.3)  # (x, y, z) mm
TINY_ORIGIN = (12.0, -30.5, 7.25)
TINY_DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # an in-plane rotation: not LPS


def save_tiny_run(run: Path, seed: int = 0) -> Path:
    """Write a ``train``-style run folder with the tiny preset's networks, randomly initialized."""
    from safetensors.torch import save_file

    from AllStageTraining.config import preset
    from AllStageTraining.constants import SCENARIOS
    from AllStageTraining.nets.build import build_models

    torch.manual_seed(seed)
    cfg = preset("tiny")
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return save_tiny_run(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """A bundle folder exported from ``tiny_run`` (do not modify; copy it first)."""
    from AllStageTraining.inference.bundle import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("bundles") / "tiny_bundle",
                         {"note": "random weights, for tests only; not for clinical use"})


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


@pytest.fixture
def make_case(tmp_path):
    """make_case(seed=0, modalities=all four) -> {modality: path to .nii.gz} on the TINY_* geometry."""

    def make(seed: int = 0, modalities=None, folder: Path | None = None) -> dict[str, Path]:
        folder = folder or tmp_path / f"case{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for modality, array in synthetic_head(seed).items():
            if modalities is not None and modality not in modalities:
                continue
            paths[modality] = folder / f"{folder.name}_{modality}.nii.gz"
            sitk.WriteImage(to_image(array), str(paths[modality]))
        return paths

    return make
