"""``experiment``: run a grid of methods x missing-data settings x seeds (x budgets) and write one comparison.

Every cell is a run folder trained on the same split, crops, widths, steps and seed as the other methods of
its row; only the method differs (``pipeline.experiment``). The missing-data settings are training missing
ratios (``--ratios``) and PASSION-style per-sequence rates (``--missing-rates``); ``--budgets`` adds learning
curves; ``--evaluate-on val`` scores the validation cases (tuning) instead of the test cases. The methods are
those of the registry (``methods``). A rerun with the same folder skips finished cells and resumes the others.
"""

from __future__ import annotations

from ..cli_options import add_config_options, add_runtime_options
from ..exit_codes import run_command
from ..methods import method_names

HELP = "run a grid of methods x missing-data settings x seeds (x budgets) and write one comparison"
DEFAULT_RATIOS = "0,0.5"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of BraTS-style cases (all methods use the same)")
    parser.add_argument("--out", required=True, help="experiment folder (rerun with the same folder to resume)")
    parser.add_argument("--methods", default="ours,zero-fill,m3ae-style",
                        help=f"comma-separated, from {', '.join(method_names())} (default: %(default)s)")
    parser.add_argument("--ratios", help="training missing ratios, comma-separated (default: "
                                         f"{DEFAULT_RATIOS} unless --missing-rates is given)")
    parser.add_argument("--missing-rates", action="append", default=[], metavar="F,C,1,2",
                        help="per-sequence training missing rates (PASSION-style) for flair, t1ce, t1, t2, e.g. "
                             "0.6,0.4,0.2,0.8; repeatable, or several separated by ';'")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated; one split per setting and seed")
    parser.add_argument("--budgets", help="steps of each stage, comma-separated, e.g. 300,600,1200,2400: a learning "
                                          "curve (instead of --steps-mae/--steps-seg)")
    add_config_options(parser, preset="cpu")
    parser.add_argument("--steps-mae", type=int, help="stage-1 steps (default: the preset's)")
    parser.add_argument("--steps-seg", type=int, help="stage-2 steps (default: the preset's)")
    parser.add_argument("--crop", type=int, help="cubic training crop in voxels, a multiple of 8 (default: the preset's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of cases for validation")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of cases for testing")
    parser.add_argument("--evaluate-on", choices=("test", "val"), default="test",
                        help="score the test cases (default) or the validation cases (tuning budgets and defaults "
                             "without touching the test set; outputs go to eval-val/ and comparison-val.*)")
    parser.add_argument("--no-synthesis-table", action="store_true",
                        help="skip the MAE synthesis-quality table of methods with an MAE")
    parser.add_argument("--no-prompt-table", action="store_true",
                        help="skip the 15 x 15 prompt-sensitivity table of personalizing methods")
    parser.add_argument("--prompt-table-cases", type=int, default=6, metavar="N",
                        help="cases in the prompt-sensitivity table: the first N scored (225 segmenter passes each; "
                             "default %(default)s)")
    parser.add_argument("--text-pretrained",
                        help="open_clip pretrained tag or local checkpoint for the prompt encoder "
                             "(default: the preset's; see --allow-untrained-text-encoder)")
    parser.add_argument("--allow-untrained-text-encoder", action="store_true",
                        help="embed the scenario prompts with an untrained open_clip text encoder (offline "
                             "use; recorded in every run and bundle)")
    parser.add_argument("--scenarios", default="all",
                        help="scenarios to evaluate, comma-separated short names such as FC12,F1 (default: all 15)")
    add_runtime_options(parser)


def run(args) -> int:
    return run_command(lambda: _experiment(args))


def _fields(args) -> dict:
    """The dotted config fields the experiment's flags set (only those given)."""
    fields = {"optim_mae.steps": args.steps_mae, "optim_seg.steps": args.steps_seg,
              "data.crop_size": [args.crop] * 3 if args.crop else None, "seg.text.pretrained": args.text_pretrained}
    fields = {k: v for k, v in fields.items() if v is not None}
    if args.allow_untrained_text_encoder:
        fields["seg.text.allow_untrained"] = True
        if not args.text_pretrained:
            fields["seg.text.pretrained"] = None
    return fields


def _parse_list(text: str, kind, name: str) -> tuple:
    from ..exit_codes import UsageError

    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"--{name} is empty")
    return values


def _settings(args) -> tuple:
    """The missing-data settings: the ratios first, then every rate setting, in the order given."""
    from ..data.splits import MissingSetting
    from ..exit_codes import UsageError

    ratios = args.ratios if args.ratios is not None else ("" if args.missing_rates else DEFAULT_RATIOS)
    rate_texts = [t.strip() for given in args.missing_rates for t in given.split(";") if t.strip()]
    try:
        settings = [MissingSetting(ratio=r) for r in (_parse_list(ratios, float, "ratios") if ratios else ())]
        settings += [MissingSetting.parse_rates(text) for text in rate_texts]
    except ValueError as error:
        raise UsageError(str(error).replace("missing_ratio", "a missing ratio")) from None
    return tuple(settings)


def _grid(args):
    from ..constants import SCENARIOS, scenario_by_short
    from ..exit_codes import UsageError
    from ..pipeline.experiment import Grid
    from ..pipeline.run import ExtraEvaluations

    if args.budgets and (args.steps_mae or args.steps_seg):
        raise UsageError("give --budgets or --steps-mae/--steps-seg, not both (a budget sets the steps of both stages)")
    if args.prompt_table_cases < 1:
        raise UsageError(f"--prompt-table-cases must be at least 1, got {args.prompt_table_cases}")
    try:
        scenarios = SCENARIOS if args.scenarios == "all" else tuple(
            scenario_by_short(s.strip()) for s in args.scenarios.split(",") if s.strip())
        return Grid(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), settings=_settings(args),
                    seeds=_parse_list(args.seeds, int, "seeds"),
                    budgets=_parse_list(args.budgets, int, "budgets") if args.budgets else (),
                    val_fraction=args.val_fraction, test_fraction=args.test_fraction, scenarios=scenarios,
                    evaluate_on=args.evaluate_on,
                    extras=ExtraEvaluations(synthesis=not args.no_synthesis_table, prompts=not args.no_prompt_table,
                                            prompt_cases=args.prompt_table_cases))
    except ValueError as error:
        raise UsageError(str(error)) from None


def _experiment(args) -> int:
    from ..cli_options import command_line, print_config, setup
    from ..pipeline.experiment import cell_config, run_experiment

    grid = _grid(args)
    device, base = setup(args, _fields(args))
    if args.print_config:
        return print_config({method + ("" if budget is None else f" (budget {budget})"):
                             cell_config(base, method, grid.seeds[0], budget)
                             for budget in grid.budget_axis for method in grid.methods})
    run_experiment(args.data, args.out, grid, base, device=device, command=command_line("experiment"))
    return 0
