"""``train-seg``: stage 2: train the segmenter of a method (co-distillation from a trained MAE's completions, the
default's dropout zero-fill with the hyper-network, or a baseline)."""

from __future__ import annotations

from pathlib import Path

from ..cli_options import add_method_options, add_training_options
from ..exit_codes import run_command

HELP = "stage 2: train the segmenter of a method (--mae DIR where its MAE completes the inputs, e.g. ours)"


def add_arguments(parser) -> None:
    add_training_options(parser, stage="seg")
    parser.add_argument("--mae", type=Path, help="stage-1 output folder (holds model.safetensors); only for methods "
                        "whose MAE completes the segmenter's inputs (ours, m3ae-style, their ablations but ours-no-mae "
                        "and m3ae-style-no-mae; not zero-fill or ours-display-mae)")
    add_method_options(parser)


def run(args) -> int:
    return run_command(lambda: _train(args))


def _train(args) -> int:
    from ..cli_options import print_config, setup, training_fields
    from ..exit_codes import UsageError
    from ..methods import get_method
    from ..runtime import is_main_process
    from ..training.distributed import shutdown_runtime
    from ..training.stage2 import train_seg

    device, cfg = setup(args, training_fields(args, stage="seg"))
    if args.print_config:
        return print_config(cfg)
    if get_method(cfg.method).completes_inputs and args.mae is None:
        raise UsageError(f"method {cfg.method} needs --mae DIR (the output folder of train-mae)")
    try:
        path = train_seg(cfg, args.split, args.mae, args.out, resume=args.resume, device=device)
    finally:
        shutdown_runtime()
    if is_main_process():
        print(f"segmenter weights: {path}", flush=True)
    return 0
