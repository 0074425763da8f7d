"""The module calls only Slicer and VTK API names that the minimum Slicer release it declares has.

The names each release has come from Slicer's own sources at the release tag (and the VTK its superbuild
builds): ``AllStageSeg/Testing/SlicerAPI/slicer-v<minimum>.0.txt``, made by ``extract_api.py`` in that folder
(the command is in the file's header). The check reads AllStageSeg.py and AllStageSegLib with ``ast`` and
collects what they reach of Slicer: method calls and event names in VTK style (``node.GetColorDefined(...)``,
``scene.NodeAddedEvent``), ``slicer.vtkX`` classes and class names given as strings, ``slicer.util``
functions and names imported from Slicer's Python packages. Each must be in the list. A name that is not
Slicer's (Python's, SimpleITK's, Qt's) is recognized by what it is called on (RECEIVERS_NOT_SLICER).
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "AllStageSeg"
API_FOLDER = MODULE / "Testing" / "SlicerAPI"
sys.path.insert(0, str(MODULE))

from AllStageSegLib.slicer_release import MINIMUM_SLICER  # noqa: E402

#: Names (modules, objects) whose attributes are not Slicer/VTK API: Python's standard library, numpy,
#: SimpleITK, Qt, the module's own library, and the Slicer modules whose API is their own (Sample Data,
#: the PyTorch extension's PyTorchUtils).
RECEIVERS_NOT_SLICER = {
    "subprocess", "threading", "queue", "csv", "signal", "os", "sys", "time", "json", "zipfile", "importlib",
    "np", "numpy_support", "sitk", "qt", "ctk", "SampleData", "PyTorchUtils", "logging", "shutil", "tempfile",
}
#: Attributes of ``slicer`` that are the running application's objects (their methods are checked as methods).
SLICER_OBJECTS = {"app", "mrmlScene", "modules", "util"}


def module_files() -> list[Path]:
    return [MODULE / "AllStageSeg.py", *sorted((MODULE / "AllStageSegLib").glob("*.py"))]


def read_api(path: Path) -> dict[str, set[str]]:
    """kind -> names from an API list file (``class``, ``method``, ``util``, ``python``)."""
    api: dict[str, set[str]] = {"class": set(), "method": set(), "util": set(), "python": set()}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            kind, name = line.split()[:2]
            api[kind].add(name)
    return api


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _is_vtk_style(name: str) -> bool:
    """``GetColorDefined``, ``IsA``, ``ModifiedEvent``; not ``ALL_CAPS`` constants nor ``snake_case``."""
    return name[0].isupper() and any(c.islower() for c in name) and "_" not in name


def slicer_names_used(source: str, own_modules: set[str]) -> set[tuple[str, str, int]]:
    """(kind, name, line) of every Slicer/VTK API name that ``source`` reaches."""
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slicer":
            for alias in node.names:
                kind = {"slicer": "class", "slicer.util": "util"}.get(node.module, "python")
                used.add((kind, alias.name if kind != "python" else f"{node.module}.{alias.name}", node.lineno))
        elif isinstance(node, ast.Attribute):
            dotted, root = _dotted(node), _root_name(node)
            if dotted.startswith("slicer.util."):
                used.add(("util", node.attr, node.lineno))
            elif dotted == f"slicer.{node.attr}" and node.attr.startswith("vtk"):
                used.add(("class", node.attr, node.lineno))
            elif root in RECEIVERS_NOT_SLICER or root in own_modules or dotted.startswith("slicer.util"):
                continue
            elif _is_vtk_style(node.attr) and (id(node) in called or node.attr.endswith("Event")):
                used.add(("method", node.attr, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("vtkMRML") \
                and node.value.isidentifier():
            used.add(("class", node.value, node.lineno))
    return used


def unknown_names(api: dict[str, set[str]]) -> list[str]:
    """"file:line kind name" for each name the module uses that ``api`` lacks."""
    own = {path.stem for path in (MODULE / "AllStageSegLib").glob("*.py")} | {"AllStageSegLib"}
    unknown = []
    for path in module_files():
        own_classes = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
        for kind, name, line in sorted(slicer_names_used(path.read_text(), own | own_classes)):
            if name not in api[kind]:
                unknown.append(f"{path.relative_to(ROOT)}:{line} {kind} {name}")
    return unknown


def test_every_slicer_name_the_module_uses_is_in_the_minimum_release():
    list_file = API_FOLDER / "slicer-v{}.{}.0.txt".format(*MINIMUM_SLICER)
    assert list_file.is_file(), f"no API list for the declared minimum Slicer {MINIMUM_SLICER}: make {list_file.name}"
    unknown = unknown_names(read_api(list_file))
    assert not unknown, (f"the module uses names that Slicer {MINIMUM_SLICER} lacks (or that are not Slicer's: then "
                         f"add the receiver to RECEIVERS_NOT_SLICER; or of a class not yet listed: add it to "
                         f"extract_api.ROOTS and regenerate):\n" + "\n".join(unknown))


def test_the_check_sees_the_module_use_what_slicer_5_8_lacks():
    """With the names that 5.10 added since 5.8.1 taken away, the check flags the module: the minimum is real."""
    api = read_api(API_FOLDER / "slicer-v{}.{}.0.txt".format(*MINIMUM_SLICER))
    added = read_api(API_FOLDER / "added-after-v5.8.1.txt")
    older = {kind: names - added[kind] for kind, names in api.items()}
    flagged = {line.split()[-1] for line in unknown_names(older)}
    assert flagged, "nothing 5.10-only is used any more: the minimum Slicer could go down to 5.8"
    assert flagged <= added["method"] | added["util"] | added["python"] | added["class"]
    assert {"GetColorDefined", "SetTerminology"} <= flagged


def test_the_collector_finds_calls_events_classes_and_utilities():
    source = (
        "import slicer, vtk\nfrom slicer.util import VTKObservationMixin\nfrom slicer import vtkMRMLScalarVolumeNode\n"
        "node = slicer.vtkMRMLColorTableNode()\nnode.GetColorDefined(1)\nscene.AddNewNodeByClass('vtkMRMLFooNode')\n"
        "x = scene.NodeAddedEvent\nslicer.util.getNode('a')\nsubprocess.Popen([])\nimage.SetSpacing\n"
        "run.result.GetName\nmrml_io.SYNTHESIZED_ATTRIBUTE\nresult.segmentation.CreateClosedSurfaceRepresentation()\n")
    found = {(kind, name) for kind, name, _ in slicer_names_used(source, set())}
    assert found == {("util", "VTKObservationMixin"), ("class", "vtkMRMLScalarVolumeNode"),
                     ("class", "vtkMRMLColorTableNode"), ("method", "GetColorDefined"), ("method", "AddNewNodeByClass"),
                     ("class", "vtkMRMLFooNode"), ("method", "NodeAddedEvent"), ("util", "getNode"),
                     ("method", "CreateClosedSurfaceRepresentation")}
