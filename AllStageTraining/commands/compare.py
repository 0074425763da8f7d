"""``compare``: one comparison from the finished cells of several experiment folders.

For grids run apart (a method added later, cells run on other machines, a folder under ``docs/science`` that
kept only its tables): the folders must share the base configuration, the scenarios and the splits' cases
(``pipeline.compare``); the output is the comparison an ``experiment`` over all their cells would write.
"""

from __future__ import annotations

from ..exit_codes import run_command

HELP = "merge the finished cells of several experiment folders into one comparison (paired over their cases)"


def add_arguments(parser) -> None:
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                        help="experiment folders (--out of experiment); FOLDER@METHOD,METHOD takes only those methods")
    parser.add_argument("--out", required=True, help="folder for comparison.{csv,md,png} (not an experiment folder)")
    parser.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                        help="compare the cells' test evaluations (default) or their validation ones "
                             "(comparison-val.*)")


def run(args) -> int:
    return run_command(lambda: _compare(args))


def _compare(args) -> int:
    from ..cli_options import command_line
    from ..pipeline.compare import compare_experiments

    rows = compare_experiments(args.experiments, args.out, subset=args.evaluate_on, command=command_line("compare"))
    stem = "comparison" if args.evaluate_on == "test" else "comparison-val"
    print(f"{len(rows)} cell(s) compared: {args.out}/{stem}.md")
    return 0
