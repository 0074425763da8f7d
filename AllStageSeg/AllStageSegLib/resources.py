"""Where the module's files are, in the source tree and in an installed extension.

Installed, the extension copies the shared ``Resources`` folder (colour table, demo model, sample case) into
the module's own ``Resources`` and the ``AllStageTraining`` package beside the module; in the source tree
both live one folder up. Each lookup tries the installed place first.
"""

from __future__ import annotations

from pathlib import Path

#: The folder that holds AllStageSeg.py and AllStageSegLib.
MODULE_DIR = Path(__file__).resolve().parent.parent

COLOR_TABLE = "ColorTables/AllStageSegTumor.csv"
#: The shipped demo bundle (produced by the demo's export; see the README).
DEMO_BUNDLE = "Models/demo_bundle.zip"
#: The synthetic sample case registered with Sample Data (shipped by the demo issue).
SAMPLE_DATA_DIR = "SampleData"
SAMPLE_CASE_FILES = {m: f"SynthBraTS_001_{m}.nii.gz" for m in ("flair", "t1ce", "t1", "t2")}


def resource_path(relative: str, module_dir: Path = MODULE_DIR) -> Path:
    """``Resources/<relative>`` of the installed module, else of the source tree (which may not exist)."""
    candidates = [module_dir / "Resources" / relative, module_dir.parent / "Resources" / relative]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[-1]


def training_package_parent(module_dir: Path = MODULE_DIR) -> Path | None:
    """The folder that contains the ``AllStageTraining`` package (for the child process' PYTHONPATH)."""
    for candidate in (module_dir, module_dir.parent):
        if (candidate / "AllStageTraining" / "__init__.py").is_file():
            return candidate
    return None
