"""Config presets, their JSON round trip, the migration of old configs, validation, the resume fingerprint
and the one resolution order (preset, file, flags, --set)."""

import json

import pytest

from AllStageTraining.config import PRESETS, ConfigError, RunConfig, fingerprint_differences, preset, resolve_config
from AllStageTraining.methods import configure, own_segmenter_steps


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_through_json(tmp_path, name):
    cfg = preset(name)
    path = tmp_path / "config.json"
    cfg.save(path)
    again = RunConfig.load(path)
    assert again == cfg
    assert again.preset == name


@pytest.mark.parametrize("name", PRESETS)
def test_crop_sizes_fit_the_unet_depth(name):
    cfg = preset(name)
    cfg.validate()
    assert all(s % cfg.net.size_divisor == 0 for s in cfg.data.crop_size)
    assert all(s % cfg.mae.patch_size == 0 for s in cfg.data.crop_size)
    assert cfg.net.width % cfg.net.groups == 0


def test_paper_preset_matches_the_published_recipe():
    cfg = preset("paper")
    assert cfg.data.crop_size == (128, 128, 128)
    assert (cfg.net.width, cfg.mae.patch_size, cfg.mae.mask_ratio) == (16, 16, 0.875)
    assert (cfg.optim_mae.lr, cfg.optim_mae.batch_size) == (3e-4, 2)


def test_unknown_fields_are_refused(tmp_path):
    data = preset("tiny").to_dict()
    data["net"]["depth"] = 3
    with pytest.raises(ValueError, match="NetConfig.depth"):
        RunConfig.from_dict(json.loads(json.dumps(data)))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_configs_from_before_the_method_registry_still_load():
    old = preset("tiny").to_dict()
    del old["method"]
    old["seg"]["method"] = "zero-fill"  # how package 0.1.0 recorded the method (its exported bundles)
    cfg = RunConfig.from_dict(old)
    assert cfg.method == "zero-fill" and "method" not in cfg.to_dict()["seg"]


def test_the_size_divisor_follows_the_levels_and_validation_uses_it():
    cfg = preset("tiny")
    assert cfg.net.size_divisor == 8
    three = cfg.with_fields({"net.levels": 3, "data.crop_size": [36, 36, 36]})
    assert three.net.size_divisor == 4
    three.validate()
    with pytest.raises(ConfigError, match=r"data.crop_size \(36, 36, 36\).*multiple of 8"):
        three.with_fields({"net.levels": 4}).validate()
    with pytest.raises(ConfigError, match=r"inference.window.*multiple of 8"):
        cfg.with_fields({"inference.window": [60, 64, 64]}).validate()
    with pytest.raises(ConfigError, match="unknown method"):
        cfg.with_fields({"method": "unet"}).validate()


def test_crop_window_follows_the_training_crop():
    cfg = preset("tiny")
    assert cfg.inference_window() is None
    cropped = cfg.with_fields({"inference.window": "crop", "data.crop_size": [48, 48, 40]})
    cropped.validate()
    assert cropped.inference_window() == (48, 48, 40)
    assert cfg.with_fields({"inference.window": [64, 64, 64]}).inference_window() == (64, 64, 64)
    assert RunConfig.from_dict(cropped.to_dict()).inference.window == "crop"
    with pytest.raises(ConfigError, match="inference.window must be"):
        cfg.with_fields({"inference.window": "whole"}).validate()


def test_the_fingerprint_ignores_what_may_change_on_resume():
    cfg = preset("tiny")
    relaxed = cfg.with_fields({"data.num_workers": 4, "data.cache_dir": "/tmp/c", "seg.text.cache_dir": "/tmp/t",
                               "optim_mae.ckpt_every": 9, "optim_seg.log_every": 9, "inference.overlap": 0.5})
    for scope in ("run", "mae", "seg"):
        assert relaxed.fingerprint(scope) == cfg.fingerprint(scope), scope
    changed = cfg.with_fields({"optim_seg.lr": 0.5})
    assert fingerprint_differences(cfg.fingerprint(), changed.fingerprint()) == ["optim_seg.lr: 0.001 -> 0.5"]
    assert changed.fingerprint("mae") == cfg.fingerprint("mae")  # stage 1 does not read stage 2's settings
    assert cfg.with_fields({"method": "ours-no-distill"}).fingerprint("mae") == cfg.fingerprint("mae")
    assert cfg.with_fields({"method": "ours-no-distill"}).fingerprint("seg") != cfg.fingerprint("seg")


def test_resolution_merges_a_partial_file_over_the_preset(tmp_path):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"mae": {"w_rec_visible": 0.3}, "optim_seg": {"steps": 9}}))
    cfg = resolve_config("tiny", config_file=partial)
    expected = configure(preset("tiny").with_fields({"mae.w_rec_visible": 0.3, "optim_seg.steps": 9}))
    assert cfg == expected  # the default method's settings come last (its segmenter also gets stage 1's steps)
    later = resolve_config("tiny", config_file=partial, fields={"optim_seg.steps": 5}, sets=["optim_seg.steps=7"])
    assert own_segmenter_steps(later) == 7 and later.mae.w_rec_visible == 0.3
    with pytest.raises(ConfigError, match="no such file"):
        resolve_config("tiny", config_file=tmp_path / "missing.json")
    partial.write_text(json.dumps({"mae": 1}))
    with pytest.raises(ConfigError, match="mae is a group of fields"):
        resolve_config("tiny", config_file=partial)
