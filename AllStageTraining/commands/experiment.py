"""``experiment``: run a grid of methods x training missing ratios (x seeds) and write one comparison.

Every cell is a run folder trained on the same split, crops, widths, steps and seed as the other methods of
its row; only the method differs (``pipeline.experiment``). The methods are those of the registry
(``methods``): ``ours``, ``zero-fill``, ``zero-fill-long``, ``m3ae-style`` and the ablations of ``ours``. A rerun
with the same folder skips finished cells and resumes the others.
"""

from __future__ import annotations

from ..cli_options import add_config_options, add_runtime_options
from ..exit_codes import run_command
from ..methods import method_names

HELP = "run a grid of methods x training missing ratios and write one comparison"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of BraTS-style cases (all methods use the same)")
    parser.add_argument("--out", required=True, help="experiment folder (rerun with the same folder to resume)")
    parser.add_argument("--methods", default="ours,zero-fill,m3ae-style",
                        help=f"comma-separated, from {', '.join(method_names())} (default: %(default)s)")
    parser.add_argument("--ratios", default="0,0.5", help="training missing ratios, comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated; one split per ratio and seed")
    add_config_options(parser, preset="cpu")
    parser.add_argument("--steps-mae", type=int, help="stage-1 steps (default: the preset's)")
    parser.add_argument("--steps-seg", type=int, help="stage-2 steps (default: the preset's)")
    parser.add_argument("--crop", type=int, help="cubic training crop in voxels, a multiple of 8 (default: the preset's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of cases for validation")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of cases for testing")
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


def _experiment(args) -> int:
    from ..cli_options import print_config, setup
    from ..constants import SCENARIOS, scenario_by_short
    from ..methods import configure
    from ..pipeline.experiment import Grid, run_experiment

    scenarios = SCENARIOS if args.scenarios == "all" else tuple(
        scenario_by_short(s.strip()) for s in args.scenarios.split(",") if s.strip())
    grid = Grid(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                ratios=_parse_list(args.ratios, float, "ratios"), seeds=_parse_list(args.seeds, int, "seeds"),
                val_fraction=args.val_fraction, test_fraction=args.test_fraction, scenarios=scenarios)
    device, base = setup(args, _fields(args))
    if args.print_config:
        return print_config({method: configure(base, method) for method in grid.methods})
    run_experiment(args.data, args.out, grid, base, device=device)
    return 0
