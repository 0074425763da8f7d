"""Which volume goes into each input selector: filled from volume names, never over the user's choice.

The selectors fill themselves when the module opens and when volumes are added, but a choice the user made
(a volume, or "not available") stays: :class:`InputChoices` remembers, in the module's parameter node (a
``vtkMRMLScriptedModuleNode``, so it survives leaving the module and is saved with the scene), what the
automatic fill last put into each selector and which selectors the user has set since.
"""

from __future__ import annotations

from AllStageTraining.constants import MODALITIES

from .mrml_io import SYNTHESIZED_ATTRIBUTE
from .sequence_names import assign_inputs

#: Parameter-node parameters: "flair=<node ID>,t1=" (what the fill wrote) and "t1ce,t2" (set by the user).
FILLED_PARAMETER = "AllStageSeg.InputsFilled"
USER_PARAMETER = "AllStageSeg.InputsSetByUser"
#: Stands for "not available" among the choices handed to ``assign_inputs``, so that it fills nothing there.
_KEPT_EMPTY = "(not available)"


def candidate_volumes(scene) -> dict[str, str]:
    """Node ID -> name of the scalar volumes that could be inputs (no label maps, no synthesized volumes)."""
    volumes = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute(SYNTHESIZED_ATTRIBUTE):
            continue
        volumes[node.GetID()] = node.GetName()
    return volumes


class InputChoices:
    """The fill-or-keep rule for the four input selectors, with its memory in ``parameter_node``.

    ``current`` arguments map each sequence (MODALITIES) to the chosen node ID, or None for "not available".
    """

    def __init__(self, parameter_node):
        self.parameter_node = parameter_node

    def _filled(self) -> dict[str, str | None]:
        text = self.parameter_node.GetParameter(FILLED_PARAMETER) or ""
        pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
        return {m: (key or None) for m, key in pairs if m in MODALITIES}

    def set_by_user(self) -> set[str]:
        """The sequences whose selector the user has set (to a volume or to "not available")."""
        text = self.parameter_node.GetParameter(USER_PARAMETER) or ""
        return {m for m in text.split(",") if m in MODALITIES}

    def _save(self, filled: dict[str, str | None], by_user: set[str]) -> None:
        filled_text = ",".join(f"{m}={filled[m] or ''}" for m in MODALITIES if m in filled)
        user_text = ",".join(m for m in MODALITIES if m in by_user)
        if (self.parameter_node.GetParameter(FILLED_PARAMETER) or "") != filled_text:
            self.parameter_node.SetParameter(FILLED_PARAMETER, filled_text)
        if (self.parameter_node.GetParameter(USER_PARAMETER) or "") != user_text:
            self.parameter_node.SetParameter(USER_PARAMETER, user_text)

    def observe(self, current: dict[str, str | None]) -> None:
        """Note which selectors differ from what the fill left there: the user has set those."""
        filled, by_user = self._filled(), self.set_by_user()
        changed = {m for m in MODALITIES if m not in by_user and (current.get(m) or None) != filled.get(m)}
        if changed:
            self._save(filled, by_user | changed)

    def fill(self, volumes: dict[str, str], current: dict[str, str | None], apply, *,
             also_cleared: bool = False) -> dict[str, str]:
        """Choose volumes by name for the empty selectors that the user has not set; returns the choices
        (sequence -> node ID) after ``apply(choices)`` has put them into the selectors.

        ``volumes``: node ID -> name (see :func:`candidate_volumes`). ``also_cleared``: fill the selectors the
        user set to "not available" too (the "Fill from volume names" button). The memory and the selectors
        change inside one modification of the parameter node, so its observers (which call :meth:`observe`)
        never see the one without the other and take the fill for the user's doing.
        """
        modifying = self.parameter_node.StartModify()
        try:
            self.observe(current)
            filled, by_user = self._filled(), self.set_by_user()
            kept = {m: current.get(m) or None for m in MODALITIES}
            if not also_cleared:  # a selector the user emptied counts as taken
                kept.update({m: _KEPT_EMPTY for m in by_user if not kept[m]})
            chosen = assign_inputs(volumes, kept)
            if chosen:
                filled.update(chosen)
                self._save(filled, by_user - set(chosen))
                apply(chosen)
        finally:
            self.parameter_node.EndModify(modifying)
        return chosen
