"""What the extension installs of AllStageTraining, and how the module's child process finds it.

The extension installs only the part of AllStageTraining that ``predict`` imports (the list in
AllStageSeg/CMakeLists.txt). These tests run real ``predict`` processes through the module's launcher
script, one that succeeds (the shipped demo bundle on the sample case) and one that fails on a bad input
(whose error handling imports more): from the source tree, to collect the AllStageTraining modules they
import (the list must be exactly those: the test names what is missing or extra), and from a copy of the
install tree built from the CMake lists alone, with PYTHONPATH unset and another working folder, where both
must end as in the source tree, every AllStageTraining module coming from that copy.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "AllStageSeg"
SAMPLE = ROOT / "Resources" / "SampleData"
DEMO_BUNDLE = ROOT / "Resources" / "Models" / "demo_bundle.zip"

#: Runs the launcher script as PythonSlicer would (``python <script> predict ...``), then prints, as JSON on
#: the last stderr line, the file of every AllStageTraining module that was imported and the exit code (predict's
#: closing ``os._exit`` becomes a SystemExit here, so that the probe outlives it).
PROBE = """
import json, os, runpy, sys
def _exit(code):  # predict ends with os._exit; here it must come back to report
    raise SystemExit(code)
os._exit = _exit
launcher, args = sys.argv[1], sys.argv[2:]
sys.argv = [launcher, *args]
code = 0
try:
    runpy.run_path(launcher, run_name="__main__")
except SystemExit as exit:
    code = exit.code
except BaseException as error:  # what escaped predict's own error handling
    code = f"{type(error).__name__}: {error}"
files = sorted({m.__file__ for name, m in list(sys.modules.items())
                if name.split(".")[0] == "AllStageTraining" and getattr(m, "__file__", None)})
print(json.dumps({"files": files, "code": code}), file=sys.stderr)
"""


def _cmake_list(name: str) -> list[str]:
    """The entries of ``set(<name> ...)`` in AllStageSeg/CMakeLists.txt, with ${MODULE_NAME} expanded."""
    cmake = (MODULE / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "AllStageSeg")
    body = re.search(rf"set\({name}\s+(.*?)\)", cmake, re.S).group(1)
    return [line.split("#")[0].strip() for line in body.splitlines() if line.split("#")[0].strip()]


def _predict_args(out: Path, flair: Path = SAMPLE / "SynthBraTS_001_flair.nii.gz") -> list[str]:
    return ["predict", "--bundle", str(DEMO_BUNDLE), "--device", "cpu", "--flair", str(flair),
            "--t1", str(SAMPLE / "SynthBraTS_001_t1.nii.gz"), "--out-seg", str(out / "seg.nii.gz"),
            "--out-recon-dir", str(out / "synthesized")]


#: The two runs: one that succeeds, and a bad input (a FLAIR file that does not exist: exit code 2).
RUNS = {"succeeds": (None, 0), "bad input": ("no_such_flair.nii.gz", 2)}


def _probe(launcher: Path, out: Path, cwd: Path) -> dict[str, list[str]]:
    """Run -> the AllStageTraining files it imported, after checking its exit code and its ERROR line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    files = {}
    for run, (flair, code) in RUNS.items():
        args = _predict_args(out, out / flair) if flair else _predict_args(out)
        done = subprocess.run([sys.executable, "-c", PROBE, str(launcher), *args], capture_output=True,
                              text=True, cwd=cwd, env=env, timeout=300)
        result = json.loads(done.stderr.strip().splitlines()[-1])
        assert result["code"] == code, f"{run}: {done.stderr[-2000:]}"
        assert code == 0 or "\nERROR: " in "\n" + done.stderr, done.stderr[-2000:]
        files[run] = result["files"]
    return files


@pytest.fixture(scope="module")
def needs_predict():
    pytest.importorskip("torch")
    if not DEMO_BUNDLE.is_file() or not (SAMPLE / "SynthBraTS_001_flair.nii.gz").is_file():
        pytest.skip("the demo bundle or the sample case is not in this checkout")


def _relative(files) -> set[str]:
    return {Path(f).resolve().relative_to(ROOT).as_posix() for f in files}


def test_the_install_list_is_what_predict_imports(needs_predict, tmp_path):
    runs = _probe(MODULE / "AllStageSegLib" / "run_predict.py", tmp_path, tmp_path)
    imported = set().union(*map(_relative, runs.values())) | {"AllStageTraining/__main__.py"}  # run as main
    assert all(f.startswith("AllStageTraining/") for f in imported), imported
    listed = set(_cmake_list("_inference_files"))
    missing, extra = sorted(imported - listed), sorted(listed - imported)
    assert not missing, f"predict imports files that AllStageSeg/CMakeLists.txt does not install: {missing}"
    assert not extra, f"AllStageSeg/CMakeLists.txt installs files that predict never imports: {extra}"
    assert (tmp_path / "seg.nii.gz").is_file()
    assert sorted(p.name for p in (tmp_path / "synthesized").iterdir()) == ["t1ce.nii.gz", "t2.nii.gz"]
    # training code may be there for classifying an error only, never for the inference itself
    training = ("AllStageTraining/training/", "AllStageTraining/synth/", "AllStageTraining/report/")
    assert not {f for f in _relative(runs["succeeds"]) if f.startswith(training)}
    assert not any(f.startswith(training[1:]) for f in listed)


def test_every_listed_file_exists():
    for path in _cmake_list("_inference_files"):
        assert (ROOT / path).is_file(), f"AllStageSeg/CMakeLists.txt installs {path}, which does not exist"


def _install_tree(root: Path) -> Path:
    """The scripted-module folder of an installed extension, from the CMake lists alone."""
    modules = root / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    for relative in _cmake_list("MODULE_PYTHON_SCRIPTS"):
        (modules / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODULE / relative, modules / relative)
    for relative in _cmake_list("_inference_files"):
        (modules / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, modules / relative)
    return modules


def test_the_installed_launcher_runs_predict_without_pythonpath(needs_predict, tmp_path):
    modules = _install_tree(tmp_path / "install")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    launcher = modules / "AllStageSegLib" / "run_predict.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(launcher), *_predict_args(elsewhere)], capture_output=True, text=True,
                          cwd=elsewhere, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith("DONE ")
    # both runs end as from the source tree, with every AllStageTraining module from the installed copy
    runs = _probe(launcher, tmp_path / "probe", elsewhere)
    outside = sorted({f for files in runs.values() for f in files
                      if modules.resolve() not in Path(f).resolve().parents})
    assert not outside, f"predict needed files that the install list lacks (taken from the source tree): {outside}"


def test_the_launcher_says_what_to_do_when_the_package_is_missing(tmp_path):
    lib = tmp_path / "AllStageSegLib"
    lib.mkdir()
    for name in ("__init__.py", "resources.py", "run_predict.py"):
        shutil.copy2(MODULE / "AllStageSegLib" / name, lib / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(lib / "run_predict.py"), "predict", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("ERROR: the AllStageTraining package is not installed")
