"""The preprocessed-case cache and the training/validation datasets built on it."""

import os

import numpy as np
import pytest
import torch
from data_helpers import write_case

from AllStageTraining.config import DataConfig
from AllStageTraining.data.cache import CaseCache
from AllStageTraining.data.dataset import TrainingCrops, ValidationCases
from AllStageTraining.data.discovery import find_cases
from AllStageTraining.data.preprocess import ImageError, load_case


@pytest.fixture()
def case_files(tmp_path):
    write_case(tmp_path / "data", "c0", seed=0)
    write_case(tmp_path / "data", "c1", seed=1)
    return find_cases(tmp_path / "data")


def _garble_keeping_stat(path):
    """Overwrite a file with garbage of the same size and restore its modification time."""
    stat = path.stat()
    path.write_bytes(os.urandom(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cache_serves_without_rereading_and_keys_on_availability(tmp_path, case_files):
    cache = CaseCache(tmp_path / "cache")
    case = case_files[0]
    first = cache.get(case)
    assert isinstance(first.image, np.memmap) and first.image.dtype == np.float16
    assert first.brain.dtype == bool and first.label.dtype == np.uint8
    fresh = load_case(case.images, case.label, case_id=case.case_id)
    np.testing.assert_allclose(np.asarray(first.image, dtype=np.float32), fresh.image, atol=5e-3)
    assert first.bbox == fresh.bbox and first.grid == fresh.grid

    for path in [*case.images.values(), case.label]:
        _garble_keeping_stat(path)
    with pytest.raises(ImageError):  # the files really are unreadable now
        load_case(case.images, case_id=case.case_id)
    again = cache.get(case)  # served from the cache: no NIfTI read
    np.testing.assert_array_equal(again.image, first.image)

    other = case_files[1]
    full = cache.get(other)
    reduced = cache.get(other, available=torch.tensor([True, False, False, True]))
    assert reduced.available.tolist() == [True, False, False, True]
    assert not np.asarray(reduced.image[1:3]).any() and np.asarray(full.image[1:3]).any()
    entries = sorted(p.name for p in (tmp_path / "cache" / "c1").iterdir())
    assert len(entries) == 2 and not any(name.startswith(".tmp") for name in entries)
    os.utime(other.images["flair"], ns=(0, 10**9))  # a changed file makes a new entry
    cache.get(other)
    assert len(list((tmp_path / "cache" / "c1").iterdir())) == 3
    with pytest.raises(ValueError, match="have no file"):
        cache.get(other.restricted(["flair"]), available=["flair", "t2"])


def _crops(cases, seed=0, length=6, **overrides):
    cfg = DataConfig(crop_size=(32, 32, 32), **overrides)
    return TrainingCrops(cases, cfg, seed=seed, length=length)


def test_training_crops_shapes_boxes_and_determinism(tmp_path, case_files):
    cache = CaseCache(tmp_path / "cache")
    cases = [cache.get(c) for c in case_files]
    dataset = _crops(cases, foreground_crop_fraction=1.0, flip_prob=0.0)
    shape = cases[0].brain.shape  # (31, 41, 35): z is padded, y and x are cropped
    assert shape[0] < 32 < min(shape[1:])
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["image"].shape == (4, 32, 32, 32) and item["image"].dtype == torch.float32
        assert item["label"].shape == (3, 32, 32, 32) and item["brain"].shape == (1, 32, 32, 32)
        assert item["available"].tolist() == [True] * 4 and item["case_id"] == f"c{index % 2}"
        assert item["label"][0].sum() > 0  # foreground crops hold tumour
        box = item["box"]
        assert box.shape == (3, 2) and box.dtype == torch.float32
        assert box[0, 0] <= -1 and box[0, 1] >= 1  # padded axis reaches past the volume
        for axis in (1, 2):
            assert -1 <= box[axis, 0] < box[axis, 1] <= 1
            assert box[axis, 1] - box[axis, 0] == pytest.approx(2 * 31 / (shape[axis] - 1))
        assert not item["image"][:, ~item["brain"][0].bool()].any()
    again = _crops(cases, foreground_crop_fraction=1.0, flip_prob=0.0)
    for index in range(len(dataset)):
        a, b = dataset[index], again[index]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["box"], b["box"])
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i]["box"], again[i]["box"]) for i in range(len(dataset)))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 4, 32, 32, 32) and batch["box"].shape == (2, 3, 2)


def test_box_matches_the_cropped_voxels(tmp_path, case_files):
    case = CaseCache(tmp_path / "cache").get(case_files[0])
    item = _crops([case], foreground_crop_fraction=0.0, flip_prob=0.0, intensity_scale=0.0, intensity_shift=0.0)[0]
    shape = np.array(case.brain.shape)
    start = np.rint((item["box"][:, 0].numpy() + 1) * (shape - 1) / 2).astype(int)
    window = np.asarray(case.image, dtype=np.float32)[:, max(start[0], 0):start[0] + 32, start[1]:start[1] + 32,
                                                      start[2]:start[2] + 32]
    offset = max(-start[0], 0)
    np.testing.assert_array_equal(item["image"][:, offset:offset + window.shape[1]].numpy(), window)


def test_flips_swap_box_and_unavailable_channels_stay_zero(tmp_path, case_files):
    cache = CaseCache(tmp_path / "cache")
    case = cache.get(case_files[0], available=["flair", "t2"])
    plain = _crops([case], flip_prob=0.0, intensity_scale=0.0, intensity_shift=0.0)
    flipped = _crops([case], flip_prob=1.0, intensity_scale=0.0, intensity_shift=0.0)
    for index in range(3):
        a, b = plain[index], flipped[index]
        assert torch.equal(b["box"], a["box"].flip(1))
        assert torch.equal(b["image"], a["image"].flip((1, 2, 3)))
        assert torch.equal(b["label"], a["label"].flip((1, 2, 3)))
    jittered = _crops([case], intensity_scale=0.3, intensity_shift=0.5)
    for index in range(3):
        item = jittered[index]
        assert item["available"].tolist() == [True, False, False, True]
        assert not item["image"][1:3].any()
        assert not item["image"][:, ~item["brain"][0].bool()].any()
        assert item["image"][0].abs().sum() > 0


def test_validation_cases_pad_whole_volumes(tmp_path, case_files):
    cases = [CaseCache(tmp_path / "cache").get(c, available=["t1"]) for c in case_files]
    item = ValidationCases(cases, multiple=8)[0]
    shape = cases[0].brain.shape
    assert item["shape"].tolist() == list(shape)
    assert item["image"].shape == (4, 32, 48, 40) and item["label"].shape == (3, 32, 48, 40)
    assert not item["image"][[0, 1, 3]].any() and item["image"][2].abs().sum() > 0
    assert item["box"][:, 0].tolist() == [-1.0, -1.0, -1.0] and (item["box"][:, 1] >= 1).all()
    np.testing.assert_array_equal(item["brain"][0, :shape[0], :shape[1], :shape[2]].numpy(), cases[0].brain)
