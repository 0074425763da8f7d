"""The extension's screenshot, rendered headless from the MRML scene of a real run.

``python Testing/mrml/screenshot.py`` loads the shipped sample case's FLAIR and T1 into an MRML scene
(slicer-core), segments it with the shipped demo bundle through the module's own SegmentationRun (a real
``predict`` process), and draws from the scene's nodes an axial slice through the tumour of each sequence
(the two given, the two synthesized) and of FLAIR under the segment colours, as Slicer shows them
(radiological convention). It writes ``Resources/Screenshots/AllStageSeg-screenshot.png``, the file that the
extension's CMakeLists.txt names as its screenshot.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "AllStageSeg"))

from AllStageSegLib import mrml_io  # noqa: E402
from AllStageSegLib.geometry import ijk_to_ras  # noqa: E402
from AllStageSegLib.segmentation_run import SegmentationRun  # noqa: E402
from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY  # noqa: E402

SAMPLE = ROOT / "Resources" / "SampleData"
DEMO_BUNDLE = ROOT / "Resources" / "Models" / "demo_bundle.zip"
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "AllStageSeg-screenshot.png"
GIVEN = ("flair", "t1")
PANEL = 256  # pixels per view
OVERLAY_OPACITY = 0.55


def segment_sample_case(scene, timeout: float = 300):
    """(inputs, RunResult) of the sample case's FLAIR and T1 segmented with the demo bundle in ``scene``."""
    inputs = {m: mrml_io.read_volume(scene, SAMPLE / f"SynthBraTS_001_{m}.nii.gz", f"SynthBraTS_001_{m}")
              for m in GIVEN}
    run = SegmentationRun(scene, inputs, DEMO_BUNDLE, device="cpu").start()
    update = run.wait(timeout=timeout)
    if update.state != "succeeded":
        raise RuntimeError(f"the sample case did not segment: {update.message}")
    return inputs, run.result


def ras_array(volume_node) -> np.ndarray:
    """Voxels indexed [S, A, R] with each index increasing along its RAS axis (the grid is axis-aligned)."""
    array = mrml_io.voxels(volume_node)  # [K, J, I]
    directions = ijk_to_ras(volume_node)[:3, :3]
    order, flips = [], []
    for ras_axis in (2, 1, 0):  # S, A, R
        ijk_axis = int(np.argmax(np.abs(directions[ras_axis])))
        order.append(2 - ijk_axis)  # IJK axis i is array axis 2 - i
        flips.append(directions[ras_axis, ijk_axis] < 0)
    array = np.transpose(array, order)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    return array


def axial_view(array: np.ndarray, s: int) -> np.ndarray:
    """Slice ``s`` of an [S, A, R] array as Slicer's axial view shows it: anterior up, patient right on the left."""
    return array[s][::-1, ::-1]


def brain_box(image: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    """A square box around the nonzero voxels of a 2-D view, ``margin`` voxels wider on each side."""
    rows, columns = np.nonzero(image)
    centre = ((rows.min() + rows.max()) // 2, (columns.min() + columns.max()) // 2)
    half = max(rows.max() - rows.min(), columns.max() - columns.min()) // 2 + margin
    return tuple(slice(max(c - half, 0), c + half + 1) for c in centre)


def _gray(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image[image > 0], (1, 99.5)) if np.any(image > 0) else (0.0, 1.0)
    return (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _segments(segmentation_node) -> list[tuple[int, str, np.ndarray]]:
    """(BraTS label value, name, RGB 0..255) of each segment, as the segmentation shows it, by value."""
    segments = segmentation_node.GetSegmentation()
    found = [segments.GetNthSegment(i) for i in range(segments.GetNumberOfSegments())]
    return sorted((s.GetLabelValue(), s.GetName(), np.array(s.GetColor()) * 255) for s in found)


def render(scene, inputs: dict, result, out: Path = SCREENSHOT) -> Path:
    """Draw the five views of a finished run with their titles and a legend; writes ``out`` (PNG)."""
    from PIL import Image, ImageDraw, ImageFont

    reference = inputs[result.reference]
    labels = ras_array(mrml_io.export_labelmap(scene, result.segmentation, reference, "screenshot labels"))
    s = int(np.argmax((labels > 0).sum(axis=(1, 2))))  # the axial slice with the most tumour
    box = brain_box(axial_view(ras_array(reference), s))
    volumes = {**inputs, **result.synthesized}
    views = [(f"{MODALITY_DISPLAY[m]} ({'given' if m in inputs else 'synthesized'})",
              _gray(axial_view(ras_array(volumes[m]), s)[box])) for m in MODALITIES]
    base = np.repeat(_gray(axial_view(ras_array(reference), s)[box])[..., None], 3, axis=2).astype(float)
    label_view = axial_view(labels, s)[box]
    for value, _, colour in _segments(result.segmentation):
        mask = label_view == value
        base[mask] = (1 - OVERLAY_OPACITY) * base[mask] + OVERLAY_OPACITY * colour
    views.append(("Segmentation: NCR, ED, ET", base.astype(np.uint8)))

    font = ImageFont.load_default(size=15)
    title_height, legend_height = 26, 30
    canvas = Image.new("RGB", (PANEL * len(views), PANEL + title_height + legend_height), "black")
    draw = ImageDraw.Draw(canvas)
    for index, (title, view) in enumerate(views):
        image = Image.fromarray(view).resize((PANEL, PANEL), Image.Resampling.BILINEAR)
        canvas.paste(image.convert("RGB"), (index * PANEL, title_height))
        draw.text((index * PANEL + 6, 5), title, fill="white", font=font)
    x = 6
    for value, name, colour in _segments(result.segmentation):
        draw.rectangle((x, PANEL + title_height + 8, x + 14, PANEL + title_height + 22),
                       fill=tuple(int(c) for c in colour))
        draw.text((x + 20, PANEL + title_height + 7), f"{name} ({value})", fill="white", font=font)
        x += 110
    draw.text((x + 20, PANEL + title_height + 7), "Demo model (synthetic data only, not for clinical use); "
              "synthetic sample case SynthBraTS_001", fill=(200, 200, 200), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return out


def main() -> int:
    scene = mrml_io.headless_scene()
    inputs, result = segment_sample_case(scene)
    print(render(scene, inputs, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
