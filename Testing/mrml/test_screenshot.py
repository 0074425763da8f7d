"""The screenshot is rendered from a real run: the sample case and the demo bundle, segmented through the
module's SegmentationRun on a real scene, drawn by Testing/mrml/screenshot.py (which made the committed one)."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (the 'mrml' extra) is not installed")

import screenshot  # noqa: E402  (Testing/mrml, on the path through conftest)


def test_the_screenshot_shows_the_run_and_its_segments(scene, demo_bundle, tmp_path):
    from PIL import Image

    inputs, result = screenshot.segment_sample_case(scene)
    assert sorted(inputs) == ["flair", "t1"] and sorted(result.synthesized) == ["t1ce", "t2"]
    path = screenshot.render(scene, inputs, result, tmp_path / "shot.png")
    assert path.stat().st_size < 300_000
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] == 5 * screenshot.PANEL
    overlay = pixels[:, 4 * screenshot.PANEL:]
    views = pixels[:, :4 * screenshot.PANEL]
    coloured = lambda part: np.abs(part.astype(int) - part.mean(axis=2, keepdims=True)).max(axis=2) > 40  # noqa: E731
    assert coloured(overlay).sum() > 500  # the segments, in colour, over FLAIR
    assert coloured(views[30:-30]).sum() == 0  # the four sequences are grey

