"""On-disk cache of preprocessed cases, so that training never re-reads NIfTI files after the first pass.

Layout: ``DIR/<case_id>/<key>/{image.npy, brain.npy, label.npy, meta.json}`` with ``image`` float16
(4, Z, Y, X), ``brain`` bool and ``label`` uint8 (Z, Y, X), uncompressed and read memory-mapped. ``key`` hashes
the case id, the sequences that may be read, each read file's name, size and modification time, the
resampling flag and PREPROCESS_VERSION; so a changed file, a different availability or a new preprocessing
version makes a new entry. Entries are written into a temporary folder and renamed into place, so a crash or
a second process never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..constants import MODALITIES
from .discovery import CaseFiles
from .preprocess import Geometry, PreprocessedCase, load_case

#: Bump whenever preprocessing changes its output; old cache entries are then ignored.
PREPROCESS_VERSION = 1


def _signature(path: Path) -> list:
    stat = Path(path).stat()
    return [Path(path).name, stat.st_size, stat.st_mtime_ns]


def _modalities(available) -> list[str]:
    """Sequence names from names or from a boolean mask in MODALITIES order."""
    items = available.tolist() if hasattr(available, "tolist") else list(available)  # numpy / torch masks
    if items and all(isinstance(v, (bool, np.bool_)) for v in items):
        if len(items) != len(MODALITIES):
            raise ValueError(f"availability mask needs {len(MODALITIES)} entries, got {len(items)}")
        return [m for m, v in zip(MODALITIES, items) if v]
    unknown = set(items) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown sequence name(s) {sorted(unknown)}")
    return [m for m in MODALITIES if m in items]


class CaseCache:
    """Preprocessed cases on disk, keyed by content and availability."""

    def __init__(self, directory: str | Path, *, resample: bool = False):
        self.directory = Path(directory)
        self.resample = resample

    def key(self, case: CaseFiles, available) -> str:
        """The entry name for ``case`` read with sequences ``available`` (stats only the files it would read)."""
        names = _modalities(available)
        files = {m: _signature(case.images[m]) for m in names}
        if case.label is not None:
            files["label"] = _signature(case.label)
        identity = {"case_id": case.case_id, "available": names, "files": files, "resample": self.resample,
                    "version": PREPROCESS_VERSION}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    def get(self, case: CaseFiles, available=None) -> PreprocessedCase:
        """The preprocessed case, from the cache or computed and stored; arrays are read-only memory maps.

        available: sequence names or a boolean mask (MODALITIES order); default: every sequence ``case`` has.
        Only the files of those sequences (and the label) are opened.
        """
        names = _modalities(case.modalities if available is None else available)
        missing = [m for m in names if m not in case.images]
        if missing:
            raise ValueError(f"case {case.case_id}: sequence(s) {missing} marked available have no file")
        entry = self.directory / case.case_id / self.key(case, names)
        if not (entry / "meta.json").is_file():
            self._write(entry, case, names)
        return self._read(entry)

    def _write(self, entry: Path, case: CaseFiles, names: list[str]) -> None:
        pre = load_case({m: case.images[m] for m in names}, case.label, case_id=case.case_id,
                        resample=self.resample)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.parent / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            np.save(tmp / "image.npy", pre.image.astype(np.float16))
            np.save(tmp / "brain.npy", pre.brain)
            if pre.label is not None:
                np.save(tmp / "label.npy", pre.label)
            meta = {"version": PREPROCESS_VERSION, "case_id": case.case_id, "available": names,
                    "shape": list(pre.brain.shape), "bbox": [list(b) for b in pre.bbox],
                    "has_label": pre.label is not None, "grid": pre.grid.to_dict(),
                    "input_grid": pre.input_grid.to_dict()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            try:
                os.rename(tmp, entry)
            except OSError:  # another process wrote the same entry first
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _read(entry: Path) -> PreprocessedCase:
        meta = json.loads((entry / "meta.json").read_text())
        label = np.load(entry / "label.npy", mmap_mode="r") if meta["has_label"] else None
        return PreprocessedCase(
            case_id=meta["case_id"],
            image=np.load(entry / "image.npy", mmap_mode="r"),
            available=np.array([m in meta["available"] for m in MODALITIES], dtype=bool),
            brain=np.load(entry / "brain.npy", mmap_mode="r"),
            label=label,
            bbox=tuple(tuple(b) for b in meta["bbox"]),
            grid=Geometry.from_dict(meta["grid"]),
            input_grid=Geometry.from_dict(meta["input_grid"]),
        )
