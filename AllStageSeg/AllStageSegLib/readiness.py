"""When the Segment button may be pressed, and the tooltip that says why not."""

from __future__ import annotations

from pathlib import Path

from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY

SEGMENT_TOOLTIP = "Segment the tumour from the chosen sequences and synthesize the missing ones."


def segment_blocker(inputs: dict[str, str | None], bundle: str | Path | None, *, running: bool = False) -> str:
    """Why Segment cannot start, as one sentence for a tooltip, or "" when it can.

    ``inputs`` maps sequence names (MODALITIES) to the chosen volume's ID (None or "" = not chosen);
    ``bundle`` is the model bundle path (a .zip file or a folder).
    """
    if running:
        return ""  # the button is Cancel while a run is in progress
    chosen = {m: key for m, key in inputs.items() if key}
    if not chosen:
        names = ", ".join(MODALITY_DISPLAY[m] for m in MODALITIES)
        return f"Select at least one input sequence ({names})."
    by_key: dict[str, list[str]] = {}
    for modality in MODALITIES:
        if modality in chosen:
            by_key.setdefault(chosen[modality], []).append(MODALITY_DISPLAY[modality])
    for sequences in by_key.values():
        if len(sequences) > 1:
            return f"The same volume is selected for {' and '.join(sequences)}: choose one volume per sequence."
    if not bundle:
        return "Choose a model: the shipped demo model or a model bundle file (.zip)."
    if not Path(bundle).exists():
        return f"The model bundle {bundle} does not exist: choose another model."
    return ""
