"""Helpers for the training tests: a split file over the session's synthetic cases, and tiny configs.

Importable by test modules in this folder (pytest puts it on sys.path). The split (4 training cases, two of
them with simulated missing sequences, 1 validation, 1 test case) and its preprocessed-case cache are made
once per session and shared by every training test.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_split(synthetic_root, tmp_path_factory) -> Path:
    """``split.json`` over ``synthetic_root`` (seed 0, missing ratio 0.5), with ``cache/`` beside it."""
    from AllStageTraining.data.discovery import find_cases
    from AllStageTraining.data.splits import make_split, save_split

    path = tmp_path_factory.getbasetemp() / "training_split" / "split.json"
    if not path.is_file():
        split = make_split(find_cases(synthetic_root), seed=0, val_fraction=1 / 6, test_fraction=1 / 6, missing_ratio=0.5)
        save_split(split, path)
    return path
