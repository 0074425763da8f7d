"""``train``: stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder.

Run folder: ``RUN/config.json`` (the resolved config), ``RUN/mae/`` (not for zero-fill), ``RUN/seg/``,
``RUN/eval/`` (predictions, table.csv, table.md, summary.json, heatmap.png). Running the same command again
continues an interrupted run: a stage whose ``model.safetensors`` exists is skipped, a stage with a
checkpoint resumes from it, and the evaluation scores the predictions already written instead of recomputing
them. A run folder holding a different configuration is refused.
"""

from __future__ import annotations

import json
import sys
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

HELP = "stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder"

#: Config fields that may change between an interrupted run and its continuation.
_FREE_FIELDS = {"data": ("num_workers", "cache_dir"), "optim_mae": ("val_every", "ckpt_every", "log_every"),
                "optim_seg": ("val_every", "ckpt_every", "log_every")}


def add_arguments(parser) -> None:
    add_common_arguments(parser, stage="both")
    add_seg_arguments(parser)
    parser.add_argument("--no-eval", action="store_true", help="stop after training (no test-split evaluation)")


def _comparable(cfg_dict: dict) -> dict:
    out = json.loads(json.dumps(cfg_dict))
    for group, names in _FREE_FIELDS.items():
        for name in names:
            out[group].pop(name, None)
    out.pop("inference", None)  # evaluation settings may change
    out["seg"]["text"].pop("cache_dir", None)
    return out


def _check_run_folder(run: Path, cfg) -> None:
    saved = run / "config.json"
    if not saved.is_file():
        return
    previous = json.loads(saved.read_text())
    if _comparable(previous) != _comparable(cfg.to_dict()):
        raise UsageError(f"{run} holds a run with a different configuration ({saved}); "
                         "continue it with the same options, or give a new --out")


def run(args) -> int:
    try:
        prepare_process(args)
        cfg = resolve_config(args, stage="both")
        return _train(args, cfg)
    except user_errors() as error:
        return report_error(error)


def _train(args, cfg) -> int:
    from ..data.splits import load_split, save_split
    from ..training.cases import MODEL_FILE
    from ..training.distributed import init_runtime, shutdown_runtime
    from ..training.stage1 import train_mae
    from ..training.stage2 import method_config, train_seg

    cfg = method_config(cfg)  # m3ae-style: stage 1 with L_rec only; baselines: no hyper-network
    split = load_split(args.split)
    if not split["test"] and not args.no_eval:
        raise UsageError(f"{args.split} has no test cases to evaluate; prepare a split with a test fraction or pass --no-eval")
    run_dir = Path(args.out)
    runtime = init_runtime(args.device)
    try:
        if runtime.is_main:
            _check_run_folder(run_dir, cfg)
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / "config.json")
            save_split(split, run_dir / "split.json")  # provenance for `export`
        mae_dir = None
        if cfg.seg.method != "zero-fill":
            mae_dir = run_dir / "mae"
            if (mae_dir / MODEL_FILE).is_file():
                _say(runtime, f"[train] stage 1 already finished: {mae_dir / MODEL_FILE}")
            else:
                train_mae(cfg, args.split, mae_dir, resume=True, device=args.device)
        seg_dir = run_dir / "seg"
        if (seg_dir / MODEL_FILE).is_file():
            _say(runtime, f"[train] stage 2 already finished: {seg_dir / MODEL_FILE}")
        else:
            train_seg(cfg, args.split, mae_dir, seg_dir, resume=True, device=args.device)
    finally:
        main = runtime.is_main
        shutdown_runtime()  # the other ranks are done; rank 0 evaluates alone
    if not main or args.no_eval:
        return 0

    from ..evaluation.scenario_eval import evaluate_test_split
    from ..inference.predictor import Predictor

    predictor = Predictor.from_run(run_dir, device=runtime.device)
    table = evaluate_test_split(predictor, split, run_dir / "eval", method=cfg.seg.method,
                                progress=None if sys.stderr.isatty() else _plain_progress())
    means = table.overall_means("dice")
    print(f"[train] {len(split['test'])} test case(s) x 15 scenarios, mean Dice: "
          + ", ".join(f"{region} {value:.4f}" for region, value in means.items())
          + f"; tables in {run_dir / 'eval'}", flush=True)
    return 0


def _plain_progress():
    """Progress lines for logs (no terminal): one per 10% of the predictions."""
    state = {"next": 0.0}

    def report(fraction: float, what: str) -> None:
        if fraction + 1e-9 >= state["next"] or fraction >= 1.0:
            print(f"[eval] {fraction:6.1%} {what}", flush=True)
            state["next"] = fraction + 0.1

    return report


def _say(runtime, text: str) -> None:
    if runtime.is_main:
        print(text, flush=True)
