"""`python -m AllStageTraining --help` lists every subcommand, and each has its own --help (real subprocess)."""

import subprocess
import sys

from AllStageTraining.cli import COMMANDS


def _help(*args):
    return subprocess.run([sys.executable, "-m", "AllStageTraining", *args, "--help"],
                          capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_all_subcommands():
    result = _help()
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


def test_each_subcommand_has_its_own_help():
    for name in COMMANDS:
        result = _help(name)
        assert result.returncode == 0, (name, result.stderr)
        assert f"usage: python -m AllStageTraining {name}" in result.stdout
