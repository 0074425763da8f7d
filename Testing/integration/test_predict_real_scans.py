"""``predict`` on scans that are not BraTS-ready, with the shipped demo bundle (the model a user gets): a head
with its skull on and moved sequences segments like the clean case; a BraTS-ready case goes through untouched;
every failure of the preparation is one ERROR line with exit code 2, or a loud warning.

The demo model will be retrained: the tests compare cases with each other, not with fixed Dice values.
"""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from AllStageTraining.constants import MODALITIES
from AllStageTraining.data import registration, skull_strip
from AllStageTraining.data.discovery import find_cases
from AllStageTraining.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "Resources" / "Models" / "demo_bundle.zip"
SAMPLE = {m: ROOT / "Resources" / "SampleData" / f"SynthBraTS_001_{m}.nii.gz" for m in MODALITIES}

pytestmark = pytest.mark.skipif(not DEMO_BUNDLE.is_file(), reason="the demo bundle is not in this checkout")


def _cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AllStageTraining", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def _synth(folder: Path, *extra: str):
    result = _cli("synth", "--out", folder, "--n", "1", "--spacing", "2", "--seed", "0", "--start-index", "3",
                  *extra, timeout=300)
    assert result.returncode == 0, result.stderr
    (case,) = find_cases(folder)
    return case


def _wt_dice(seg: Path, truth: Path) -> float:
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(seg))) > 0
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(truth))) > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _predict_case(case, out: Path, *extra) -> subprocess.CompletedProcess:
    inputs = [arg for m in MODALITIES for arg in (f"--{m}", case.images[m])]
    result = _cli("predict", "--bundle", DEMO_BUNDLE, "--device", "cpu", *inputs, "--out-seg", out / "seg.nii.gz",
                  *extra)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_a_head_with_moved_sequences_segments_within_005_wt_dice_of_the_clean_case(tmp_path):
    pytest.importorskip("deepbet")
    clean = _synth(tmp_path / "clean")
    real = _synth(tmp_path / "real", "--head", "--misalign", "5,5")

    _predict_case(clean, tmp_path / "clean_out")
    prepared = _predict_case(real, tmp_path / "real_out", "--out-brain-mask", tmp_path / "real_out" / "brain.nii.gz",
                             "--save-transforms", tmp_path / "real_out" / "transforms")
    as_it_lies = _predict_case(real, tmp_path / "raw_out", "--skull-strip", "never", "--register", "never")
    dice_clean = _wt_dice(tmp_path / "clean_out" / "seg.nii.gz", clean.label)
    dice_real = _wt_dice(tmp_path / "real_out" / "seg.nii.gz", real.label)
    dice_raw = _wt_dice(tmp_path / "raw_out" / "seg.nii.gz", real.label)
    print(f"WT Dice: clean {dice_clean:.3f}, head + motion prepared {dice_real:.3f}, as it lies {dice_raw:.3f}")
    assert dice_clean > 0.5  # the model finds the tumour at all: else the comparison says nothing
    assert abs(dice_real - dice_clean) <= 0.05
    assert dice_raw < dice_real  # the preparation is what makes the difference

    log = [line[len("LOG "):] for line in prepared.stdout.splitlines() if line.startswith("LOG ")]
    assert sum("co-registered onto FLAIR" in line for line in log) == 3, log
    assert any(line.startswith("brain mask: deepbet on T1") for line in log), log
    timings = next(line for line in log if line.startswith("timings (s):"))
    assert "registration" in timings and "skull_strip" in timings
    assert sorted(p.name for p in (tmp_path / "real_out" / "transforms").iterdir()) == \
        ["t1_to_flair.tfm", "t1ce_to_flair.tfm", "t2_to_flair.tfm"]
    brain = sitk.ReadImage(str(tmp_path / "real_out" / "brain.nii.gz"))
    truth = sitk.ReadImage(str(real.label))
    assert brain.GetSize() == truth.GetSize() and brain.GetPixelID() == sitk.sitkUInt8
    brain, tumour = sitk.GetArrayFromImage(brain) > 0, sitk.GetArrayFromImage(truth) > 0
    assert (brain & tumour).sum() >= 0.99 * tumour.sum()
    assert brain.sum() < 0.6 * (sitk.GetArrayFromImage(sitk.ReadImage(str(real.images["t1"]))) > 0).sum()
    raw_log = as_it_lies.stdout
    assert "warning: T1ce: left unregistered" in raw_log and "not skull-stripped and brain extraction is off" in raw_log


@pytest.fixture(scope="module")
def demo():
    return Predictor.from_bundle(DEMO_BUNDLE, "cpu", precision="float32")


def test_a_brats_ready_case_goes_through_untouched(demo):
    given = {"flair": SAMPLE["flair"], "t1": SAMPLE["t1"], "t2": SAMPLE["t2"]}
    auto = demo.predict(given, skull_strip="auto", register="auto")
    off = demo.predict(given, skull_strip="never", register="never")
    codes = {f.code for f in auto.findings}
    assert not codes & {"registered", "resampled", "brain-mask", "extract-anyway"}, auto.log
    assert auto.transforms == {} and auto.mask_source == "non-zero voxels"
    assert [f.line() for f in auto.findings] == [f.line() for f in off.findings]
    assert np.array_equal(sitk.GetArrayFromImage(auto.labels), sitk.GetArrayFromImage(off.labels))
    assert np.array_equal(sitk.GetArrayFromImage(auto.reconstructions["t1ce"]),
                          sitk.GetArrayFromImage(off.reconstructions["t1ce"]))
    # the brain the model was told of: the union of the non-zero voxels, on the reference grid
    union = np.any([sitk.GetArrayFromImage(sitk.ReadImage(str(p))) != 0 for p in given.values()], axis=0)
    assert np.array_equal(sitk.GetArrayFromImage(auto.brain_mask) > 0, union)
    assert auto.brain_mask.GetOrigin() == sitk.ReadImage(str(SAMPLE["flair"])).GetOrigin()
    for stage in ("checks", "registration", "skull_strip", "segment"):
        assert stage in auto.timings


def _run_predict(capsys, **options) -> tuple[int, str, str]:
    """``predict`` in this process (so a failure can be injected), as the CLI runs it: (code, stdout, stderr)."""
    from AllStageTraining.commands.predict import run

    args = {"flair": None, "t1ce": None, "t1": None, "t2": None, "out_seg": None, "out_recon_dir": None,
            "reference": None, "out_brain_mask": None, "save_transforms": None, "input_dir": None,
            "output_dir": None, "bundle": str(DEMO_BUNDLE), "device": "cpu", "threads": None,
            "postprocess_et": False, "precision": "float32", "skull_strip": "auto", "register": "auto"}
    code = run(Namespace(**{**args, **options}))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, err
    return lines[0]


def _write_synth(folder: Path, index: int, modalities, **options) -> tuple[dict[str, str], object]:
    """Case ``index`` of ``generate_case`` (2 mm, seed 0; ``head``, ``misalign``) written as NIfTI files:
    ({modality: path}, the SynthCase)."""
    from AllStageTraining.synth import generate_case

    case = generate_case(index, 2, 0, **options)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for modality in modalities:
        image = sitk.GetImageFromArray(case.images[modality])
        image.CopyInformation(case.grid())
        paths[modality] = str(folder / f"{modality}.nii.gz")
        sitk.WriteImage(image, paths[modality])
    return paths, case


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> tuple[dict[str, str], object]:
    """FLAIR and T1 of a synthetic head (skull on, aligned) as files, and its SynthCase."""
    return _write_synth(tmp_path_factory.mktemp("head"), 3, ["flair", "t1"], head=True)


def test_missing_deepbet_is_exit_2_naming_the_install_command(head, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "deepbet", None)  # an import of deepbet now fails, as when not installed
    skull_strip._extractor.cache_clear()
    try:
        code, out, err = _run_predict(capsys, **head[0], out_seg=str(tmp_path / "seg.nii.gz"))
    finally:
        skull_strip._extractor.cache_clear()
    assert code == 2 and 'pip install ".[preprocess]"' in _error_line(err) and "DONE" not in out
    assert not (tmp_path / "seg.nii.gz").exists()


@pytest.mark.parametrize("mask", ["empty", "whole volume"])
def test_a_brain_mask_that_cannot_be_a_brain_is_exit_2(mask, head, capsys, monkeypatch, tmp_path):
    def broken_extraction(image, *, device="cpu"):
        out = sitk.Image(image.GetSize(), sitk.sitkUInt8) + (0 if mask == "empty" else 1)
        out.CopyInformation(image)
        return out

    monkeypatch.setattr(skull_strip, "extract_brain", broken_extraction)
    code, out, err = _run_predict(capsys, **head[0], out_seg=str(tmp_path / "seg.nii.gz"))
    expected = "the brain mask is empty" if mask == "empty" else "covers 100% of the volume"
    line = _error_line(err)
    assert code == 2 and "brain extraction failed (deepbet on T1)" in line and expected in line, err
    assert not (tmp_path / "seg.nii.gz").exists()


@pytest.mark.slow
def test_an_extraction_that_cuts_the_tumour_is_a_loud_warning(head, capsys, monkeypatch, tmp_path):
    pytest.importorskip("deepbet")
    from scipy import ndimage as ndi

    real_extraction = skull_strip.extract_brain

    def biting_extraction(image, *, device="cpu"):  # deepbet's mask less the outer 15% of the tumour
        mask = sitk.GetArrayFromImage(real_extraction(image, device=device)) > 0
        tumour = (head[1].labels > 0) & mask
        depth = ndi.distance_transform_edt(mask)
        mask &= ~(tumour & (depth <= np.quantile(depth[tumour], 0.15)))
        out = sitk.GetImageFromArray(mask.astype(np.uint8))
        out.CopyInformation(image)
        return out

    given = {**head[0], "out_seg": str(tmp_path / "seg.nii.gz")}
    code, out, _ = _run_predict(capsys, **given)
    assert code == 0 and "brain mask: deepbet on T1" in out and "dent in the brain mask" not in out
    monkeypatch.setattr(skull_strip, "extract_brain", biting_extraction)
    code, out, _ = _run_predict(capsys, **given)
    assert code == 0 and "LOG warning: the tumour stops against a dent in the brain mask (deepbet on T1" in out, out


def test_a_registration_that_fails_is_a_loud_warning_and_the_sequence_as_it_lies(capsys, monkeypatch, tmp_path):
    paths, _ = _write_synth(tmp_path, 1, ["flair", "t1ce"], misalign=(5.0, 5.0))
    monkeypatch.setattr(registration, "MAX_ITERATIONS", 2)  # it cannot converge in two steps
    code, out, err = _run_predict(capsys, **paths, out_seg=str(tmp_path / "seg.nii.gz"),
                                  save_transforms=str(tmp_path / "transforms"))
    assert code == 0, err
    assert "LOG warning: T1ce: co-registration onto FLAIR failed" in out and "unregistered" in out
    assert "LOG no sequence was co-registered: no transform to save" in out
    assert (tmp_path / "seg.nii.gz").is_file() and not (tmp_path / "transforms").exists()
