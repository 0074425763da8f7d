"""Shared pytest fixtures: small synthetic data made by the project itself."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Six synthetic BraTS-2020-layout cases (2 mm grid, seed 0): ``root/SynthBraTS_00{1..6}/``.

    Read-only by convention: tests that modify cases copy them first.
    """
    from AllStageTraining.synth import synthesize

    root = tmp_path_factory.mktemp("synthetic_brats")
    synthesize(root, 6, spacing=2, seed=0)
    return root
