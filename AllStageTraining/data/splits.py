"""Split files: train/val/test case ids and, per case, the sequences that may be read.

Training-time missing data is real (files absent) or simulated for experiments:

- ``missing_ratio=r``: exactly ``round(r * n_train)`` training cases (rounding half up), chosen with the seed
  among those with at least two sequences, each lose a non-empty proper subset of their present sequences,
  drawn uniformly over all such subsets (14 when all four exist).
- ``missing_rates={modality: rate}``: in each training case, each present sequence is independently dropped
  with its rate; when that would drop every present sequence, one of them, chosen uniformly at random, is
  kept (so at least one sequence always remains).

Validation cases keep what exists on disk; test cases are drawn among complete cases (four sequences and a
label) and keep all four. Cases without a label are left out of the split and listed under ``unlabelled``.
Everything is deterministic for a seed (numpy's PCG64 generator).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import MODALITIES, MODALITY_DISPLAY, SCENARIOS, scenario_from_modalities
from ..fileio import atomic_write_json
from .discovery import CaseFiles, find_cases

SPLIT_VERSION = 1
SUBSETS: tuple[str, ...] = ("train", "val", "test")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _proper_subsets(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Non-empty proper subsets of ``names``, in a fixed order."""
    return [c for k in range(1, len(names)) for c in itertools.combinations(names, k)]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def parse_missing_rates(text: str) -> dict[str, float]:
    """``"0.2,0.4,0.6,0.8"`` -> rates per modality in MODALITIES order (flair, t1ce, t1, t2)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(MODALITIES):
        raise ValueError(f"--missing-rates needs {len(MODALITIES)} comma-separated numbers "
                         f"({', '.join(MODALITIES)}), got {text!r}")
    rates = {m: float(p) for m, p in zip(MODALITIES, parts)}
    for m, r in rates.items():
        _check_fraction(f"missing rate of {m}", r)
    return rates


@dataclass(frozen=True)
class MissingSetting:
    """One training-time missing-data setting of an experiment: a missing ratio or per-sequence missing rates
    (MODALITIES order), exactly one of the two.

    ``tag`` names its folders (``r0.5``, ``rates0.6-0.4-0.2-0.8``); ``label`` is what tables show
    (``ratio 0.5``, ``rates FLAIR 0.6, T1ce 0.4, T1 0.2, T2 0.8``).
    """

    ratio: float | None = None
    rates: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.rates is None):
            raise ValueError("a missing-data setting is a ratio or per-sequence rates, exactly one of them")
        if self.ratio is not None:
            _check_fraction("missing_ratio", self.ratio)
        else:
            if len(self.rates) != len(MODALITIES):
                raise ValueError(f"missing rates need one value per sequence ({', '.join(MODALITIES)})")
            for m, r in zip(MODALITIES, self.rates):
                _check_fraction(f"missing rate of {m}", r)

    @classmethod
    def parse_rates(cls, text: str) -> "MissingSetting":
        """``"0.6,0.4,0.2,0.8"`` (flair, t1ce, t1, t2) -> a rates setting."""
        return cls(rates=tuple(parse_missing_rates(text).values()))

    @property
    def tag(self) -> str:
        if self.ratio is not None:
            return f"r{self.ratio:g}"
        return "rates" + "-".join(f"{r:g}" for r in self.rates)

    @property
    def label(self) -> str:
        if self.ratio is not None:
            return f"ratio {self.ratio:g}"
        return "rates " + ", ".join(f"{MODALITY_DISPLAY[m]} {r:g}" for m, r in zip(MODALITIES, self.rates))

    def split_arguments(self) -> dict:
        """The ``make_split`` keyword arguments of this setting."""
        if self.ratio is not None:
            return {"missing_ratio": self.ratio}
        return {"missing_rates": dict(zip(MODALITIES, self.rates))}

    def to_dict(self) -> dict:
        return {"ratio": self.ratio} if self.ratio is not None else {"rates": dict(zip(MODALITIES, self.rates))}

    @classmethod
    def from_dict(cls, data: dict) -> "MissingSetting":
        """The inverse of :meth:`to_dict` (as ``experiment.json`` stores the settings)."""
        if "rates" in data:
            return cls(rates=tuple(float(data["rates"][m]) for m in MODALITIES))
        return cls(ratio=float(data["ratio"]))


def make_split(
    cases: list[CaseFiles],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    missing_ratio: float | None = None,
    missing_rates: dict[str, float] | None = None,
    data_root: str | Path | None = None,
) -> dict:
    """A split dictionary (see ARCHITECTURE.md, ``splits.py``) for ``cases``.

    ``n_test = round(test_fraction * n)`` complete cases, ``n_val = round(val_fraction * n)`` of the rest,
    everything else is training. ``data_root`` (stored absolute) defaults to the cases' common parent folder.
    """
    if missing_ratio is not None and missing_rates is not None:
        raise ValueError("give either missing_ratio or missing_rates, not both")
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    unlabelled = sorted(c.case_id for c in cases if c.label is None)
    labelled = sorted((c for c in cases if c.label is not None), key=lambda c: c.case_id)
    n = len(labelled)
    rng = np.random.default_rng(seed)

    complete = [c.case_id for c in labelled if c.complete]
    n_test = _round_half_up(test_fraction * n)
    if n_test > len(complete):
        raise ValueError(f"test_fraction {test_fraction} asks for {n_test} test cases but only {len(complete)} "
                         f"of {n} labelled cases have all four sequences; lower the test fraction")
    test = sorted(rng.permutation(complete)[:n_test].tolist()) if n_test else []
    rest = [c.case_id for c in labelled if c.case_id not in set(test)]
    n_val = _round_half_up(val_fraction * n)
    shuffled = rng.permutation(rest).tolist() if rest else []
    val = sorted(shuffled[:n_val])
    train = sorted(shuffled[n_val:])
    if not train:
        raise ValueError(f"no training case left: {n} labelled cases, {n_test} test, {n_val} validation")

    on_disk = {c.case_id: list(c.modalities) for c in labelled}
    available = {cid: list(mods) for cid, mods in on_disk.items()}
    missing: dict = {"mode": "real"}
    if missing_ratio is not None:
        _check_fraction("missing_ratio", missing_ratio)
        n_drop = _round_half_up(missing_ratio * len(train))
        eligible = [cid for cid in train if len(on_disk[cid]) >= 2]
        if n_drop > len(eligible):
            raise ValueError(f"missing ratio {missing_ratio} needs {n_drop} training cases with at least two "
                             f"sequences, but only {len(eligible)} of {len(train)} have them")
        chosen = sorted(rng.choice(eligible, size=n_drop, replace=False).tolist()) if n_drop else []
        for cid in chosen:
            subsets = _proper_subsets(tuple(on_disk[cid]))
            lost = subsets[int(rng.integers(len(subsets)))]
            available[cid] = [m for m in on_disk[cid] if m not in lost]
        missing = {"mode": "ratio", "ratio": float(missing_ratio), "n_cases": n_drop, "cases": chosen}
    elif missing_rates is not None:
        rates = {m: float(missing_rates.get(m, 0.0)) for m in MODALITIES}
        for m, r in rates.items():
            _check_fraction(f"missing rate of {m}", r)
        for cid in train:
            present = on_disk[cid]
            draws = rng.random(len(present))
            kept = [m for m, u in zip(present, draws) if u >= rates[m]]
            if not kept:
                kept = [present[int(rng.integers(len(present)))]]
            available[cid] = kept
        missing = {"mode": "rates", "rates": rates, "all_dropped": "keep one present sequence at random"}

    root = Path(data_root).resolve() if data_root is not None else _common_root(labelled)
    return {
        "version": SPLIT_VERSION,
        "seed": int(seed),
        "data_root": str(root),
        "train": train,
        "val": val,
        "test": test,
        "available": {cid: available[cid] for cid in sorted(available)},
        "missing": missing,
        "unlabelled": unlabelled,
    }


def _common_root(cases: list[CaseFiles]) -> Path:
    folders = {str(p.parent) for c in cases for p in c.images.values()}
    if not folders:
        return Path(".")
    common = Path(os.path.commonpath(sorted(folders)))
    if len(folders) == 1:  # one case: its folder's parent is the data folder
        common = common.parent
    return common.resolve()


def save_split(split: dict, path: str | Path) -> None:
    """Write the split as JSON (atomically: temporary file, then rename)."""
    atomic_write_json(path, split)


def load_split(path: str | Path) -> dict:
    """Read and check a split file."""
    path = Path(path)
    split = json.loads(path.read_text())
    if split.get("version") != SPLIT_VERSION:
        raise ValueError(f"{path}: split version {split.get('version')!r} is not {SPLIT_VERSION}; "
                         f"run `prepare` again")
    for key in ("seed", "data_root", "available", "missing", *SUBSETS):
        if key not in split:
            raise ValueError(f"{path}: split file has no {key!r}")
    return split


def scenario_counts(split: dict, subset: str = "train") -> dict[str, int]:
    """Number of ``subset`` cases per availability scenario, keyed by scenario short name (table order)."""
    counts = Counter(scenario_from_modalities(split["available"][cid]).short for cid in split[subset])
    return {s.short: counts[s.short] for s in SCENARIOS if counts[s.short]}


def format_summary(split: dict) -> str:
    """A few lines describing a split: sizes, missing-data mode and training cases per scenario."""
    mode = split["missing"]
    detail = {"real": "real (files absent)",
              "ratio": f"ratio {mode.get('ratio')} ({mode.get('n_cases')} training cases lose sequences)",
              "rates": "rates " + ", ".join(f"{m} {r:g}" for m, r in mode.get("rates", {}).items())}[mode["mode"]]
    lines = [f"cases: {len(split['train'])} train, {len(split['val'])} val, {len(split['test'])} test "
             f"(seed {split['seed']})", f"training-time missing sequences: {detail}",
             "training cases per scenario: " + ", ".join(f"{k} {v}" for k, v in scenario_counts(split).items())]
    if split.get("unlabelled"):
        lines.append(f"left out (no label): {len(split['unlabelled'])} case(s)")
    return "\n".join(lines)


def cases_for_split(split: dict, subset: str, *, root: str | Path | None = None) -> list[CaseFiles]:
    """The cases of ``subset`` ("train", "val" or "test"), each restricted to its available sequences.

    Files are rediscovered under ``root`` (default: the split's ``data_root``). The returned CaseFiles hold no
    path for a sequence the split marks missing, so nothing downstream can open it.
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")
    root = Path(root) if root is not None else Path(split["data_root"])
    found, _ = find_cases(root, strict=False)
    by_id = {c.case_id: c for c in found}
    missing = [cid for cid in split[subset] if cid not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} {subset} case(s) of the split are not usable under {root}: "
                         f"{', '.join(missing[:10])}")
    return [by_id[cid].restricted(split["available"][cid]) for cid in split[subset]]
