"""Which Python packages the ``predict`` process needs that Slicer's Python lacks or has too old, and how to
install them.

Versions are read from the installed distributions' metadata (``importlib.metadata``), so nothing heavy
(torch) is imported into Slicer's GUI process; the check runs on the first Segment, never at import. Asking
the user is the widget's job. torch goes through the PyTorch extension when it is there (it picks the build
for the GPU and driver), with the version requirement, so that an old torch is upgraded rather than kept.
Brain extraction's package (deepbet, BRAIN_EXTRACTION) is optional: offered, never required.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field

#: Import name -> (distribution name, minimum version or None) for what ``predict`` imports; the minimums
#: are those of the project's pyproject.toml (a test holds them equal).
REQUIREMENTS: dict[str, tuple[str, str | None]] = {
    "torch": ("torch", "2.2"),
    "monai": ("monai", "1.3"),
    "safetensors": ("safetensors", "0.4"),
    "SimpleITK": ("SimpleITK", "2.3"),
    "numpy": ("numpy", "1.24"),
    "scipy": ("scipy", "1.10"),
}
#: What only brain extraction needs (the ``preprocess`` extra of pyproject.toml): ``predict`` runs without it on
#: skull-stripped scans and says what to install when a scan needs it. Offered when skull-stripping is on.
BRAIN_EXTRACTION: dict[str, tuple[str, str | None]] = {
    "deepbet": ("deepbet", "1.0"),
}


def version_tuple(version: str) -> tuple[int, ...]:
    """The release numbers at the start of a version string: "2.5.1+cu121" -> (2, 5, 1), "2.6.0.dev1" -> (2, 6, 0)."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def is_older(installed: str, minimum: str) -> bool:
    """True when ``installed`` is an earlier release than ``minimum`` (missing trailing parts count as 0)."""
    have, need = version_tuple(installed), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def installed_version(import_name: str, distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when ``import_name`` cannot be imported."""
    if importlib.util.find_spec(import_name) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0"  # importable but without metadata (a source tree on sys.path): unknown, treated as too old


@dataclass(frozen=True)
class Problem:
    """One package that ``predict`` cannot use as it is."""

    name: str  # import name
    distribution: str
    installed: str | None  # None: missing
    minimum: str | None

    @property
    def action(self) -> str:
        return "install" if self.installed is None else "upgrade"

    @property
    def requirement(self) -> str:
        return self.distribution + (f">={self.minimum}" if self.minimum else "")

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.distribution} is missing"
        return f"{self.distribution} {self.installed} is older than the {self.minimum} needed"


def problems(requirements: dict[str, tuple[str, str | None]] | None = None,
             version_of=installed_version) -> list[Problem]:
    """The packages of ``requirements`` (default REQUIREMENTS) that are missing or older than their minimum.

    ``version_of(import_name, distribution) -> version or None`` says what is installed.
    """
    found = []
    for name, (distribution, minimum) in (requirements if requirements is not None else REQUIREMENTS).items():
        version = version_of(name, distribution)
        if version is None or (minimum and is_older(version, minimum)):
            found.append(Problem(name, distribution, version, minimum))
    return found


def describe_problems(found: list[Problem]) -> str:
    return "; ".join(problem.describe() for problem in found)


@dataclass
class InstallPlan:
    """How to fix the problems: torch through the PyTorch extension when it is there, the rest by pip."""

    torch_requirement: str = ""  # e.g. "torch>=2.2" for PyTorchUtils.installTorch; "" = not through it
    pip_requirements: list[str] = field(default_factory=list)  # e.g. ["monai>=1.3"]
    problems: list[Problem] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.torch_requirement and not self.pip_requirements

    @property
    def torch_version_requirement(self) -> str:
        """The version part of ``torch_requirement`` (">=2.2"), as PyTorchUtils.installTorch takes it."""
        return self.torch_requirement[len("torch"):]

    def describe(self) -> str:
        """One paragraph for the confirmation dialog."""
        parts = []
        if self.torch_requirement:
            parts.append(f"PyTorch ({self.torch_requirement}, through the PyTorch extension, which picks the build "
                         f"for your GPU)")
        if self.pip_requirements:
            parts.append("the Python packages " + ", ".join(self.pip_requirements))
        return (f"AllStageSeg needs {' and '.join(parts)} ({describe_problems(self.problems)}). Install now? "
                f"This may take several minutes.")

    def describe_optional(self) -> str:
        """The confirmation dialog's text for brain extraction's packages (BRAIN_EXTRACTION)."""
        return (f"Skull-stripping scans that still show the skull needs the Python package "
                f"{', '.join(self.pip_requirements)} ({describe_problems(self.problems)}; deepbet, MIT, about 20 MB "
                f"with its two small networks). Install it now? Without it, scans must already be skull-stripped "
                f"(BraTS-style): a scan with its skull stops with a message saying so.")


def install_plan(found: list[Problem], *, pytorch_utils_available: bool) -> InstallPlan:
    """The plan for the ``found`` problems (from :func:`problems`): install what is missing, upgrade what is old."""
    plan = InstallPlan(problems=list(found))
    for problem in found:
        if problem.name == "torch" and pytorch_utils_available:
            plan.torch_requirement = problem.requirement
        else:
            plan.pip_requirements.append(problem.requirement)
    return plan
