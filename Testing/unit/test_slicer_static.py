"""Static checks of the Slicer module (no Slicer needed): widget names exist in the .ui, every module file is
listed in CMake, only AllStageSeg.py imports the GUI toolkits, and the extension metadata is complete."""

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "AllStageSeg"
GUI_MODULES = {"qt", "ctk", "slicer.ScriptedLoadableModule"}


def _ui_widget_names() -> set[str]:
    tree = ElementTree.parse(MODULE / "Resources" / "UI" / "AllStageSeg.ui")
    return {w.get("name") for w in tree.iter("widget")}


def test_every_widget_the_module_uses_exists_in_the_ui():
    source = (MODULE / "AllStageSeg.py").read_text()
    used = set(re.findall(r"\bui\.(\w+)", source))
    assert used, "the module uses no widgets?"
    missing = used - _ui_widget_names()
    assert not missing, f"AllStageSeg.py uses widgets that AllStageSeg.ui does not define: {sorted(missing)}"


def test_parameter_names_in_the_ui_are_fields_of_the_parameter_node():
    tree = ElementTree.parse(MODULE / "Resources" / "UI" / "AllStageSeg.ui")
    bound = {p.find("string").text for p in tree.iter("property") if p.get("name") == "SlicerParameterName"}
    module = ast.parse((MODULE / "AllStageSeg.py").read_text())
    wrapper = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "AllStageSegParameterNode")
    fields = {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}
    assert bound and bound <= fields, sorted(bound - fields)


def test_every_module_file_is_listed_in_cmake():
    cmake = (MODULE / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "AllStageSeg")
    listed = set(re.findall(r"[\w./]+\.(?:py|ui|png|svg)", cmake))
    subdirectories = set(re.findall(r"add_subdirectory\(([\w/]+)\)", cmake))
    unlisted = []
    for path in MODULE.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(MODULE).as_posix()
        if path.name == "CMakeLists.txt":
            if path.parent != MODULE and path.parent.relative_to(MODULE).as_posix() not in subdirectories:
                unlisted.append(relative)
        elif relative not in listed:
            unlisted.append(relative)
    assert not unlisted, f"files of AllStageSeg/ missing from AllStageSeg/CMakeLists.txt: {unlisted}"
    for name in listed:
        assert (MODULE / name).is_file(), f"CMakeLists.txt lists {name}, which does not exist"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_module_file_imports_qt_ctk_or_scripted_module():
    offenders = {}
    for path in MODULE.rglob("*.py"):
        gui = {name for name in _imports(path) if name in GUI_MODULES or name.split(".")[0] in {"qt", "ctk"}}
        if gui and path != MODULE / "AllStageSeg.py":
            offenders[path.relative_to(ROOT).as_posix()] = sorted(gui)
    assert not offenders, offenders
    assert {"qt", "slicer.ScriptedLoadableModule"} <= _imports(MODULE / "AllStageSeg.py")


def test_the_library_never_imports_torch():
    for path in (MODULE / "AllStageSegLib").glob("*.py"):
        assert not {name.split(".")[0] for name in _imports(path)} & {"torch", "monai"}, path.name


def test_module_file_compiles_and_declares_module_widget_logic_test():
    tree = ast.parse((MODULE / "AllStageSeg.py").read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"AllStageSeg", "AllStageSegWidget", "AllStageSegLogic", "AllStageSegTest"} <= classes
    source = (MODULE / "AllStageSeg.py").read_text()
    for phrase in ("NCR", "ED", "ET", "synthetic data only", "not for clinical use", '"Segmentation"'):
        assert phrase in source


def test_extension_cmake_has_the_metadata():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{key} \"[^\"]+\"\)", cmake), key
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in cmake and 'set(EXTENSION_DEPENDS "PyTorch")' in cmake
    assert "find_package(Slicer REQUIRED)" in cmake and "add_subdirectory(AllStageSeg)" in cmake
    module_cmake = (MODULE / "CMakeLists.txt").read_text()
    assert "AllStageTraining" in module_cmake and "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in module_cmake
    assert "slicer_add_python_unittest" in (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text()


def test_icons_are_128_pixel_pngs():
    from PIL import Image

    for path in (MODULE / "Resources" / "Icons" / "AllStageSeg.png", ROOT / "Resources" / "Icons" / "AllStageSeg.png"):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (128, 128)
