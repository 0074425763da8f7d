"""Command-line options shared by ``train-mae``, ``train-seg`` and ``train``, and the config they resolve to.

Precedence, lowest first: the preset, ``--config`` (a full or partial RunConfig JSON), the dedicated flags
(``--steps``, ``--batch-size``, ``--method`` ...), then every ``--set key.sub=value`` in order. Light imports
only (``--help`` must stay fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PRESET_CHOICES = ("auto", "tiny", "cpu", "paper")


class UsageError(ValueError):
    """A bad option value; the command prints it as one ``ERROR:`` line and exits with 2."""


def add_common_arguments(parser: argparse.ArgumentParser, *, stage: str) -> None:
    """Options of every training command; ``stage`` is "mae", "seg" or "both" (for ``train``)."""
    parser.add_argument("--split", required=True, type=Path, help="split file written by `prepare`")
    out_help = "run folder (RUN/mae, RUN/seg, RUN/eval)" if stage == "both" else "output folder of this stage"
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    parser.add_argument("--preset", choices=PRESET_CHOICES, default="auto",
                        help="configuration preset (auto: paper on a CUDA GPU, cpu otherwise)")
    parser.add_argument("--config", type=Path, help="RunConfig JSON (full or partial) applied over the preset")
    steps_help = "optimizer steps of each stage" if stage == "both" else "optimizer steps"
    parser.add_argument("--steps", type=int, help=steps_help)
    parser.add_argument("--batch-size", type=int, help="crops per step and process")
    if stage != "both":  # `train` always continues what a previous run left
        parser.add_argument("--resume", action="store_true",
                            help="continue from OUT/checkpoint.pt exactly where a stopped run left off")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set mae.w_pop=0 --set data.crop_size=[64,64,64] "
                        "(JSON values; repeatable)")


def add_seg_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage-2 options (method, personalization, distillation switches, text encoder)."""
    parser.add_argument("--method", choices=("ours", "zero-fill", "m3ae-style"), help="what to train (default ours)")
    parser.add_argument("--personalize", choices=("both", "head", "norm", "none"),
                        help="what the scenario hyper-network generates (method ours)")
    parser.add_argument("--no-logit-distill", action="store_true", help="switch logit distillation off")
    parser.add_argument("--no-feat-distill", action="store_true", help="switch bottleneck feature distillation off")
    parser.add_argument("--text-model", help="open_clip text model name (default ViT-B-32)")
    parser.add_argument("--text-pretrained", help="open_clip pretrained tag or a local checkpoint path")
    parser.add_argument("--allow-untrained-text-encoder", action="store_true",
                        help="run the text encoder on random weights when no pretrained weights are available "
                        "(offline tests and demos; recorded in the model)")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text in ("None", "none", "null"):
            return None
        return text


def _merge(base: dict, update: dict, prefix: str = "") -> None:
    for key, value in update.items():
        if key not in base:
            raise UsageError(f"unknown config field {prefix}{key}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``key.sub=value`` (value parsed as JSON, else a string) to a config dict in place."""
    if "=" not in assignment:
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. mae.w_pop=0")
    key, text = assignment.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise UsageError(f"--set {key}: unknown config field {'.'.join(parts[: i + 1])}")
        if i == len(parts) - 1:
            if isinstance(node[part], dict):
                raise UsageError(f"--set {key}: {key} is a group of fields; set one of {sorted(node[part])}")
            node[part] = _parse_value(text)
        else:
            node = node[part]


def resolve_config(args: argparse.Namespace, *, stage: str):
    """The RunConfig that the options describe (see the module docstring for the precedence)."""
    import torch

    from ..config import RunConfig, preset

    name = args.preset
    if name == "auto":
        name = "paper" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    data = preset(name).to_dict()
    if args.config is not None:
        if not args.config.is_file():
            raise UsageError(f"--config {args.config}: no such file")
        try:
            _merge(data, json.loads(args.config.read_text()))
        except json.JSONDecodeError as error:
            raise UsageError(f"--config {args.config}: not JSON ({error})") from None
    stages = {"mae": ["optim_mae"], "seg": ["optim_seg"], "both": ["optim_mae", "optim_seg"]}[stage]
    for group in stages:
        if args.steps is not None:
            data[group]["steps"] = args.steps
        if args.batch_size is not None:
            data[group]["batch_size"] = args.batch_size
    seg, text = data["seg"], data["seg"]["text"]
    if getattr(args, "method", None):
        seg["method"] = args.method
    if getattr(args, "personalize", None):
        seg["personalize"] = args.personalize
    if getattr(args, "no_logit_distill", False):
        seg["w_logit_distill"] = 0.0
    if getattr(args, "no_feat_distill", False):
        seg["w_feat_distill"] = 0.0
    if getattr(args, "text_model", None):
        text["model_name"] = args.text_model
    if getattr(args, "text_pretrained", None):
        text["pretrained"] = args.text_pretrained
    if getattr(args, "allow_untrained_text_encoder", False):
        text["allow_untrained"] = True
    for assignment in args.overrides:
        apply_override(data, assignment)
    try:
        cfg = RunConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise UsageError(f"invalid configuration: {error}") from None
    for group in stages:
        optim = getattr(cfg, group)
        if optim.steps < 1 or optim.batch_size < 1:
            raise UsageError(f"{group}: steps and batch size must be at least 1")
    return cfg


def prepare_process(args: argparse.Namespace) -> None:
    """Thread count, before any heavy work."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def report_error(error: BaseException) -> int:
    """Print one ``ERROR:`` line on stderr; return the exit code for a user-fixable problem (2)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    return 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a user can cause and fix (bad options, data, devices, checkpoints, text encoder)."""
    from ..nets.text_encoder import TextEncoderError
    from ..training.checkpoint import CheckpointError
    from ..training.distributed import DeviceError

    return (ValueError, FileNotFoundError, TextEncoderError, CheckpointError, DeviceError)
