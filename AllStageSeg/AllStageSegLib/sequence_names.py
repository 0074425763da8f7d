"""Guess which MRI sequence a volume holds from its name, to pre-fill the module's input selectors."""

from __future__ import annotations

import re

from AllStageTraining.constants import MODALITIES

# Names of nodes that are results or masks, never inputs (checked first).
_NOT_AN_INPUT = re.compile(r"synth|(?<![a-z])(seg|segmentation|label|labels|mask|prob)(?![a-z])")
# The letters "t1"/"t2" standing alone (not inside another word or number).
_T1 = r"(?<![a-z0-9])t1"
_T2 = r"(?<![a-z0-9])t2"
_FLAIR = re.compile(r"flair|" + _T2 + r"f(?![a-z0-9])|(?<![a-z])fla(?![a-z])|dark fluid")
# T1 written together with a contrast marker: t1ce, t1c, t1gd, t1wce, t1 gad, t1+c ...
_T1CE_JOINED = re.compile(_T1 + r"(w)? ?(ce|c|gd|gad|km|wce)(?![a-z0-9])")
_CONTRAST_WORD = re.compile(r"(?<![a-z])(post|contrast|gad\w*|gd|enhanc\w*|ce|kontrast)(?![a-z])|\+")
_T1_PLAIN = re.compile(_T1 + r"(w|n|weighted)?(?![a-z0-9])")
_T2_PLAIN = re.compile(_T2 + r"(w|weighted)?(?![a-z0-9])")


def _normalize(name: str) -> str:
    """Lower case, with ``_ - . /`` and runs of white space turned into single spaces."""
    return re.sub(r"[\s_\-./]+", " ", name.lower()).strip()


def guess_modality(name: str) -> str | None:
    """The sequence (a name from MODALITIES) that a volume called ``name`` most likely holds, or None.

    Understands BraTS 2018-2021 (``_flair _t1ce _t1 _t2``), BraTS 2023 (``-t2f -t1c -t1n -t2w``) and
    everyday DICOM series names ("T1 post contrast", "T2 FLAIR", "T1-weighted", "t1+c").
    Names of segmentations, masks and synthesized volumes give None.
    """
    text = _normalize(name)
    if not text or _NOT_AN_INPUT.search(text):
        return None
    if _FLAIR.search(text):
        return "flair"
    if _T1CE_JOINED.search(text):
        return "t1ce"
    if re.search(_T1 + r"(?![0-9])", text) and _CONTRAST_WORD.search(text):
        return "t1ce"
    if _T1_PLAIN.search(text):
        return "t1"
    if _T2_PLAIN.search(text):
        return "t2"
    return None


def assign_inputs(names: dict[str, str], already: dict[str, str | None] | None = None) -> dict[str, str]:
    """Pick a volume for each sequence that has none yet.

    ``names`` maps a key (a node ID, say) to the volume's name, in the order the volumes should be tried;
    ``already`` maps sequences to the keys the user has chosen (None = not chosen). Returns the new choices
    only: sequence -> key, at most one key per sequence and one sequence per key.
    """
    already = dict(already or {})
    taken = {key for key in already.values() if key}
    chosen: dict[str, str] = {}
    for key, name in names.items():
        if key in taken:
            continue
        modality = guess_modality(name)
        if modality is None or already.get(modality) or modality in chosen:
            continue
        chosen[modality] = key
        taken.add(key)
    return {m: chosen[m] for m in MODALITIES if m in chosen}
