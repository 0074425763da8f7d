"""The one place for the project's fixed conventions.

Modality (sequence) order, the 15 availability scenarios in the literature's row order, label values,
evaluated regions and the scenario prompt template. Everything else imports these names.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Channel order of every 4-channel tensor and every availability mask in the project.
MODALITIES: tuple[str, ...] = ("flair", "t1ce", "t1", "t2")
#: Display names, in MODALITIES order.
MODALITY_DISPLAY: dict[str, str] = {"flair": "FLAIR", "t1ce": "T1ce", "t1": "T1", "t2": "T2"}
#: One-letter codes used in scenario short names (F=flair, C=t1ce, 1=t1, 2=t2).
MODALITY_CODE: dict[str, str] = {"flair": "F", "t1ce": "C", "t1": "1", "t2": "2"}
NUM_MODALITIES = len(MODALITIES)

#: BraTS label values (2018-2021 convention). BraTS 2023+ writes ET as 3; the data layer maps 3 -> 4.
LABEL_BACKGROUND = 0
LABEL_NCR = 1  # necrotic / non-enhancing tumour core
LABEL_ED = 2  # peritumoral edema
LABEL_ET = 4  # enhancing tumour
LABEL_ET_BRATS2023 = 3
LABEL_NAMES: dict[int, str] = {LABEL_NCR: "NCR", LABEL_ED: "ED", LABEL_ET: "ET"}
VALID_LABEL_SETS: tuple[frozenset[int], ...] = (frozenset({0, 1, 2, 4}), frozenset({0, 1, 2, 3}))

#: Evaluated regions, in output-channel order of the segmenter: each is a set of BraTS label values.
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
REGION_LABELS: dict[str, frozenset[int]] = {
    "WT": frozenset({LABEL_NCR, LABEL_ED, LABEL_ET}),
    "TC": frozenset({LABEL_NCR, LABEL_ET}),
    "ET": frozenset({LABEL_ET}),
}

#: Preprocessed intensities are z-scores inside the brain clipped to [-CLIP_Z, CLIP_Z], 0 outside the brain and
#: in absent channels; the MAE's completions are held to the same convention.
CLIP_Z = 5.0

#: ET components smaller than this many mm^3 become NCR in the optional BraTS post-processing.
ET_POSTPROCESS_MIN_MM3 = 500.0


@dataclass(frozen=True)
class Scenario:
    """One availability scenario: which of the four sequences are present."""

    index: int  # row in the literature's table order, 0..14
    short: str  # e.g. "FC12", "C2"
    mask: tuple[bool, ...]  # availability in MODALITIES order

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, present in zip(MODALITIES, self.mask) if present)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(m for m, present in zip(MODALITIES, self.mask) if not present)

    @property
    def display(self) -> str:
        """Human-readable name, e.g. "FLAIR + T1ce"."""
        return " + ".join(MODALITY_DISPLAY[m] for m in self.modalities)

    @property
    def prompt(self) -> str:
        return scenario_prompt(self.modalities)


def _mask_from_short(short: str) -> tuple[bool, ...]:
    codes = {c: m for m, c in MODALITY_CODE.items()}
    present = {codes[c] for c in short}
    return tuple(m in present for m in MODALITIES)


#: Short names in the row order of the literature's tables (RFNet, mmFormer, M3AE, GSS).
SCENARIO_SHORT_NAMES: tuple[str, ...] = (
    "2", "C", "1", "F", "C2", "C1", "F1", "12", "F2", "FC", "FC1", "F12", "FC2", "C12", "FC12",
)

PROMPT_TEMPLATE = "A brain MRI scan with {available} available; {missing} missing."


def _join_names(names: list[str]) -> str:
    if not names:
        return "none"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def scenario_prompt(available: tuple[str, ...] | list[str]) -> str:
    """The text prompt for a set of available sequences, from PROMPT_TEMPLATE."""
    present = [MODALITY_DISPLAY[m] for m in MODALITIES if m in available]
    absent = [MODALITY_DISPLAY[m] for m in MODALITIES if m not in available]
    return PROMPT_TEMPLATE.format(available=_join_names(present), missing=_join_names(absent))


SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(index=i, short=s, mask=_mask_from_short(s)) for i, s in enumerate(SCENARIO_SHORT_NAMES)
)
FULL_SCENARIO: Scenario = SCENARIOS[-1]


def scenario_from_mask(mask) -> Scenario:
    """The scenario whose availability equals ``mask`` (4 booleans in MODALITIES order)."""
    key = tuple(bool(v) for v in mask)
    for scenario in SCENARIOS:
        if scenario.mask == key:
            return scenario
    raise ValueError(f"no scenario for availability {key}: at least one sequence must be present")


def scenario_from_modalities(modalities) -> Scenario:
    """The scenario whose present sequences are exactly ``modalities`` (names from MODALITIES)."""
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown sequence name(s) {sorted(unknown)}; expected names from {MODALITIES}")
    return scenario_from_mask(tuple(m in modalities for m in MODALITIES))


def scenario_by_short(short: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.short == short:
            return scenario
    raise ValueError(f"unknown scenario {short!r}; expected one of {SCENARIO_SHORT_NAMES}")
