"""Launcher: ``<python> run_predict.py predict ARGS`` runs ``python -m AllStageTraining predict ARGS`` with the
AllStageTraining package that the extension installed beside the module (or the source tree's).

The module starts its background process with this script's path, as SlicerMONAIAuto3DSeg starts its
inference script, so the child finds the package by the script's own location and does not depend on an
inherited PYTHONPATH. Run as a script only; the module never imports it.
"""

import runpy
import sys
from pathlib import Path


def main() -> int:
    module_dir = Path(__file__).resolve().parent.parent
    # the module folder instead of this script's folder, whose file names could shadow other packages
    sys.path[0] = str(module_dir)
    from AllStageSegLib.resources import training_package_parent

    parent = training_package_parent(module_dir)
    if parent is None:
        print(f"ERROR: the AllStageTraining package is not installed beside {module_dir}; reinstall the "
              f"AllStageSeg extension", file=sys.stderr, flush=True)
        return 1
    sys.path.insert(0, str(parent))
    sys.argv = ["AllStageTraining", *sys.argv[1:]]
    runpy.run_module("AllStageTraining", run_name="__main__", alter_sys=True)  # exits with predict's code
    return 0


if __name__ == "__main__":
    sys.exit(main())
