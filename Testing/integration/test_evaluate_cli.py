"""``python -m AllStageTraining evaluate`` on a tiny folder of real NIfTI files.

The scoring runs go through a real subprocess; the error cases call the same CLI entry point in-process
(``cli.main``), which saves the few seconds that every fresh interpreter spends importing torch and MONAI.
"""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from AllStageTraining.cli import main as cli_main
from AllStageTraining.constants import LABEL_ED, LABEL_ET, LABEL_NCR, SCENARIOS
from AllStageTraining.evaluation.metrics import HD95_CAP_MM
from AllStageTraining.evaluation.tables import ScenarioTable

SHAPE = (20, 24, 22)  # (z, y, x)
SPACING = (1.2, 1.0, 2.0)  # SimpleITK order (x, y, z)
ORIGIN = (-10.0, 5.0, 3.0)


def image(array: np.ndarray, spacing=SPACING) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(ORIGIN)
    return img


def truth_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:16, 5:19, 4:18] = LABEL_ED
    labels[6:14, 8:16, 7:15] = LABEL_NCR
    labels[8:12, 10:14, 9:13] = LABEL_ET  # 64 voxels x 2.4 mm^3 = 153.6 mm^3
    return labels


def run_evaluate(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "AllStageTraining", "evaluate", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def folders(tmp_path):
    """Two BraTS-2020-layout truth cases; predictions for 3 scenarios of case 1 and 2 of case 2."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth = truth_labels()
    flair = (truth > 0).astype(np.float32) * 100 + 10
    for case in ("Case_001", "Case_002"):
        (truth_dir / case).mkdir(parents=True)
        sitk.WriteImage(image(flair), str(truth_dir / case / f"{case}_flair.nii.gz"))
        sitk.WriteImage(image(truth), str(truth_dir / case / f"{case}_seg.nii.gz"))
        (pred_dir / case).mkdir(parents=True)

    half_wt = truth.copy()
    half_wt[10:16][half_wt[10:16] == LABEL_ED] = 0  # edema of the upper half missed: WT loses voxels
    no_et = truth.copy()
    no_et[no_et == LABEL_ET] = LABEL_NCR  # ET missed entirely, TC and WT perfect
    predictions = {
        ("Case_001", "FC12"): truth,  # perfect
        ("Case_001", "F"): half_wt,
        ("Case_001", "C2"): no_et,
        ("Case_002", "FC12"): truth,
        ("Case_002", "F"): np.where(truth == LABEL_ET, 3, truth).astype(np.uint8),  # BraTS 2023 ET value
    }
    for (case, short), labels in predictions.items():
        sitk.WriteImage(image(labels), str(pred_dir / case / f"{short}.nii.gz"))
    return truth_dir, pred_dir, predictions


def test_evaluate_scores_what_exists_and_reports_missing(folders, tmp_path):
    truth_dir, pred_dir, predictions = folders
    out = tmp_path / "eval"
    result = run_evaluate("--pred", pred_dir, "--truth", truth_dir, "--out", out, "--postprocess-et")
    assert result.returncode == 0, result.stderr
    for name in ("table.csv", "table_summary.csv", "table.md", "summary.json", "heatmap.png"):
        assert (out / name).is_file(), name
    assert "| FC12 | FLAIR + T1ce + T1 + T2 | 100.00 |" in result.stdout
    assert "Mean (3 of 15)" in result.stdout
    assert "25 prediction(s) missing" in result.stderr and "Case_001: 2, C, 1," in result.stderr

    table = ScenarioTable.from_csv(out / "table.csv")
    assert table.case_ids == ["Case_001", "Case_002"]
    assert not table.has("Case_002", "C2")
    truth = truth_labels()
    # perfect predictions, and the BraTS 2023 ET value 3 read as ET
    for case, short in (("Case_001", "FC12"), ("Case_002", "FC12"), ("Case_002", "F")):
        for region in ("WT", "TC", "ET"):
            assert table.value(case, short, region, "dice") == pytest.approx(1.0)
            assert table.value(case, short, region, "hd95") == pytest.approx(0.0)
    # missed upper edema: Dice from the voxel counts
    kept = (predictions[("Case_001", "F")] > 0).sum()
    assert table.value("Case_001", "F", "WT", "dice") == pytest.approx(2 * kept / (kept + (truth > 0).sum()), rel=1e-5)
    assert table.value("Case_001", "F", "TC", "dice") == pytest.approx(1.0)
    # missed ET: Dice 0 and the cap; post-processing does not bring back what is absent
    assert table.value("Case_001", "C2", "ET", "dice") == 0.0
    assert table.value("Case_001", "C2", "ET", "hd95") == pytest.approx(HD95_CAP_MM)
    # post-processing at 500 mm^3 removes the true 153.6 mm^3 ET from the perfect prediction
    assert table.value("Case_001", "FC12", "ET", "dice", "postprocessed") == 0.0
    assert table.value("Case_001", "C2", "ET", "dice", "postprocessed") == 0.0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["n_scenarios_scored"] == 3
    assert summary["missing_predictions"]["Case_002"] == [s.short for s in SCENARIOS if s.short not in ("F", "FC12")]
    assert summary["per_scenario"]["C2"]["n_cases"] == 1
    assert summary["mean_dice"]["ET"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)  # F, C2, FC12 means over cases
    assert "mean_dice_postprocessed" in summary and summary["hd95_cap_mm"] == pytest.approx(HD95_CAP_MM)


def evaluate_in_process(capsys, *args):
    code = cli_main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_geometry_mismatch_is_a_clear_error(folders, tmp_path, capsys):
    truth_dir, pred_dir, _ = folders
    sitk.WriteImage(image(truth_labels(), spacing=(1.0, 1.0, 2.0)), str(pred_dir / "Case_002" / "F.nii.gz"))
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", tmp_path / "eval")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("ERROR:") and "F.nii.gz" in line and "spacing" in line and "resample" in line
    assert not (tmp_path / "eval").exists()


def test_evaluate_without_predictions_or_with_bad_labels_fails_cleanly(folders, tmp_path, capsys):
    truth_dir, _, _ = folders
    empty = tmp_path / "empty_pred"
    empty.mkdir()
    code, _, err = evaluate_in_process(capsys, "--pred", empty, "--truth", truth_dir, "--out", tmp_path / "eval")
    assert code == 2 and "no prediction found" in err and "FC12.nii.gz" in err

    bad = tmp_path / "bad_pred" / "Case_001"
    bad.mkdir(parents=True)
    labels = truth_labels()
    labels[0, 0, 0] = 7
    sitk.WriteImage(image(labels), str(bad / "FC12.nii.gz"))
    code, _, err = evaluate_in_process(capsys, "--pred", bad.parent, "--truth", truth_dir, "--out", tmp_path / "eval2")
    assert code == 2 and "[7]" in err and err.startswith("ERROR:")

    code, _, err = evaluate_in_process(capsys, "--pred", bad.parent, "--truth", tmp_path / "nowhere", "--out", tmp_path / "e3")
    assert code == 2 and err.startswith("ERROR:") and "nowhere" in err and "not a folder" in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_hd95_uses_spacing_and_cap_option(folders, tmp_path, capsys):
    truth_dir, pred_dir, _ = folders
    shifted = np.roll(truth_labels(), 2, axis=0)  # two slices of 2.0 mm along z
    sitk.WriteImage(image(shifted), str(pred_dir / "Case_001" / "FC12.nii.gz"))
    out = tmp_path / "eval"
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", out,
                                       "--hd95-cap", "99", "--scenarios", "FC12,C2", "--method", "other-tool")
    assert code == 0, err
    table = ScenarioTable.from_csv(out / "table.csv")
    assert table.value("Case_001", "FC12", "WT", "hd95") == pytest.approx(4.0)
    assert table.value("Case_001", "C2", "ET", "hd95") == pytest.approx(99.0)
    assert table.variants == ["raw"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "other-tool"
    assert summary["missing_predictions"] == {"Case_002": ["C2"]}
    assert "not a prediction for a scenario" in err  # Case_001/F.nii.gz is outside --scenarios


def test_evaluate_on_a_folder_of_labels_alone(folders, tmp_path, capsys):
    truth_dir, pred_dir, _ = folders
    # the same labels without their images: one in its case folder, the other directly in the folder
    labels_only = tmp_path / "labels"
    (labels_only / "Case_001").mkdir(parents=True)
    shutil.copy(truth_dir / "Case_001" / "Case_001_seg.nii.gz", labels_only / "Case_001")
    shutil.copy(truth_dir / "Case_002" / "Case_002_seg.nii.gz", labels_only)
    results = {}
    for name, truth in (("labels", labels_only), ("with_images", truth_dir)):
        code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth, "--out", tmp_path / name,
                                           "--postprocess-et")
        assert code == 0, err
        results[name] = ScenarioTable.from_csv(tmp_path / name / "table.csv")
    assert results["labels"].case_ids == ["Case_001", "Case_002"] and len(results["labels"]) == 5 * 2 * 3
    for case, short in (("Case_001", "F"), ("Case_001", "C2"), ("Case_002", "F")):
        for region in ("WT", "TC", "ET"):
            for metric in ("dice", "hd95"):
                assert results["labels"].value(case, short, region, metric) == \
                    results["with_images"].value(case, short, region, metric)

    # a case with two label files is refused, naming both
    shutil.copy(truth_dir / "Case_001" / "Case_001_seg.nii.gz", labels_only)
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", labels_only, "--out", tmp_path / "dup")
    assert code == 2 and err.startswith("ERROR:") and "two or more label files" in err
    assert "Case_001/Case_001_seg.nii.gz" in err and "Case_001_seg.nii.gz" in err
    # images without a label: a warning, not a score
    images_only = tmp_path / "images_only" / "Case_003"
    images_only.mkdir(parents=True)
    shutil.copy(truth_dir / "Case_001" / "Case_001_flair.nii.gz", images_only / "Case_003_flair.nii.gz")
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", images_only.parent, "--out", tmp_path / "x")
    assert code == 2 and "no label file found" in err


def _brats_metrics_installed() -> bool:
    try:
        from AllStageTraining.evaluation.brats_metrics import brats_evaluator

        brats_evaluator()
        return True
    except ImportError:
        return False


@pytest.mark.skipif(_brats_metrics_installed(), reason="the brats extra is installed")
def test_lesion_wise_without_the_brats_extra_says_how_to_install_it(folders, tmp_path, capsys):
    truth_dir, pred_dir, _ = folders
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", tmp_path / "e",
                                       "--lesion-wise")
    assert code == 2 and err.startswith("ERROR: --lesion-wise") and 'pip install ".[brats]"' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()


@pytest.mark.skipif(not _brats_metrics_installed(), reason='needs the brats extra: pip install ".[brats]"')
def test_official_brats_global_dice_equals_ours_and_lesion_wise_scores_are_written(folders, tmp_path, capsys):
    from AllStageTraining.evaluation.brats_metrics import brats_evaluator, lesion_wise_scores
    from AllStageTraining.evaluation.metrics import dice_hd95

    truth_dir, pred_dir, predictions = folders
    truth = truth_labels()
    two_lesions = truth.copy()
    two_lesions[1:3, 1:3, 1:3] = LABEL_ED  # a spurious second lesion
    evaluator = brats_evaluator()
    spacing = SPACING[::-1]
    for pred in [*predictions.values(), two_lesions, np.roll(truth, 3, axis=1)]:
        pred = np.where(pred == 3, LABEL_ET, pred).astype(np.uint8)
        ours = dice_hd95(pred, truth, spacing)
        theirs = lesion_wise_scores(evaluator, pred, truth, spacing)
        for region in ("WT", "TC", "ET"):
            assert theirs[region]["global_dice"] == pytest.approx(ours[region][0], abs=1e-6), region
    spurious = lesion_wise_scores(evaluator, two_lesions, truth, spacing)["WT"]
    assert spurious["fp"] == 1 and spurious["tp"] == 1 and spurious["lesion_dice"] == pytest.approx(1.0)

    out = tmp_path / "eval"
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", out, "--lesion-wise")
    assert code == 0, err
    with (out / "lesion_wise.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(predictions) * 3 and {r["region"] for r in rows} == {"WT", "TC", "ET"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lesion_wise"]["WT"]["lesion_dice"] == pytest.approx(
        np.mean([float(r["lesion_dice"]) for r in rows if r["region"] == "WT"]))


def test_evaluate_a_bundle_on_a_split_then_rescore_its_predictions(tiny_bundle, tiny_split, tmp_path, capsys):
    """``--bundle --split``: a real subprocess segments the test cases in two scenarios and scores them with the
    real-vs-synthesized check; a rerun scores the predictions it kept instead of segmenting again."""
    split = json.loads(tiny_split.read_text())
    out = tmp_path / "bundle_eval"
    args = ("--bundle", tiny_bundle, "--split", tiny_split, "--subset", "test", "--scenarios", "FC,FC12",
            "--out", out, "--threads", "2", "--device", "cpu")
    result = run_evaluate(*args, "--prompt-table-cases", "1", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored_cases"] == split["test"] and summary["scenarios"] == ["FC", "FC12"]
    assert summary["predictions_computed"] == 2 * len(split["test"]) and summary["predictions_reused"] == 0
    assert {p.name for p in (out / "pred" / split["test"][0]).iterdir()} >= {"FC.nii.gz", "FC12.nii.gz"}
    prompts = json.loads((out / "prompts.json").read_text())
    assert prompts["cases"] == split["test"][:1] and "real_mean" in prompts["real_vs_synthesized"]
    assert prompts["intervals"]["gap_mean"]["n"] == 1
    completed = json.loads((tiny_bundle / "bundle.json").read_text())["mae_completes_inputs"]
    lacking = "synthesized" if completed else "zero"  # a display-only MAE leaves the missing T1 and T2 zero
    assert f"all four real minus T1 and T2 {lacking}, mean, 95% interval over the cases" in result.stdout

    code, _, err = evaluate_in_process(capsys, *args)
    assert code == 0, err
    again = json.loads((out / "summary.json").read_text())
    assert again["predictions_reused"] == 2 * len(split["test"]) and again["mean_dice"] == summary["mean_dice"]
    assert json.loads((out / "pred" / "bundle.json").read_text())["content_sha256"] == again["content_sha256"]
    code, _, err = evaluate_in_process(capsys, "--bundle", tiny_bundle, "--out", tmp_path / "x")
    assert code == 2 and "--bundle needs --split" in err
    # predictions another bundle made must not be credited to this one
    (out / "pred" / "bundle.json").write_text(json.dumps({"bundle": "elsewhere", "content_sha256": "0" * 64}))
    code, _, err = evaluate_in_process(capsys, *args)
    assert code == 2 and "predictions of another bundle" in err


def test_evaluate_a_bundles_synthesis_alone_and_paired_against_another_evaluation(tiny_bundle, tiny_split, tmp_path,
                                                                                    capsys):
    """``--synthesis-table --no-segmentation-table``: only the MAE's synthesis table, one row per case and missing
    sequence of each incomplete scenario; a second run ``--against`` the first, whose SSIM brain is lowered by 0.1,
    pairs this minus that to +0.100 and every other score to zero."""
    split = json.loads(tiny_split.read_text())
    first, second = tmp_path / "first", tmp_path / "second"
    args = ("--bundle", tiny_bundle, "--split", tiny_split, "--scenarios", "FC,FC12", "--synthesis-table",
            "--no-segmentation-table", "--threads", "2", "--device", "cpu")
    code, out, err = evaluate_in_process(capsys, *args, "--out", first)
    assert code == 0, err
    assert not (first / "table.csv").exists() and not (first / "summary.json").exists()
    with (first / "synthesis.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case_id"], r["scenario"], r["sequence"]) for r in rows] == [
        (case, "FC", sequence) for case in split["test"] for sequence in ("t1", "t2")]  # FC12 lacks nothing
    assert "| T1 |" in out and not (first / "synthesis_paired.md").exists()
    for row in rows:
        row["ssim_brain"] = float(row["ssim_brain"]) - 0.1
    with (first / "synthesis.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    code, out, err = evaluate_in_process(capsys, *args, "--out", second, "--against", first)
    assert code == 0, err
    paired = (second / "synthesis_paired.md").read_text()
    assert "`second` minus `first`" in paired
    n = len(split["test"])
    for sequence in ("T1", "T2"):
        assert f"| {sequence} | SSIM brain |" in paired and paired.count(f"| {sequence} | PSNR") == 2
    assert paired.count(f"+0.100 [+0.100, +0.100]{'**' if n > 1 else ''} | {n} |") == 2
    assert paired.count("+0.000 [+0.000, +0.000] |") == 4 and paired.count("+0.00 [+0.00, +0.00] |") == 4
    differences = json.loads((second / "synthesis_paired.json").read_text())["differences"]
    assert differences["t1"]["ssim_brain"]["mean"] == pytest.approx(0.1)
    code, _, _ = evaluate_in_process(capsys, *args, "--out", second)  # no --against: no stale paired table
    assert code == 0 and not (second / "synthesis_paired.md").exists()

    bundle = ("--bundle", tiny_bundle, "--split", tiny_split, "--out", tmp_path / "x")
    for extra, message in ((("--no-segmentation-table",), "leaves nothing to do"),
                           (("--against", first), "no table.csv there"),  # segmentation needs its table.csv
                           (("--no-segmentation-table", "--prompt-table-cases", "1", "--against", first),
                            "neither is written here")):
        code, _, err = evaluate_in_process(capsys, *bundle, *extra)
        assert code == 2 and message in err, (extra, err)


def test_evaluate_gives_intervals_and_paired_differences_against_an_earlier_evaluation(folders, tmp_path, capsys):
    truth_dir, pred_dir, _ = folders
    first, second = tmp_path / "first", tmp_path / "second"
    code, out, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", first)
    assert code == 0, err
    intervals = json.loads((first / "summary.json").read_text())["intervals"]
    assert intervals["scenarios"]["mean"]["n"] == 2 and intervals["against"] is None
    wt = intervals["scenarios"]["WT"]
    assert wt["low"] <= wt["mean"] <= wt["high"]
    assert "Dice (%), scenarios, 95% interval over the cases: WT" in out
    code, out, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", second,
                                         "--against", first)
    assert code == 0, err
    same = json.loads((second / "summary.json").read_text())["intervals"]["difference scenarios"]
    assert all(same[part]["mean"] == same[part]["low"] == same[part]["high"] == 0 for part in ("WT", "TC", "ET"))
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", second,
                                       "--against", tmp_path)
    assert code == 2 and "no table.csv there" in err
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", first,
                                       "--against", first)
    assert code == 2 and "another evaluation's folder" in err
    code, _, err = evaluate_in_process(capsys, "--pred", pred_dir, "--truth", truth_dir, "--out", first,
                                       "--subset", "val")
    assert code == 2 and "go with --bundle only" in err
