"""Integration fixtures: a tiny randomly initialized model as a ``train`` run folder and as an exported bundle.

``tiny_run``: a run folder in the layout ``train`` writes (config.json, mae/model.safetensors,
seg/model.safetensors, seg/embeddings.json) holding the ``tiny`` preset's networks with random weights.
The scenario embeddings are random unit vectors (seed 0) recorded as an untrained encoder named
"random-unit-vectors", because running even an untrained CLIP text tower costs seconds; the bundle's
``text_encoder.untrained`` flag is therefore True.

``tiny_bundle``: that run exported with ``export_bundle`` as a bundle folder (session-scoped; read-only for
tests: copy it before tampering). ``make_case``: writes a small synthetic head (32x36x28 voxels, non-trivial
spacing, origin and direction) as NIfTI files and returns {modality: path}.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from inference_helpers import save_tiny_run, synthetic_head, to_image
from training_helpers import tiny_split  # noqa: F401 (the split fixture every training test uses)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return save_tiny_run(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """A bundle folder exported from ``tiny_run`` (do not modify; copy it first)."""
    from AllStageTraining.inference.bundle import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("bundles") / "tiny_bundle",
                         {"note": "random weights, for tests only; not for clinical use"})


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
