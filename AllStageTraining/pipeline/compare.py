"""One comparison from the finished cells of several experiment folders (``compare``).

Grids run apart (a method added later, cells run on other machines) are compared as if one grid had run them,
where that is sound: every folder must have the same base configuration (``inference.window`` "crop" resolved
to its size), the same evaluated scenarios and, for every (setting, seed) they share, a split with the same
cases; each cell (setting, seed, budget, method) may come from one folder only. Only the cells' evaluation
tables are read (``<cell>/eval/table.csv``, or ``eval-val`` for validation), so folders that kept their tables
but not their weights (those under ``docs/science``) can be merged too.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..config import RunConfig, fingerprint_differences
from ..data.splits import MissingSetting
from ..exit_codes import UsageError
from ..layout import ExperimentFolder, RunFolder

if TYPE_CHECKING:
    from ..evaluation.comparison import CellResult

#: A cell folder's parent: ``<setting tag>_s<seed>[_n<budget>]``.
CELL_TAG = re.compile(r"^(?P<setting>.+)_s(?P<seed>\d+)(?:_n(?P<budget>\d+))?$")


@dataclass(frozen=True)
class Source:
    """One experiment folder and its ``experiment.json``."""

    folder: ExperimentFolder
    description: dict
    methods: tuple[str, ...] | None = None

    @classmethod
    def read(cls, text: str | Path) -> "Source":
        """``FOLDER`` (all its cells) or ``FOLDER@METHOD,METHOD`` (only those methods' cells)."""
        path, _, methods = str(text).rpartition("@") if "@" in str(text) else (str(text), "", "")
        folder = ExperimentFolder(path)
        if not folder.description.is_file():
            raise UsageError(f"{folder.root} is not an experiment folder (no {folder.description.name})")
        description = json.loads(folder.description.read_text())
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip()) or None
        unknown = set(chosen or ()) - set(description["methods"])
        if unknown:
            raise UsageError(f"{folder.root} has no method {', '.join(sorted(unknown))} "
                             f"(its methods: {', '.join(description['methods'])})")
        return cls(folder, description, chosen)

    def label(self) -> str:
        return str(self.folder.root) + (f" ({', '.join(self.methods)})" if self.methods else "")

    def configuration(self) -> dict:
        """The base configuration's training fingerprint and its inference settings, with ``inference.window``
        resolved to a size (or None)."""
        cfg = RunConfig.from_dict(self.description["base_config"])
        window = cfg.inference_window()
        inference = {**cfg.to_dict()["inference"], "window": list(window) if window else None}
        return {**cfg.fingerprint(), "inference": inference}

    def splits(self) -> dict[str, dict]:
        """``{split name: split}`` without ``data_root`` (the same cases may be read from another folder)."""
        out = {}
        for path in sorted((self.folder.root / "splits").glob("*.json")):
            split = json.loads(path.read_text())
            split.pop("data_root", None)
            out[path.stem] = split
        return out

    def settings(self) -> list[MissingSetting]:
        return [MissingSetting.from_dict(s) for s in self.description["settings"]]

    def timings(self) -> dict[str, float]:
        path = self.folder.timings
        return json.loads(path.read_text()) if path.is_file() else {}


def check_compatible(sources: Sequence[Source]) -> None:
    """UsageError unless the folders can be compared cell against cell (see the module docstring)."""
    first = sources[0]
    splits = {name: (first, split) for name, split in first.splits().items()}
    for other in sources[1:]:
        differences = fingerprint_differences(first.configuration(), other.configuration())
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise UsageError(f"{other.folder.root} ran another base configuration than {first.folder.root} "
                             f"({shown}): its cells cannot be compared with those")
        if other.description["scenarios"] != first.description["scenarios"]:
            raise UsageError(f"{other.folder.root} evaluated other scenarios than {first.folder.root}")
        for name, split in other.splits().items():
            earlier, seen = splits.setdefault(name, (other, split))
            if seen != split:
                raise UsageError(f"split {name} of {other.folder.root} differs from that of {earlier.folder.root}: "
                                 "its cells were trained or scored on other cases")


def finished_cells(source: Source, subset: str, out: Path) -> list[CellResult]:
    """The cells of one folder whose ``subset`` evaluation finished, linked relative to ``out``."""
    from ..evaluation.tables import ScenarioTable
    from .experiment import cell_result

    budgets = source.description.get("budgets") or [None]
    timings, results = source.timings(), []
    relative = lambda path: Path(os.path.relpath(path, out)).as_posix()  # noqa: E731
    for tag_folder in sorted(p for p in source.folder.root.iterdir() if p.is_dir()):
        match = CELL_TAG.match(tag_folder.name)
        if not match:
            continue
        budget = int(match["budget"]) if match["budget"] else budgets[0]
        for cell_root in sorted(p for p in tag_folder.iterdir() if p.is_dir()):
            if source.methods and cell_root.name not in source.methods:
                continue
            cell = RunFolder(cell_root)
            evaluation = cell.evaluation(subset)
            if not evaluation.summary.is_file():
                continue
            key = (match["setting"], int(match["seed"]), cell_root.name, budget)
            table = ScenarioTable.from_csv(evaluation.table_csv, cell_root.name)
            results.append(cell_result(cell, key, table, subset,
                                       timings.get(f"{tag_folder.name}/{cell_root.name}"), relative))
    return results


def compare_experiments(folders: Sequence[str | Path], out: str | Path, *, subset: str = "test",
                        command: str | None = None) -> list[dict]:
    """Write ``OUT/comparison.{csv,md,png}`` (``comparison-val.*`` for ``subset`` "val") from the finished cells of
    ``folders``; returns the CSV rows. UsageError for folders that cannot be compared, a cell found in two of
    them, an ``out`` that is one of them, or no finished cell."""
    from ..evaluation.comparison import GridDescription, write_comparison

    sources = [Source.read(f) for f in folders]
    out = ExperimentFolder(out)
    if any(out.root.resolve() == s.folder.root.resolve() for s in sources):
        raise UsageError(f"--out {out.root} is one of the folders compared: give a new folder")
    check_compatible(sources)
    out.root.mkdir(parents=True, exist_ok=True)
    cells, origin = [], {}
    for source in sources:
        for cell in finished_cells(source, subset, out.root):
            if cell.key in origin:
                raise UsageError(f"cell {cell.key} is in {origin[cell.key]} and in {source.folder.root}: "
                                 "keep one (FOLDER@METHOD,... takes only those methods' cells of a folder)")
            origin[cell.key] = source.folder.root
            cells.append(cell)
    if not cells:
        raise UsageError(f"no finished {subset} evaluation in {', '.join(str(f) for f in folders)}")
    methods = list(dict.fromkeys(m for s in sources for m in s.methods or s.description["methods"]))
    settings = {s.tag: s.label for source in sources for s in source.settings()}
    budgets = sorted({c.key.budget for c in cells}, key=lambda b: -1 if b is None else b)
    grid = GridDescription(
        methods=tuple(m for m in methods if any(c.key.method == m for c in cells)),
        settings={tag: label for tag, label in settings.items() if any(c.key.setting == tag for c in cells)},
        seeds=tuple(sorted({c.key.seed for c in cells})), budgets=tuple(budgets), subset=subset, command=command,
        grid_seconds=sum(c.seconds or 0.0 for c in cells),
        sources=tuple(f"`{s.label()}`: `{s.description.get('command') or 'command not recorded'}`"
                      for s in sources))
    return write_comparison(out.comparison(subset), cells, grid)
