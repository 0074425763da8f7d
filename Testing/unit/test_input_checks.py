"""Input checks: values, geometry, skull-stripped or not, aligned or not; each finding one line."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from synth_images import images_of, synth_case

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data.input_checks import (
    HEAD_ML, MISALIGNED_GAIN, AlignmentSampler, Finding, alignment_evidence, geometry_findings, intensity_findings,
    skull_evidence, value_problem,
)
from AllStageTraining.synth.head import add_head


def _image(array, spacing=(1.0, 1.0, 1.0), direction=None):
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_value_problems_say_what_the_image_holds():
    brain = np.zeros((10, 12, 14), np.float32)
    brain[3:7, 3:8, 4:9] = 5.0
    assert value_problem(_image(brain)) is None
    assert value_problem(_image(np.zeros_like(brain))) == "is empty (all zero)"
    assert value_problem(_image(np.full_like(brain, np.nan))).startswith("is all NaN")
    nan_inside = np.where(brain > 0, np.nan, 0.0).astype(np.float32)  # a broken export: NaN brain, zero air
    problem = value_problem(_image(nan_inside))
    assert "nothing but NaN" in problem and f"({int((brain > 0).sum())} voxels)" in problem
    assert value_problem(_image(np.zeros((4, 4, 4), np.int16))) == "is empty (all zero)"


def test_intensity_findings():
    array = np.linspace(-3, 7, 10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    array[0, 0, :5] = np.nan
    found = {f.code: f for f in intensity_findings(_image(array), "t2")}
    assert found["nan-values"].severity == "warning" and "5 NaN" in found["nan-values"].text
    assert found["negative"].severity == "info"
    assert "floating-point" in found["intensity"].text
    assert found["nan-values"].line().startswith("warning: T2: 5 NaN")
    (empty,) = intensity_findings(_image(np.zeros((5, 5, 5), np.uint8)), "flair")
    assert empty.severity == "error" and empty.line() == "error: FLAIR: the image is empty (all zero)"
    (constant,) = intensity_findings(_image(np.full((5, 5, 5), 7, np.int16)), "t1")
    assert constant.code == "constant" and constant.severity == "warning"
    with pytest.raises(ValueError):
        Finding("fatal", "x", "y")


def test_geometry_findings():
    iso = {f.code: f for f in geometry_findings(_image(np.zeros((120, 100, 100), np.int16)), "t1")}
    assert iso["geometry"].text == "100x100x120 voxels of 1 x 1 x 1 mm, orientation LPS"
    assert set(iso) == {"geometry"}
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    oblique = (1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c)
    thick = {f.code: f for f in geometry_findings(_image(np.zeros((24, 256, 256), np.int16), (0.9, 0.9, 5.0), oblique), "flair")}
    assert "oblique by 20 degrees" in thick["geometry"].text
    assert "anisotropy 5.6" in thick["coarse-voxels"].text and thick["coarse-voxels"].severity == "warning"
    small = {f.code for f in geometry_findings(_image(np.zeros((20, 200, 200), np.int16)), "t2")}
    assert "small-extent" in small
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert "left-handed" in {f.code for f in geometry_findings(_image(np.zeros((90, 90, 90), np.int16), direction=flipped), "t1")}


def test_skull_check_tells_stripped_from_unstripped_on_every_sequence():
    index = 2
    clean = synth_case(index)
    head = synth_case(index, head=True)
    zeroed = add_head(clean, np.random.default_rng(index), zero_background=True)
    for m in MODALITIES:
        stripped = skull_evidence(images_of(clean, [m])[m])
        assert stripped.stripped and stripped.constant_border == 1.0, m
        assert 1000 < stripped.foreground_ml < 1900
        noisy = skull_evidence(images_of(head, [m])[m])
        assert not noisy.stripped and "noise" in noisy.reason, m
        zero_air = skull_evidence(images_of(zeroed, [m])[m])
        assert not zero_air.stripped and zero_air.foreground_ml > HEAD_ML and "head-sized" in zero_air.reason, m
        assert noisy.finding(m).code == "not-stripped" and stripped.finding(m).code == "stripped"


@pytest.mark.parametrize("head", [False, True])
def test_alignment_check_flags_moved_sequences_only(head):
    still = images_of(synth_case(1, head=head))
    moved = images_of(synth_case(1, head=head, moved=True))
    mask = skull_evidence(still["flair"]).foreground
    sampler = AlignmentSampler(still["flair"], mask)
    assert 1.5 < sampler.probe_deg < 2.5  # the rotation that moves a head's or brain's points 2 mm (rms)
    for m in MODALITIES[1:]:
        aligned = alignment_evidence(sampler, still[m])
        assert aligned.aligned and aligned.gain < MISALIGNED_GAIN - 0.01, (m, aligned)
        assert aligned.finding(m, "flair").line() == f"{m.upper() if m != 't1ce' else 'T1ce'}: aligned with FLAIR"
        off = alignment_evidence(sampler, moved[m])
        assert not off.aligned and off.gain > MISALIGNED_GAIN + 0.02, (m, off)
        assert np.linalg.norm(off.offset_mm) > 2.0 or np.linalg.norm(off.offset_deg) > 2.0
        assert off.finding(m, "flair").severity == "warning"


def test_alignment_check_on_small_near_spherical_volumes():
    """A 4 cm ball of noise (the predictor tests' inputs): finer sampling and wider rotation probes keep
    noise from passing for misalignment."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, 32)] * 3, indexing="ij")
    ball = z * z + y * y + x * x < 0.8
    images = [_image(np.where(ball, 400 + 40 * rng.standard_normal(ball.shape), 0).astype(np.float32),
                     (1.2, 1.2, 1.2)) for _ in range(4)]
    sampler = AlignmentSampler(images[0], skull_evidence(images[0]).foreground)
    assert sampler.spacing < 2.0 and sampler.probe_deg > 5.0
    assert all(alignment_evidence(sampler, image).aligned for image in images[1:])
    shifted = sitk.Image(images[1])
    shifted.SetOrigin((3.0, 0.0, 0.0))
    assert not alignment_evidence(sampler, shifted).aligned
