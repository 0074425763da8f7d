"""Model bundles: round trip, metadata, and refusal of tampered, wrong-version, pickled or mismatched bundles."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AllStageTraining.config import RunConfig, preset
from AllStageTraining.constants import SCENARIOS
from AllStageTraining.fileio import sha256_file
from AllStageTraining.inference import bundle as bundle_mod
from AllStageTraining.inference.errors import (
    BundleChecksumError,
    BundleMismatchError,
    BundleNotFoundError,
    BundlePickleError,
    BundleVersionError,
)
from AllStageTraining.inference.predictor import Predictor
from AllStageTraining.methods import DEFAULT_METHOD, own_segmenter_steps
from AllStageTraining.nets.build import build_models

IDENTITY = {"model_name": "random-unit-vectors", "pretrained": None, "untrained": True, "seed": 1}


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(1)
    cfg = preset("tiny")
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), 16), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    # Non-zero learned fill so that a lost MAE tensor would change the reconstructions.
    with torch.no_grad():
        mae.fill.volume.normal_()
    return cfg, mae.eval(), segmenter.eval(), embeddings


@pytest.fixture(scope="module")
def folder_bundle(parts, tmp_path_factory):
    cfg, mae, segmenter, embeddings = parts
    states = {"mae": mae.state_dict(), "seg": segmenter.state_dict()}
    return bundle_mod.write_bundle(tmp_path_factory.mktemp("b") / "bundle", cfg, states, embeddings, IDENTITY,
                                   provenance={"data_root": "/nowhere"}, note="tests only")


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def _case() -> dict[str, sitk.Image]:
    rng = np.random.default_rng(3)
    array = np.zeros((20, 26, 22), np.float32)
    array[3:17, 4:22, 3:19] = rng.random((14, 18, 16)).astype(np.float32) + 0.5
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.2, 1.5))
    return {"flair": image, "t1ce": None, "t1": image, "t2": None}


def test_round_trip_gives_identical_weights_and_predictions(parts, folder_bundle, tmp_path):
    cfg, mae, segmenter, embeddings = parts
    states = {"mae": mae.state_dict(), "seg": segmenter.state_dict()}
    zipped = bundle_mod.write_bundle(tmp_path / "bundle.zip", cfg, states, embeddings, IDENTITY)
    before = Predictor(cfg, mae, segmenter, "cpu").predict(_case())
    for path in (folder_bundle, zipped):
        loaded_cfg, loaded_states, meta = bundle_mod.load_bundle(path)
        assert loaded_cfg == cfg
        for prefix, model in (("mae", mae), ("seg", segmenter)):
            for key, value in model.state_dict().items():
                assert torch.equal(loaded_states[prefix][key], value), f"{prefix}.{key} changed in {path.name}"
        after = Predictor.from_bundle(path, "cpu").predict(_case())
        assert np.array_equal(sitk.GetArrayFromImage(after.labels), sitk.GetArrayFromImage(before.labels))
        assert sorted(after.reconstructions) == ["t1ce", "t2"]
        for m in after.reconstructions:
            assert np.array_equal(sitk.GetArrayFromImage(after.reconstructions[m]),
                                  sitk.GetArrayFromImage(before.reconstructions[m]))


def test_bundle_json_describes_the_model(parts, folder_bundle):
    cfg, _, _, embeddings = parts
    meta = json.loads((folder_bundle / "bundle.json").read_text())
    assert meta["format_version"] == bundle_mod.FORMAT_VERSION
    assert meta["modalities"] == ["flair", "t1ce", "t1", "t2"]
    assert [s["prompt"] for s in meta["scenarios"]] == [s.prompt for s in SCENARIOS]
    assert torch.equal(torch.tensor(meta["embeddings"], dtype=torch.float32), embeddings)
    assert meta["text_encoder"]["untrained"] is True and "UNTRAINED" in meta["text_encoder"]["warning"]
    assert meta["preprocessing"]["clip"] == [-5.0, 5.0] and meta["preprocessing"]["orientation"] == "LPS"
    assert meta["labels"]["values"] == {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
    assert RunConfig.from_dict(meta["config"]) == cfg and meta["provenance"]["data_root"] == "/nowhere"
    assert meta["note"] == "tests only" and "not for clinical use" in meta["intended_use"]
    assert meta["checksums"]["model.safetensors"] == sha256_file(folder_bundle / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(folder_bundle / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all(k.startswith(("mae.", "seg.")) for k in keys) and "seg.embeddings" in keys


def test_tampered_weights_are_refused_naming_the_file(folder_bundle, tmp_path):
    bundle = _copy(folder_bundle, tmp_path)
    data = bytearray((bundle / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (bundle / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match=r"model\.safetensors does not match its sha256"):
        bundle_mod.load_bundle(bundle)


def test_edited_bundle_json_is_refused(folder_bundle, tmp_path):
    bundle = _copy(folder_bundle, tmp_path)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["inference"]["threshold"] = 0.1
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleChecksumError, match=r"bundle\.json was modified"):
        bundle_mod.load_bundle(bundle)


def test_wrong_format_version_is_refused(folder_bundle, tmp_path):
    bundle = _copy(folder_bundle, tmp_path)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["format_version"] = 99
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleVersionError, match="format_version 99 is not supported.*reads version 1"):
        bundle_mod.load_bundle(bundle)


class _Trap:
    """Unpickling this object creates ``path``: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickles_are_refused_and_never_loaded(folder_bundle, tmp_path):
    trap = tmp_path / "unpickled"
    payload = pickle.dumps(_Trap(trap), protocol=4)

    extra = _copy(folder_bundle, tmp_path / "extra")
    (extra / "weights.pt").write_bytes(payload)
    with pytest.raises(BundlePickleError, match=r"weights\.pt holds pickled data, which is never loaded"):
        bundle_mod.load_bundle(extra)

    renamed = _copy(folder_bundle, tmp_path / "renamed")
    (renamed / "model.safetensors").write_bytes(payload)  # a pickle under the safetensors name
    with pytest.raises(BundlePickleError, match=r"model\.safetensors holds pickled data"):
        Predictor.from_bundle(renamed, "cpu")

    zipped = tmp_path / "with_checkpoint.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for name in ("bundle.json", "model.safetensors"):
            archive.write(folder_bundle / name, name)
        torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.bin")  # torch.save: a zip holding data.pkl
        archive.write(tmp_path / "ckpt.bin", "extra/ckpt.bin")
    with pytest.raises(BundlePickleError, match=r"extra/ckpt\.bin holds pickled data"):
        bundle_mod.load_bundle(zipped)
    assert not trap.exists()


def test_tensors_that_do_not_fit_the_config_are_listed(folder_bundle, tmp_path):
    bundle = _copy(folder_bundle, tmp_path)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["config"]["net"]["width"] = 8  # a consistent-looking bundle whose weights were made for width 4
    meta["content_sha256"] = bundle_mod._content_sha256(meta)
    (bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleMismatchError, match=r"tensors do not match.*has shape \(\d+, 4, 3, 3, 3\), the config builds \(\d+, 4, 3, 3, 3\).*more"):
        bundle_mod.load_bundle(bundle)


def test_missing_bundle_or_file_says_so(folder_bundle, tmp_path):
    with pytest.raises(BundleNotFoundError, match="does not exist"):
        bundle_mod.load_bundle(tmp_path / "nope")
    bundle = _copy(folder_bundle, tmp_path)
    (bundle / "model.safetensors").unlink()
    with pytest.raises(BundleNotFoundError, match=r"model\.safetensors is missing"):
        bundle_mod.load_bundle(bundle)


def test_the_shipped_demo_bundle_is_current_and_segments_the_sample_case():
    """Resources/Models/demo_bundle.zip: today's config (no migration), the default method with its display-only
    MAE, the pretrained offline text encoder, windows of its training crop, a provenance that states the steps it
    trained (the segmenter's own plus stage 1's); from FLAIR and T1 it finds the sample case's whole tumour (WT
    Dice above 0.8) on the input grid, and synthesizes T1ce and T2 for display."""
    root = Path(__file__).resolve().parents[2]
    bundle = root / "Resources" / "Models" / "demo_bundle.zip"
    meta = json.loads(zipfile.ZipFile(bundle).read("bundle.json"))
    config = meta["config"]
    assert config["method"] == DEFAULT_METHOD and "method" not in config["seg"]
    assert meta["has_mae"] and not meta["mae_completes_inputs"]
    assert meta["text_encoder"]["encoder"] == "minilm" and not meta["text_encoder"]["untrained"]
    # nothing migrated or lost
    assert json.loads(json.dumps(RunConfig.from_dict(config).to_dict())) == config
    assert meta["inference"]["window"] == config["data"]["crop_size"] and meta["inference"]["overlap"] > 0
    demo = meta["provenance"]["demo_settings"]
    cfg = RunConfig.from_dict(config)
    assert (demo["steps_mae"], demo["steps_seg"]) == (cfg.optim_mae.steps, own_segmenter_steps(cfg))
    assert cfg.optim_seg.steps == own_segmenter_steps(cfg) + cfg.optim_mae.steps
    assert f"{cfg.optim_mae.steps}+{cfg.optim_seg.steps} CPU training steps" in meta["note"]
    predictor = Predictor.from_bundle(bundle, "cpu")
    assert predictor.cfg.method == DEFAULT_METHOD and predictor.mae is not None and not predictor.completes_inputs
    sample = root / "Resources" / "SampleData"
    flair = sample / "SynthBraTS_001_flair.nii.gz"
    prediction = predictor.predict({"flair": flair, "t1": sample / "SynthBraTS_001_t1.nii.gz"})
    assert prediction.labels.GetSize() == sitk.ReadImage(str(flair)).GetSize()
    found = sitk.GetArrayFromImage(prediction.labels) > 0
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(sample / "SynthBraTS_001_seg.nii.gz"))) > 0
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.8
    assert sorted(prediction.reconstructions) == ["t1ce", "t2"]
    assert all(image.GetSize() == prediction.labels.GetSize() for image in prediction.reconstructions.values())
