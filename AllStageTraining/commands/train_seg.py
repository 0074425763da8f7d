"""``train-seg``: stage 2: train the segmenter (co-distillation, or a baseline) with a trained MAE."""

from __future__ import annotations

import os

from pathlib import Path

from .training_options import (
    UsageError,
    add_common_arguments,
    add_seg_arguments,
    prepare_process,
    report_error,
    resolve_config,
    user_errors,
)

HELP = "stage 2: train the segmenter (co-distillation, or a baseline) with a trained MAE"


def add_arguments(parser) -> None:
    add_common_arguments(parser, stage="seg")
    parser.add_argument("--mae", type=Path, help="stage-1 output folder (holds model.safetensors); not for zero-fill")
    add_seg_arguments(parser)


def run(args) -> int:
    try:
        prepare_process(args)
        cfg = resolve_config(args, stage="seg")
        if cfg.seg.method != "zero-fill" and args.mae is None:
            raise UsageError(f"method {cfg.seg.method} needs --mae DIR (the output folder of train-mae)")
        from ..training.distributed import shutdown_runtime
        from ..training.stage2 import train_seg

        try:
            path = train_seg(cfg, args.split, args.mae, args.out, resume=args.resume, device=args.device)
        finally:
            shutdown_runtime()
    except user_errors() as error:
        return report_error(error)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"segmenter weights: {path}", flush=True)
    return 0
