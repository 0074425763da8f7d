"""The models the module offers: the shipped demo model and the user's bundles, with what each says of itself.

A bundle's ``bundle.json`` (in the .zip or the folder; see the README's bundle format) is read as JSON only,
never with torch, so the model section can show what a model was trained on, its intended use, its text
encoder, its note and its evaluation before anything runs. The user's list is kept as one JSON string,
which the widget stores in Slicer's settings so that it survives restarts.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

#: The model key of the shipped demo bundle (any other key is a bundle path).
DEMO = "demo"
DEMO_LABEL = "Demo model (synthetic data only, not for clinical use)"
#: The Slicer settings key of the user's bundle list.
SETTINGS_KEY = "AllStageSeg/ModelBundles"


def read_bundle_json(path: str | Path) -> dict:
    """The parsed ``bundle.json`` of a bundle folder or .zip; OSError / ValueError say what is wrong."""
    path = Path(path)
    if path.is_dir():
        text = (path / "bundle.json").read_text(encoding="utf-8")
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "bundle.json" not in archive.namelist():
                raise ValueError(f"{path.name} holds no bundle.json: it is not a model bundle")
            text = archive.read("bundle.json").decode("utf-8")
    else:
        raise ValueError(f"{path} is neither a bundle folder nor a .zip file")
    meta = json.loads(text)
    if not isinstance(meta, dict):
        raise ValueError(f"the bundle.json of {path.name} is not a JSON object")
    return meta


def _trained_on(meta: dict) -> str:
    provenance = meta.get("provenance") or {}
    cases = provenance.get("cases") or {}
    counts = ", ".join(f"{n} {part}" for part, n in cases.items()) if isinstance(cases, dict) else ""
    kind = "synthetic data" if provenance.get("synthetic_data") else (provenance.get("data_root") or "not recorded")
    return f"{kind} ({counts} cases)" if counts else str(kind)


def _text_encoder(meta: dict) -> str:
    encoder = meta.get("text_encoder") or {}
    if not encoder:
        return "not recorded"
    name = encoder.get("model_name", "?")
    if encoder.get("untrained"):
        return f"{name}, UNTRAINED weights (the scenario prompts are fixed random codes)"
    return f"{name}, pretrained {encoder.get('pretrained') or 'weights'}"


def _evaluation(meta: dict) -> str:
    evaluation = (meta.get("provenance") or {}).get("evaluation") or {}
    dice = evaluation.get("mean_dice") or {}
    if not dice:
        return "not recorded"
    regions = ", ".join(f"{region} {value:.2f}" for region, value in dice.items() if isinstance(value, (int, float)))
    where = f" on {evaluation['n_cases']} test cases" if evaluation.get("n_cases") else ""
    scenarios = f", {evaluation['n_scenarios_scored']} scenarios" if evaluation.get("n_scenarios_scored") else ""
    return f"mean Dice {regions}{where}{scenarios}"


def _synthesis(meta: dict) -> str:
    """What the bundle's MAE does with the missing sequences (``has_mae``, ``mae_completes_inputs``; bundles
    written before the latter existed fed their completions to the segmenter)."""
    if not meta.get("has_mae", False):
        return "none (no MAE: the missing sequences are zero for the segmentation)"
    if meta.get("mae_completes_inputs", True):
        return "by the MAE, and the segmentation uses them"
    return "by the MAE, for display only (the segmentation does not use them)"


@dataclass
class BundleInfo:
    """What a bundle says of itself, as short texts for the model section; ``error`` when it is unreadable."""

    path: Path
    method: str = ""
    trained_on: str = ""
    intended_use: str = ""
    text_encoder: str = ""
    note: str = ""
    evaluation: str = ""
    synthesis: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    def lines(self) -> list[str]:
        """"Label: text" lines for display."""
        if self.error:
            return [f"Cannot read this model: {self.error}"]
        return [f"Trained on: {self.trained_on}", f"Intended use: {self.intended_use or 'not recorded'}",
                f"Text encoder: {self.text_encoder}", f"Evaluation: {self.evaluation}",
                f"Method: {self.method or 'not recorded'}", f"Synthesized sequences: {self.synthesis}"] + (
                    [f"Note: {self.note}"] if self.note else [])


def bundle_info(path: str | Path) -> BundleInfo:
    """The :class:`BundleInfo` of a bundle; never raises (an unreadable bundle gets ``error``)."""
    info = BundleInfo(Path(path))
    try:
        meta = read_bundle_json(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        info.error = str(error)
        return info
    info.method = str(meta.get("method", ""))
    info.trained_on = _trained_on(meta)
    info.intended_use = str(meta.get("intended_use", ""))
    info.text_encoder = _text_encoder(meta)
    info.note = str(meta.get("note", ""))
    info.evaluation = _evaluation(meta)
    info.synthesis = _synthesis(meta)
    if (meta.get("provenance") or {}).get("synthetic_data"):
        info.warnings.append("This model was trained on synthetic data only: not for clinical use.")
    if (meta.get("text_encoder") or {}).get("untrained"):
        info.warnings.append("Its scenario prompts were embedded by an UNTRAINED text encoder.")
    return info


class ModelList:
    """The user's model bundles (paths, in the order added), without duplicates."""

    def __init__(self, paths=()):
        self.paths: list[Path] = []
        for path in paths:
            self.add(path)

    def add(self, path: str | Path) -> Path:
        """Add ``path`` (if new); returns it as stored (absolute)."""
        path = Path(path).expanduser().absolute()
        if path not in self.paths:
            self.paths.append(path)
        return path

    def remove(self, path: str | Path) -> None:
        path = Path(path).expanduser().absolute()
        self.paths = [p for p in self.paths if p != path]

    def entries(self) -> list[tuple[str, str]]:
        """(label, key) for the model menu: the demo model first, then each bundle ("name (folder)")."""
        return [(DEMO_LABEL, DEMO)] + [(f"{p.name} ({p.parent})" + ("" if p.exists() else " - missing"), str(p))
                                       for p in self.paths]

    def to_setting(self) -> str:
        return json.dumps([str(p) for p in self.paths])

    @classmethod
    def from_setting(cls, text) -> "ModelList":
        """The list stored by :meth:`to_setting`; anything unreadable gives an empty list."""
        try:
            paths = json.loads(text) if text else []
        except (TypeError, ValueError):
            return cls()
        return cls(p for p in paths if isinstance(p, str) and p) if isinstance(paths, list) else cls()


def bundle_path(key: str, demo_path: str | Path) -> Path | None:
    """The bundle path of a model key (DEMO or a path); None for an empty key."""
    if not key:
        return None
    return Path(demo_path) if key == DEMO else Path(key)
