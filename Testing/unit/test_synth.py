"""Synthetic BraTS cases: files, geometry, labels, determinism, tumour shape and volume, MRI contrasts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from AllStageTraining.constants import LABEL_ED, LABEL_ET, LABEL_NCR, MODALITIES
from AllStageTraining.synth import generate_case, synthesize
from AllStageTraining.synth.anatomy import template_anatomy
from AllStageTraining.synth.tumour import NONENHANCING, plan_lesions

KEYS = (*MODALITIES, "seg")


def _read(case_dir, key) -> sitk.Image:
    return sitk.ReadImage(str(case_dir / f"{case_dir.name}_{key}.nii.gz"))


def _ellipsoid_dice(mask: np.ndarray) -> float:
    """Dice between a mask and the solid ellipsoid with the same centroid and second moments."""
    points = np.argwhere(mask).astype(float)
    centre = points.mean(0)
    inverse = np.linalg.inv(5.0 * np.cov((points - centre).T))  # a solid ellipsoid's covariance is axes^2 / 5
    grid = np.indices(mask.shape).reshape(3, -1).T - centre
    inside = (np.einsum("ni,ij,nj->n", grid, inverse, grid) <= 1.0).reshape(mask.shape)
    return 2.0 * float((inside & mask).sum()) / float(inside.sum() + mask.sum())


def test_layout_geometry_and_types(synthetic_root):
    case_dirs = sorted(p for p in synthetic_root.iterdir() if p.is_dir())
    assert [p.name for p in case_dirs] == [f"SynthBraTS_{k:03d}" for k in range(1, 7)]
    for case_dir in case_dirs:
        masks = []
        for key in KEYS:
            image = _read(case_dir, key)
            assert image.GetSize() == (120, 120, 78)
            assert image.GetSpacing() == (2.0, 2.0, 2.0)
            assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # LPS, as BraTS reads
            assert np.allclose(image.GetOrigin(), (0.5, -238.5, 0.5))
            array = sitk.GetArrayFromImage(image)
            if key == "seg":
                assert image.GetPixelID() == sitk.sitkUInt8
                assert set(np.unique(array)) <= {0, LABEL_NCR, LABEL_ED, LABEL_ET}
                assert {LABEL_NCR, LABEL_ED} <= set(np.unique(array))
                seg = array
            else:
                assert image.GetPixelID() == sitk.sitkInt16
                assert array.min() == 0
                masks.append(array > 0)
        # skull-stripped: the same brain is non-zero in every sequence; labels lie inside it
        assert all(np.array_equal(masks[0], m) for m in masks[1:])
        assert not np.any(seg[~masks[0]])
        # the brain is centred in the grid (within 8 mm) and well inside it
        centre = np.argwhere(masks[0]).mean(0)
        assert np.all(np.abs(centre - (np.array(masks[0].shape) - 1) / 2) < 4)
        assert 1.1e6 < masks[0].sum() * 8 < 2.0e6  # brain volume, mm^3


def test_one_millimetre_grid_and_volumes_match_two_millimetre(synthetic_root):
    fine = generate_case(4, spacing=1, seed=0)
    assert fine.labels.shape == (155, 240, 240)
    for m in MODALITIES:
        assert fine.images[m].dtype == np.int16
    coarse = sitk.GetArrayFromImage(_read(synthetic_root / "SynthBraTS_004", "seg"))
    whole_fine = (fine.labels > 0).sum() * 1.0
    whole_coarse = (coarse > 0).sum() * 8.0
    assert 20e3 < whole_fine < 150e3
    assert abs(whole_fine - whole_coarse) < 0.15 * whole_fine  # same case, same tumour at either spacing


def test_deterministic_and_independent_of_case_count(synthetic_root, tmp_path):
    case = generate_case(3, spacing=2, seed=0)
    stored = synthetic_root / "SynthBraTS_003"
    for key in MODALITIES:
        assert np.array_equal(case.images[key], sitk.GetArrayFromImage(_read(stored, key)))
    assert np.array_equal(case.labels, sitk.GetArrayFromImage(_read(stored, "seg")))
    # writing case 3 alone (start_index=3) gives the same files as writing cases 1..6
    (alone,) = synthesize(tmp_path, 1, spacing=2, seed=0, start_index=3)
    assert alone.name == "SynthBraTS_003"
    for key in KEYS:
        a = sitk.GetArrayFromImage(_read(alone, key))
        assert np.array_equal(a, sitk.GetArrayFromImage(_read(stored, key)))
    other = generate_case(3, spacing=2, seed=1)
    assert not np.array_equal(other.labels, case.labels)


def test_tumour_volume_and_irregular_shape(synthetic_root):
    for case_dir in sorted(synthetic_root.iterdir()):
        labels = sitk.GetArrayFromImage(_read(case_dir, "seg"))
        whole = labels > 0
        assert 15e3 < whole.sum() * 8.0 < 160e3, case_dir.name  # mm^3: 15-160 cm^3
        assert _ellipsoid_dice(whole) < 0.88, case_dir.name  # lobulated, not an ellipsoid
        core = (labels == LABEL_NCR) | (labels == LABEL_ET)
        assert 0.1 < core.sum() / whole.sum() < 0.75
    # the shape measure itself: a real ellipsoid scores near 1
    z, y, x = np.indices((40, 40, 40))
    ellipsoid = ((z - 20) / 15.0) ** 2 + ((y - 19) / 10.0) ** 2 + ((x - 21) / 8.0) ** 2 <= 1
    assert _ellipsoid_dice(ellipsoid) > 0.95


def test_lesion_plans_mix_grades_and_counts():
    eligible = template_anatomy(2).eligible
    plans = [plan_lesions(np.random.default_rng([7, k]), eligible, 2) for k in range(300)]
    low_grade = np.mean([not p[0].high_grade for p in plans])
    two = np.mean([len(p) == 2 for p in plans])
    assert 0.12 < low_grade < 0.28
    assert 0.17 < two < 0.33
    totals = np.array([sum(lesion.whole_mm3 for lesion in p) for p in plans])
    assert totals.min() >= 20e3 and totals.max() <= 140e3


def _region_means(case, region_masks):
    """Mean intensity per (modality, region), each modality divided by its white-matter mean."""
    means = {}
    for m in MODALITIES:
        image = case.images[m].astype(np.float64)
        wm = image[region_masks["WM"]].mean()
        means[m] = {name: image[mask].mean() / wm for name, mask in region_masks.items()}
    return means


def _separation(image, a, b):
    """|mean difference| / pooled std between two voxel sets: how well one image tells them apart."""
    va, vb = image[a].astype(float), image[b].astype(float)
    return abs(va.mean() - vb.mean()) / np.sqrt(0.5 * (va.var() + vb.var()))


@pytest.fixture(scope="module")
def high_and_low_grade_cases():
    """The first high-grade (with ET) and the first low-grade (without ET) case of seed 0, with ground truth."""
    found = {}
    for index in range(1, 30):
        case = generate_case(index, spacing=2, seed=0)
        grade = "high" if np.any(case.labels == LABEL_ET) else "low"
        found.setdefault(grade, case)
        if len(found) == 2:
            return found
    pytest.fail("no low-grade case among the first 29 of seed 0")


def _masks(case):
    healthy = case.labels == 0
    return {
        "WM": healthy & (case.fractions["wm"] > 0.9),
        "GM": healthy & (case.fractions["gm"] > 0.7),
        "CSF": healthy & (case.fractions["csf"] > 0.85),
        "ED": case.labels == LABEL_ED,
        "NCR": case.labels == LABEL_NCR,
        "ET": case.labels == LABEL_ET,
    }


def test_contrasts_follow_real_mri(high_and_low_grade_cases):
    case = high_and_low_grade_cases["high"]
    masks = _masks(case)
    assert all(mask.sum() > 20 for mask in masks.values())
    r = _region_means(case, masks)
    # T1: WM > GM > CSF; tumour core dark
    assert 1.0 > r["t1"]["GM"] > r["t1"]["CSF"]
    assert r["t1"]["NCR"] < 0.8
    # T1ce: enhancing tumour very bright, far above edema; ET bright on T1ce only
    assert r["t1ce"]["ET"] > 1.2 and r["t1ce"]["ET"] > 1.4 * r["t1ce"]["ED"]
    assert r["t1ce"]["ET"] > r["t1"]["ET"] + 0.4
    # FLAIR: CSF dark, edema bright, WM slightly darker than GM
    assert r["flair"]["ED"] > 1.3 and r["flair"]["ED"] > 4 * r["flair"]["CSF"]
    assert 1.0 < r["flair"]["GM"] < 1.5
    # T2: CSF and edema bright; necrotic core bright on T2 but dark on T1
    assert r["t2"]["CSF"] > 2.0 and r["t2"]["ED"] > 1.5
    assert r["t2"]["NCR"] > 1.5 > 0.8 > r["t1"]["NCR"]


def test_each_sequence_carries_its_own_information(high_and_low_grade_cases):
    high, low = high_and_low_grade_cases["high"], high_and_low_grade_cases["low"]
    m = _masks(high)
    img = {k: v for k, v in high.images.items()}
    # enhancing vs edema: by far clearest on T1ce
    et_ed = {k: _separation(img[k], m["ET"], m["ED"]) for k in MODALITIES}
    assert et_ed["t1ce"] > 2.0 * max(et_ed[k] for k in MODALITIES if k != "t1ce")
    # edema vs CSF: clearest on FLAIR
    ed_csf = {k: _separation(img[k], m["ED"], m["CSF"]) for k in MODALITIES}
    assert ed_csf["flair"] == max(ed_csf.values())
    # non-enhancing tumour vs the edema around it (low grade, no ET): clearest on T2
    net = low.tissue == NONENHANCING
    shell = (low.labels == LABEL_ED) & ndi.binary_dilation(net, iterations=2)
    net_ed = {k: _separation(low.images[k], net, shell) for k in MODALITIES}
    assert net_ed["t2"] > 1.5 * max(net_ed[k] for k in MODALITIES if k != "t2")


def test_cli_writes_cases_and_montage(tmp_path):
    png = tmp_path / "montage.png"
    result = subprocess.run(
        [sys.executable, "-m", "AllStageTraining", "synth", "--out", str(tmp_path / "cases"), "--n", "2",
         "--spacing", "2", "--seed", "5", "--montage", str(png)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DONE" in result.stdout.splitlines()[-1]
    for k in (1, 2):
        case_dir = tmp_path / "cases" / f"SynthBraTS_{k:03d}"
        assert sorted(p.name for p in case_dir.iterdir()) == sorted(f"{case_dir.name}_{key}.nii.gz" for key in KEYS)
    assert png.stat().st_size > 20_000
    from matplotlib.image import imread

    picture = imread(png)
    assert picture.shape[0] > 300 and picture.shape[1] > 900  # two rows of five panels
