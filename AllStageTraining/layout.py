"""Where every file of a run lives: run folders, experiment grids and demo folders, spelled once.

A **run folder** (``train --out RUN``, one experiment cell, one demo method)::

    RUN/config.json     the resolved RunConfig (a different one is refused: RunConfig.fingerprint("run"))
    RUN/split.json      a byte copy of the split file it trained on: its provenance (bundles record its sha256)
    RUN/runtime.json    {stage: runtime.describe(...)}: the device, threads and precision each stage used
    RUN/mae/            stage 1 (methods with an MAE): model.safetensors, config.json, checkpoint.pt, tb/,
                        val/, identity.json (the MAE-sharing key) or copied_from.json
    RUN/seg/            stage 2: model.safetensors, embeddings.json, config.json, checkpoint.pt, tb/
    RUN/eval/           the 15-scenario evaluation: pred/<case>/<scenario>.nii.gz, table.csv, table.md,
                        summary.json, heatmap.png (``evaluation.scenario_eval``)

A stage is finished when its marker exists: ``mae/model.safetensors``, ``seg/model.safetensors``,
``eval/summary.json``. Inside ``mae/`` and ``seg/`` the training stages write the files named here; inside
``eval/`` the evaluation writes its table folder.

An **experiment folder** holds ``experiment.json``, ``splits/r<ratio>_s<seed>.json``, one run folder per cell
``r<ratio>_s<seed>/<method>/`` and ``comparison.{csv,md,png}``. A **demo folder** holds ``demo.json``,
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

    @property
    def eval_summary(self) -> Path:
        return self.eval / EVAL_SUMMARY

    @property
    def eval_table_csv(self) -> Path:
        return self.eval / "table.csv"

    @property
    def eval_table_md(self) -> Path:
        return self.eval / "table.md"

    @property
    def predictions(self) -> Path:
        return self.eval / "pred"

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
    """The paths of an ``experiment`` grid: one split per (missing ratio, seed), one run folder per cell."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @staticmethod
    def tag(ratio: float, seed: int) -> str:
        """``r<ratio>_s<seed>``, e.g. ``r0.5_s0``."""
        return f"r{ratio:g}_s{seed}"

    @property
    def description(self) -> Path:
        return self.root / "experiment.json"

    def split(self, ratio: float, seed: int) -> Path:
        return self.root / "splits" / f"{self.tag(ratio, seed)}.json"

    def cell(self, ratio: float, seed: int, method: str) -> RunFolder:
        return RunFolder(self.root / self.tag(ratio, seed) / method)

    def cells(self) -> Iterator[RunFolder]:
        """Every cell folder that exists, in sorted order."""
        for path in sorted(self.root.glob("r*_s*/*")):
            if path.is_dir():
                yield RunFolder(path)

    @property
    def comparison(self) -> Path:
        """The stem of ``comparison.csv``, ``comparison.md`` and ``comparison.png``."""
        return self.root / "comparison"

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
