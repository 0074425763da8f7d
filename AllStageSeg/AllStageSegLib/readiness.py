"""Whether a segmentation can start, and what the status area tells the user.

Three gates, each with one sentence that says what to do: the Segment button (inputs, reference, model),
the running Slicer release and the Python packages (checked when Segment is pressed), and the self-test
(which skips inference, saying why, where a build machine has no torch or no sample case).
"""

from __future__ import annotations

from pathlib import Path

from AllStageTraining.constants import MODALITIES, MODALITY_DISPLAY

from .dependencies import Problem, describe_problems
from .slicer_release import slicer_version_blocker

SEGMENT_TOOLTIP = "Segment the tumour from the chosen sequences and synthesize the missing ones."


def segment_blocker(inputs: dict[str, str | None], bundle: str | Path | None, *, running: bool = False,
                    reference: str | None = None) -> str:
    """Why Segment cannot start, as one sentence for a tooltip, or "" when it can.

    ``inputs`` maps sequence names (MODALITIES) to the chosen volume's ID (None or "" = not chosen);
    ``bundle`` is the model bundle path (a .zip file or a folder); ``reference`` the sequence chosen as the
    output grid (None or "auto": the finest input).
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
    if reference and reference != "auto" and reference not in chosen:
        return (f"The output grid is set to {MODALITY_DISPLAY.get(reference, reference)}, which is not among the "
                f"inputs: choose the finest grid or an input sequence.")
    if not bundle:
        return "Choose a model: the shipped demo model or a model bundle file (.zip)."
    if not Path(bundle).exists():
        return f"The model bundle {bundle} does not exist: choose another model."
    return ""


def run_blocker(slicer_version: tuple[int, int], problems: list[Problem]) -> str:
    """Why no segmentation can run in this Slicer (its release, its Python packages), or ""."""
    too_old = slicer_version_blocker(*slicer_version)
    if too_old:
        return too_old
    if problems:
        return (f"The segmentation process cannot run: {describe_problems(problems)}. Press Segment in the "
                f"AllStageSeg module to install them, or use the PyTorch Utils module for torch.")
    return ""


def self_test_skip_reason(slicer_version: tuple[int, int], problems: list[Problem], sample_files: dict,
                          demo_bundle: Path) -> str:
    """Why the self-test cannot run inference here (stated, then skipped), or "" when it can."""
    blocker = run_blocker(slicer_version, problems)
    if blocker:
        return "Inference skipped: " + blocker
    missing = [m for m in MODALITIES if m not in sample_files]
    if missing or not Path(demo_bundle).exists():
        return f"Inference skipped: the sample case ({', '.join(missing) or 'complete'}) or the demo model " \
               f"({demo_bundle}) is not shipped with this build."
    return ""


def status_text(headline: str, notes=(), warnings=()) -> str:
    """The status area: a headline, then what the user should know, then the warnings (each marked)."""
    lines = [headline] + [note for note in notes if note]
    for warning in filter(None, warnings):
        lines.append("Warning: " + (warning[len("warning:"):].strip() if warning.lower().startswith("warning:")
                                    else warning))
    return "\n".join(lines)
