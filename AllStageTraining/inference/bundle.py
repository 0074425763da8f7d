"""Model bundles: a folder or a ``.zip`` holding ``model.safetensors`` and ``bundle.json``. Never unpickled.

``model.safetensors`` holds every tensor of the networks, named ``mae.<key>`` (absent for methods without an
MAE) and ``seg.<key>`` (the segmenter, its hyper-network and its scenario-embedding buffer), all float32.
``bundle.json`` holds, as plain JSON:

- ``format`` / ``format_version`` (checked on load), ``package_version``, ``created`` (UTC, ISO 8601)
- ``method``, ``has_mae`` and ``mae_completes_inputs`` (whether the MAE's completions feed the segmenter, or
  only show the missing sequences; ``methods.Method.completes_inputs``)
- ``modalities`` (channel order), ``scenarios`` (the 15, with short name, sequences and prompt text)
- ``preprocessing`` (orientation, brain mask, crop margin, z-score and clip range, ``pad_multiple``: the
  network's ``net.size_divisor``)
- ``inference`` (window, overlap, threshold, ET post-processing), ``labels`` (values, regions, convention)
- ``text_encoder`` (identity: model name, pretrained tag, ``untrained`` flag; ``warning`` when untrained)
  and ``embeddings`` (15 x E lists of floats, the same values as the segmenter's buffer)
- ``config`` (the whole ``RunConfig`` dict), ``provenance`` (run folder, data root, split file and its
  sha256, evaluation summary, torch version), ``intended_use`` and ``note``
- ``checksums``: sha256 of every other file; ``content_sha256``: sha256 of the canonical JSON of
  everything else in ``bundle.json`` (so an edited ``bundle.json`` is detected too).

Loading checks, in order: the path exists; no file in the bundle is pickled (by name or by content); the
JSON parses; the format version is known; the checksums match; the safetensors header parses; the tensor
names and shapes equal those of the networks built from the bundle's own config. Each failure raises a
``BundleError`` subclass with a one-line message naming the bundle, the file and what to do.

Run folders are read by ``run_reader`` (``export_bundle`` turns one into a bundle); pickle detection and the
tensor-versus-network check live in ``weights``, shared by both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import RunConfig
from ..constants import (
    ET_POSTPROCESS_MIN_MM3,
    LABEL_ED,
    LABEL_ET,
    LABEL_NCR,
    MODALITIES,
    REGION_LABELS,
    REGIONS,
    SCENARIOS,
)
from ..methods import get_method
from .errors import (
    BundleChecksumError,
    BundleFormatError,
    BundleMismatchError,
    BundleNotFoundError,
    BundlePickleError,
    BundleVersionError,
)
from .run_reader import read_run, run_provenance
from .weights import PICKLE_SUFFIXES, StateDicts, build_checked_models, describe_shape, looks_pickled

FORMAT_NAME = "AllStageSeg model bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "bundle.json"
INTENDED_USE = "Research use only; not a medical device; not for clinical use."
UNTRAINED_TEXT_WARNING = (
    "UNTRAINED TEXT ENCODER: the scenario prompts were embedded by a randomly initialized text encoder "
    "(offline run); the embeddings are arbitrary but fixed codes, not CLIP semantics."
)
SYNTHETIC_NOTE = "Trained on synthetic data (SynthBraTS); not for clinical use."

# ----------------------------------------------------------------------------------------------- helpers
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _content_sha256(meta: dict) -> str:
    """sha256 of bundle.json's content without the two checksum fields."""
    return sha256_bytes(_canonical_json({k: v for k, v in meta.items() if k not in ("checksums", "content_sha256")}))


def _zip_holds_pickle(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            return any(n.lower().endswith(PICKLE_SUFFIXES) for n in inner.namelist())
    except zipfile.BadZipFile:
        return False


def _round_trip_floats(values: np.ndarray) -> list:
    """float32 array -> nested lists of Python floats (exact: float32 -> float64 -> float32 is lossless)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


# -------------------------------------------------------------------------------------------- writing
def bundle_metadata(
    cfg: RunConfig,
    embeddings: torch.Tensor | None,
    identity: dict,
    *,
    provenance: dict | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Everything in ``bundle.json`` except the checksums (see the module docstring)."""
    from ..data import preprocess

    untrained = bool(identity.get("untrained", False))
    text_encoder = {
        "model_name": identity.get("model_name"),
        "pretrained": identity.get("pretrained"),
        "untrained": untrained,
        "pretrained_weights_used": not untrained and identity.get("pretrained") is not None,
        **{k: v for k, v in identity.items() if k not in ("model_name", "pretrained", "untrained", "prompts")},
    }
    if untrained:
        text_encoder["warning"] = UNTRAINED_TEXT_WARNING
    inference = cfg.inference
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "method": cfg.method,
        "has_mae": get_method(cfg.method).has_mae,
        "mae_completes_inputs": get_method(cfg.method).completes_inputs,
        "modalities": list(MODALITIES),
        "scenarios": [
            {"index": s.index, "short": s.short, "modalities": list(s.modalities), "prompt": s.prompt}
            for s in SCENARIOS
        ],
        "preprocessing": {
            "orientation": preprocess.ORIENTATION,
            "brain_mask": "union of the nonzero voxels of the available sequences (skull-stripped input)",
            "crop": f"brain bounding box + {preprocess.CROP_MARGIN} voxels",
            "crop_margin": preprocess.CROP_MARGIN,
            "normalization": "z-score over the brain per sequence; 0 outside the brain and in absent channels",
            "clip": [-preprocess.CLIP_Z, preprocess.CLIP_Z],
            "pad_multiple": cfg.net.size_divisor,
        },
        "inference": {
            "window": list(cfg.inference_window()) if cfg.inference_window() else None,
            "overlap": inference.overlap,
            "threshold": inference.threshold,
            "postprocess_et": inference.postprocess_et,
            "postprocess_et_min_mm3": ET_POSTPROCESS_MIN_MM3,
            "mae_box": "[-1, 1] per axis spans the brain crop (the MAE's learned fill is sampled there)",
        },
        "labels": {
            "convention": "BraTS 2018-2021 (ET = 4); BraTS 2023 inputs' ET = 3 is read as 4",
            "values": {"background": 0, "NCR": LABEL_NCR, "ED": LABEL_ED, "ET": LABEL_ET},
            "regions": {r: sorted(REGION_LABELS[r]) for r in REGIONS},
            "region_order": list(REGIONS),
            "from_regions": "ET -> 4; TC without ET -> 1; WT without TC -> 2",
        },
        "text_encoder": text_encoder,
        "embeddings": None if embeddings is None else _round_trip_floats(embeddings.detach().cpu().numpy()),
        "config": cfg.to_dict(),
        "provenance": {"torch_version": torch.__version__, **(provenance or {})},
        "intended_use": INTENDED_USE,
        "note": note,
    }


def _flat_tensors(states: StateDicts) -> dict[str, torch.Tensor]:
    """{"mae.<key>": tensor, "seg.<key>": tensor}: contiguous CPU copies, floating point as float32."""
    out = {}
    for prefix in ("mae", "seg"):
        for key, value in (states.get(prefix) or {}).items():
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.float()
            out[f"{prefix}.{key}"] = value.contiguous().clone()
    return out


def write_bundle(
    out_path: str | Path,
    cfg: RunConfig,
    states: StateDicts,
    embeddings: torch.Tensor | None,
    identity: dict,
    *,
    provenance: dict | None = None,
    note: str | None = None,
) -> Path:
    """Write a bundle to ``out_path`` (a folder, or a zip file when the name ends in ``.zip``). Atomic: the
    bundle is assembled under a temporary name beside ``out_path`` and renamed into place."""
    from safetensors.torch import save

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = save(_flat_tensors(states), metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    meta = bundle_metadata(cfg, embeddings, identity, provenance=provenance, note=note)
    meta["checksums"] = {MODEL_FILE: sha256_bytes(weights)}
    meta["content_sha256"] = _content_sha256(meta)
    meta_bytes = (json.dumps(meta, indent=1, allow_nan=False) + "\n").encode()

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if out.suffix.lower() == ".zip":
            staged = tmp / out.name
            with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(META_FILE, meta_bytes)
                archive.writestr(MODEL_FILE, weights)
            if out.is_dir():
                shutil.rmtree(out)
            os.replace(staged, out)
        else:
            staged = tmp / "bundle"
            staged.mkdir()
            (staged / MODEL_FILE).write_bytes(weights)
            (staged / META_FILE).write_bytes(meta_bytes)
            if out.exists():
                old = tmp / "old"
                os.replace(out, old)
            os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def export_bundle(run_dir: str | Path, out_path: str | Path, meta: dict | None = None) -> Path:
    """Export a ``train`` run folder as a bundle (folder, or zip when ``out_path`` ends in ``.zip``).

    meta (all optional): ``"note"`` (free text, e.g. "trained on synthetic data"; set automatically when the
    split's cases are all synthetic), ``"split"`` (the split file, for a run folder without ``RUN/split.json``;
    by default the provenance is ``RUN/split.json``, its path and sha256),
    ``"provenance"`` (extra provenance entries). The networks are rebuilt from the run's config and checked
    before anything is written, so an inconsistent run cannot produce a bundle.
    """
    meta = dict(meta or {})
    cfg, states, embeddings, identity = read_run(run_dir)
    build_checked_models(cfg, states, embeddings, source=str(run_dir))
    provenance = run_provenance(run_dir, meta.get("split"))
    provenance.update(meta.get("provenance") or {})
    note = meta.get("note")
    if note is None and provenance.get("synthetic_data"):
        note = SYNTHETIC_NOTE
    return write_bundle(out_path, cfg, states, embeddings, identity, provenance=provenance, note=note)


# -------------------------------------------------------------------------------------------- reading
class _BundleFiles:
    """Read-only access to the files of a bundle folder or zip, by name relative to the bundle root."""

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_dir():
            self._names = sorted(str(p.relative_to(path)).replace(os.sep, "/") for p in path.rglob("*") if p.is_file())
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as error:
                raise BundleFormatError(f"{path}: not a bundle folder or a readable zip file ({error})") from None
            names = [n for n in self._zip.namelist() if not n.endswith("/")]
            tops = {n.split("/", 1)[0] for n in names}
            if META_FILE not in names and len(tops) == 1 and all("/" in n for n in names):
                self._prefix = tops.pop() + "/"  # a zipped bundle folder
            self._names = sorted(n[len(self._prefix):] for n in names)

    @property
    def names(self) -> list[str]:
        return self._names

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._prefix + name)
        return (self.path / name).read_bytes()

    def head(self, name: str, n: int = 8) -> bytes:
        if self._zip is not None:
            with self._zip.open(self._prefix + name) as handle:
                return handle.read(n)
        with open(self.path / name, "rb") as handle:
            return handle.read(n)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _check_no_pickle(files: _BundleFiles) -> None:
    for name in files.names:
        head = files.head(name)
        pickled = looks_pickled(name, head)
        if not pickled and head[:4] == b"PK\x03\x04":
            pickled = _zip_holds_pickle(files.read(name))
        if pickled:
            raise BundlePickleError(
                f"bundle {files.path}: {name} holds pickled data, which is never loaded (it can run arbitrary "
                f"code); remove it or re-export the bundle with `python -m AllStageTraining export`"
            )


def read_bundle(path: str | Path) -> tuple[RunConfig, StateDicts, torch.Tensor | None, dict]:
    """Read and check a bundle's files (everything but the network build): (cfg, states, embeddings, meta)."""
    from safetensors.torch import load

    bundle = Path(path)
    if not bundle.exists():
        raise BundleNotFoundError(f"bundle {bundle} does not exist; pass a bundle folder or .zip made by `export`")
    files = _BundleFiles(bundle)
    try:
        _check_no_pickle(files)
        for required in (META_FILE, MODEL_FILE):
            if required not in files.names:
                raise BundleNotFoundError(f"bundle {bundle}: {required} is missing; re-export the bundle")
        try:
            meta = json.loads(files.read(META_FILE))
        except ValueError as error:
            raise BundleFormatError(f"bundle {bundle}: {META_FILE} is not valid JSON ({error})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise BundleFormatError(f"bundle {bundle}: {META_FILE} is not an {FORMAT_NAME} description")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleVersionError(
                f"bundle {bundle}: format_version {version!r} is not supported (this AllStageTraining "
                f"{__version__} reads version {FORMAT_VERSION}); re-export it with this version or upgrade"
            )
        if meta.get("content_sha256") != _content_sha256(meta):
            raise BundleChecksumError(f"bundle {bundle}: {META_FILE} was modified after export (content checksum "
                                      f"mismatch); use an unmodified copy or re-export the bundle")
        checksums = meta.get("checksums") or {}
        if MODEL_FILE not in checksums:
            raise BundleFormatError(f"bundle {bundle}: {META_FILE} records no checksum for {MODEL_FILE}")
        contents: dict[str, bytes] = {}
        for name, expected in sorted(checksums.items()):
            if name not in files.names:
                raise BundleNotFoundError(f"bundle {bundle}: {name} (listed in {META_FILE}) is missing")
            contents[name] = files.read(name)
            if sha256_bytes(contents[name]) != expected:
                raise BundleChecksumError(f"bundle {bundle}: {name} does not match its sha256 in {META_FILE} "
                                          f"(tampered or corrupted); use an unmodified copy or re-export the bundle")
    finally:
        files.close()
    try:
        tensors = load(contents[MODEL_FILE])
    except Exception as error:
        raise BundleFormatError(f"bundle {bundle}: {MODEL_FILE} is not a readable safetensors file ({error})") from None
    states: StateDicts = {"mae": None, "seg": {}}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        if prefix not in ("mae", "seg") or not name:
            raise BundleMismatchError(f"bundle {bundle}: tensor {key!r} is neither mae.* nor seg.*")
        if states[prefix] is None:
            states[prefix] = {}
        states[prefix][name] = value
    try:
        cfg = RunConfig.from_dict(meta["config"])
    except (KeyError, ValueError, TypeError) as error:
        raise BundleFormatError(f"bundle {bundle}: {META_FILE} holds no usable config ({error})") from None
    embeddings = None
    if meta.get("embeddings") is not None:
        embeddings = torch.tensor(meta["embeddings"], dtype=torch.float32)
        if embeddings.dim() != 2 or embeddings.shape[0] != len(SCENARIOS):
            raise BundleFormatError(f"bundle {bundle}: embeddings have shape {describe_shape(embeddings.shape)}, "
                                    f"expected ({len(SCENARIOS)}, E)")
    return cfg, states, embeddings, meta


def load_bundle_models(path: str | Path):
    """(cfg, mae or None, segmenter, meta) from a bundle, every check passed; networks on the CPU in eval mode."""
    cfg, states, embeddings, meta = read_bundle(path)
    mae, segmenter = build_checked_models(cfg, states, embeddings, source=f"bundle {path}")
    return cfg, mae, segmenter, meta


def load_bundle(path: str | Path) -> tuple[RunConfig, StateDicts, dict]:
    """(cfg, {"mae": state or None, "seg": state}, meta) after every check, including the network shapes."""
    cfg, states, embeddings, meta = read_bundle(path)
    build_checked_models(cfg, states, embeddings, source=f"bundle {path}")
    return cfg, states, meta
