"""Write the list of Slicer/VTK API names that a Slicer release offers to the classes AllStageSeg uses.

The list is read by ``Testing/unit/test_slicer_api.py``, which fails when the module calls a name that the
declared minimum Slicer release lacks. It is taken from the sources at the release tags, from git
repositories (no checkout needed)::

    python AllStageSeg/Testing/SlicerAPI/extract_api.py --slicer-git SLICER_REPO --slicer-tag v5.10.0 \\
        --vtk-git VTK_REPO --vtk-tag v9.5.2 > AllStageSeg/Testing/SlicerAPI/slicer-v5.10.0.txt

(VTK 9.5.2 is what the Slicer 5.10 superbuild builds.) Output lines, sorted within each kind:
``class <name> <superclass>``, ``method <name>`` (declared methods, macro-made accessors and enum
values of the classes in ROOTS and their ancestors), ``util <name>`` (top-level functions and classes of
``slicer.util``) and ``python <module>.<name>`` (names of the Slicer Python packages the module imports).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

#: The classes AllStageSeg reaches (their ancestors are added); a class the module starts to use goes here.
ROOTS = (
    "vtkMRMLScene", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLScalarVolumeDisplayNode",
    "vtkMRMLLabelMapVolumeDisplayNode", "vtkMRMLVolumeArchetypeStorageNode", "vtkMRMLColorTableNode",
    "vtkMRMLColorTableStorageNode", "vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode",
    "vtkMRMLSubjectHierarchyNode", "vtkMRMLScriptedModuleNode", "vtkMRMLLinearTransformNode",
    "vtkMRMLColorLogic", "vtkSlicerSegmentationsModuleLogic", "vtkSegmentation", "vtkSegment",
    "vtkImageData", "vtkPointData", "vtkMatrix4x4", "vtkStringArray", "vtkCommand", "vtkGeneralTransform",
)
#: Slicer Python files whose top-level names are listed as ``python <module>.<name>``.
PYTHON_PACKAGES = {
    "slicer.parameterNodeWrapper": "Base/Python/slicer/parameterNodeWrapper/",
    "slicer.ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
}
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_CLASS = re.compile(r"\bclass\s+(?:\w+\s+)*?(vtk\w+)\s*(?::\s*public\s+(vtk\w+)[^{;]*)?\{")
_CALLED = re.compile(r"\b([A-Z]\w*)\s*\(")
_ACCESSOR_MACRO = re.compile(r"\bvtk(Get|Set)\w*Macro\s*\(\s*(\w+)")
_BOOLEAN_MACRO = re.compile(r"\bvtkBooleanMacro\s*\(\s*(\w+)")
_EVENT = re.compile(r"\b([A-Z]\w*Event)\b")
_PY_TOP_LEVEL = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", re.M)
#: What ``vtkTypeMacro`` declares in every class.
_TYPE_MACRO = ("IsA", "IsTypeOf", "SafeDownCast", "NewInstance", "GetClassName")


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], check=True, capture_output=True, text=True).stdout


def _headers(repo: str, tag: str) -> dict[str, str]:
    """Header basename without .h -> path in the tree (Libs/ first for Slicer, the shortest path otherwise)."""
    found: dict[str, str] = {}
    paths = _git(repo, "ls-tree", "-r", "--name-only", tag).splitlines()
    for path in sorted(paths, key=lambda p: (not p.startswith("Libs/"), len(p))):
        if path.endswith(".h") and "/Testing/" not in path and "ThirdParty" not in path:
            found.setdefault(path.rsplit("/", 1)[-1][:-2], path)
    return found


def _header_names(text: str, name: str) -> tuple[str | None, set[str]]:
    """(superclass, method-like names) of class ``name`` in a header's ``text``."""
    text = _COMMENTS.sub(" ", text)
    superclass = None
    for match in _CLASS.finditer(text):
        if match.group(1) == name:
            superclass = match.group(2)
    names = set(_CALLED.findall(text)) | set(_EVENT.findall(text)) | set(_TYPE_MACRO)
    names |= {kind + attribute for kind, attribute in _ACCESSOR_MACRO.findall(text)}
    names |= {attribute + suffix for attribute in _BOOLEAN_MACRO.findall(text) for suffix in ("On", "Off")}
    return superclass, names


def _class_closure(sources: list[tuple[str, str, dict[str, str]]]) -> tuple[dict[str, str], set[str]]:
    """Walk ROOTS and their superclasses through the headers; (class -> superclass or '-', method names)."""
    classes: dict[str, str] = {}
    methods: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in classes:
            continue
        source = next(((repo, tag, headers[name]) for repo, tag, headers in sources if name in headers), None)
        if source is None:
            raise SystemExit(f"no header {name}.h in the given trees")
        superclass, names = _header_names(_git(source[0], "show", f"{source[1]}:{source[2]}"), name)
        classes[name] = superclass or "-"
        methods |= names
        if superclass:
            todo.append(superclass)
    return classes, methods


def _python_names(repo: str, tag: str, path: str) -> set[str]:
    paths = [p for p in _git(repo, "ls-tree", "-r", "--name-only", tag, path).splitlines() if p.endswith(".py")]
    names: set[str] = set()
    for file in paths:
        for function, variable in _PY_TOP_LEVEL.findall(_git(repo, "show", f"{tag}:{file}")):
            names.add(function or variable)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slicer-git", required=True, help="a Slicer git directory (bare or .git)")
    parser.add_argument("--slicer-tag", required=True)
    parser.add_argument("--vtk-git", required=True, help="a VTK git directory")
    parser.add_argument("--vtk-tag", required=True)
    args = parser.parse_args(argv)
    sources = [(args.slicer_git, args.slicer_tag, _headers(args.slicer_git, args.slicer_tag)),
               (args.vtk_git, args.vtk_tag, _headers(args.vtk_git, args.vtk_tag))]
    classes, methods = _class_closure(sources)
    lines = [f"# Slicer {args.slicer_tag} (VTK {args.vtk_tag}): API names for the classes AllStageSeg uses.",
             "# Made by: python AllStageSeg/Testing/SlicerAPI/extract_api.py --slicer-git SLICER_REPO "
             f"--slicer-tag {args.slicer_tag} --vtk-git VTK_REPO --vtk-tag {args.vtk_tag}"]
    lines += [f"class {name} {superclass}" for name, superclass in sorted(classes.items())]
    lines += [f"method {name}" for name in sorted(methods)]
    util = _python_names(args.slicer_git, args.slicer_tag, "Base/Python/slicer/util.py")
    lines += [f"util {name}" for name in sorted(util)]
    for module, path in PYTHON_PACKAGES.items():
        lines += [f"python {module}.{name}" for name in sorted(_python_names(args.slicer_git, args.slicer_tag, path))]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
