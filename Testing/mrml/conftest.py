"""Fixtures for the MRML tests: a real MRML scene from the slicer-core wheel, and real NIfTI volumes.

Every test here needs slicer-core (the ``mrml`` extra); without it the whole folder is skipped.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package has no MRML classes", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AllStageSeg"))

import SimpleITK as sitk  # noqa: E402

#: 240x240x155 is the BraTS grid; tests use smaller grids with the same kind of geometry.
DIRECTION_LPS_ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mrml)


@pytest.fixture
def scene():
    """An MRML scene with Slicer's default colour tables, as the application has it."""
    scene = slicer.vtkMRMLScene()
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    yield scene
    scene.Clear(True)


def make_image(shape=(24, 28, 32), spacing=(1.0, 1.0, 1.0), origin=(12.0, -30.5, 4.0),
               direction=DIRECTION_LPS_ROTATED, seed=0, kind="mri") -> sitk.Image:
    """A SimpleITK image of ``shape`` (z, y, x): a bright ellipsoid 'brain' (mri) or a BraTS label map (labels)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = (z / 0.8) ** 2 + (y / 0.85) ** 2 + (x / 0.9) ** 2
    if kind == "labels":
        array = np.zeros(shape, np.uint8)
        array[radius < 0.35] = 2
        array[radius < 0.12] = 1
        array[(radius < 0.05) & (x > 0)] = 4
    else:
        array = ((radius < 1) * (100 + 20 * rng.standard_normal(shape))).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


@pytest.fixture
def write_image(tmp_path):
    """Write a SimpleITK image (or make one from keyword arguments) to tmp_path/<name>; returns the path."""
    def write(name: str, image: sitk.Image | None = None, **kwargs) -> Path:
        path = tmp_path / name
        sitk.WriteImage(image if image is not None else make_image(**kwargs), str(path))
        return path
    return write


@pytest.fixture
def load_volume(scene):
    """Read a file into a new scalar volume node of ``scene`` with Slicer's volume storage node."""
    from AllStageSegLib.mrml_io import read_volume

    return lambda path, name: read_volume(scene, path, name)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A model bundle folder holding the ``tiny`` preset's networks with random weights (seed 0).

    Built through the public API (``nets.build.build_models``, the ``train`` run layout, ``export_bundle``);
    the scenario embeddings are random unit vectors recorded as an untrained text encoder.
    """
    torch = pytest.importorskip("torch")
    import json

    from safetensors.torch import save_file

    from AllStageTraining.config import preset
    from AllStageTraining.constants import SCENARIOS
    from AllStageTraining.inference.bundle import export_bundle
    from AllStageTraining.nets.build import build_models

    torch.manual_seed(0)
    cfg = preset("tiny")
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), 32), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    run = tmp_path_factory.mktemp("tiny_run")
    for part, model in (("mae", mae), ("seg", segmenter)):
        (run / part).mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / part / "model.safetensors")
    cfg.save(run / "config.json")
    identity = {"model_name": "random-unit-vectors", "pretrained": None, "untrained": True,
                "prompts": [s.prompt for s in SCENARIOS]}
    (run / "seg" / "embeddings.json").write_text(json.dumps({"identity": identity, "embeddings": embeddings.tolist()}))
    return export_bundle(run, tmp_path_factory.mktemp("bundles") / "tiny_bundle",
                         {"note": "random weights, for tests only; not for clinical use"})
