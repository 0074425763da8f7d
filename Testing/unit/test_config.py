"""Config presets and their JSON round trip."""

import json

import pytest

from AllStageTraining.config import PRESETS, RunConfig, preset


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
    factor = 2 ** (cfg.net.levels - 1)
    assert all(s % factor == 0 for s in cfg.data.crop_size)
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
