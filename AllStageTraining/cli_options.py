"""Options that several commands share, and how they become a RunConfig.

Every command that trains (``train``, ``train-mae``, ``train-seg``, ``experiment``, ``demo``) resolves its
configuration the same way (``config.resolve_config``): the preset, then ``--config FILE`` merged over it,
then the command's own flags (as dotted fields), then every ``--set key.sub=value`` in order, then the
method's settings. ``--print-config`` prints the result and stops. Light imports only (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

from .config import PRESETS
from .methods import DEFAULT_METHOD, method_names
from .runtime import DEVICE_CHOICES

PRESET_CHOICES: tuple[str, ...] = ("auto", *PRESETS)


def add_config_options(parser: argparse.ArgumentParser, *, preset: str | None = "auto") -> None:
    """``--preset`` (unless ``preset`` is None: the command fixes it), ``--config``, ``--set``, ``--print-config``."""
    if preset is not None:
        parser.add_argument("--preset", choices=PRESET_CHOICES if preset == "auto" else PRESETS, default=preset,
                            help="configuration preset (auto: paper on a CUDA GPU, cpu otherwise; default %(default)s)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="RunConfig JSON (full or partial) merged over the preset: only the fields it names change")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set mae.w_pop=0 --set data.crop_size=[64,64,64] "
                        "(JSON values; repeatable; applied after every other option)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration as JSON and exit without running anything")


def add_runtime_options(parser: argparse.ArgumentParser, *, device: str = "auto") -> None:
    """``--device`` (used by training and evaluation alike) and ``--threads``."""
    parser.add_argument("--device", default=device, choices=DEVICE_CHOICES,
                        help=f"where to train and evaluate (auto: a CUDA GPU when there is one; default {device})")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")


def add_training_options(parser: argparse.ArgumentParser, *, stage: str) -> None:
    """Options of ``train-mae`` (stage "mae"), ``train-seg`` ("seg") and ``train`` ("both")."""
    parser.add_argument("--split", required=True, type=Path, help="split file written by `prepare`")
    out_help = "run folder (RUN/mae, RUN/seg, RUN/eval)" if stage == "both" else "output folder of this stage"
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    add_config_options(parser)
    parser.add_argument("--steps", type=int, help="optimizer steps of each stage" if stage == "both" else "optimizer steps")
    parser.add_argument("--batch-size", type=int, help="crops per step and process")
    if stage != "both":  # `train` always continues what a previous run left
        parser.add_argument("--resume", action="store_true",
                            help="continue from OUT/checkpoint.pt exactly where a stopped run left off")
    add_runtime_options(parser)


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """The method and its stage-2 switches, and the prompt encoder."""
    parser.add_argument("--method", choices=method_names(),
                        help=f"what to train (default {DEFAULT_METHOD}; see README, methods)")
    parser.add_argument("--personalize", choices=("both", "head", "norm", "none"),
                        help="what the scenario hyper-network generates (personalizing methods)")
    parser.add_argument("--no-logit-distill", action="store_true", help="switch logit distillation off")
    parser.add_argument("--no-feat-distill", action="store_true", help="switch bottleneck feature distillation off")
    parser.add_argument("--text-model", help="open_clip text model name (default ViT-B-32)")
    parser.add_argument("--text-pretrained", help="open_clip pretrained tag or a local checkpoint path")
    parser.add_argument("--allow-untrained-text-encoder", action="store_true",
                        help="run the text encoder on random weights when no pretrained weights are available "
                        "(offline tests and demos; recorded in the model)")


def training_fields(args: argparse.Namespace, *, stage: str) -> dict[str, Any]:
    """The dotted config fields that the training options set (only those given)."""
    fields: dict[str, Any] = {}
    for group in {"mae": ["optim_mae"], "seg": ["optim_seg"], "both": ["optim_mae", "optim_seg"]}[stage]:
        if args.steps is not None:
            fields[f"{group}.steps"] = args.steps
        if args.batch_size is not None:
            fields[f"{group}.batch_size"] = args.batch_size
    flags = {
        "method": getattr(args, "method", None),
        "seg.personalize": getattr(args, "personalize", None),
        "seg.w_logit_distill": 0.0 if getattr(args, "no_logit_distill", False) else None,
        "seg.w_feat_distill": 0.0 if getattr(args, "no_feat_distill", False) else None,
        "seg.text.model_name": getattr(args, "text_model", None),
        "seg.text.pretrained": getattr(args, "text_pretrained", None),
        "seg.text.allow_untrained": True if getattr(args, "allow_untrained_text_encoder", False) else None,
    }
    return {**fields, **{k: v for k, v in flags.items() if v is not None}}


def setup(args: argparse.Namespace, fields: Mapping[str, Any], *, preset: str | None = None):
    """What every training command does first: set the threads, resolve ``--device`` (DeviceError when it is
    not available) and resolve the configuration; returns ``(device, cfg)``."""
    from .runtime import resolve_device, set_threads

    set_threads(args.threads)
    device = resolve_device(args.device)
    return device, config_from_args(args, fields, device=device, preset=preset)


def config_from_args(args: argparse.Namespace, fields: Mapping[str, Any], *, device, preset: str | None = None):
    """The RunConfig of a command: ``preset`` (default ``args.preset``; "auto": paper when ``device`` is a GPU,
    cpu otherwise), ``args.config``, ``fields``, ``args.overrides`` (``--set``), the method's settings."""
    from .config import resolve_config

    name = preset or args.preset
    if name == "auto":
        name = "paper" if device.type == "cuda" else "cpu"
    return resolve_config(name, config_file=args.config, fields=fields, sets=args.overrides)


def print_config(configs) -> int:
    """Print a RunConfig (or ``{name: RunConfig}``) as JSON on stdout; exit code 0."""
    data = configs.to_dict() if hasattr(configs, "to_dict") else {k: v.to_dict() for k, v in configs.items()}
    print(json.dumps(data, indent=2), flush=True)
    return 0


def command_line(command: str) -> str | None:
    """This process's command line as ``python -m AllStageTraining ...`` when it runs ``command``, else None
    (e.g. when called from Python), for the outputs that record how they were made."""
    import shlex
    import sys

    arguments = sys.argv[1:]
    return "python -m AllStageTraining " + shlex.join(arguments) if arguments[:1] == [command] else None
