"""``train-mae``: stage 1: train the multimodal masked autoencoder on a prepared split."""

from __future__ import annotations

from ..cli_options import add_training_options
from ..exit_codes import run_command

HELP = "stage 1: train the multimodal masked autoencoder on a prepared split"


def add_arguments(parser) -> None:
    add_training_options(parser, stage="mae")


def run(args) -> int:
    return run_command(lambda: _train(args))


def _train(args) -> int:
    from ..cli_options import print_config, setup, training_fields
    from ..runtime import is_main_process
    from ..training.distributed import shutdown_runtime
    from ..training.stage1 import train_mae

    device, cfg = setup(args, training_fields(args, stage="mae"))
    if args.print_config:
        return print_config(cfg)
    try:
        path = train_mae(cfg, args.split, args.out, resume=args.resume, device=device)
    finally:
        shutdown_runtime()
    if is_main_process():
        print(f"MAE weights: {path}", flush=True)
    return 0
