"""The demo records the size it ran: training steps changed by --set reach demo.json and the bundle's note."""

from __future__ import annotations

from AllStageTraining.config import resolve_config
from AllStageTraining.pipeline.demo import (
    SIZES,
    bundle_note,
    demo_fields,
    demo_settings,
    demo_size,
    untrained_text_encoder,
)


def _full_demo_config(*sets: str, text_pretrained: str | None = None):
    return resolve_config("cpu", fields=demo_fields(SIZES["full"], "ViT-B-32", text_pretrained), sets=sets)


def test_steps_set_on_the_command_line_are_the_ones_recorded():
    cfg = _full_demo_config("optim_mae.steps=1200", "optim_seg.steps=900")
    settings = demo_settings("full", "ViT-B-32", None, cfg, changed=True)
    assert (settings["steps_mae"], settings["steps_seg"]) == (1200, 900)
    assert settings["n_cases"] == SIZES["full"].n_cases and settings["config"] == cfg.fingerprint()
    note = bundle_note("Synthetic.", "full", demo_size("full", cfg), untrained_text_encoder(cfg))
    assert "1200+900 CPU training steps" in note and "UNTRAINED" not in note
    untrained = _full_demo_config("seg.text.encoder=open_clip", "seg.text.allow_untrained=true")
    assert untrained_text_encoder(untrained)
    assert "UNTRAINED" in bundle_note("Synthetic.", "full", SIZES["full"], untrained_text_encoder(untrained))


def test_the_demo_embeds_its_prompts_with_minilm_offline_and_with_clip_when_given_weights():
    """Without CLIP weights the pretrained offline MiniLM, centred (the shipped bundle's setting); with a tag,
    open_clip's text tower; never an untrained encoder unless the configuration asks for one."""
    offline = _full_demo_config()
    assert (offline.seg.text.encoder, offline.seg.embedding_norm) == ("minilm", "centre")
    assert not untrained_text_encoder(offline)
    assert demo_settings("full", "ViT-B-32", None, offline, changed=False)["text_encoder"] == "minilm"
    clip = _full_demo_config(text_pretrained="openai")
    assert (clip.seg.text.encoder, clip.seg.text.model_name, clip.seg.text.pretrained) == ("open_clip", "ViT-B-32",
                                                                                            "openai")
    assert clip.seg.embedding_norm == "centre" and not untrained_text_encoder(clip)


def test_the_plain_demo_records_its_own_size_without_a_config():
    settings = demo_settings("full", "ViT-B-32", "laion2b", _full_demo_config(), changed=False)
    assert (settings["steps_mae"], settings["steps_seg"]) == (SIZES["full"].steps_mae, SIZES["full"].steps_seg)
    assert "config" not in settings
    assert "UNTRAINED" not in bundle_note("Synthetic.", "full", SIZES["full"], False)
