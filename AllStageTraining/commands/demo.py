"""``demo``: synthesize data, train, evaluate, export and report: the whole pipeline, resumable.

The stages and the folder are described in ``pipeline.demo``; this command resolves the configuration (the
``cpu`` preset, ``--config``, the demo's size and text encoder, ``--set``) and the device, and runs it.
"""

from __future__ import annotations

from ..cli_options import add_config_options, add_runtime_options
from ..exit_codes import run_command
from ..pipeline.demo import STAGES

HELP = "synthesize data, train, evaluate, export and report: the whole pipeline (sized for two CPU cores)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default: %(default)s); rerun "
                        "with the same folder to continue an interrupted demo")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller demo (fewer cases, steps and smaller crops): about 3 minutes on 2 cores")
    parser.add_argument("--text-pretrained", metavar="TAG_OR_PATH",
                        help="open_clip pretrained tag or local checkpoint for the prompt encoder (CLIP's text "
                             "tower); without it the demo uses the offline sentence encoder all-MiniLM-L6-v2")
    parser.add_argument("--text-model", default="ViT-B-32",
                        help="open_clip model name, with --text-pretrained (default: %(default)s)")
    parser.add_argument("--stop-after", choices=STAGES, metavar="STAGE",
                        help=f"stop after this stage (one of {', '.join(STAGES)}); a rerun continues")
    add_config_options(parser, preset=None)
    add_runtime_options(parser)


def run(args) -> int:
    return run_command(lambda: _demo(args))


def _demo(args) -> int:
    from ..cli_options import print_config, setup
    from ..methods import configure
    from ..pipeline.demo import COMPARED, SIZES, demo_fields, demo_settings, run_demo

    mode = "quick" if args.quick else "full"
    device, cfg = setup(args, demo_fields(SIZES[mode], args.text_model, args.text_pretrained), preset="cpu")
    if args.print_config:
        return print_config({method: configure(cfg, method) for method in COMPARED})
    changed = args.config is not None or bool(args.overrides)
    settings = demo_settings(mode, args.text_model, args.text_pretrained, cfg, changed)
    return run_demo(args.out, mode, cfg, settings, device=device, stop_after=args.stop_after)
