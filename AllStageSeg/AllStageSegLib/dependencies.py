"""Which Python packages the ``predict`` process needs that Slicer's Python lacks, and how to install them.

The check uses ``importlib.util.find_spec`` so that nothing heavy (torch) is imported into Slicer's GUI
process; it runs on the first Segment, never at import. Asking the user is the widget's job.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

#: Import name -> pip requirement, for what ``python -m AllStageTraining predict`` imports.
REQUIRED_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "monai": "monai>=1.3",
    "safetensors": "safetensors>=0.4",
    "SimpleITK": "SimpleITK>=2.3",
    "numpy": "numpy",
    "scipy": "scipy",
}


def missing_packages(required: dict[str, str] | None = None) -> list[str]:
    """Import names from ``required`` (default REQUIRED_PACKAGES) that cannot be found in this Python."""
    names = required if required is not None else REQUIRED_PACKAGES
    return [name for name in names if importlib.util.find_spec(name) is None]


@dataclass
class InstallPlan:
    """How to install what is missing: torch through the PyTorch extension when it is there, the rest by pip."""

    torch_with_pytorch_utils: bool = False
    pip_requirements: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.torch_with_pytorch_utils and not self.pip_requirements

    def describe(self) -> str:
        """One paragraph for the confirmation dialog."""
        parts = []
        if self.torch_with_pytorch_utils:
            parts.append("PyTorch (through the PyTorch extension, which picks the build for your GPU)")
        if self.pip_requirements:
            parts.append("the Python packages " + ", ".join(self.pip_requirements))
        return "AllStageSeg needs " + " and ".join(parts) + ". Install now? This may take several minutes."


def install_plan(missing: list[str], *, pytorch_utils_available: bool,
                 required: dict[str, str] | None = None) -> InstallPlan:
    """The plan for ``missing`` import names (from :func:`missing_packages`)."""
    names = required if required is not None else REQUIRED_PACKAGES
    plan = InstallPlan()
    for name in missing:
        if name == "torch" and pytorch_utils_available:
            plan.torch_with_pytorch_utils = True
        else:
            plan.pip_requirements.append(names.get(name, name))
    return plan
