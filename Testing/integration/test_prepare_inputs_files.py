"""From files, as a user would give them: `synth --head --misalign` writes a case with the skull on and moved
sequences; prepare_inputs and load_case turn it back into the clean case's brain and aligned channels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data.discovery import find_cases
from AllStageTraining.data.prepare_inputs import prepare_inputs
from AllStageTraining.data.preprocess import load_case, uncrop


@pytest.mark.slow
def test_head_with_motion_from_files_comes_back_as_the_clean_case(tmp_path):
    pytest.importorskip("deepbet")
    for name, extra in (("clean", []), ("real", ["--head", "--misalign", "5,5"])):
        result = subprocess.run(
            [sys.executable, "-m", "AllStageTraining", "synth", "--out", str(tmp_path / name), "--n", "1",
             "--spacing", "2", "--seed", "0", "--start-index", "3", *extra],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    (clean,) = find_cases(tmp_path / "clean")
    (real,) = find_cases(tmp_path / "real")
    prepared = prepare_inputs(real.images)
    codes = [f.code for f in prepared.findings]
    assert codes.count("not-stripped") == 4 and codes.count("registered") == 3, prepared.log_lines()
    assert prepared.mask_source == "deepbet on T1"

    truth = json.loads(next((tmp_path / "real" / real.case_id).glob("*_motion.json")).read_text())
    for modality, path in prepared.save_transforms(tmp_path / "transforms").items():
        entry = truth["moved"][modality]
        expected = sitk.Euler3DTransform(entry["center_mm"], *entry["angles_rad"], entry["translation_mm"])
        found = sitk.ReadTransform(str(path))
        centre = entry["center_mm"]
        assert np.linalg.norm(np.subtract(found.TransformPoint(centre), expected.TransformPoint(centre))) < 1.0

    ours = load_case(prepared.images, real.label, reference=prepared.reference, brain_mask=prepared.brain_mask)
    theirs = load_case(clean.images, clean.label)
    # the same brain (the head's grid is taller: compare in physical space through the label's position)
    padding = int(round((theirs.grid.origin[2] - ours.grid.origin[2]) / 2.0))
    brain_ours = uncrop(ours.brain, ours)[padding: padding + theirs.full_shape[0]]
    brain_theirs = uncrop(theirs.brain, theirs)
    dice = 2 * (brain_ours & brain_theirs).sum() / (brain_ours.sum() + brain_theirs.sum())
    assert dice > 0.9
    tumour = uncrop(theirs.label, theirs) > 0
    assert (brain_ours & tumour).sum() >= 0.99 * tumour.sum()
    # every channel lines up with the clean case again (moved ones through their registration)
    both = brain_ours & brain_theirs
    for channel, modality in enumerate(MODALITIES):
        a = uncrop(ours.image[channel], ours)[padding: padding + theirs.full_shape[0]][both]
        b = uncrop(theirs.image[channel], theirs)[both]
        assert np.corrcoef(a, b)[0, 1] > 0.85, modality
