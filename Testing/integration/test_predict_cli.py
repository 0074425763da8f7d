"""The ``export`` and ``predict`` CLIs as real subprocesses: outputs, progress protocol, exit codes, batch mode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from inference_helpers import TINY_SHAPE, to_image

PROGRESS = re.compile(r"^PROGRESS (0\.\d{3}|1\.000) \S.*$")


def _cli(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AllStageTraining", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def _check_protocol(stdout: str) -> list[float]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    progress = [line for line in lines if line.startswith("PROGRESS")]
    assert progress and all(PROGRESS.match(line) for line in progress), progress
    fractions = [float(line.split()[1]) for line in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert re.fullmatch(r"DONE \d+\.\d{2}", lines[-1]), lines[-1]
    assert all(line.startswith(("PROGRESS", "LOG", "DONE")) for line in lines), lines
    return fractions


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_export_zip_then_predict_two_sequences(tiny_run, make_case, tmp_path):
    bundle = tmp_path / "tiny.zip"
    exported = _cli("export", "--run", tiny_run, "--out", bundle, "--note", "random weights; not for clinical use")
    assert exported.returncode == 0, exported.stderr
    assert "(UNTRAINED)" in exported.stdout and bundle.is_file()

    case = make_case(seed=1, modalities=("t1ce", "t2"))
    seg, recon = tmp_path / "out" / "seg.nii.gz", tmp_path / "out" / "recon"
    result = _cli("predict", "--bundle", bundle, "--t1ce", case["t1ce"], "--t2", case["t2"], "--out-seg", seg,
                  "--out-recon-dir", recon, "--device", "cpu", "--threads", "1", "--postprocess-et")
    assert result.returncode == 0, result.stderr
    _check_protocol(result.stdout)
    assert "LOG note: random weights" in result.stdout and "UNTRAINED" in result.stdout
    reference = sitk.ReadImage(str(case["t1ce"]))
    labels = sitk.ReadImage(str(seg))
    assert labels.GetSize() == reference.GetSize() and labels.GetPixelID() == sitk.sitkUInt8
    assert np.allclose(labels.GetDirection(), reference.GetDirection())
    assert np.allclose(labels.GetOrigin(), reference.GetOrigin())
    assert sorted(p.name for p in recon.iterdir()) == ["flair.nii.gz", "t1.nii.gz"]  # no temporary leftovers
    assert [p.name for p in seg.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("problem", ["no sequence", "empty image", "NaN image", "tampered bundle"])
def test_failures_exit_with_documented_codes(problem, tiny_bundle, make_case, tmp_path):
    case = make_case(seed=2, modalities=("flair",))
    bundle = tiny_bundle
    args = ["--flair", case["flair"]]
    expected_code, expected_text = 2, None
    if problem == "no sequence":
        args, expected_text = [], "no sequence given"
    elif problem in ("empty image", "NaN image"):
        value = 0.0 if problem == "empty image" else np.nan
        path = tmp_path / "bad.nrrd"  # NRRD keeps NaN (SimpleITK's NIfTI writer stores it as 0)
        sitk.WriteImage(to_image(np.full(TINY_SHAPE, value, np.float32)), str(path))
        args += ["--t2", path]
        expected_text = "T2: the image is empty" if problem == "empty image" else "T2: the image is all NaN"
    else:
        bundle = shutil.copytree(tiny_bundle, tmp_path / "tampered")
        meta = json.loads((bundle / "bundle.json").read_text())
        meta["format_version"] = 7
        (bundle / "bundle.json").write_text(json.dumps(meta))
        expected_code, expected_text = 3, "format_version 7 is not supported"
    seg = tmp_path / "seg.nii.gz"
    result = _cli("predict", "--bundle", bundle, *args, "--out-seg", seg, "--device", "cpu", "--threads", "1")
    assert result.returncode == expected_code, (result.stdout, result.stderr)
    assert expected_text in _one_error_line(result)
    assert not seg.exists() and "DONE" not in result.stdout


@pytest.mark.parametrize("problem", ["folder as input", "output under a file", "output is a folder",
                                     "no image format", "recon dir is a file"])
def test_paths_that_cannot_be_used_say_what_is_wrong_with_exit_code_2(problem, tiny_bundle, make_case, tmp_path):
    case = make_case(seed=2, modalities=("flair",))
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_folder").mkdir()
    args = {"--flair": case["flair"], "--out-seg": tmp_path / "seg.nii.gz"}
    expected = {
        "folder as input": ("--flair", tmp_path / "a_folder", f"FLAIR {tmp_path / 'a_folder'} is a folder, not an image "
                                                              "file"),
        "output under a file": ("--out-seg", tmp_path / "a_file" / "seg.nii.gz",
                                f"cannot write {tmp_path / 'a_file' / 'seg.nii.gz'}: {tmp_path / 'a_file'} is a file, "
                                "not a folder"),
        "output is a folder": ("--out-seg", tmp_path / "a_folder", f"cannot write {tmp_path / 'a_folder'}: it is a "
                                                                   "folder; give a file name"),
        "no image format": ("--out-seg", tmp_path / "seg.txt", f"cannot write {tmp_path / 'seg.txt'}: no image format"),
        "recon dir is a file": ("--out-recon-dir", tmp_path / "a_file", f"cannot write {tmp_path / 'a_file'}/"),
    }
    flag, value, text = expected[problem]
    args[flag] = value
    result = _cli("predict", "--bundle", tiny_bundle, "--device", "cpu", "--threads", "1",
                  *[item for pair in args.items() for item in pair])
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = _one_error_line(result)
    assert text in line and "please report" not in line, line
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_batch_mode_predicts_every_case(tiny_bundle, make_case, tmp_path):
    data = tmp_path / "data"
    make_case(seed=3, folder=data / "CaseA")
    make_case(seed=4, modalities=("flair", "t1"), folder=data / "CaseB")
    out = tmp_path / "pred"
    result = _cli("predict", "--bundle", tiny_bundle, "--input-dir", data, "--output-dir", out, "--device", "cpu",
                  "--threads", "1")
    assert result.returncode == 0, result.stderr
    _check_protocol(result.stdout)
    assert (out / "CaseA" / "seg.nii.gz").is_file() and not (out / "CaseA" / "recon").exists()
    assert sorted(p.name for p in (out / "CaseB" / "recon").iterdir()) == ["t1ce.nii.gz", "t2.nii.gz"]
