"""Synthetic heads (``synth --head``) and patient motion (``synth --misalign``): the truth tests rely on."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data.discovery import find_cases
from AllStageTraining.synth import generate_case
from AllStageTraining.synth.contrast import SIGNAL
from AllStageTraining.synth.head import FAT, HEAD_SIGNAL, MARROW, PAD_ABOVE_MM, PAD_BELOW_MM

INDEX, SPACING = 2, 2


@pytest.fixture(scope="module")
def clean_and_head():
    return generate_case(INDEX, SPACING, 0), generate_case(INDEX, SPACING, 0, head=True)


def test_head_keeps_the_brain_and_labels_and_pads_the_grid(clean_and_head):
    clean, head = clean_and_head
    below, above = int(PAD_BELOW_MM / SPACING), int(PAD_ABOVE_MM / SPACING)
    assert head.padding == (below, above)
    grid = head.grid()
    assert grid.GetSize() == (120, 120, 78 + below + above)
    assert np.allclose(grid.GetOrigin(), (0.5, -238.5, 0.5 - below * SPACING))
    inner = slice(below, below + 78)
    assert np.array_equal(head.labels[inner], clean.labels) and not head.labels[:below].any()
    brain = np.any([v != 0 for v in clean.images.values()], axis=0)
    assert np.array_equal(head.brain[inner], brain)
    for m in MODALITIES:
        assert head.images[m].dtype == np.int16
        assert np.array_equal(head.images[m][inner][brain], clean.images[m][brain])  # brain voxels untouched
        outside = head.images[m][~head.brain]
        assert np.mean(outside > 0) > 0.5  # scanner noise in the air, tissue around the brain


def test_head_layers_have_real_contrasts(clean_and_head):
    _, head = clean_and_head
    distance = ndi.distance_transform_edt(~head.brain, sampling=SPACING)  # mm outside the brain
    white = head.brain & (head.fractions["wm"] > 0.9) & (head.labels == 0)
    for channel, m in enumerate(MODALITIES):
        image = head.images[m].astype(float)
        wm = np.median(image[white])
        scalp = image[(distance > 10) & (distance < 16)]
        skull = image[(distance > 3) & (distance < 9)]
        # bone (signal void) lies within the skull shell on every sequence
        assert np.percentile(skull, 10) < 0.3 * wm, m
        # fat of the scalp and marrow is bright where it should be
        if m in ("t1", "t1ce"):
            assert np.percentile(scalp, 90) > 1.1 * wm, m
    assert HEAD_SIGNAL[FAT][MODALITIES.index("t1")] > SIGNAL["wm"][MODALITIES.index("t1")]
    assert HEAD_SIGNAL[MARROW][MODALITIES.index("t1")] > 1.0


def test_zero_background_variant():
    from AllStageTraining.synth.head import add_head

    clean = generate_case(INDEX, SPACING, 0)
    head = add_head(clean, np.random.default_rng(0), zero_background=True)
    corner = head.images["t1"][:3, :3, :3]
    assert not corner.any()  # the air is exactly zero, as some scanners write it


def test_misalign_moves_every_sequence_but_flair_by_the_recorded_motion():
    still = generate_case(INDEX, SPACING, 0)
    moved = generate_case(INDEX, SPACING, 0, misalign=(5.0, 5.0))
    assert np.array_equal(moved.images["flair"], still.images["flair"])
    assert np.array_equal(moved.labels, still.labels)
    record = moved.motion
    assert record["reference"] == "flair" and set(record["moved"]) == {"t1ce", "t1", "t2"}
    grid = moved.grid()
    for m, entry in record["moved"].items():
        assert entry["rotation_deg"] == pytest.approx(5.0, abs=1e-6)
        assert entry["shift_mm"] == pytest.approx(5.0, abs=1e-6)
        # the record rebuilds the motion: resampling the moved image through T brings back the still one
        transform = sitk.Euler3DTransform(entry["center_mm"], *entry["angles_rad"], entry["translation_mm"])
        image = sitk.GetImageFromArray(moved.images[m].astype(np.float32))
        image.CopyInformation(grid)
        back = sitk.GetArrayFromImage(sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0))
        inner = ndi.binary_erosion(still.images[m] > 0, iterations=3)
        before = np.corrcoef(moved.images[m][inner], still.images[m][inner])[0, 1]
        after = np.corrcoef(back[inner], still.images[m][inner])[0, 1]
        assert after > 0.9 > before + 0.1, m
    assert len({json.dumps(e["angles_rad"]) for e in record["moved"].values()}) == 3  # independent motions


def test_cli_head_and_misalign(tmp_path):
    out = tmp_path / "cases"
    result = subprocess.run(
        [sys.executable, "-m", "AllStageTraining", "synth", "--out", str(out), "--n", "1", "--spacing", "2",
         "--seed", "0", "--start-index", str(INDEX), "--head", "--misalign", "3,4"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    case_dir = out / f"SynthBraTS_{INDEX:03d}"
    record = json.loads((case_dir / f"{case_dir.name}_motion.json").read_text())
    assert record["degrees"] == 3.0 and record["mm"] == 4.0
    (case,) = find_cases(out)  # the JSON beside the images does not disturb discovery
    assert set(case.images) == set(MODALITIES) and case.label is not None
    expected = generate_case(INDEX, SPACING, 0, head=True, misalign=(3.0, 4.0))
    t2 = sitk.ReadImage(str(case.images["t2"]))
    assert np.array_equal(sitk.GetArrayFromImage(t2), expected.images["t2"])
    assert t2.GetOrigin() == expected.grid().GetOrigin()
    bad = subprocess.run([sys.executable, "-m", "AllStageTraining", "synth", "--out", str(tmp_path / "x"),
                          "--misalign", "5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "DEG,MM" in bad.stderr
