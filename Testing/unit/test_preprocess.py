"""Preprocessing: normalization, cropping, geometry checks and resampling, label and image errors,
orientation and the way back onto the input grid."""

import numpy as np
import pytest
import SimpleITK as sitk
from data_helpers import make_arrays, to_image, write_case

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data.preprocess import (
    CLIP_Z, CROP_MARGIN, GeometryError, ImageError, LabelError, load_case, to_reference_image, uncrop,
)


def _images(paths, modalities=MODALITIES):
    return {m: paths[m] if m in modalities else None for m in MODALITIES}


def test_load_case_normalizes_crops_and_zeroes_unavailable(tmp_path):
    paths = write_case(tmp_path, "c1")
    case = load_case(_images(paths, ("flair", "t1", "t2")), paths["seg"], case_id="c1")
    images, label = make_arrays(0)
    brain_full = images["flair"] != 0
    assert case.image.dtype == np.float32 and case.image.shape == (4, *case.brain.shape)
    assert case.available.tolist() == [True, False, True, True]
    assert not case.image[1].any()  # t1ce not given: exactly zero
    assert not case.image[:, ~case.brain].any()  # zero outside the brain
    assert np.abs(case.image).max() <= CLIP_Z
    flair = case.image[0][case.brain]
    assert abs(flair.mean()) < 1e-3 and abs(flair.std() - 1) < 1e-3  # nothing clipped in this channel
    hits = [np.flatnonzero(brain_full.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    assert case.bbox == tuple((h[0] - CROP_MARGIN, h[-1] + 1 + CROP_MARGIN) for h in hits)
    np.testing.assert_array_equal(uncrop(case.brain, case), brain_full)
    np.testing.assert_array_equal(uncrop(case.label, case), label)
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1, 2, 4}


def test_brats2023_label_is_mapped_and_bad_labels_are_named(tmp_path):
    _, label = make_arrays(0)
    label2023 = np.where(label == 4, 3, label).astype(np.uint8)
    paths = write_case(tmp_path, "new", convention="brats2023", label_array=label2023)
    case = load_case(_images(paths), paths["seg"], case_id="new")
    np.testing.assert_array_equal(uncrop(case.label, case), label)
    bad = label.copy()
    bad[0, 0, :2] = (5, 9)
    paths = write_case(tmp_path, "bad", label_array=bad)
    with pytest.raises(LabelError, match=r"case bad: label values \[5, 9\] are not BraTS labels"):
        load_case(_images(paths), paths["seg"], case_id="bad")


def test_geometry_mismatch_messages(tmp_path):
    paths = write_case(tmp_path, "g")
    images, label = make_arrays(0)
    sitk.WriteImage(to_image(images["t1ce"], spacing=(1.0, 1.0, 3.0)), str(paths["t1ce"]))
    with pytest.raises(GeometryError) as raised:
        load_case(_images(paths), case_id="caseX")
    assert str(raised.value) == ("case caseX: t1ce spacing (1, 1, 3) differs from flair (1, 1, 1); "
                                 "pass resample=True / --resample to resample onto flair")
    sitk.WriteImage(to_image(images["t1ce"], origin=(0.0, 0.5, 0.0)), str(paths["t1ce"]))
    with pytest.raises(GeometryError, match=r"case caseX: t1ce origin \(0, 0.5, 0\) differs from flair \(0, 0, 0\)"):
        load_case(_images(paths), case_id="caseX")
    sitk.WriteImage(to_image(images["t1ce"], origin=(0.0, 1e-5, 0.0)), str(paths["t1ce"]))
    load_case(_images(paths), case_id="caseX")  # within tolerance
    sitk.WriteImage(to_image(label[:, :, :-2]), str(paths["seg"]))
    with pytest.raises(GeometryError, match=r"case caseX: label size \(38, 48, 36\) differs from t2 \(40, 48, 36\)"):
        load_case(_images(paths, ("t2",)), paths["seg"], case_id="caseX")


def test_resample_fixes_mismatched_geometry(tmp_path):
    paths = write_case(tmp_path, "r")
    images, _ = make_arrays(0)
    coarse = images["t1ce"][:, :, ::2]  # every second x column, 2 mm apart: same physical extent
    sitk.WriteImage(to_image(coarse, spacing=(2.0, 1.0, 1.0)), str(paths["t1ce"]))
    with pytest.raises(GeometryError):
        load_case(_images(paths), paths["seg"], case_id="r")
    resampled = load_case(_images(paths), paths["seg"], case_id="r", resample=True)
    reference = load_case(_images(write_case(tmp_path / "ref", "r")), case_id="r")
    assert resampled.image.shape == reference.image.shape and resampled.bbox == reference.bbox
    # on the even x columns the coarse samples lie exactly: same values up to the z-score's scale and offset
    even = (np.arange(reference.brain.shape[2]) + reference.bbox[2][0]) % 2 == 0
    inside = reference.brain[:, :, even]
    correlation = np.corrcoef(resampled.image[1][:, :, even][inside], reference.image[1][:, :, even][inside])[0, 1]
    assert correlation > 0.99
    named = load_case(_images(paths), case_id="r", resample=True, reference="t1ce")
    assert named.grid.size == (20, 48, 36) and named.grid.spacing == (2.0, 1.0, 1.0)


def test_empty_and_nan_images_are_errors(tmp_path):
    paths = write_case(tmp_path, "e")
    images, _ = make_arrays(0)
    sitk.WriteImage(to_image(np.zeros_like(images["t1"])), str(paths["t1"]))
    with pytest.raises(ImageError, match="case e: t1 image is empty"):
        load_case(_images(paths), case_id="e")
    nan = to_image(np.full(images["t2"].shape, np.nan, dtype=np.float32))  # NIfTI IO would turn NaN into 0
    with pytest.raises(ImageError, match="case e: t2 image is all NaN"):
        load_case({"t2": nan, "flair": paths["flair"]}, case_id="e")
    with pytest.raises(ImageError, match="case e: no sequence given"):
        load_case(dict.fromkeys(MODALITIES), case_id="e")


def test_orientation_and_round_trip_to_input_geometry():
    images, label = make_arrays(1)
    # a permuted and flipped direction (RAS-like with swapped x/y), anisotropic spacing, shifted origin
    geometry = {"spacing": (1.0, 1.5, 2.0), "origin": (10.0, -20.0, 5.0),
                "direction": (0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)}
    given = {m: to_image(images[m], **geometry) for m in MODALITIES}
    label_image = to_image(label, **geometry)
    case = load_case(given, label_image, case_id="o")
    assert case.grid.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # LPS
    assert case.grid.spacing == (1.5, 1.0, 2.0)
    back = to_reference_image(case.label, case, is_label=True)
    assert back.GetPixelID() == sitk.sitkUInt8
    for attribute in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(back, attribute)() == getattr(label_image, attribute)()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), label)
    flair = to_reference_image(case.image[0], case, is_label=False)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(flair) != 0, images["flair"] != 0)
    # the same physical point holds the same label in the input and in the oriented, cropped case
    index = (5, 30, 20)  # (x, y, z) in the input
    point = label_image.TransformIndexToPhysicalPoint(index)
    oriented = case.reference.TransformPhysicalPointToIndex(point)
    z, y, x = (oriented[2 - a] - case.bbox[a][0] for a in range(3))
    assert case.label[z, y, x] == label[index[2], index[1], index[0]]
