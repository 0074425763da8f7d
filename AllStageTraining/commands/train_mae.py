"""``train-mae``: stage 1: train the multimodal masked autoencoder on a prepared split."""

from __future__ import annotations

import os

from .training_options import add_common_arguments, prepare_process, report_error, resolve_config, user_errors

HELP = "stage 1: train the multimodal masked autoencoder on a prepared split"


def add_arguments(parser) -> None:
    add_common_arguments(parser, stage="mae")


def run(args) -> int:
    try:
        prepare_process(args)
        cfg = resolve_config(args, stage="mae")
        from ..training.distributed import shutdown_runtime
        from ..training.stage1 import train_mae

        try:
            path = train_mae(cfg, args.split, args.out, resume=args.resume, device=args.device)
        finally:
            shutdown_runtime()
    except user_errors() as error:
        return report_error(error)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"MAE weights: {path}", flush=True)
    return 0
