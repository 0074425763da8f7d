"""Process-wide settings: transparent huge pages only where the environment asks for them; the code record; the
CPU model a stage record names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from AllStageTraining.runtime import HUGE_PAGES_ENV

#: In a fresh process: run the CLI's main (no command: it prints the help), then allocate a 64 MB tensor and
#: print the environment variable and the process's anonymous huge pages in kB.
PROBE = """
import contextlib, io, os
from AllStageTraining.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main([])
import torch
x = torch.ones(16 * 2**20)
huge = [int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')]
print(os.environ.get('%s'), huge[0] if huge else -1)
""" % HUGE_PAGES_ENV


def _probe(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV}
    if env_value is not None:
        env[HUGE_PAGES_ENV] = env_value
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    value, huge_kb = done.stdout.split()[-2:]
    return value, int(huge_kb)


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_commands_leave_huge_pages_to_the_environment():
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp.read_text() if thp.exists() else "[never]"
    value, huge_kb = _probe(None)
    assert value == "None"  # the CLI sets nothing
    if "[madvise]" in mode:  # only asked-for regions get them
        assert huge_kb < 2048
    value, huge_kb = _probe("1")  # the opt-in the runtime comment describes
    assert value == "1"
    if "[never]" not in mode:
        assert huge_kb >= 2048, "a 64 MB tensor got no transparent huge page"


def test_the_code_record_names_the_checkout_commit_and_reads_back_in_one_line():
    import AllStageTraining
    from AllStageTraining.runtime import code_text, code_version

    package = Path(AllStageTraining.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(package.parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the package is not imported from a git checkout")
    record = code_version()
    assert record["package"] == AllStageTraining.__version__
    assert record["commit"] == head.stdout.strip()[:12]
    assert record["modified"] in (True, False)

    clean = {"package": "0.1.0", "commit": "aaaa", "modified": False}
    changed = {"package": "0.1.0", "commit": "bbbb", "modified": True}
    assert code_text({"mae": {"code": clean}, "seg": {"code": clean}}) == "aaaa"
    assert code_text({"mae": {"code": clean}, "eval": {"code": changed}}) == "aaaa / bbbb+modified"
    assert code_text({"seg": {"code": {"package": "0.1.0", "commit": None, "modified": None}}}) == "package 0.1.0"
    assert code_text({"seg": {"device": "cpu"}}) is None


def test_the_code_record_tells_an_edited_checkout_from_its_commit(tmp_path):
    """A copy of the package in a fresh git repository: committed, then one file edited."""
    import shutil

    import AllStageTraining

    shutil.copytree(Path(AllStageTraining.__file__).resolve().parent, tmp_path / "AllStageTraining",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "AllStageTraining"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    probe = "from AllStageTraining.runtime import code_version; r = code_version(); print(r['commit'], r['modified'])"

    def record() -> str:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        return subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert record() == f"{commit} False"
    with open(tmp_path / "AllStageTraining" / "constants.py", "a") as f:
        f.write("\n# an edit\n")
    assert record() == f"{commit} True"


def test_a_stage_record_names_the_cpu_model_not_only_the_architecture(tmp_path):
    """Runs on different CPU models differ (bfloat16 kernels), so the record says which model ran them."""
    import platform

    import torch

    from AllStageTraining.runtime import cpu_name, describe

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t: fpu\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 9R14\n")
    assert cpu_name(cpuinfo) == "AMD EPYC 9R14"
    fallback = platform.processor() or platform.machine()
    assert cpu_name(tmp_path / "missing") == fallback and fallback
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # ARM: no model name line
    assert cpu_name(cpuinfo) == fallback
    assert describe(torch.device("cpu"), "float32")["device_name"] == cpu_name()
