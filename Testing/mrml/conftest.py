"""Fixtures for the MRML tests: a real MRML scene from the slicer-core wheel, and real NIfTI volumes.

Every test here needs slicer-core (the ``mrml`` extra); each test module starts with ``pytest.importorskip``,
so without it the folder's tests are reported as skipped. This file imports nothing from slicer at the top.
"""

import sys
from pathlib import Path

import pytest

SKIP_REASON = "slicer-core (the 'mrml' extra) is not installed"

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AllStageSeg"))  # AllStageSegLib
sys.path.insert(0, str(Path(__file__).resolve().parent))  # mrml_images

import SimpleITK as sitk  # noqa: E402
from mrml_images import make_image  # noqa: E402


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mrml)


@pytest.fixture
def scene():
    """An MRML scene with Slicer's default colour tables, as the application has it."""
    slicer = pytest.importorskip("slicer", reason=SKIP_REASON)
    scene = slicer.vtkMRMLScene()
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    yield scene
    scene.Clear(True)


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
    """A model bundle folder holding the ``tiny`` preset's networks with random weights (seed 0): the run
    folder of ``Testing/integration/inference_helpers.save_tiny_run``, exported with ``export_bundle``."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))  # inference_helpers
    from inference_helpers import save_tiny_run

    from AllStageTraining.inference.bundle import export_bundle

    run = save_tiny_run(tmp_path_factory.mktemp("tiny_run"))
    return export_bundle(run, tmp_path_factory.mktemp("bundles") / "tiny_bundle",
                         {"note": "random weights, for tests only; not for clinical use"})
