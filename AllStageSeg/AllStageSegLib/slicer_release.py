"""Which 3D Slicer release the module needs, and the message for an older one.

Loading the results uses APIs that Slicer added in version 5.10 (CSV colour tables with terminology,
``vtkMRMLColorNode.GetColorDefined`` and ``GetTerminologyAsString``, ``vtkSegment.SetTerminology``); the
static check ``Testing/unit/test_slicer_api.py`` holds the module to the names that release has. This file
must stay importable by the Python of older Slicer releases (3.9), so that they can show the message.
"""

from __future__ import annotations

#: The oldest Slicer release (major, minor) the module runs on.
MINIMUM_SLICER = (5, 10)


def minimum_slicer_text() -> str:
    return "{}.{}".format(*MINIMUM_SLICER)


def slicer_version_blocker(major: int, minor: int) -> str:
    """Why the module cannot run in Slicer ``major.minor``, as one message, or "" when it can."""
    if (major, minor) >= MINIMUM_SLICER:
        return ""
    return (f"AllStageSeg needs 3D Slicer {minimum_slicer_text()} or newer; this is Slicer {major}.{minor}, "
            f"which cannot load the segmentation it would compute. Install a current Slicer release from "
            f"https://download.slicer.org and the extension again.")
