"""The tumour labels as the shipped colour table defines them: names, colours, terminology, label values.

The table (``Resources/ColorTables/AllStageSegTumor.csv``, Slicer's CSV colour-table format with standard
terminology columns) is the one place the module takes segment names and colours from; its label values and
names must match ``AllStageTraining.constants`` (checked by :func:`read_label_definitions`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from AllStageTraining.constants import LABEL_NAMES

from .resources import COLOR_TABLE, resource_path

#: Attribute that marks the module's colour-table node, so one node is shared by every result.
COLOR_TABLE_ATTRIBUTE = "AllStageSeg.ColorTable"
COLOR_TABLE_NODE_NAME = "AllStageSeg tumour labels"


@dataclass(frozen=True)
class LabelDefinition:
    """One tumour label: BraTS value, segment name, colour (r, g, b in 0..1) and terminology codes."""

    value: int
    name: str
    color: tuple[float, float, float]
    category: tuple[str, str, str]  # (coding scheme, code value, code meaning)
    type: tuple[str, str, str]
    region: tuple[str, str, str]


def read_label_definitions(path: Path | None = None) -> list[LabelDefinition]:
    """Parse the colour table CSV; raises ValueError when it disagrees with the project's label constants."""
    path = Path(path) if path is not None else resource_path(COLOR_TABLE)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = []
    for row in rows:
        code = lambda prefix: (row[f"{prefix}_CodingScheme"], row[f"{prefix}_CodeValue"], row[f"{prefix}_CodeMeaning"])  # noqa: E731
        labels.append(LabelDefinition(
            value=int(row["LabelValue"]), name=row["Name"],
            color=tuple(int(row[f"Color_{c}"]) / 255.0 for c in "RGB"),
            category=code("Category"), type=code("Type"), region=code("Region")))
    found = {label.value: label.name for label in labels}
    if found != LABEL_NAMES:
        raise ValueError(f"colour table {path} defines labels {found}; the project's convention is {LABEL_NAMES}")
    return labels


def color_table_node(scene, path: Path | None = None):
    """The module's colour-table node in ``scene``, read from the CSV the first time (then reused)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorTableNode")
        if node.GetAttribute(COLOR_TABLE_ATTRIBUTE) == "1":
            return node
    path = Path(path) if path is not None else resource_path(COLOR_TABLE)
    read_label_definitions(path)  # refuse a table that disagrees with the label convention
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOR_TABLE_NODE_NAME)
    storage = scene.AddNewNodeByClass("vtkMRMLColorTableStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise OSError(f"cannot read the colour table {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.SetAttribute(COLOR_TABLE_ATTRIBUTE, "1")
    return node


def terminology_string(color_node, value: int) -> str:
    """The segment terminology entry for label ``value`` (Slicer's ``~``-separated serialization)."""
    return color_node.GetTerminologyAsString(value)
