"""Fixtures for the MRML tests: a real MRML scene from the slicer-core wheel, and real NIfTI volumes.

Every test here needs slicer-core (the ``mrml`` extra, pinned to the oldest release line its wheels offer);
each test module starts with ``pytest.importorskip``, so without it the folder's tests are reported as
skipped. This file imports nothing from slicer at the top.
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
    """An MRML scene as the application has it (default colour tables, segmentation converter rules)."""
    pytest.importorskip("slicer", reason=SKIP_REASON)
    from AllStageSegLib.mrml_io import headless_scene

    scene = headless_scene()
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
def demo_bundle() -> Path:
    """The shipped demo bundle (Resources/Models/demo_bundle.zip): what users segment with first, and a bundle
    that reaches the tests through ``predict`` alone, like the module's."""
    pytest.importorskip("torch")
    path = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "demo_bundle.zip"
    if not path.is_file():
        pytest.skip(f"the demo bundle {path} is not in this checkout")
    return path
