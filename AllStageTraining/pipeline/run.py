"""One run: stage 1 (methods with an MAE), stage 2 and the 15-scenario evaluation of the test split (or of the
validation cases, for tuning), in one run folder (``layout.RunFolder``), optionally followed by the extra
evaluations (:class:`ExtraEvaluations`). ``train``, every ``experiment`` cell and the demo's methods all run
through :func:`train_and_evaluate`.

Rules, the same for every caller:
- the run folder is claimed first: a folder holding another configuration (``RunConfig.fingerprint``) or
  another split is refused; ``config.json`` and a byte copy of the split (``split.json``) are written;
- a stage whose marker exists (``mae/model.safetensors``, ``seg/model.safetensors``, ``eval/summary.json``)
  is skipped and the log says so; an unfinished training stage resumes from its checkpoint; an unfinished
  evaluation scores the predictions already written and computes only the rest;
- ``mae_from``: a finished ``mae/`` folder with the same :func:`mae_identity` is copied instead of training;
- the extra evaluations (synthesis quality, prompt sensitivity) go to the same evaluation folder and are
  skipped when their marker exists (``synthesis.md``, ``prompts.json``); unfinished, they resume per case;
- the device is resolved once and used by both training stages and the evaluation; what each stage ran on is
  recorded in ``runtime.json`` when it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..config import RunConfig, fingerprint_differences
from ..constants import SCENARIOS, Scenario
from ..exit_codes import UsageError
from ..fileio import atomic_write_json, sha256_file
from ..layout import RunFolder
from ..methods import configure, get_method

if TYPE_CHECKING:
    from ..evaluation.tables import ScenarioTable
    from ..training.distributed import Runtime

#: Where ``train_and_evaluate`` may stop: after stage 1, after stage 2, or after the evaluation.
UNTIL: tuple[str, ...] = ("mae", "seg", "eval")
Log = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


def _quiet(text: str) -> None:
    """The log of ranks other than 0 under torchrun."""


@dataclass(frozen=True)
class ExtraEvaluations:
    """Which extra evaluations follow the 15-scenario one (``evaluation.scenario_eval``), for the methods they
    apply to: ``synthesis`` (methods with an MAE: synthesis quality on every scored case), ``prompts``
    (personalizing methods: the 15 x 15 prompt-sensitivity table of the first ``prompt_cases`` scored cases)."""

    synthesis: bool = True
    prompts: bool = True
    prompt_cases: int = 6

    def __post_init__(self) -> None:
        if self.prompt_cases < 1:
            raise ValueError(f"the prompt-sensitivity table needs at least one case, not {self.prompt_cases}")


@dataclass
class RunResult:
    """What a call did. status: stage -> "trained" | "copied" | "skipped" | "evaluated" (stages that were not
    asked for, or that the method lacks, are absent; the extra evaluations are "synthesis" and "prompts");
    table: the evaluation (None unless it was asked for)."""

    run: RunFolder
    cfg: RunConfig
    status: dict[str, str] = field(default_factory=dict)
    table: ScenarioTable | None = None


def mae_identity(cfg: RunConfig, split_path: str | Path) -> str:
    """A key equal for two runs exactly when their stage-1 training would be identical: the split file's
    sha256 and ``cfg.fingerprint("mae")``."""
    import hashlib

    parts = {"split": sha256_file(split_path), **cfg.fingerprint("mae")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def train_and_evaluate(cfg: RunConfig, split_path: str | Path, run_dir: str | Path, *, device="auto",
                       mae_from: str | Path | None = None, scenarios: Iterable[Scenario] = SCENARIOS,
                       until: str = "eval", evaluate_on: str = "test", extras: ExtraEvaluations | None = None,
                       log: Log = _say) -> RunResult:
    """Train ``cfg``'s method on the split's training cases and evaluate it on its test cases, in ``run_dir``.

    cfg: any RunConfig; it is set up for ``cfg.method`` (``methods.configure``) and validated first.
    device: "auto", "cpu", "cuda" or a torch.device, for training and evaluation alike.
    mae_from: a finished ``mae/`` folder to copy instead of training stage 1 (same ``mae_identity``).
    scenarios: the scenarios to evaluate (default all 15). until: "mae", "seg" or "eval" (the last stage run).
    evaluate_on: "test" (``RUN/eval``) or "val": score the split's validation cases instead (``RUN/eval-val``),
        so that budgets and defaults can be chosen without touching the test cases.
    extras: the extra evaluations after the 15-scenario one (None: none).
    log: one line per stage (rank 0 only under torchrun).
    Raises UsageError for a run folder holding another run, ValueError for a split without cases to score
    (when evaluating), DeviceError for an unavailable device.
    """
    from ..training.distributed import init_runtime, shutdown_runtime

    if until not in UNTIL:
        raise ValueError(f"until must be one of {UNTIL}, not {until!r}")
    cfg = configure(cfg)
    cfg.validate()
    run, split_path = RunFolder(run_dir), Path(split_path)
    split = _load_split(split_path, score=evaluate_on if until == "eval" else None)
    runtime = init_runtime(device)
    say = log if runtime.is_main else _quiet
    result = RunResult(run, cfg)
    try:
        if runtime.is_main:
            _claim(run, cfg, split_path)
        if get_method(cfg.method).has_mae:
            result.status["mae"] = _stage1(cfg, split_path, run, runtime, mae_from, say)
        if until != "mae":
            result.status["seg"] = _stage2(cfg, split_path, run, runtime, say)
    finally:
        main = runtime.is_main
        shutdown_runtime()  # the other ranks are done; rank 0 evaluates alone
    if main and until == "eval":
        result.status["eval"], result.table = _evaluate(cfg, split, run, runtime.device, tuple(scenarios),
                                                        evaluate_on, say)
        if extras is not None:
            result.status.update(_extra_evaluations(cfg, split, run, runtime.device, evaluate_on, extras,
                                                    tuple(scenarios), say))
    return result


def _load_split(split_path: Path, *, score: str | None) -> dict:
    """The split; UsageError when the subset to ``score`` ("test", "val" or None) has no case."""
    from ..data.splits import load_split

    split = load_split(split_path)
    if score == "test" and not split["test"]:
        raise UsageError(f"{split_path} has no test cases to evaluate; prepare a split with a test fraction, or "
                         "stop after training (train --no-eval)")
    if score == "val" and not split["val"]:
        raise UsageError(f"{split_path} has no validation cases to evaluate; give a validation fraction above 0")
    return split


def _claim(run: RunFolder, cfg: RunConfig, split_path: Path) -> None:
    """Refuse a run folder that holds another configuration or split; then write config.json and split.json."""
    if run.config.is_file():
        differences = fingerprint_differences(RunConfig.load(run.config).fingerprint(), cfg.fingerprint())
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise UsageError(f"{run.root} holds a run with a different configuration ({run.config}: {shown}); "
                             "continue it with the same options, or give a new --out")
    if run.split.is_file() and json.loads(run.split.read_text()) != json.loads(split_path.read_text()):
        raise UsageError(f"{run.root} holds a run trained on another split ({run.split} differs from {split_path}); "
                         "continue it with the same split, or give a new --out")
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.config)
    if not run.split.is_file():
        tmp = run.split.with_name(f".{run.split.name}.tmp{os.getpid()}")
        shutil.copyfile(split_path, tmp)
        os.replace(tmp, run.split)


def _training_record(runtime: Runtime, precision: str) -> dict:
    """What a training stage runs on; ``precision`` is the OptimConfig value, resolved for the device."""
    from ..runtime import describe
    from ..training.engine import training_precision

    resolved = training_precision(precision, runtime.device)
    return describe(runtime.device, resolved if resolved == "float32" else f"{resolved} autocast",
                    world_size=runtime.world_size)


def _stage1(cfg: RunConfig, split_path: Path, run: RunFolder, runtime: Runtime, mae_from, say: Log) -> str:
    """Stage 1 into ``RUN/mae``: "skipped" (finished), "copied" (from ``mae_from``) or "trained"."""
    from ..training.stage1 import train_mae

    if run.finished("mae"):
        say(f"[{cfg.method}] stage 1 already finished: {run.weights('mae')}")
        return "skipped"
    if mae_from is not None:
        if runtime.is_main:
            _copy_mae(Path(mae_from), run)
        say(f"[{cfg.method}] stage 1 (MAE) copied from {mae_from} (identical stage-1 settings)")
        return "copied"
    say(f"[{cfg.method}] stage 1 (MAE): {cfg.optim_mae.steps} steps on {runtime.device}")
    if runtime.is_main:
        run.record_runtime("mae", _training_record(runtime, cfg.optim_mae.precision))
    train_mae(cfg, split_path, run.mae, resume=True, device=runtime.device)
    if runtime.is_main:
        atomic_write_json(run.mae_identity, {"key": mae_identity(cfg, split_path)})
    return "trained"


def _copy_mae(source: Path, run: RunFolder) -> None:
    """Copy a finished ``mae/`` folder (without its checkpoint) into ``run``, atomically, with its runtime record."""
    from ..training.checkpoint import CHECKPOINT_NAME

    staged = run.root / ".mae.partial"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source, staged, ignore=shutil.ignore_patterns(f"{CHECKPOINT_NAME}*"))
    shutil.rmtree(run.mae, ignore_errors=True)
    os.replace(staged, run.mae)
    atomic_write_json(run.mae_copied_from, {"source": str(source)})
    record = RunFolder(source.parent).read_runtime().get("mae")
    if record:
        run.record_runtime("mae", {**record, "copied_from": str(source)})


def _stage2(cfg: RunConfig, split_path: Path, run: RunFolder, runtime: Runtime, say: Log) -> str:
    """Stage 2 into ``RUN/seg`` (from ``RUN/mae`` when the method has one): "skipped" or "trained"."""
    from ..training.stage2 import train_seg

    if run.finished("seg"):
        say(f"[{cfg.method}] stage 2 already finished: {run.weights('seg')}")
        return "skipped"
    method = get_method(cfg.method)
    say(f"[{cfg.method}] stage 2 (segmenter, {method.objective}): {cfg.optim_seg.steps} steps on {runtime.device}")
    if runtime.is_main:
        run.record_runtime("seg", _training_record(runtime, cfg.optim_seg.precision))
    train_seg(cfg, split_path, run.mae if method.completes_inputs else None, run.seg, resume=True,
              device=runtime.device)
    return "trained"


def _evaluate(cfg: RunConfig, split: dict, run: RunFolder, device, scenarios: tuple[Scenario, ...], subset: str,
              say: Log) -> tuple[str, ScenarioTable]:
    """The evaluation of ``subset`` into its folder (``RUN/eval``, ``RUN/eval-val``): ("skipped", the table read
    back) or ("evaluated", the new table)."""
    from ..evaluation.scenario_eval import SUBSET_NAMES, evaluate_split
    from ..evaluation.tables import ScenarioTable
    from ..inference.predictor import Predictor
    from ..runtime import describe

    folder = run.evaluation(subset)
    if folder.summary.is_file():
        say(f"[{cfg.method}] evaluation already finished: {folder.summary}")
        return "skipped", ScenarioTable.from_csv(folder.table_csv, cfg.method)
    predictor = Predictor.from_run(run.root, device=device)
    say(f"[{cfg.method}] evaluation: {len(split[subset])} {SUBSET_NAMES[subset]} case(s) x {len(scenarios)} "
        f"scenario(s) on {predictor.device}")
    run.record_runtime("eval" if subset == "test" else f"eval-{subset}",
                       describe(predictor.device, predictor.precision_policy()))
    progress = None if sys.stderr.isatty() else plain_progress(say)
    table = evaluate_split(predictor, split, folder.root, subset=subset, method=cfg.method, scenarios=scenarios,
                           progress=progress)
    return "evaluated", table


def _extra_evaluations(cfg: RunConfig, split: dict, run: RunFolder, device, subset: str, extras: ExtraEvaluations,
                       scenarios: tuple[Scenario, ...], say: Log) -> dict[str, str]:
    """The extra evaluations that apply to ``cfg.method``, into the evaluation folder of ``subset``, over the
    evaluated ``scenarios``: ``{"synthesis" | "prompts": "evaluated" | "skipped"}``."""
    from ..evaluation.scenario_eval import evaluate_prompts, evaluate_synthesis

    method, folder = get_method(cfg.method), run.evaluation(subset)
    wanted = {"synthesis": (extras.synthesis and method.has_mae, folder.synthesis_md),
              "prompts": (extras.prompts and method.personalizes, folder.prompts_summary)}
    todo = [name for name, (applies, marker) in wanted.items() if applies and not marker.is_file()]
    status = {name: "skipped" for name, (applies, _) in wanted.items() if applies and name not in todo}
    for name in status:
        say(f"[{cfg.method}] {name} evaluation already finished: {wanted[name][1]}")
    if not todo:
        return status
    from ..inference.predictor import Predictor

    predictor = Predictor.from_run(run.root, device=device)
    if "synthesis" in todo:
        say(f"[{cfg.method}] synthesis quality of the MAE on every scored case, "
            f"{sum(1 for s in scenarios if s.missing)} incomplete scenario(s) each")
        evaluate_synthesis(predictor, split, folder.root, subset=subset, scenarios=scenarios,
                           log=lambda line: say(f"[{cfg.method}] synthesis: {line}"))
        status["synthesis"] = "evaluated"
    if "prompts" in todo:
        say(f"[{cfg.method}] {len(scenarios)} x {len(scenarios)} prompt-sensitivity table of {extras.prompt_cases} "
            f"case(s) at most ({len(scenarios) ** 2} segmenter passes per case)")
        evaluate_prompts(predictor, split, folder.root, subset=subset, n_cases=extras.prompt_cases,
                         scenarios=scenarios, log=lambda line: say(f"[{cfg.method}] prompts: {line}"))
        status["prompts"] = "evaluated"
    return status


def plain_progress(say: Log):
    """Evaluation progress for logs (no terminal): one line per 10% of the predictions."""
    state = {"next": 0.0}

    def report(fraction: float, what: str) -> None:
        if fraction + 1e-9 >= state["next"] or fraction >= 1.0:
            say(f"[eval] {fraction:6.1%} {what}")
            state["next"] = fraction + 0.1

    return report
