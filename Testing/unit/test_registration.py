"""Rigid co-registration: recovers a known 5 degree / 5 mm motion, says when it fails, saves its transform."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from synth_images import images_of, synth_case, true_motion

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data import registration
from AllStageTraining.data.input_checks import skull_evidence
from AllStageTraining.data.registration import register_rigid, resample_onto, rotation_angle_deg, save_transform


def _errors(found: sitk.Transform, truth: sitk.Euler3DTransform, brain_points: np.ndarray) -> tuple[float, float]:
    """(rotation left over in degrees, mean displacement error over the brain in mm)."""
    residual = np.array(truth.GetMatrix()).reshape(3, 3).T @ np.array(found.GetMatrix()).reshape(3, 3)
    moved = np.array([found.TransformPoint(p) for p in brain_points])
    true = np.array([truth.TransformPoint(p) for p in brain_points])
    return rotation_angle_deg(residual), float(np.linalg.norm(moved - true, axis=1).mean())


def _brain_points(case, every: int = 7) -> list[tuple[float, ...]]:
    grid = case.grid()
    brain = case.brain if case.brain is not None else case.images["flair"] > 0
    index = np.argwhere(brain)[::every][:, ::-1]
    return [grid.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in index]


@pytest.mark.parametrize("head", [False, True])
def test_recovers_a_known_motion_within_one_degree_and_one_millimetre(head):
    case = synth_case(1, head=head, moved=True)
    images = images_of(case)
    mask = skull_evidence(images["flair"]).foreground
    points = _brain_points(case)
    for m in MODALITIES[1:]:
        result = register_rigid(images["flair"], images[m], fixed_mask=mask)
        assert result.ok, result.problem
        truth = true_motion(case, m)
        assert rotation_angle_deg(truth.GetMatrix()) == pytest.approx(5.0)
        turn, shift = _errors(result.transform, truth, points)
        assert turn < 1.0 and shift < 1.0, (m, turn, shift)
        assert result.similarity_after > result.similarity_before
        assert 4.0 < result.rotation_deg < 6.0
        assert "degrees and" in result.summary()
        # on the reference grid, the registered sequence matches the sequence that never moved
        still = synth_case(1, head=head).images[m].astype(np.float32)
        back = sitk.GetArrayFromImage(resample_onto(images[m], images["flair"], result.transform))
        inside = still > 0
        assert np.corrcoef(back[inside], still[inside])[0, 1] > 0.9


def test_a_registration_that_does_not_converge_says_so(monkeypatch):
    monkeypatch.setattr(registration, "MAX_ITERATIONS", 2)
    images = images_of(synth_case(1, moved=True))
    result = register_rigid(images["flair"], images["t1"], fixed_mask=skull_evidence(images["flair"]).foreground)
    assert not result.ok and "did not converge" in result.problem


def test_transform_round_trip(tmp_path):
    case = synth_case(1, moved=True)
    truth = true_motion(case, "t2")
    path = save_transform(truth, tmp_path / "t2_to_flair.tfm")
    back = sitk.ReadTransform(str(path))
    point = (100.0, -120.0, 70.0)
    assert np.allclose(back.TransformPoint(point), truth.TransformPoint(point))
