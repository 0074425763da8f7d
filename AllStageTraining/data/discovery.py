"""Find BraTS cases in a folder, whatever the release's naming convention.

Layouts understood (file names are matched case-insensitively, ``.nii`` or ``.nii.gz``):

- BraTS 2018: ``ROOT/HGG/<case>/<case>_flair.nii.gz`` (and ``LGG``), suffixes ``_flair _t1ce _t1 _t2 _seg``.
- BraTS 2019/2020/2021: ``ROOT/<case>/<case>_flair.nii.gz``, same suffixes (convention ``brats2020``).
- BraTS 2023+: ``ROOT/<case>/<case>-t2f.nii.gz`` with ``-t2f -t1c -t1n -t2w -seg`` for flair, t1ce, t1, t2
  and the label, whose ET value is 3 (convention ``brats2023``).

A case is a folder holding such files, directly under ROOT or one level below a grouping folder (HGG, LGG
or any folder without image files; a grouping folder with no NIfTI file one level down is ignored). NIfTI files lying directly in ROOT are grouped into cases by the part of
their name before the suffix. A case's availability is the set of sequence files that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..constants import MODALITIES

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
LABEL_KEY = "seg"

#: Convention -> file-name suffix -> modality name (or LABEL_KEY). Suffixes are lower case.
SUFFIXES: dict[str, dict[str, str]] = {
    "brats2020": {"_flair": "flair", "_t1ce": "t1ce", "_t1": "t1", "_t2": "t2", "_seg": LABEL_KEY},
    "brats2023": {"-t2f": "flair", "-t1c": "t1ce", "-t1n": "t1", "-t2w": "t2", "-seg": LABEL_KEY},
}
#: Grouping folders of BraTS 2018 (high- and low-grade gliomas).
BRATS2018_GROUPS: frozenset[str] = frozenset({"hgg", "lgg"})


class DiscoveryError(ValueError):
    """Some cases in a data folder cannot be used; ``problems`` lists one line per problem."""

    def __init__(self, root: Path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) with the cases in {root}:\n{lines}")


@dataclass
class CaseFiles:
    """The files of one case. ``images`` holds only the sequences that exist (and may be read)."""

    case_id: str
    images: dict[str, Path] = field(default_factory=dict)  # modality -> file, present ones only
    label: Path | None = None
    convention: str = "brats2020"  # "brats2018" | "brats2020" | "brats2023"

    @property
    def available(self) -> tuple[bool, ...]:
        """Availability in MODALITIES order."""
        return tuple(m in self.images for m in MODALITIES)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Names of the present sequences, in MODALITIES order."""
        return tuple(m for m in MODALITIES if m in self.images)

    @property
    def complete(self) -> bool:
        """All four sequences and a label exist."""
        return all(self.available) and self.label is not None

    def restricted(self, modalities) -> "CaseFiles":
        """A copy that knows only the paths of ``modalities`` (names); the others cannot be read through it."""
        unknown = set(modalities) - set(self.images)
        if unknown:
            raise ValueError(f"case {self.case_id}: sequence(s) {sorted(unknown)} have no file")
        return replace(self, images={m: p for m, p in self.images.items() if m in modalities})


def split_nifti_name(name: str) -> tuple[str, str | None, str | None]:
    """``(stem, role, convention)`` of a file name; role is a modality, LABEL_KEY or None when unrecognised."""
    lower = name.lower()
    for extension in NIFTI_EXTENSIONS:
        if lower.endswith(extension):
            lower_stem = lower[: -len(extension)]
            break
    else:
        return name, None, None
    for convention, suffixes in SUFFIXES.items():
        for suffix, role in suffixes.items():
            if lower_stem.endswith(suffix):
                return name[: len(lower_stem) - len(suffix)], role, convention
    return name[: len(lower_stem)], None, None


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_EXTENSIONS)


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))


def _case_from_files(case_id: str, files: list[Path], group: str | None) -> tuple[CaseFiles | None, list[str]]:
    """Build one case from its NIfTI files; returns (case or None, problems)."""
    problems: list[str] = []
    roles: dict[str, list[Path]] = {}
    conventions: set[str] = set()
    for path in files:
        _, role, convention = split_nifti_name(path.name)
        if role is None:
            problems.append(f"{case_id}: unrecognised file name {path.name!r} (expected a suffix such as "
                            f"_flair/_t1ce/_t1/_t2/_seg or -t2f/-t1c/-t1n/-t2w/-seg)")
            continue
        roles.setdefault(role, []).append(path)
        conventions.add(convention)
    for role, paths in sorted(roles.items()):
        if len(paths) > 1:
            what = "label" if role == LABEL_KEY else f"sequence {role}"
            problems.append(f"{case_id}: two or more files for the {what}: {', '.join(p.name for p in paths)}")
    if len(conventions) > 1:
        problems.append(f"{case_id}: file names mix naming conventions {sorted(conventions)}")
    images = {m: roles[m][0] for m in MODALITIES if m in roles}
    if not images:
        problems.append(f"{case_id}: no image at all (none of flair, t1ce, t1, t2 found)")
    if problems:
        return None, problems
    convention = conventions.pop()
    if convention == "brats2020" and group is not None and group.lower() in BRATS2018_GROUPS:
        convention = "brats2018"
    label = roles[LABEL_KEY][0] if LABEL_KEY in roles else None
    return CaseFiles(case_id=case_id, images=images, label=label, convention=convention), []


def scan_cases(root: str | Path) -> tuple[list[CaseFiles], list[str]]:
    """All usable cases under ``root`` (sorted by case_id) and one line per problem found."""
    root = Path(root)
    if not root.is_dir():
        raise DiscoveryError(root, [f"{root} is not a folder"])
    found: list[tuple[CaseFiles | None, list[str], str]] = []  # (case, problems, where)

    def add(case_id: str, files: list[Path], group: str | None, where: Path) -> None:
        case, problems = _case_from_files(case_id, files, group)
        found.append((case, problems, str(where)))

    children = _visible_children(root)
    loose = [p for p in children if is_nifti(p)]
    by_stem: dict[str, list[Path]] = {}
    for path in loose:
        by_stem.setdefault(split_nifti_name(path.name)[0], []).append(path)
    for stem, files in sorted(by_stem.items()):
        add(stem, files, None, root)
    for folder in (p for p in children if p.is_dir()):
        entries = _visible_children(folder)
        files = [p for p in entries if is_nifti(p)]
        subfolders = [p for p in entries if p.is_dir()]
        if files or not subfolders:
            add(folder.name, files, None, folder)
            continue
        # a grouping folder (HGG, LGG, ...) holds cases one level below; one without any NIfTI file there
        # (a cache, logs) is not part of the data
        grouped = {sub: [p for p in _visible_children(sub) if is_nifti(p)] for sub in subfolders}
        if any(grouped.values()):
            for sub, sub_files in grouped.items():
                add(sub.name, sub_files, folder.name, sub)

    problems = [p for _, ps, _ in found for p in ps]
    seen: dict[str, str] = {}
    cases: list[CaseFiles] = []
    for case, _, where in found:
        if case is None:
            continue
        if case.case_id in seen:
            problems.append(f"{case.case_id}: the same case name occurs twice ({seen[case.case_id]} and {where})")
            continue
        seen[case.case_id] = where
        cases.append(case)
    duplicated = {p.split(":")[0] for p in problems if "occurs twice" in p}
    cases = sorted((c for c in cases if c.case_id not in duplicated), key=lambda c: c.case_id)
    return cases, problems


def find_cases(root: str | Path, *, strict: bool = True):
    """Cases under ``root``, sorted by case_id.

    strict=True: returns ``list[CaseFiles]`` and raises DiscoveryError naming every bad case if any exists.
    strict=False: returns ``(cases, problems)``: the usable cases and one line per problem.
    """
    cases, problems = scan_cases(root)
    if not strict:
        return cases, problems
    if problems:
        raise DiscoveryError(Path(root), problems)
    if not cases:
        raise DiscoveryError(Path(root), [f"no BraTS case found in {root}"])
    return cases
