"""prepare_inputs: BraTS-ready cases untouched; heads stripped, moved sequences registered, loud warnings
and clear errors otherwise; load_case's explicit brain mask."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import write_case
from synth_images import images_of, synth_case, true_motion

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data import registration, skull_strip
from AllStageTraining.data.prepare_inputs import PreparationError, prepare_inputs
from AllStageTraining.data.preprocess import GeometryError, ImageError, load_case, uncrop
from AllStageTraining.data.registration import rotation_angle_deg
from AllStageTraining.data.skull_strip import BrainExtractionUnavailable, mask_problem


def _codes(prepared) -> list[str]:
    return [f.code for f in prepared.findings]


def _same_case(a, b) -> None:
    assert a.bbox == b.bbox
    for field in ("image", "brain", "available"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("source", ["tiny files", "synthetic images"])
def test_brats_ready_inputs_go_through_todays_path_untouched(source, tmp_path):
    if source == "tiny files":
        paths = write_case(tmp_path, "c")
        given = {m: paths[m] for m in ("flair", "t1ce", "t2")}
    else:
        given = images_of(synth_case(1))
    prepared = prepare_inputs(given)
    assert prepared.brain_mask is None and prepared.mask_source == "non-zero voxels"
    assert prepared.transforms == {} and prepared.reference == "flair"
    warned = {f.code for f in prepared.findings if f.severity != "info"}
    assert warned == ({"small-extent"} if source == "tiny files" else set()), prepared.log_lines()  # 4 cm "brains"
    assert _codes(prepared).count("stripped") == len(given) and _codes(prepared).count("aligned") == len(given) - 1
    if source == "synthetic images":
        assert all(prepared.images[m] is given[m] for m in given)  # the very same objects
    today = load_case(given, case_id="x")
    _same_case(load_case(prepared.images, case_id="x", reference=prepared.reference,
                         brain_mask=prepared.brain_mask), today)
    assert prepared.log_lines()[-1].startswith("preparation (s): checks")


def test_load_case_with_an_explicit_brain_mask(tmp_path):
    paths = write_case(tmp_path, "m")
    flair = sitk.ReadImage(str(paths["flair"]))
    array = sitk.GetArrayFromImage(flair)
    inner = np.zeros(array.shape, np.uint8)
    inner[10:26, 12:36, 10:30] = 1
    mask = sitk.GetImageFromArray(inner)
    mask.CopyInformation(flair)
    case = load_case({m: paths[m] for m in MODALITIES}, brain_mask=mask)
    np.testing.assert_array_equal(uncrop(case.brain, case), inner.astype(bool) & np.ones_like(array, bool))
    inside = case.image[0][case.brain]
    assert abs(inside.mean()) < 1e-3 and abs(inside.std() - 1) < 1e-2  # z-scored inside the given mask
    assert not case.image[:, ~case.brain].any()
    shifted = sitk.Image(mask)
    shifted.SetOrigin((0.0, 3.0, 0.0))
    with pytest.raises(GeometryError, match="brain mask origin"):
        load_case({"flair": paths["flair"]}, brain_mask=shifted)
    with pytest.raises(ImageError, match="the brain mask is empty"):
        load_case({"flair": paths["flair"]}, brain_mask=mask * 0)


def test_some_sequences_stripped_give_the_mask_without_deepbet():
    clean, head = synth_case(2), synth_case(2, head=True)
    given = {**images_of(clean, ["flair"]), **images_of(head, ["t1", "t2"])}  # T1, T2 on the taller head grid
    prepared = prepare_inputs(given, skull_strip="auto")
    assert prepared.mask_source == "the non-zero voxels of the skull-stripped FLAIR"
    assert "resampled" in _codes(prepared) and _codes(prepared).count("not-stripped") == 2
    assert prepared.images["t1"].GetSize() == given["flair"].GetSize()
    mask = sitk.GetArrayFromImage(prepared.brain_mask) > 0
    np.testing.assert_array_equal(mask, clean.images["flair"] > 0)
    case = load_case(prepared.images, brain_mask=prepared.brain_mask)
    np.testing.assert_array_equal(case.brain, load_case(images_of(clean)).brain)


def test_switched_off_steps_warn_loudly():
    head = images_of(synth_case(2, head=True), ["flair", "t1"])
    kept = prepare_inputs(head, skull_strip="never")
    assert kept.brain_mask is None
    (warning,) = [f for f in kept.findings if f.code == "not-stripped-kept"]
    assert warning.severity == "warning" and "FLAIR, T1 not skull-stripped" in warning.text
    moved = images_of(synth_case(1, moved=True), ["flair", "t1ce"])
    unregistered = prepare_inputs(moved, register="never")
    assert unregistered.transforms == {} and unregistered.images["t1ce"] is moved["t1ce"]
    assert {"misaligned", "not-registered"} <= set(_codes(unregistered))
    with pytest.raises(ValueError, match="register must be one of auto, always, never"):
        prepare_inputs(moved, register="sometimes")


def test_moved_sequences_are_registered_and_failures_keep_them_as_they_lie(monkeypatch, tmp_path):
    case = synth_case(1, moved=True)
    given = images_of(case, ["flair", "t1ce", "t2"])
    prepared = prepare_inputs(given)
    assert set(prepared.transforms) == {"t1ce", "t2"}
    for m, transform in prepared.transforms.items():
        truth = np.array(true_motion(case, m).GetMatrix()).reshape(3, 3)
        assert rotation_angle_deg(truth.T @ np.array(transform.GetMatrix()).reshape(3, 3)) < 1.0
    assert _codes(prepared).count("registered") == 2 and "still-misaligned" not in _codes(prepared)
    assert prepared.brain_mask is None  # stripped inputs: load_case's union of non-zero voxels
    saved = prepared.save_transforms(tmp_path)
    assert sorted(p.name for p in saved.values()) == ["t1ce_to_flair.tfm", "t2_to_flair.tfm"]
    monkeypatch.setattr(registration, "MAX_ITERATIONS", 2)
    failed = prepare_inputs(given)
    assert failed.transforms == {} and failed.images["t1ce"] is given["t1ce"]
    warnings = [f for f in failed.findings if f.code == "registration-failed"]
    assert len(warnings) == 2 and "did not converge" in warnings[0].text and "unregistered" in warnings[0].line()


def test_inputs_that_cannot_be_used_raise_one_clear_message(tmp_path):
    paths = write_case(tmp_path, "e")
    nan_brain = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["t2"]))).astype(np.float32)
    nan_brain[nan_brain != 0] = np.nan
    broken = sitk.GetImageFromArray(nan_brain)
    with pytest.raises(PreparationError, match=r"^T2: the image holds nothing but NaN or infinite values"):
        prepare_inputs({"flair": paths["flair"], "t2": broken})
    with pytest.raises(PreparationError, match="is a folder, not an image file"):
        prepare_inputs({"flair": tmp_path})
    with pytest.raises(PreparationError, match="reference sequence 't1' was not given"):
        prepare_inputs({"flair": paths["flair"]}, reference="t1")


def test_brain_mask_problems():
    grid = sitk.Image([100, 100, 100], sitk.sitkUInt8)
    grid.SetSpacing((2.0, 2.0, 2.0))
    assert mask_problem(grid) == "the brain mask is empty"
    assert "covers 100% of the volume" in mask_problem(grid + 1)
    small = sitk.Image(grid)
    small[40:50, 40:50, 40:50] = 1
    assert "only 8 ml" in mask_problem(small)
    brain = sitk.Image(grid)
    brain[20:80, 25:75, 30:75] = 1  # 1080 ml
    assert mask_problem(brain) is None


def test_missing_deepbet_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)  # an import of deepbet now fails, as when not installed
    skull_strip._extractor.cache_clear()
    try:
        with pytest.raises(BrainExtractionUnavailable, match=r'pip install "\.\[preprocess\]"'):
            prepare_inputs(images_of(synth_case(2, head=True), ["t1"]))
    finally:
        skull_strip._extractor.cache_clear()


@pytest.mark.slow
def test_heads_are_stripped_by_deepbet_without_losing_the_tumour():
    pytest.importorskip("deepbet")
    case = synth_case(1, head=True, moved=True)
    tumour = case.labels > 0
    prepared = prepare_inputs(images_of(case))
    assert prepared.mask_source == "deepbet on T1" and set(prepared.transforms) == {"t1ce", "t1", "t2"}
    mask = sitk.GetArrayFromImage(prepared.brain_mask) > 0
    assert _dice(mask, case.brain) > 0.9
    assert (mask & tumour).sum() >= 0.99 * tumour.sum()
    assert prepared.timings["skull_strip"] > 0 and "extraction-not-t1" not in _codes(prepared)
    loaded = load_case(prepared.images, brain_mask=prepared.brain_mask)
    assert loaded.brain.sum() == mask.sum()
    # FLAIR alone: extraction runs on it, with a warning that deepbet learnt on T1-weighted images
    flair_only = prepare_inputs(images_of(case, ["flair"]))
    assert flair_only.mask_source == "deepbet on FLAIR" and "extraction-not-t1" in _codes(flair_only)
    assert _dice(sitk.GetArrayFromImage(flair_only.brain_mask) > 0, case.brain) > 0.9
