"""Static checks of the Slicer module (no Slicer needed): widget names exist in the .ui, every module file is
listed in CMake, only AllStageSeg.py imports the GUI toolkits, the files the module loads parse in the Python
of older Slicer releases (so that they can say which release is needed), and the extension's metadata,
licence, screenshot and ExtensionsIndex entry are complete and agree with each other."""

import ast
import json
import re
import sys
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
    cmake = re.sub(r"#[^\n]*", "", (MODULE / "CMakeLists.txt").read_text()).replace("${MODULE_NAME}", "AllStageSeg")
    listed = set(re.findall(r"[\w./]+\.(?:py|ui|png|svg)", cmake))
    subdirectories = set(re.findall(r"add_subdirectory\(([\w/]+)\)", cmake))
    unlisted = []
    for path in MODULE.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(MODULE).as_posix()
        if relative.startswith("Testing/") and path.name != "CMakeLists.txt":
            continue  # test data and tools (the Slicer API lists), not installed
        if path.name == "CMakeLists.txt":
            if path.parent != MODULE and path.parent.relative_to(MODULE).as_posix() not in subdirectories:
                unlisted.append(relative)
        elif relative not in listed:
            unlisted.append(relative)
    assert not unlisted, f"files of AllStageSeg/ missing from AllStageSeg/CMakeLists.txt: {unlisted}"
    for name in listed:  # the module's files, and the AllStageTraining files it installs beside itself
        base = ROOT if name.startswith("AllStageTraining/") else MODULE
        assert (base / name).is_file(), f"CMakeLists.txt lists {name}, which does not exist"


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


def _cmake_value(key: str) -> str:
    return re.search(rf'set\(EXTENSION_{key} "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)


def test_extension_cmake_has_the_metadata():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert _cmake_value(key), key
    assert _cmake_value("CATEGORY") == "Segmentation" and _cmake_value("DEPENDS") == "PyTorch"
    assert "add_subdirectory(AllStageSeg)" in cmake
    module_cmake = (MODULE / "CMakeLists.txt").read_text()
    assert "_inference_files" in module_cmake and "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in module_cmake
    assert "slicer_add_python_unittest" in (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text()


def test_the_minimum_slicer_release_is_declared_where_users_and_builders_look():
    sys.path.insert(0, str(MODULE))
    from AllStageSegLib.slicer_release import MINIMUM_SLICER, minimum_slicer_text

    minimum = minimum_slicer_text()
    assert minimum == "{}.{}".format(*MINIMUM_SLICER)
    assert f"find_package(Slicer {minimum} REQUIRED)" in (ROOT / "CMakeLists.txt").read_text()
    assert f"Needs 3D Slicer {minimum} or newer" in _cmake_value("DESCRIPTION")
    readme = (ROOT / "README.md").read_text()
    assert f"3D Slicer {minimum} or newer" in readme
    assert "minimum_slicer_text()" in (MODULE / "AllStageSeg.py").read_text()  # the module's help says it too


def test_contributors_are_written_as_the_extensions_index_expects():
    module = ast.parse((MODULE / "AllStageSeg.py").read_text())
    contributors = next(ast.literal_eval(n.value) for n in module.body
                        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONTRIBUTORS")
    assert ", ".join(contributors) == _cmake_value("CONTRIBUTORS")
    for contributor in contributors:
        assert re.fullmatch(r"[^(),]+ \([^(),]+\)", contributor), f"not 'Name (Affiliation)': {contributor}"


def test_the_extensions_index_entry_follows_the_catalog_schema():
    entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "AllStageSeg.json").read_text())
    # the properties of Slicer's Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json (no others allowed)
    schema_properties = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                         "build_subdirectory", "enabled", "tier"}
    assert set(entry) <= schema_properties and {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["build_dependencies"] == ["PyTorch"] == _cmake_value("DEPENDS").split(";")
    assert entry["category"] == _cmake_value("CATEGORY")
    repository = re.match(r"https://github.com/([^/#]+/[^/#]+)", _cmake_value("HOMEPAGE")).group(1)
    assert entry["scm_url"] == f"https://github.com/{repository}.git" and 1 <= entry["tier"] <= 5


def test_the_licence_is_the_apache_2_text_that_pyproject_names():
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text.splitlines()[1] and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_icon_and_screenshot_are_where_cmake_says():
    from PIL import Image

    for key in ("ICONURL", "SCREENSHOTURLS"):
        url = _cmake_value(key)
        prefix = "https://raw.githubusercontent.com/AllStageSeg/AllStageSeg/main/"
        assert url.startswith(prefix), url
        path = ROOT / url[len(prefix):]
        assert path.is_file() and path.stat().st_size < 300_000, path
        with Image.open(path) as image:
            assert image.format == "PNG"


def test_what_the_module_loads_parses_in_the_python_of_older_slicer_releases():
    """Slicer 5.6 and 5.8 ship Python 3.9: the module must load there to say that it needs a newer Slicer."""
    files = [MODULE / "AllStageSeg.py", *(MODULE / "AllStageSegLib").glob("*.py"),
             ROOT / "AllStageTraining" / "__init__.py", ROOT / "AllStageTraining" / "constants.py"]
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    for path in (MODULE / "AllStageSegLib").glob("*.py"):  # annotations such as `str | None` stay unevaluated
        source = path.read_text()
        if re.search(r"(->|:)[^\n=]*\|", source):
            assert "from __future__ import annotations" in source, path.name


def test_icons_are_128_pixel_pngs():
    from PIL import Image

    for path in (MODULE / "Resources" / "Icons" / "AllStageSeg.png", ROOT / "Resources" / "Icons" / "AllStageSeg.png"):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (128, 128)
