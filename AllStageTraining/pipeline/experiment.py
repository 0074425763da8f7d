"""The experiment grid: methods x training missing ratios x seeds, on the same data, crops, widths, steps and
seeds; only the method differs within a (ratio, seed) row.

Layout (``layout.ExperimentFolder``): ``experiment.json`` (the grid and the base configuration),
``splits/r<ratio>_s<seed>.json`` (one split per ratio and seed; the test cases are the same for every ratio of
a seed), one run folder per cell ``r<ratio>_s<seed>/<method>/`` and ``comparison.{csv,md,png}``
(``evaluation.comparison``), rewritten after every cell.

Every cell is one ``train_and_evaluate``, so a rerun skips finished cells and resumes the others from their
checkpoints and predictions. Methods with an MAE run first, so that a cell whose stage 1 would be identical
to a finished one (same ``mae_identity``: e.g. ``ours``, ``ours-no-distill`` and ``ours-no-personal``) copies
that MAE instead of training it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import RunConfig
from ..constants import SCENARIOS, Scenario
from ..layout import ExperimentFolder, RunFolder
from ..methods import configure, get_method, method_names
from .run import mae_identity, train_and_evaluate

if TYPE_CHECKING:
    from ..evaluation.tables import ScenarioTable

Log = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Grid:
    """What an experiment compares: method names (``methods`` registry), training missing ratios, seeds, the
    split fractions and the scenarios each cell is evaluated on."""

    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    scenarios: tuple[Scenario, ...] = SCENARIOS

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # ValueError naming the known methods
        if not (self.methods and self.ratios and self.seeds):
            raise ValueError("an experiment needs at least one method, one missing ratio and one seed")

    @property
    def n_cells(self) -> int:
        return len(self.methods) * len(self.ratios) * len(self.seeds)

    def training_order(self) -> list[str]:
        """Methods with an MAE first (so that the others can copy an identical one), then in registry order."""
        order = method_names()
        return sorted(self.methods, key=lambda m: (not get_method(m).has_mae, order.index(m)))


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


def _ensure_split(folder: ExperimentFolder, cases, grid: Grid, ratio: float, seed: int, log: Log) -> Path:
    """The split of (ratio, seed), made the first time it is needed."""
    from ..data.splits import format_summary, make_split, save_split

    path = folder.split(ratio, seed)
    if not path.exists():
        split = make_split(cases, seed=seed, val_fraction=grid.val_fraction, test_fraction=grid.test_fraction,
                           missing_ratio=ratio)
        save_split(split, path)
        log(f"split {folder.tag(ratio, seed)}:\n{format_summary(split)}")
    return path


def _run_cell(folder: ExperimentFolder, base: RunConfig, key: tuple[float, int, str], split_path: Path, grid: Grid,
              device, log: Log) -> ScenarioTable:
    """Train and evaluate one cell (or read back a finished one); its ScenarioTable."""
    ratio, seed, method = key
    cfg = configure(base, method).with_fields({"seed": seed})
    cell = folder.cell(ratio, seed, method)
    source = None
    if get_method(method).has_mae and not cell.finished("mae"):
        source = find_mae_source(folder, mae_identity(cfg, split_path), exclude=cell)
    start = time.perf_counter()
    result = train_and_evaluate(cfg, split_path, cell.root, device=device, mae_from=source, scenarios=grid.scenarios,
                                log=lambda line: log(f"  {line}"))
    if result.status["eval"] == "skipped":
        log(f"  skipped: finished earlier ({folder.relative(cell.eval_summary)} exists)")
    else:
        log(f"  [{method}] {time.perf_counter() - start:.0f} s for the cell")
    means = result.table.overall_means("dice")
    log("  mean Dice: " + ", ".join(f"{r} {100 * v:.1f}" for r, v in means.items()))
    return result.table


def run_experiment(data: str | Path, out: str | Path, grid: Grid, base: RunConfig, *, device="auto",
                   log: Log = _say) -> list[dict]:
    """Run (or continue) the grid on the cases under ``data`` into ``out``; returns the comparison rows.

    base: the configuration every cell starts from (each cell sets its method and seed on a copy).
    device: "auto", "cpu", "cuda" or a torch.device, for every cell's training and evaluation.
    """
    from ..data.discovery import find_cases
    from ..evaluation.comparison import write_comparison
    from ..fileio import atomic_write_json

    folder = ExperimentFolder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder.description, {
        "data": str(Path(data).resolve()), "methods": list(grid.methods), "ratios": list(grid.ratios),
        "seeds": list(grid.seeds), "val_fraction": grid.val_fraction, "test_fraction": grid.test_fraction,
        "scenarios": [s.short for s in grid.scenarios], "base_config": base.to_dict()})
    cases = find_cases(data)
    results: dict[tuple[float, int, str], ScenarioTable] = {}
    rows: list[dict] = []
    start = time.perf_counter()
    for ratio in grid.ratios:
        for seed in grid.seeds:
            split_path = _ensure_split(folder, cases, grid, ratio, seed, log)
            for method in grid.training_order():
                log(f"[{len(results) + 1}/{grid.n_cells}] cell {folder.tag(ratio, seed)}/{method}")
                key = (ratio, seed, method)
                results[key] = _run_cell(folder, base, key, split_path, grid, device, log)
                links = {k: folder.relative(folder.cell(*k).eval_table_md) for k in results}
                rows = write_comparison(folder.comparison, results, methods=grid.methods, ratios=grid.ratios,
                                        seeds=grid.seeds, links=links)
    log(f"experiment finished in {time.perf_counter() - start:.0f} s: {folder.comparison.with_suffix('.md')}")
    return rows
