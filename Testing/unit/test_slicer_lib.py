"""AllStageSegLib's plain functions (no MRML): sequence-name guessing, the Segment rule, the Slicer release and
dependency checks (versions included), the self-test's skip rule, the status area, and the background runner
against real child processes that speak predict's progress protocol."""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AllStageSeg"))

from AllStageSegLib.dependencies import (BRAIN_EXTRACTION, REQUIREMENTS, Problem, install_plan,  # noqa: E402
                                         installed_version, is_older, problems, version_tuple)
from AllStageSegLib.predict_process import (CANCELLED, FAILED, LAUNCHER, SUCCEEDED, PredictOptions,  # noqa: E402
                                            PredictProcess, child_environment, parse_line, predict_command)
from AllStageSegLib.readiness import (run_blocker, segment_blocker, self_test_skip_reason,  # noqa: E402
                                      status_text)
from AllStageSegLib.sequence_names import assign_inputs, guess_modality  # noqa: E402
from AllStageSegLib.slicer_release import MINIMUM_SLICER, slicer_version_blocker  # noqa: E402


@pytest.mark.parametrize("name, expected", [
    ("BraTS20_Training_001_flair", "flair"), ("BraTS20_Training_001_t1ce", "t1ce"),
    ("BraTS20_Training_001_t1", "t1"), ("BraTS20_Training_001_t2", "t2"),
    ("BraTS-GLI-00000-000-t2f", "flair"), ("BraTS-GLI-00000-000-t1c", "t1ce"),
    ("BraTS-GLI-00000-000-t1n", "t1"), ("BraTS-GLI-00000-000-t2w", "t2"),
    ("T1CE", "t1ce"), ("t1c", "t1ce"), ("T1 post contrast", "t1ce"), ("T1+C", "t1ce"), ("T1Gd", "t1ce"),
    ("T1wCE", "t1ce"), ("AX T1 MPRAGE GAD", "t1ce"), ("T2_FLAIR", "flair"), ("FLAIR", "flair"),
    ("t2w", "t2"), ("Ax T2 FSE", "t2"), ("T1-weighted", "t1"), ("sag T1", "t1"), ("case001_t2", "t2"),
    ("BraTS20_Training_001_seg", None), ("T2 (synthesized)", None), ("MRHead", None), ("brats20", None),
    ("t10", None), ("tumour mask", None),
])
def test_guess_modality(name, expected):
    assert guess_modality(name) == expected


def test_assign_inputs_fills_only_empty_sequences_once_each():
    names = {"v1": "case_t1", "v2": "case_flair", "v3": "case_t1_copy", "v4": "case_t2", "v5": "other"}
    assert assign_inputs(names) == {"flair": "v2", "t1": "v1", "t2": "v4"}
    # the user's choices stay; a chosen volume is not given to a second sequence
    assert assign_inputs(names, {"t1": "v3", "flair": None}) == {"flair": "v2", "t2": "v4"}
    assert assign_inputs(names, {"t2": "v2"}) == {"t1": "v1"}


def test_segment_blocker_says_why(tmp_path):
    bundle = tmp_path / "model.zip"
    bundle.write_bytes(b"x")
    nothing = {"flair": None, "t1ce": "", "t1": None, "t2": None}
    assert "at least one input sequence" in segment_blocker(nothing, bundle)
    assert "Choose a model" in segment_blocker({"t1": "vtkMRMLScalarVolumeNode1"}, None)
    assert "does not exist" in segment_blocker({"t1": "n1"}, tmp_path / "missing.zip")
    assert "same volume" in segment_blocker({"t1": "n1", "t2": "n1"}, bundle)
    assert "output grid is set to T2" in segment_blocker({"t1": "n1"}, bundle, reference="t2")
    assert segment_blocker({"t1": "n1"}, bundle) == ""
    assert segment_blocker({"t1": "n1", "t2": "n2"}, bundle, reference="t2") == ""
    assert segment_blocker({"t1": "n1"}, bundle, reference="auto") == ""
    assert segment_blocker({"t1": "n1", "flair": "n2"}, tmp_path) == ""  # a bundle folder
    assert segment_blocker(nothing, None, running=True) == ""  # the button is Cancel then


def test_the_minimum_slicer_release_is_checked_before_any_work():
    assert MINIMUM_SLICER == (5, 10)
    message = slicer_version_blocker(5, 8)
    assert "needs 3D Slicer 5.10 or newer" in message and "this is Slicer 5.8" in message
    assert slicer_version_blocker(4, 11) and slicer_version_blocker(5, 9)
    assert slicer_version_blocker(5, 10) == slicer_version_blocker(5, 13) == slicer_version_blocker(6, 0) == ""
    assert run_blocker((5, 8), []) == message  # the release first: nothing else matters there
    assert run_blocker((5, 10), []) == ""


def test_versions_compare_by_release_numbers():
    assert version_tuple("2.5.1+cu121") == (2, 5, 1) and version_tuple("2.6.0.dev20240101") == (2, 6, 0)
    assert version_tuple("not a version") == ()
    assert is_older("1.13.1", "2.2") and is_older("2.1.9", "2.2") and is_older("2", "2.2")
    assert not is_older("2.2", "2.2") and not is_older("2.2.0+cpu", "2.2") and not is_older("2.14.1", "2.2")
    assert not is_older("10.0", "9.9")


def test_an_old_torch_is_upgraded_through_the_pytorch_extension():
    installed = {"torch": "1.13.1", "monai": "1.3.2", "safetensors": "0.4.5", "SimpleITK": "2.4.0", "numpy": "1.26.4",
                 "scipy": None}
    found = problems(version_of=lambda name, distribution: installed[name])
    assert [(p.name, p.action) for p in found] == [("torch", "upgrade"), ("scipy", "install")]
    assert found[0].describe() == "torch 1.13.1 is older than the 2.2 needed"
    assert found[1].describe() == "scipy is missing"
    plan = install_plan(found, pytorch_utils_available=True)
    assert plan.torch_requirement == "torch>=2.2" and plan.torch_version_requirement == ">=2.2"
    assert plan.pip_requirements == ["scipy>=1.10"]
    assert "torch>=2.2, through the PyTorch extension" in plan.describe() and "1.13.1 is older" in plan.describe()
    without = install_plan(found, pytorch_utils_available=False)
    assert not without.torch_requirement and without.pip_requirements == ["torch>=2.2", "scipy>=1.10"]
    assert install_plan([], pytorch_utils_available=True).empty
    recent = dict(installed, torch="2.14.1+cpu", scipy="1.16.0")
    assert problems(version_of=lambda name, distribution: recent[name]) == []


def test_brain_extraction_is_offered_as_an_optional_pip_package():
    found = problems(BRAIN_EXTRACTION, version_of=lambda name, distribution: None)
    assert [(p.distribution, p.action) for p in found] == [("deepbet", "install")]
    plan = install_plan(found, pytorch_utils_available=True)
    assert plan.pip_requirements == ["deepbet>=1.0"] and not plan.torch_requirement
    assert "deepbet>=1.0" in plan.describe_optional() and "must already be skull-stripped" in plan.describe_optional()
    assert problems(BRAIN_EXTRACTION, version_of=lambda name, distribution: "1.0.2") == []


def test_this_environment_has_what_predict_needs():
    assert problems() == []  # the venv is complete; versions come from the installed metadata
    assert installed_version("no_such_package_allstageseg", "no-such-package") is None
    fake = {"no_such_package_allstageseg": ("no-such-package", "1")}
    assert problems(fake) == [Problem("no_such_package_allstageseg", "no-such-package", None, "1")]


def test_the_minimum_versions_are_those_of_pyproject():
    """What pyproject.toml asks for satisfies the module's check, and the other way round."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    required = {}
    for line in pyproject["project"]["dependencies"]:
        name, _, minimum = line.partition(">=")
        required[name.strip().lower()] = minimum.strip() or None
    for distribution, minimum in REQUIREMENTS.values():
        assert distribution.lower() in required, f"{distribution} is not a dependency in pyproject.toml"
        assert required[distribution.lower()] == minimum, (distribution, minimum, required[distribution.lower()])
    extra = dict(line.split(">=") for line in pyproject["project"]["optional-dependencies"]["preprocess"])
    assert extra == {distribution: minimum for distribution, minimum in BRAIN_EXTRACTION.values()}


def test_the_self_test_skips_inference_with_a_reason_where_it_cannot_run(tmp_path):
    demo = tmp_path / "demo_bundle.zip"
    demo.write_bytes(b"x")
    sample = {m: tmp_path / f"{m}.nii.gz" for m in ("flair", "t1ce", "t1", "t2")}
    no_torch = [Problem("torch", "torch", None, "2.2")]
    reason = self_test_skip_reason((5, 10), no_torch, sample, demo)
    assert reason.startswith("Inference skipped:") and "torch is missing" in reason and "PyTorch Utils" in reason
    assert "needs 3D Slicer 5.10" in self_test_skip_reason((5, 8), [], sample, demo)
    three = {m: sample[m] for m in ("flair", "t1ce", "t1")}
    assert "sample case (t2)" in self_test_skip_reason((5, 10), [], three, demo)
    assert "demo model" in self_test_skip_reason((5, 10), [], sample, tmp_path / "absent.zip")
    assert self_test_skip_reason((5, 10), [], sample, demo) == ""  # it runs inference here


def test_status_text_puts_notes_then_warnings():
    text = status_text("Done in 4.2 s.", ["FLAIR (1x1x3 mm, 40x40x12) is resampled onto the T1ce grid."],
                       ["warning: this bundle's scenario prompts were embedded by an UNTRAINED text encoder",
                        "note: Trained on synthetic data; not for clinical use."])
    assert text.splitlines() == [
        "Done in 4.2 s.", "FLAIR (1x1x3 mm, 40x40x12) is resampled onto the T1ce grid.",
        "Warning: this bundle's scenario prompts were embedded by an UNTRAINED text encoder",
        "Warning: note: Trained on synthetic data; not for clinical use."]
    assert status_text("Ready.") == "Ready."


def test_dependency_check_does_not_import_torch(tmp_path):
    import subprocess

    code = ("import sys; sys.path.insert(0, %r); from AllStageSegLib.dependencies import problems; "
            "problems(); print('torch' in sys.modules, 'monai' in sys.modules)"
            % str(Path(__file__).resolve().parents[2] / "AllStageSeg"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_parse_line():
    assert parse_line("PROGRESS 0.42 reconstructing T2") == ("progress", 0.42, "reconstructing T2")
    assert parse_line("PROGRESS 1.5 x") == ("progress", 1.0, "x")
    assert parse_line("DONE 12.5") == ("done", 12.5, "")
    assert parse_line("LOG FLAIR resampled onto the T1 grid") == ("log", None, "FLAIR resampled onto the T1 grid")
    assert parse_line("PROGRESS abc") == ("log", None, "PROGRESS abc")


def test_predict_command_follows_the_cli_contract(tmp_path):
    options = PredictOptions(inputs={"flair": tmp_path / "f.nii", "t2": tmp_path / "t2.nii"}, bundle=tmp_path / "b.zip",
                             out_seg=tmp_path / "seg.nii", out_recon_dir=tmp_path / "rec", device="cpu",
                             postprocess_et=True, reference="t2", skull_strip="never", register="always",
                             out_brain_mask=tmp_path / "brain.nii")
    command = predict_command(options, "/opt/Slicer/bin/PythonSlicer")
    assert command[:3] == ["/opt/Slicer/bin/PythonSlicer", str(LAUNCHER), "predict"] and LAUNCHER.is_file()
    joined = " ".join(command)
    for part in (f"--flair {tmp_path / 'f.nii'}", f"--t2 {tmp_path / 't2.nii'}", f"--bundle {tmp_path / 'b.zip'}",
                 f"--out-seg {tmp_path / 'seg.nii'}", f"--out-recon-dir {tmp_path / 'rec'}", "--device cpu",
                 "--postprocess-et", "--reference t2", "--skull-strip never", "--register always",
                 f"--out-brain-mask {tmp_path / 'brain.nii'}"):
        assert part in joined
    assert "--t1 " not in joined and "--t1ce" not in joined
    bare = predict_command(PredictOptions(inputs={"t1": "a"}, bundle="b", out_seg="s"))
    assert "--out-recon-dir" not in bare and "--postprocess-et" not in bare and "--reference" not in bare
    assert "--out-brain-mask" not in bare and " ".join(bare).endswith("--skull-strip auto --register auto")
    # every option the module passes is one that predict accepts
    from AllStageTraining.cli import build_parser

    parsed = build_parser().parse_args(command[2:])
    assert (parsed.skull_strip, parsed.register, parsed.out_brain_mask) == ("never", "always", str(tmp_path / "brain.nii"))


def test_child_environment_is_unbuffered_utf8_and_keeps_the_rest():
    env = child_environment(base={"PATH": "/bin", "PYTHONPATH": "/elsewhere"})
    assert env == {"PATH": "/bin", "PYTHONPATH": "/elsewhere", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}


def _script(tmp_path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text("import sys, time\n" + textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_runner_reports_progress_log_and_done(tmp_path):
    command = _script(tmp_path, """
        for i, stage in enumerate(["loading images", "reconstructing", "segmenting"]):
            print(f"PROGRESS {i / 3:.3f} {stage}", flush=True)
            time.sleep(0.05)
        print("LOG T2 resampled onto the FLAIR grid", flush=True)
        print("warning on stderr", file=sys.stderr, flush=True)
        print("DONE 0.2", flush=True)
    """)
    process = PredictProcess(command).start()
    stages = []
    update = process.wait(timeout=60, on_update=lambda u: stages.append(u.stage))
    assert update.state == SUCCEEDED and update.fraction == 1.0 and process.seconds == 0.2
    assert "reconstructing" in stages
    assert "T2 resampled onto the FLAIR grid" in process.log and "warning on stderr" in process.log
    assert update.message == "finished in 0.2 s"


def test_runner_surfaces_the_error_line(tmp_path):
    command = _script(tmp_path, """
        print("PROGRESS 0.1 loading model", flush=True)
        print("ERROR: the bundle is corrupt: checksum of model.safetensors differs; export it again", file=sys.stderr)
        sys.exit(3)
    """)
    update = PredictProcess(command).start().wait(timeout=60)
    assert update.state == FAILED
    assert update.message == "the bundle is corrupt: checksum of model.safetensors differs; export it again"


def test_runner_explains_an_exit_code_without_error_line(tmp_path):
    command = _script(tmp_path, """
        print("something went wrong in C++", flush=True)
        sys.exit(4)
    """)
    update = PredictProcess(command).start().wait(timeout=60)
    assert update.state == FAILED
    assert "out of memory" in update.message and "exit code 4" in update.message
    assert "something went wrong in C++" in update.message


@pytest.mark.skipif(sys.platform == "win32", reason="process-group check uses POSIX signals")
def test_cancel_ends_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    command = _script(tmp_path, f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("PROGRESS 0.2 segmenting", flush=True)
        time.sleep(120)
    """)
    process = PredictProcess(command).start()
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) or process.poll().fraction < 0.2:
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    process.cancel()
    update = process.wait(timeout=30)
    assert update.state == CANCELLED and time.monotonic() - started < 10
    for _ in range(100):  # the grandchild was in the same session: it must be gone (or a zombie) too
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{grandchild}/stat").exists() and Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild process survived cancel")


def test_every_failing_exit_code_of_predict_has_a_meaning_for_the_module():
    from AllStageSegLib.predict_process import EXIT_MEANINGS
    from AllStageTraining import exit_codes

    failing = {value for name, value in vars(exit_codes).items() if name.startswith("EXIT_") and value != 0}
    assert failing == set(EXIT_MEANINGS)
