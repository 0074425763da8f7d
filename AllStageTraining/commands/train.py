"""``train``: stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder.

The run folder (``layout.RunFolder``): ``RUN/config.json``, ``RUN/split.json``, ``RUN/runtime.json``,
``RUN/mae/`` (methods with an MAE), ``RUN/seg/``, ``RUN/eval/``. Running the same command again continues an
interrupted run (``pipeline.run.train_and_evaluate``): a finished stage is skipped, a stage with a checkpoint
resumes from it, and the evaluation scores the predictions already written. A run folder holding a different
configuration or split is refused.
"""

from __future__ import annotations

from ..cli_options import add_method_options, add_training_options
from ..exit_codes import run_command

HELP = "stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder"


def add_arguments(parser) -> None:
    add_training_options(parser, stage="both")
    add_method_options(parser)
    parser.add_argument("--no-eval", action="store_true", help="stop after training (no test-split evaluation)")


def run(args) -> int:
    return run_command(lambda: _train(args))


def _train(args) -> int:
    from ..cli_options import print_config, setup, training_fields
    from ..pipeline.run import train_and_evaluate

    device, cfg = setup(args, training_fields(args, stage="both"))
    if args.print_config:
        return print_config(cfg)
    result = train_and_evaluate(cfg, args.split, args.out, device=device, until="seg" if args.no_eval else "eval")
    if result.table is not None:
        means = result.table.overall_means("dice")
        print(f"[train] {len(result.table.case_ids)} test case(s) x 15 scenarios, mean Dice: " + ", ".join(f"{region} {value:.4f}" for region, value in means.items())
              + f"; tables in {result.run.eval}", flush=True)
    return 0
