"""Command-line interface: one subcommand per module in ``AllStageTraining.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``, and keeps
its top-level imports light so that ``--help`` stays fast; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand name -> module under AllStageTraining.commands, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "prepare": "prepare",
    "train-mae": "train_mae",
    "train-seg": "train_seg",
    "train": "train",
    "evaluate": "evaluate",
    "experiment": "experiment",
    "compare": "compare",
    "export": "export",
    "predict": "predict",
    "benchmark": "benchmark",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m AllStageTraining",
        description="Brain-tumour segmentation from any subset of FLAIR, T1ce, T1 and T2 (all-stage missing modalities).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"AllStageTraining.commands.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
