"""Model bundles: a folder or a ``.zip`` holding ``model.safetensors`` and ``bundle.json``. Never unpickled.

``model.safetensors`` holds every tensor of the networks, named ``mae.<key>`` (absent for ``zero-fill``) and
``seg.<key>`` (the segmenter, its hyper-network and its scenario-embedding buffer), all float32.
``bundle.json`` holds, as plain JSON:

- ``format`` / ``format_version`` (checked on load), ``package_version``, ``created`` (UTC, ISO 8601)
- ``modalities`` (channel order), ``scenarios`` (the 15, with short name, sequences and prompt text)
- ``preprocessing`` (orientation, brain mask, crop margin, z-score and clip range, padding multiple)
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
from ..fileio import sha256_file
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
from .errors import (
    BundleChecksumError,
    BundleFormatError,
    BundleMismatchError,
    BundleNotFoundError,
    BundlePickleError,
    BundleVersionError,
)

FORMAT_NAME = "AllStageSeg model bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "bundle.json"
#: Multiple that the brain crop is padded to before the networks see it (2**(levels-1) at 4 levels).
PAD_MULTIPLE = 8
#: File name endings that mean pickled content (PyTorch checkpoints, pickles, joblib dumps).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
INTENDED_USE = "Research use only; not a medical device; not for clinical use."
UNTRAINED_TEXT_WARNING = (
    "UNTRAINED TEXT ENCODER: the scenario prompts were embedded by a randomly initialized text encoder "
    "(offline run); the embeddings are arbitrary but fixed codes, not CLIP semantics."
)
SYNTHETIC_NOTE = "Trained on synthetic data (SynthBraTS); not for clinical use."

StateDicts = dict[str, dict[str, torch.Tensor] | None]


# ----------------------------------------------------------------------------------------------- helpers
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _content_sha256(meta: dict) -> str:
    """sha256 of bundle.json's content without the two checksum fields."""
    return sha256_bytes(_canonical_json({k: v for k, v in meta.items() if k not in ("checksums", "content_sha256")}))


def looks_pickled(name: str, head: bytes) -> bool:
    """True when a file's name or first bytes say it holds a pickle (or a PyTorch ``torch.save`` archive).

    ``head``: at least the first 4 bytes; pickle protocols 2-5 start with 0x80 followed by the protocol number;
    a torch.save archive is a zip file whose members include ``data.pkl``.
    """
    if name.lower().endswith(PICKLE_SUFFIXES):
        return True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return False


def _zip_holds_pickle(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            return any(n.lower().endswith(PICKLE_SUFFIXES) for n in inner.namelist())
    except zipfile.BadZipFile:
        return False


def _round_trip_floats(values: np.ndarray) -> list:
    """float32 array -> nested lists of Python floats (exact: float32 -> float64 -> float32 is lossless)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


# ------------------------------------------------------------------------------------------- run folders
def read_embeddings_json(path: str | Path) -> tuple[torch.Tensor, dict]:
    """``RUN/seg/embeddings.json`` -> (embeddings float32 (15, E), text-encoder identity dict).

    Accepts ``{"embeddings": [[...] x 15], "identity": {...}}`` and the flat variant in which the identity keys
    sit beside ``"embeddings"``.
    """
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        data = {"embeddings": data}
    if "embeddings" not in data:
        raise BundleFormatError(f"{path}: no 'embeddings' list; expected the file that train-seg writes")
    embeddings = torch.tensor(data["embeddings"], dtype=torch.float32)
    if embeddings.dim() != 2 or embeddings.shape[0] != len(SCENARIOS):
        raise BundleFormatError(f"{path}: embeddings have shape {tuple(embeddings.shape)}, expected ({len(SCENARIOS)}, E)")
    identity = data.get("identity")
    if identity is None:
        identity = {k: v for k, v in data.items() if k != "embeddings"}
    return embeddings, dict(identity)


def _load_safetensors_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    data = path.read_bytes()
    if looks_pickled(path.name, data[:4]) or data[:4] == b"PK\x03\x04":
        raise BundlePickleError(f"{path}: {what} is pickled content, which is never loaded; export weights with safetensors")
    try:
        return load(data)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise BundleFormatError(f"{path}: not a readable safetensors file ({error})") from None


def read_run(run_dir: str | Path) -> tuple[RunConfig, StateDicts, torch.Tensor | None, dict]:
    """A ``train`` run folder -> (config, {"mae": state or None, "seg": state}, embeddings (15, E) or None,
    text-encoder identity). Reads ``RUN/config.json``, ``RUN/mae/model.safetensors`` (when the method has an
    MAE), ``RUN/seg/model.safetensors`` and ``RUN/seg/embeddings.json`` (when present)."""
    run = Path(run_dir)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise BundleNotFoundError(f"{run}: no config.json; expected a folder written by `train` (RUN/config.json, RUN/seg/...)")
    try:
        cfg = RunConfig.load(config_path)
    except (ValueError, TypeError) as error:
        raise BundleFormatError(f"{config_path}: not a RunConfig ({error})") from None
    seg_path = run / "seg" / MODEL_FILE
    if not seg_path.is_file():
        raise BundleNotFoundError(f"{run}: no seg/{MODEL_FILE}; has stage 2 (train-seg) finished?")
    states: StateDicts = {"mae": None, "seg": _load_safetensors_file(seg_path, "the segmenter")}
    if cfg.seg.method != "zero-fill":
        mae_path = run / "mae" / MODEL_FILE
        if not mae_path.is_file():
            raise BundleNotFoundError(f"{run}: no mae/{MODEL_FILE}; method {cfg.seg.method!r} needs the stage-1 MAE")
        states["mae"] = _load_safetensors_file(mae_path, "the MAE")
    embeddings, identity = None, {}
    embeddings_path = run / "seg" / "embeddings.json"
    if embeddings_path.is_file():
        embeddings, identity = read_embeddings_json(embeddings_path)
    elif isinstance(states["seg"].get("embeddings"), torch.Tensor):
        embeddings = states["seg"]["embeddings"].float()
    return cfg, states, embeddings, identity


# ------------------------------------------------------------------------------------------- networks
def _describe(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def build_checked_models(cfg: RunConfig, states: StateDicts, embeddings: torch.Tensor | None, *, source: str):
    """Build the networks for ``cfg`` and load ``states`` into them after checking names and shapes.

    Returns (mae or None, segmenter), in eval mode on the CPU. Raises BundleMismatchError listing the first
    differences (missing, unexpected and differently shaped tensors) with ``source`` in the message.
    """
    from ..nets.build import build_models

    try:
        mae, segmenter = build_models(cfg, embeddings)
    except (ValueError, TypeError, RuntimeError) as error:
        raise BundleMismatchError(f"{source}: its config does not build the networks ({error})") from None
    problems: list[str] = []
    for prefix, model in (("mae", mae), ("seg", segmenter)):
        state = states.get(prefix)
        if model is None:
            if state:
                problems.append(f"{len(state)} unexpected mae.* tensors (method {cfg.seg.method!r} has no MAE)")
            continue
        if state is None:
            problems.append(f"no {prefix}.* tensors (method {cfg.seg.method!r} needs them)")
            continue
        expected = model.state_dict()
        for key, value in expected.items():
            if key not in state:
                problems.append(f"missing {prefix}.{key} {_describe(value.shape)}")
            elif tuple(state[key].shape) != tuple(value.shape):
                problems.append(f"{prefix}.{key} has shape {_describe(state[key].shape)}, the config builds {_describe(value.shape)}")
        problems += [f"unexpected {prefix}.{key}" for key in state if key not in expected]
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise BundleMismatchError(f"{source}: tensors do not match the networks built from its config: {shown}")
    for prefix, model in (("mae", mae), ("seg", segmenter)):
        if model is not None:
            model.load_state_dict(states[prefix], strict=True)
            model.eval()
    return mae, segmenter


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
        "method": cfg.seg.method,
        "has_mae": cfg.seg.method != "zero-fill",
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
            "pad_multiple": PAD_MULTIPLE,
        },
        "inference": {
            "window": list(inference.window) if inference.window else None,
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


def split_provenance(split_path: str | Path | None) -> dict:
    """Provenance of a split file: its path, sha256, data root and case counts (empty when there is none)."""
    if split_path is None or not Path(split_path).is_file():
        return {}
    path = Path(split_path)
    info: dict[str, Any] = {"split_file": str(path.resolve()), "split_sha256": sha256_file(path)}
    try:
        split = json.loads(path.read_text())
    except ValueError:
        return info
    info["data_root"] = split.get("data_root")
    info["cases"] = {part: len(split.get(part, [])) for part in ("train", "val", "test")}
    info["missing"] = split.get("missing")
    ids = [i for part in ("train", "val", "test") for i in split.get(part, [])]
    info["synthetic_data"] = bool(ids) and all(str(i).startswith("SynthBraTS") for i in ids)
    return info


def _find_split(run: Path) -> Path | None:
    for candidate in (run / "split.json", run / "data" / "split.json", run.parent / "split.json"):
        if candidate.is_file():
            return candidate
    return None


def export_bundle(run_dir: str | Path, out_path: str | Path, meta: dict | None = None) -> Path:
    """Export a ``train`` run folder as a bundle (folder, or zip when ``out_path`` ends in ``.zip``).

    meta (all optional): ``"note"`` (free text, e.g. "trained on synthetic data"; set automatically when the
    split's cases are all synthetic), ``"split"`` (the split file; default ``RUN/split.json`` when present),
    ``"provenance"`` (extra provenance entries). The networks are rebuilt from the run's config and checked
    before anything is written, so an inconsistent run cannot produce a bundle.
    """
    meta = dict(meta or {})
    run = Path(run_dir)
    cfg, states, embeddings, identity = read_run(run)
    build_checked_models(cfg, states, embeddings, source=str(run))
    split_path = meta.get("split") or _find_split(run)
    provenance: dict[str, Any] = {"run_dir": str(run.resolve()), **split_provenance(split_path)}
    summary = run / "eval" / "summary.json"
    if summary.is_file():
        try:
            provenance["evaluation"] = json.loads(summary.read_text())
        except ValueError:
            provenance["evaluation"] = None
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
            raise BundleFormatError(f"bundle {bundle}: embeddings have shape {_describe(embeddings.shape)}, "
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
