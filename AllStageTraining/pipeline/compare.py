"""One comparison from the finished cells of several experiment folders (``compare``).

Grids run apart (a method added later, cells run on other machines) are compared as if one grid had run them,
where that is sound: every folder must have the same base configuration (the fields every cell shares:
``seed`` and ``method`` are set per cell, the steps per budget when a folder has budgets, the segmenter's steps
counted before the default method's rule; ``inference.window`` "crop" counts as its size), every cell must have
scored the same scenarios and exactly the test (or validation) cases of its split, and the folders' splits of a
(setting, seed) must be equal (the same cases and the same training-time sequence draws); a cell (setting, seed,
budget, method) may come from one folder only. Only the cells' evaluations are read (``<cell>/eval/`` or
``eval-val/``), so folders that kept their tables but not their weights (those under ``docs/science``) can be
merged too. Each cell's code (the git commit its ``runtime.json`` records) is shown, with a warning unless all
cells recorded one and the same unmodified commit; whether a change between two commits matters for training or
evaluation is for the reader to check.
Where the merged cells lack a cell of ``zero-fill-long`` at b steps per stage that a third method's cell (same
setting, seed and budget) could pair with, the ``zero-fill`` cell at 2b stands in for it
(``methods.TRAINED_AS_AT_TWICE_THE_BUDGET``: the same training), and the page says so (:func:`stand_ins`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..config import RunConfig, fingerprint_differences
from ..data.splits import MissingSetting
from ..exit_codes import UsageError
from ..layout import ExperimentFolder, RunFolder
from ..methods import TRAINED_AS_AT_TWICE_THE_BUDGET, own_segmenter_steps

if TYPE_CHECKING:
    from ..evaluation.comparison import CellResult

#: A cell folder's parent: ``<setting tag>_s<seed>[_n<budget>]``.
CELL_TAG = re.compile(r"^(?P<setting>.+)_s(?P<seed>\d+)(?:_n(?P<budget>\d+))?$")
#: Base configuration fields that every cell sets itself (``pipeline.experiment.cell_config``).
PER_CELL_FIELDS = ("seed", "method", "preset")
STEPS_FIELDS = ("optim_mae", "optim_seg")


@dataclass(frozen=True)
class Source:
    """One experiment folder, its ``experiment.json`` and the methods taken from it (None: all)."""

    folder: ExperimentFolder
    description: dict
    methods: tuple[str, ...] | None = None

    @classmethod
    def read(cls, text: str | Path) -> "Source":
        """``FOLDER`` (all its cells) or ``FOLDER@METHOD,METHOD`` (only those methods' cells)."""
        path, methods = str(text), None
        if not Path(path).is_dir() and "@" in path:
            path, _, listed = path.rpartition("@")
            methods = tuple(m.strip() for m in listed.split(",") if m.strip())
            if not methods:
                raise UsageError(f"{text}: name the methods after @ (FOLDER@METHOD,METHOD)")
        folder = ExperimentFolder(path)
        if not folder.description.is_file():
            raise UsageError(f"{folder.root} is not an experiment folder (no {folder.description.name})")
        description = json.loads(folder.description.read_text())
        unknown = set(methods or ()) - set(description["methods"])
        if unknown:
            raise UsageError(f"{folder.root} has no method {', '.join(sorted(unknown))} "
                             f"(its methods: {', '.join(description['methods'])})")
        return cls(folder, description, methods)

    def label(self) -> str:
        return str(self.folder.root) + (f"@{','.join(self.methods)}" if self.methods else "")

    def base_config(self) -> RunConfig:
        return RunConfig.from_dict(self.description["base_config"])

    def configuration(self, *, with_steps: bool) -> dict:
        """The base configuration's fields that every cell shares, with the inference settings and
        ``inference.window`` resolved to a size (or None); the stages' steps only when ``with_steps``. The
        segmenter's steps are those before a method's rule added stage 1's (``own_segmenter_steps``): the base was
        configured for the default method, whose rule each cell's own method takes off again, so folders made
        under another default compare as the cells they hold."""
        cfg = self.base_config()
        cfg = cfg.with_fields({"optim_seg.steps": own_segmenter_steps(cfg), "optim_seg.stage1_steps": 0})
        window = cfg.inference_window()
        out = {k: v for k, v in cfg.fingerprint().items() if k not in PER_CELL_FIELDS}
        out["inference"] = {**cfg.to_dict()["inference"], "window": list(window) if window else None}
        if not with_steps:
            out.update({group: {k: v for k, v in out[group].items() if k != "steps"} for group in STEPS_FIELDS})
        return out

    def splits(self) -> dict[str, dict]:
        """``{split name: split}`` without ``data_root`` (the same cases may be read from another folder)."""
        out = {}
        for path in sorted((self.folder.root / "splits").glob("*.json")):
            split = json.loads(path.read_text())
            split.pop("data_root", None)
            out[path.stem] = split
        return out

    def timings(self) -> dict[str, float]:
        path = self.folder.timings
        return json.loads(path.read_text()) if path.is_file() else {}


def check_configurations(sources: Sequence[Source]) -> None:
    """UsageError unless every folder ran the first one's base configuration (see the module docstring)."""
    with_steps = not any(s.description.get("budgets") for s in sources)
    first = sources[0]
    for other in sources[1:]:
        differences = fingerprint_differences(first.configuration(with_steps=with_steps),
                                              other.configuration(with_steps=with_steps))
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise UsageError(f"{other.folder.root} ran another base configuration than {first.folder.root} "
                             f"({shown}): its cells cannot be compared with those")


def _cell_budget(source: Source, tag_budget: str | None, merge_budgets: bool) -> int | None:
    """The cell's budget (steps per stage): its folder's ``_n``, the folder's single budget, or (when budgets are
    merged) the base configuration's steps; None where no folder has budgets."""
    budgets = source.description.get("budgets") or []
    if tag_budget:
        return int(tag_budget)
    if len(budgets) == 1:
        return int(budgets[0])
    if not merge_budgets:
        return None
    cfg = source.base_config()
    own = own_segmenter_steps(cfg)  # before a method's rule added stage 1's steps
    if cfg.optim_mae.steps != own:
        raise UsageError(f"{source.folder.root} trained {cfg.optim_mae.steps} + {own} steps: not a "
                         "budget (the same steps for both stages) that cells with budgets can be compared with")
    return int(own)


def _checked_evaluation(cell: RunFolder, subset: str, split: dict | None, name: str) -> list[str]:
    """The scenarios a finished evaluation scored; UsageError unless it scored exactly its split's cases."""
    if split is None:
        raise UsageError(f"{cell.root} has no split ({name}.json) to check its cases against")
    summary = json.loads(cell.evaluation(subset).summary.read_text())
    if sorted(summary.get("scored_cases", [])) != sorted(split[subset]):
        raise UsageError(f"{cell.root} scored other cases than the {subset} cases of its split {name}")
    return sorted(summary.get("scenarios", []))


def finished_cells(source: Source, subset: str, out: Path, merge_budgets: bool) -> list[tuple[CellResult, list]]:
    """The cells of one folder (of its grid's methods, settings and seeds) whose ``subset`` evaluation finished,
    linked relative to ``out``, each with the scenarios it scored."""
    from ..evaluation.tables import ScenarioTable
    from .experiment import cell_result

    grid = source.description
    settings = {MissingSetting.from_dict(s).tag for s in grid["settings"]}
    methods = source.methods or grid["methods"]
    timings, splits, results = source.timings(), source.splits(), []
    relative = lambda path: Path(os.path.relpath(path, out)).as_posix()  # noqa: E731
    for tag_folder in sorted(p for p in source.folder.root.iterdir() if p.is_dir()):
        match = CELL_TAG.match(tag_folder.name)
        if not (match and match["setting"] in settings and int(match["seed"]) in grid["seeds"]):
            continue
        budget = _cell_budget(source, match["budget"], merge_budgets)
        split_name = ExperimentFolder.tag(match["setting"], int(match["seed"]))
        for method in methods:
            cell = RunFolder(tag_folder / method)
            if not cell.evaluation(subset).summary.is_file():
                continue
            scenarios = _checked_evaluation(cell, subset, splits.get(split_name), split_name)
            key = (match["setting"], int(match["seed"]), method, budget)
            table = ScenarioTable.from_csv(cell.evaluation(subset).table_csv, method)
            results.append((cell_result(cell, key, table, subset, timings.get(f"{tag_folder.name}/{method}"),
                                        relative), scenarios))
    return results


def _collect(sources: Sequence[Source], subset: str, out: Path) -> list[CellResult]:
    """Every source's finished cells; UsageError for a cell found twice, cells that scored other scenarios than
    the first, unequal splits of a (setting, seed), or a source (or a method named with @) without a cell."""
    merge_budgets = any(s.description.get("budgets") for s in sources)
    cells, origin, splits, scenarios = [], {}, {}, None
    for source in sources:
        for name, split in source.splits().items():
            earlier, seen = splits.setdefault(name, (source, split))
            if seen != split:
                raise UsageError(f"split {name} of {source.folder.root} differs from that of {earlier.folder.root} "
                                 "(other cases or other training-time sequence draws)")
        found = finished_cells(source, subset, out, merge_budgets)
        missing = set(source.methods or ()) - {cell.key.method for cell, _ in found}
        if not found or missing:
            raise UsageError(f"{source.folder.root} has no finished {subset} evaluation"
                             + (f" of {', '.join(sorted(missing))}" if missing else ""))
        for cell, scored in found:
            key = cell.key
            shown = ExperimentFolder.tag(key.setting, key.seed, key.budget) + f"/{key.method}"
            if key in origin:
                raise UsageError(f"cell {shown} is in {origin[key]} and in {source.folder.root}: keep one "
                                 "(FOLDER@METHOD,... takes only those methods' cells of a folder)")
            scenarios = scenarios if scenarios is not None else scored
            if scored != scenarios:
                raise UsageError(f"cell {shown} of {source.folder.root} scored other scenarios than the cells before")
            origin[key] = source.folder.root
            cells.append(cell)
    return cells


def stand_ins(cells: Sequence[CellResult]) -> tuple[list[CellResult], list[str]]:
    """The cells that stand in for missing ones (``methods.TRAINED_AS_AT_TWICE_THE_BUDGET``: a cell at 2b steps per
    stage taken for its method's cell at b of the same setting and seed, where a third method has a cell there to
    pair with; no wall time, so that the training counts once), and one note per (method, budget) for the page,
    naming the seeds."""
    keys = {cell.key for cell in cells}
    added, seeds = [], {}
    for method, twin in TRAINED_AS_AT_TWICE_THE_BUDGET.items():
        partners = {(c.key.setting, c.key.seed, c.key.budget) for c in cells if c.key.method not in (method, twin)}
        for cell in cells:
            budget = cell.key.budget
            if cell.key.method != twin or budget is None or budget % 2:
                continue
            key = replace(cell.key, method=method, budget=budget // 2)
            if key not in keys and (key.setting, key.seed, key.budget) in partners:
                added.append(replace(cell, key=key, seconds=None))
                seeds.setdefault((method, twin, key.setting, key.budget), []).append(key.seed)
    notes = [f"`{method}` at {budget} steps per stage ({setting}, seed{'s' if len(found) > 1 else ''} "
             f"{', '.join(map(str, sorted(found)))}): the `{twin}` cells at {2 * budget} steps stand in for it (the "
             f"same training; {len(found)} of the {len(keys) + len(added)} cells, their wall time counted once)"
             for (method, twin, setting, budget), found in seeds.items()]
    return added, notes


def compare_experiments(folders: Sequence[str | Path], out: str | Path, *, subset: str = "test",
                        command: str | None = None) -> list[dict]:
    """Write ``OUT/comparison.{csv,md,png}`` (``comparison-val.*`` for ``subset`` "val"; ``comparison_curve.png``
    with several budgets) from the finished cells of ``folders``; returns the CSV rows. UsageError for folders
    that cannot be compared (see the module docstring) or an ``out`` that is an experiment folder."""
    from ..evaluation.comparison import GridDescription, write_comparison

    sources = [Source.read(f) for f in folders]
    out = ExperimentFolder(out)
    if out.description.is_file() or any(out.root.resolve() == s.folder.root.resolve() for s in sources):
        raise UsageError(f"--out {out.root} is an experiment folder: give a new folder")
    check_configurations(sources)
    cells = _collect(sources, subset, out.root)
    added, notes = stand_ins(cells)
    cells += added
    methods = list(dict.fromkeys([*(m for s in sources for m in s.methods or s.description["methods"]),
                                  *(c.key.method for c in added)]))
    settings = {s.tag: s.label for source in sources
                for s in map(MissingSetting.from_dict, source.description["settings"])}
    grid = GridDescription(
        methods=tuple(m for m in methods if any(c.key.method == m for c in cells)),
        settings={tag: label for tag, label in settings.items() if any(c.key.setting == tag for c in cells)},
        seeds=tuple(sorted({c.key.seed for c in cells})), subset=subset, command=command,
        budgets=tuple(sorted({c.key.budget for c in cells}, key=lambda b: -1 if b is None else b)),
        grid_seconds=sum(c.seconds or 0.0 for c in cells),
        sources=tuple((s.label(), tuple(s.description.get("commands") or [s.description.get("command") or ""]))
                      for s in sources), notes=tuple(notes))
    out.root.mkdir(parents=True, exist_ok=True)
    return write_comparison(out.comparison(subset), cells, grid)
