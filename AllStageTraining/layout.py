"""Where every file of a run lives: run folders, experiment grids and demo folders, spelled once.

A **run folder** (``train --out RUN``, one experiment cell, one demo method)::

    RUN/config.json     the resolved RunConfig (a different one is refused: RunConfig.fingerprint("run"))
    RUN/split.json      a byte copy of the split file it trained on: its provenance (bundles record its sha256)
    RUN/runtime.json    {stage: runtime.describe(...)}: the device, threads, precision and code each stage used
    RUN/mae/            stage 1 (methods with an MAE): model.safetensors, config.json, checkpoint.pt, tb/,
                        val/, identity.json (the MAE-sharing key) or copied_from.json
    RUN/seg/            stage 2: model.safetensors, embeddings.json, config.json, checkpoint.pt, tb/
    RUN/eval/           the 15-scenario evaluation of the test cases: pred/<case>/<scenario>.nii.gz, table.csv,
                        table.md, summary.json, heatmap.png (``evaluation.scenario_eval``); optional extra
                        evaluations: synthesis.{csv,md} (MAE synthesis quality), prompts.{csv,md,json} (15 x 15
                        prompt sensitivity)
    RUN/eval-val/       the same for the split's validation cases (``evaluate_on="val"``: tuning runs)

A stage is finished when its marker exists: ``mae/model.safetensors``, ``seg/model.safetensors``,
``eval/summary.json``. Inside ``mae/`` and ``seg/`` the training stages write the files named here; inside
``eval/`` the evaluation writes its table folder.

An **experiment folder** holds ``experiment.json``, ``timings.json`` (seconds per cell),
``splits/<setting>_s<seed>.json``, one run folder per cell ``<setting>_s<seed>[_n<budget>]/<method>/`` (the
setting's tag is ``r<ratio>`` or ``rates<f>-<c>-<1>-<2>``; ``_n<budget>`` only when the grid has several
budgets) and ``comparison.{csv,md,png}`` (``comparison_curve.png`` with several budgets;
``comparison-val.*`` when the validation cases were scored). A **demo folder** holds ``demo.json``,
``demo.log``, ``data/``, ``split.json``, ``runs/<method>/``, ``stages/<stage>.json`` (markers),
``demo_bundle.zip`` and ``report/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .fileio import atomic_write_json

MODEL_FILE = "model.safetensors"  # a training stage's final weights (its "finished" marker)
CONFIG_FILE = "config.json"  # a resolved RunConfig
EMBEDDINGS_FILE = "embeddings.json"  # stage 2: the 15 scenario embeddings and the text encoder's identity
SPLIT_FILE = "split.json"
RUNTIME_FILE = "runtime.json"
EVAL_SUMMARY = "summary.json"  # written last by the evaluation: its "finished" marker
STAGES: tuple[str, ...] = ("mae", "seg", "eval")
#: The split subsets an evaluation can score, and the folder each one's evaluation lives in.
EVAL_FOLDERS: dict[str, str] = {"test": "eval", "val": "eval-val"}


@dataclass(frozen=True)
class EvalFolder:
    """The files of one evaluation folder (``RUN/eval`` for the test cases, ``RUN/eval-val`` for validation)."""

    root: Path

    @property
    def summary(self) -> Path:
        """Written last by the 15-scenario evaluation: its "finished" marker."""
        return self.root / EVAL_SUMMARY

    @property
    def table_csv(self) -> Path:
        return self.root / "table.csv"

    @property
    def table_md(self) -> Path:
        return self.root / "table.md"

    @property
    def predictions(self) -> Path:
        return self.root / "pred"

    @property
    def synthesis_csv(self) -> Path:
        return self.root / "synthesis.csv"

    @property
    def synthesis_md(self) -> Path:
        """Written last by the synthesis-quality evaluation: its "finished" marker."""
        return self.root / "synthesis.md"

    @property
    def prompts_csv(self) -> Path:
        return self.root / "prompts.csv"

    @property
    def prompts_md(self) -> Path:
        return self.root / "prompts.md"

    @property
    def prompts_summary(self) -> Path:
        """Written last by the prompt-sensitivity evaluation: its "finished" marker."""
        return self.root / "prompts.json"

    def partial(self, name: str) -> Path:
        """Where an unfinished extra evaluation keeps the rows of the cases it has done (``.<name>.partial.csv``)."""
        return self.root / f".{name}.partial.csv"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def runtime(self) -> Path:
        return self.root / RUNTIME_FILE

    def stage_dir(self, stage: str) -> Path:
        """``RUN/mae``, ``RUN/seg`` or ``RUN/eval``."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self.root / stage

    @property
    def mae(self) -> Path:
        return self.stage_dir("mae")

    @property
    def seg(self) -> Path:
        return self.stage_dir("seg")

    @property
    def eval(self) -> Path:
        return self.stage_dir("eval")

    def weights(self, stage: str) -> Path:
        """``RUN/<mae|seg>/model.safetensors``."""
        return self.stage_dir(stage) / MODEL_FILE

    @property
    def embeddings(self) -> Path:
        return self.seg / EMBEDDINGS_FILE

    @property
    def mae_identity(self) -> Path:
        return self.mae / "identity.json"

    @property
    def mae_copied_from(self) -> Path:
        return self.mae / "copied_from.json"

    def evaluation(self, subset: str = "test") -> EvalFolder:
        """The evaluation folder of the split's ``subset`` ("test": ``RUN/eval``, "val": ``RUN/eval-val``)."""
        if subset not in EVAL_FOLDERS:
            raise ValueError(f"unknown evaluation subset {subset!r}; expected one of {tuple(EVAL_FOLDERS)}")
        return EvalFolder(self.root / EVAL_FOLDERS[subset])

    @property
    def eval_summary(self) -> Path:
        return self.evaluation().summary

    @property
    def eval_table_csv(self) -> Path:
        return self.evaluation().table_csv

    @property
    def eval_table_md(self) -> Path:
        return self.evaluation().table_md

    @property
    def predictions(self) -> Path:
        return self.evaluation().predictions

    def marker(self, stage: str) -> Path:
        """The file whose existence says that ``stage`` finished."""
        return self.eval_summary if stage == "eval" else self.weights(stage)

    def finished(self, stage: str) -> bool:
        return self.marker(stage).is_file()

    def read_runtime(self) -> dict[str, Any]:
        """``{stage: record}`` from ``runtime.json`` (empty when the folder has none yet)."""
        return json.loads(self.runtime.read_text()) if self.runtime.is_file() else {}

    def record_runtime(self, stage: str, record: dict[str, Any]) -> None:
        """Store what ``stage`` ran on (``runtime.describe``) in ``runtime.json``, atomically."""
        atomic_write_json(self.runtime, {**self.read_runtime(), stage: record})


@dataclass(frozen=True)
class ExperimentFolder:
    """The paths of an ``experiment`` grid: one split per (missing-data setting, seed), one run folder per cell.

    ``setting`` arguments are a setting's tag (``data.splits.MissingSetting.tag``: ``r0.5``,
    ``rates0.6-0.4-0.2-0.8``); ``budget`` is given only when the grid has several budgets.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @staticmethod
    def tag(setting: str, seed: int, budget: int | None = None) -> str:
        """``<setting>_s<seed>[_n<budget>]``, e.g. ``r0.5_s0`` or ``r0_s1_n600``."""
        return f"{setting}_s{seed}" + ("" if budget is None else f"_n{budget}")

    @property
    def description(self) -> Path:
        return self.root / "experiment.json"

    @property
    def timings(self) -> Path:
        """``{"<cell tag>/<method>": seconds}``: the wall time spent in each cell, summed over the runs."""
        return self.root / "timings.json"

    def split(self, setting: str, seed: int) -> Path:
        return self.root / "splits" / f"{self.tag(setting, seed)}.json"

    def cell(self, setting: str, seed: int, method: str, budget: int | None = None) -> RunFolder:
        return RunFolder(self.root / self.tag(setting, seed, budget) / method)

    def cells(self) -> Iterator[RunFolder]:
        """Every cell folder that exists (a folder with a ``config.json``), in sorted order."""
        for path in sorted(self.root.glob("*_s*/*")):
            if path.is_dir() and (path / CONFIG_FILE).is_file():
                yield RunFolder(path)

    def comparison(self, subset: str = "test") -> Path:
        """The stem of ``comparison.csv/.md/.png`` (``comparison-val.*`` when the validation cases were scored)."""
        if subset not in EVAL_FOLDERS:
            raise ValueError(f"unknown evaluation subset {subset!r}; expected one of {tuple(EVAL_FOLDERS)}")
        return self.root / ("comparison" if subset == "test" else f"comparison-{subset}")

    def relative(self, path: Path) -> str:
        """``path`` relative to the experiment folder, with forward slashes (for links in comparison.md)."""
        return Path(path).relative_to(self.root).as_posix()


@dataclass(frozen=True)
class DemoFolder:
    """The paths of a ``demo`` output folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def settings(self) -> Path:
        return self.root / "demo.json"

    @property
    def log(self) -> Path:
        return self.root / "demo.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    def run(self, method: str) -> RunFolder:
        return RunFolder(self.root / "runs" / method)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def marker(self, stage: str) -> Path:
        return self.stages / f"{stage}.json"

    @property
    def summary(self) -> Path:
        return self.stages / "summary.json"

    @property
    def bundle(self) -> Path:
        return self.root / "demo_bundle.zip"

    @property
    def report(self) -> Path:
        return self.root / "report"
