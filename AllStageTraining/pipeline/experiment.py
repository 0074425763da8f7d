"""The experiment grid: methods x missing-data settings x seeds (x budgets), on the same data, crops, widths,
steps and seeds; only the method differs within a (setting, seed, budget) row.

A missing-data setting (``data.splits.MissingSetting``) is a training missing ratio or PASSION-style
per-sequence missing rates. A budget is the number of steps of each stage (``optim_mae.steps`` and
``optim_seg.steps``; the methods' own rules still apply, e.g. ``zero-fill-long`` trains its segmenter for the
sum); without budgets the configuration's steps are used.

Layout (``layout.ExperimentFolder``): ``experiment.json`` (the grid, the base configuration and the command
lines that ran it), ``timings.json`` (wall time per cell), ``splits/<setting>_s<seed>.json`` (one split per
setting and seed; the test and validation cases are the same for every setting of a seed), one run folder per
cell ``<setting>_s<seed>[_n<budget>]/<method>/`` and ``comparison.{csv,md,png}`` (``comparison-val.*`` when
the validation cases are scored; ``comparison_curve.png`` with several budgets; ``evaluation.comparison``),
rewritten after every cell.

Every cell is one ``train_and_evaluate`` (with the grid's extra evaluations), so a rerun skips finished cells
and resumes the others from their checkpoints, predictions and partial tables. Methods with an MAE run first,
so that a cell whose stage 1 would be identical to a finished one (same ``mae_identity``: e.g. ``ours``,
``ours-no-distill`` and ``ours-no-personal``; ``m3ae-style`` and ``m3ae-style-no-init``) copies that MAE instead of
training it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ..config import RunConfig
from ..constants import SCENARIOS, Scenario
from ..data.splits import MissingSetting
from ..layout import ExperimentFolder, RunFolder
from ..methods import configure, get_method, method_names
from .run import ExtraEvaluations, mae_identity, train_and_evaluate

if TYPE_CHECKING:
    from ..evaluation.comparison import CellKey, CellResult

Log = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Grid:
    """What an experiment compares: method names (``methods`` registry), missing-data settings, seeds, budgets
    (steps per stage; empty: the configuration's steps), the split fractions, the scenarios each cell is
    evaluated on, the subset scored ("test", or "val" for tuning runs) and the extra evaluations (None: none)."""

    methods: tuple[str, ...]
    settings: tuple[MissingSetting, ...]
    seeds: tuple[int, ...]
    budgets: tuple[int, ...] = ()
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    scenarios: tuple[Scenario, ...] = SCENARIOS
    evaluate_on: str = "test"
    extras: ExtraEvaluations | None = ExtraEvaluations()

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # ValueError naming the known methods
        if not (self.methods and self.settings and self.seeds):
            raise ValueError("an experiment needs at least one method, one missing-data setting and one seed")
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets must be at least 1 step, got {list(self.budgets)}")
        if self.evaluate_on not in ("test", "val"):
            raise ValueError(f"evaluate_on must be 'test' or 'val', not {self.evaluate_on!r}")
        for name, values in (("methods", self.methods), ("settings", self.settings), ("seeds", self.seeds),
                             ("budgets", self.budgets)):
            if len(set(values)) != len(values):
                raise ValueError(f"the grid's {name} repeat a value: {list(values)}")

    @property
    def budget_axis(self) -> tuple[int | None, ...]:
        """The budgets in ascending order, or ``(None,)``: the configuration's steps."""
        return tuple(sorted(self.budgets)) or (None,)

    @property
    def n_cells(self) -> int:
        return len(self.methods) * len(self.settings) * len(self.seeds) * len(self.budget_axis)

    def folder_budget(self, budget: int | None) -> int | None:
        """The budget as the cell folders name it: only when the grid has several (``r0_s0_n600``)."""
        return budget if len(self.budgets) > 1 else None

    def training_order(self) -> list[str]:
        """Methods with an MAE first (so that the others can copy an identical one), then in registry order."""
        order = method_names()
        return sorted(self.methods, key=lambda m: (not get_method(m).has_mae, order.index(m)))

    def cells(self) -> Iterator[tuple[MissingSetting, int, int | None, str]]:
        """(setting, seed, budget, method) in the order they run: setting, seed, ascending budget, method."""
        for setting in self.settings:
            for seed in self.seeds:
                for budget in self.budget_axis:
                    for method in self.training_order():
                        yield setting, seed, budget, method

    def describe(self) -> dict:
        return {"methods": list(self.methods), "settings": [s.to_dict() for s in self.settings],
                "seeds": list(self.seeds), "budgets": list(self.budgets), "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "scenarios": [s.short for s in self.scenarios],
                "evaluate_on": self.evaluate_on, "extras": None if self.extras is None else vars(self.extras)}


def find_mae_source(folder: ExperimentFolder, key: str, exclude: RunFolder) -> Path | None:
    """A finished ``mae/`` folder of another cell whose ``mae_identity`` is ``key``, or None."""
    for cell in folder.cells():
        if cell.root == exclude.root or not (cell.mae_identity.is_file() and cell.finished("mae")):
            continue
        try:
            if json.loads(cell.mae_identity.read_text()).get("key") == key:
                return cell.mae
        except (OSError, ValueError):
            continue
    return None


def _ensure_split(folder: ExperimentFolder, cases, grid: Grid, setting: MissingSetting, seed: int, log: Log) -> Path:
    """The split of (setting, seed), made the first time it is needed."""
    from ..data.splits import format_summary, make_split, save_split

    path = folder.split(setting.tag, seed)
    if not path.exists():
        split = make_split(cases, seed=seed, val_fraction=grid.val_fraction, test_fraction=grid.test_fraction,
                           **setting.split_arguments())
        save_split(split, path)
        log(f"split {folder.tag(setting.tag, seed)} ({setting.label}):\n{format_summary(split)}")
    return path


def cell_config(base: RunConfig, method: str, seed: int, budget: int | None) -> RunConfig:
    """A cell's configuration: the budget's steps for both stages (when given), the method's settings, the seed."""
    budget_fields = {"optim_mae.steps": budget, "optim_seg.steps": budget, "optim_seg.stage1_steps": 0}
    cfg = base if budget is None else base.with_fields(budget_fields)
    return configure(cfg, method).with_fields({"seed": seed})


class _Timings:
    """``timings.json``: seconds spent in each cell (summed over the runs that did work in it)."""

    def __init__(self, folder: ExperimentFolder):
        self.path = folder.timings
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def add(self, name: str, seconds: float) -> None:
        from ..fileio import atomic_write_json

        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 1)
        atomic_write_json(self.path, self.seconds)


def _run_cell(folder: ExperimentFolder, base: RunConfig, cell_key: tuple, split_path: Path, grid: Grid,
              timings: _Timings, device, log: Log) -> CellResult:
    """Train and evaluate one cell (or read back a finished one)."""
    setting, seed, budget, method = cell_key
    cfg = cell_config(base, method, seed, budget)
    cell = folder.cell(setting.tag, seed, method, grid.folder_budget(budget))
    source = None
    if get_method(method).has_mae and not cell.finished("mae"):
        source = find_mae_source(folder, mae_identity(cfg, split_path), exclude=cell)
    start = time.perf_counter()
    result = train_and_evaluate(cfg, split_path, cell.root, device=device, mae_from=source, scenarios=grid.scenarios,
                                evaluate_on=grid.evaluate_on, extras=grid.extras, log=lambda line: log(f"  {line}"))
    name = folder.relative(cell.root)
    if set(result.status.values()) <= {"skipped"}:
        log(f"  skipped: finished earlier ({folder.relative(cell.evaluation(grid.evaluate_on).summary)} exists)")
    else:
        timings.add(name, time.perf_counter() - start)
        log(f"  [{method}] {time.perf_counter() - start:.0f} s for the cell")
    means = result.table.overall_means("dice")
    log("  mean Dice: " + ", ".join(f"{r} {100 * v:.1f}" for r, v in means.items()))
    return cell_result(cell, (setting.tag, seed, method, budget), result.table, grid.evaluate_on,
                       timings.seconds.get(name), folder.relative)


def cell_result(cell: RunFolder, key: tuple, table, subset: str, seconds: float | None,
                relative: Callable[[Path], str]) -> CellResult:
    """What the comparison reads of a finished cell: its table, links (``relative(path)``: as the comparison
    links them), wall time, extra evaluations' rows and code (``runtime.json``).
    key: ``(setting tag, seed, method, budget)``."""
    from ..evaluation.comparison import CellKey, CellResult
    from ..evaluation.scenario_eval import read_rows
    from ..runtime import code_text

    evaluation = cell.evaluation(subset)
    links = {"table": relative(evaluation.table_md)}
    synthesis = prompts = None
    if evaluation.synthesis_md.is_file():
        links["synthesis"] = relative(evaluation.synthesis_md)
        synthesis = read_rows(evaluation.synthesis_csv)
    if evaluation.prompts_summary.is_file():
        links["prompts"] = relative(evaluation.prompts_md)
        prompts = read_rows(evaluation.prompts_csv)
    return CellResult(CellKey(*key), table, links, seconds, synthesis, prompts, code_text(cell.read_runtime()))


def _describe(folder: ExperimentFolder, data: str | Path, grid: Grid, base: RunConfig, command: str | None) -> None:
    """Write ``experiment.json``: the grid, the base configuration and every command line that ran it."""
    from ..fileio import atomic_write_json

    earlier = json.loads(folder.description.read_text()).get("commands", []) if folder.description.is_file() else []
    commands = earlier + ([command] if command and command not in earlier else [])
    atomic_write_json(folder.description, {"data": str(Path(data).resolve()), **grid.describe(),
                                           "command": command, "commands": commands, "base_config": base.to_dict()})


def run_experiment(data: str | Path, out: str | Path, grid: Grid, base: RunConfig, *, device="auto",
                   command: str | None = None, log: Log = _say) -> list[dict]:
    """Run (or continue) the grid on the cases under ``data`` into ``out``; returns the comparison rows.

    base: the configuration every cell starts from (each cell sets its budget, method and seed on a copy).
    device: "auto", "cpu", "cuda" or a torch.device, for every cell's training and evaluation.
    command: the command line, recorded in ``experiment.json`` and shown in the comparison.
    """
    from ..data.discovery import find_cases
    from ..evaluation.comparison import GridDescription, write_comparison

    folder = ExperimentFolder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    _describe(folder, data, grid, base, command)
    cases, timings = find_cases(data), _Timings(folder)
    results: dict[CellKey, CellResult] = {}
    rows: list[dict] = []
    stem = folder.comparison(grid.evaluate_on)
    start = time.perf_counter()
    for number, cell_key in enumerate(grid.cells(), 1):
        setting, seed, budget, method = cell_key
        split_path = _ensure_split(folder, cases, grid, setting, seed, log)
        tag = folder.tag(setting.tag, seed, grid.folder_budget(budget))
        log(f"[{number}/{grid.n_cells}] cell {tag}/{method} ({setting.label}"
            + ("" if budget is None else f", {budget} steps per stage") + ")")
        result = _run_cell(folder, base, cell_key, split_path, grid, timings, device, log)
        results[result.key] = result
        description = GridDescription(
            methods=grid.methods, settings={s.tag: s.label for s in grid.settings}, seeds=grid.seeds,
            budgets=grid.budget_axis, subset=grid.evaluate_on, command=command,
            grid_seconds=sum(r.seconds or 0.0 for r in results.values()))
        rows = write_comparison(stem, list(results.values()), description)
    log(f"experiment finished in {time.perf_counter() - start:.0f} s: {stem.with_suffix('.md')}")
    return rows
