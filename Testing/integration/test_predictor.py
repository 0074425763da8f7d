"""Predictor on the tiny bundle: every scenario, output geometry, resampling, run folder == bundle, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AllStageTraining.constants import MODALITIES, SCENARIOS
from AllStageTraining.inference.errors import InputError
from AllStageTraining.inference.predictor import Predictor
from AllStageTraining.runtime import cpu_has_native_bfloat16

from inference_helpers import (TINY_DIRECTION, TINY_ORIGIN, TINY_SHAPE, TINY_SPACING, save_tiny_run, synthetic_head,
                               to_image)


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return Predictor.from_bundle(tiny_bundle, "cpu")


@pytest.fixture(scope="module")
def head():
    return {m: to_image(a) for m, a in synthetic_head(0).items()}


def _same_grid(image: sitk.Image, reference: sitk.Image) -> bool:
    return (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing())
            and np.allclose(image.GetOrigin(), reference.GetOrigin())
            and np.allclose(image.GetDirection(), reference.GetDirection()))


def test_every_scenario_predicts_on_the_reference_grid(predictor, head):
    mae_calls = []
    hook = predictor.mae.register_forward_hook(lambda *args: mae_calls.append(1))
    try:
        for scenario in SCENARIOS:
            images = {m: (head[m] if m in scenario.modalities else None) for m in MODALITIES}
            fractions = []
            result = predictor.predict(images, progress=lambda f, s: fractions.append(f))
            assert result.scenario == scenario
            assert _same_grid(result.labels, head["flair"])
            assert result.labels.GetPixelID() == sitk.sitkUInt8
            assert set(np.unique(sitk.GetArrayFromImage(result.labels))) <= {0, 1, 2, 4}
            assert sorted(result.reconstructions) == sorted(scenario.missing)
            for image in result.reconstructions.values():
                assert _same_grid(image, head["flair"]) and image.GetPixelID() == sitk.sitkFloat32
                values = sitk.GetArrayFromImage(image)
                assert np.isfinite(values).all() and values.max() > 0
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
    finally:
        hook.remove()
    assert len(mae_calls) == 14  # one MAE pass per incomplete scenario, none for FC12


def test_the_segmenter_gets_the_prompt_of_the_sequences_given(predictor, head):
    """A predictor that always used the full-set prompt (or any other) would fail here."""
    prompts = []
    hook = predictor.segmenter.register_forward_pre_hook(lambda module, args: prompts.append(args[1].tolist()))
    try:
        for scenario in SCENARIOS:
            predictor.predict({m: (head[m] if m in scenario.modalities else None) for m in MODALITIES})
    finally:
        hook.remove()
    assert prompts == [[s.index] for s in SCENARIOS]


@pytest.mark.parametrize("choice", ["auto", "bfloat16", "float32"])
def test_bfloat16_runs_where_the_choice_says_auto_only_with_t1ce(tiny_bundle, head, choice):
    """Both networks compute under bfloat16 autocast for every set with ``bfloat16``, never with ``float32``, and
    with ``auto`` only for the sets that include T1ce, where the CPU computes bfloat16 natively; the log says so."""
    predictor = Predictor.from_bundle(tiny_bundle, "cpu", precision=choice)
    seen = []
    hooks = [model.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
             for model in (predictor.mae, predictor.segmenter)]
    try:
        for scenario in (s for s in SCENARIOS if s.short in ("FC12", "C", "F12", "2")):
            seen.clear()
            result = predictor.predict({m: (head[m] if m in scenario.modalities else None) for m in MODALITIES})
            expected = choice == "bfloat16" or (choice == "auto" and cpu_has_native_bfloat16()
                                                and "t1ce" in scenario.modalities)
            assert seen and all(on == expected for on in seen), (scenario.short, seen)
            line = next(line for line in result.log if "; device cpu, " in line)
            assert ("device cpu, bfloat16" in line) == expected, line
            assert ("(bfloat16 only with T1ce)" in line) == (choice == "auto" and cpu_has_native_bfloat16()
                                                            and not expected), line
    finally:
        for hook in hooks:
            hook.remove()


def test_outputs_follow_the_input_geometry_not_lps(predictor, head):
    result = predictor.predict({"t2": head["t2"]})
    assert result.labels.GetDirection() == pytest.approx(TINY_DIRECTION)
    assert result.labels.GetOrigin() == pytest.approx(TINY_ORIGIN)
    assert result.labels.GetSpacing() == pytest.approx(TINY_SPACING)
    # Labels never leave the brain (the nonzero voxels of the inputs).
    labels = sitk.GetArrayFromImage(result.labels)
    assert not labels[sitk.GetArrayFromImage(head["t2"]) == 0].any()


def test_mismatched_inputs_are_resampled_and_logged(predictor, head):
    coarse = sitk.Resample(head["t1"], [16, 18, 14], sitk.Transform(), sitk.sitkLinear, head["t1"].GetOrigin(),
                           [2.2, 1.8, 2.6], head["t1"].GetDirection(), 0.0, sitk.sitkFloat32)
    result = predictor.predict({"flair": head["flair"], "t1": coarse})
    assert any(line.startswith("T1: resampled") and "FLAIR" in line for line in result.log), result.log
    assert _same_grid(result.labels, head["flair"])
    # The caller may name the reference: then the outputs use the coarse grid.
    on_t1 = predictor.predict({"flair": head["flair"], "t1": coarse}, reference="t1")
    assert _same_grid(on_t1.labels, coarse) and any(line.startswith("FLAIR: resampled") for line in on_t1.log)


def test_run_folder_and_bundle_predict_identically(tiny_run, predictor, head):
    from_run = Predictor.from_run(tiny_run, "cpu")
    images = {"t1ce": head["t1ce"], "t2": head["t2"]}
    a, b = from_run.predict(images), predictor.predict(images)
    assert np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels))
    for m in ("flair", "t1"):
        assert np.array_equal(sitk.GetArrayFromImage(a.reconstructions[m]), sitk.GetArrayFromImage(b.reconstructions[m]))


def test_sliding_window_covers_the_crop(tiny_bundle, head):
    windowed = Predictor.from_bundle(tiny_bundle, "cpu")
    windowed.cfg.inference.window = (16, 16, 16)
    windowed.cfg.inference.overlap = 0.25
    result = windowed.predict({"flair": head["flair"], "t1ce": head["t1ce"]})
    assert _same_grid(result.labels, head["flair"]) and sorted(result.reconstructions) == ["t1", "t2"]
    # A window at least as large as the crop is one pass: identical to window=None.
    whole = Predictor.from_bundle(tiny_bundle, "cpu")
    big = Predictor.from_bundle(tiny_bundle, "cpu")
    big.cfg.inference.window = (256, 256, 256)
    images = {"flair": head["flair"]}
    assert np.array_equal(sitk.GetArrayFromImage(whole.predict(images).labels),
                          sitk.GetArrayFromImage(big.predict(images).labels))


def test_sliding_windows_get_their_own_boxes_and_a_float32_cpu_pass_takes_several_per_call(tiny_bundle):
    """Each window of a call gets the MAE box of its own place in the crop and its output goes back there;
    float32 on the CPU batches CPU_FLOAT32_WINDOWS_PER_CALL small windows per call with the outputs of one at a
    time; bfloat16, large windows and a setting below 1 run one per call."""
    from AllStageTraining.data.dataset import normalized_box
    from AllStageTraining.inference.predictor import CPU_FLOAT32_WINDOWS_PER_CALL as per_call

    predictor = Predictor.from_bundle(tiny_bundle, "cpu", precision="float32")
    predictor.cfg.inference.window, predictor.cfg.inference.overlap = (16, 16, 16), 0.25
    scenario = next(s for s in SCENARIOS if s.short == "F2")
    crop, padded = (40, 36, 28), (40, 40, 32)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in padded], indexing="ij"))[None]
    calls, boxes_ok = [], []

    def where(windows, boxes):  # each window's z, y, x indices: its start is its minimum
        calls.append(len(windows))
        for window, box in zip(windows, boxes):
            starts = [int(window[axis].min()) for axis in range(3)]
            boxes_ok.append(np.allclose(box.numpy(), normalized_box(starts, tuple(window.shape[1:]), crop)))
        return windows

    stitched = predictor.run_network(where, grid, crop, scenario)
    assert all(boxes_ok) and len(boxes_ok) == sum(calls) > per_call
    assert max(calls) == per_call and set(calls[:-1]) == {per_call}
    assert torch.allclose(stitched, grid, atol=1e-3)  # every window's output went back to its own place

    x = torch.randn(1, 4, *padded)
    index = torch.tensor([scenario.index])
    segment = lambda v, box: predictor.segmenter(v, index.expand(len(v)), deep=False)["logits"]  # noqa: E731
    batched = predictor.run_network(segment, x, crop, scenario)
    predictor.cpu_float32_windows = 1
    assert torch.allclose(predictor.run_network(segment, x, crop, scenario), batched, atol=1e-4)

    predictor.cpu_float32_windows = per_call
    assert predictor.windows_per_call(scenario, (16, 16, 16)) == per_call
    assert predictor.windows_per_call(scenario, (128, 128, 128)) == 1  # oneDNN already; 4x the memory
    predictor.cpu_float32_windows = 0
    assert predictor.windows_per_call(scenario, (16, 16, 16)) == 1
    bfloat16 = Predictor.from_bundle(tiny_bundle, "cpu", precision="bfloat16")
    assert bfloat16.windows_per_call(scenario, (16, 16, 16)) == 1


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_log_says_the_windows_and_how_many_per_call(tiny_bundle, head, precision):
    windowed = Predictor.from_bundle(tiny_bundle, "cpu", precision=precision)
    windowed.cfg.inference.window, windowed.cfg.inference.overlap = (16, 16, 16), 0.25
    result = windowed.predict({"flair": head["flair"], "t2": head["t2"]})
    per_call = windowed.cpu_float32_windows if precision == "float32" else 1
    assert any(line.endswith(f"; sliding windows 16x16x16, overlap 0.25, {per_call} per call") for line in result.log)
    one_pass = Predictor.from_bundle(tiny_bundle, "cpu", precision=precision).predict({"flair": head["flair"]})
    assert any("; device cpu, " in line and line.endswith("; one pass") for line in one_pass.log)


def test_crop_window_is_the_training_crop(tiny_bundle, head):
    # "crop": sliding windows of data.crop_size, exactly as if that size had been given
    by_name, by_size = Predictor.from_bundle(tiny_bundle, "cpu"), Predictor.from_bundle(tiny_bundle, "cpu")
    by_name.cfg.data.crop_size = (16, 16, 16)
    by_name.cfg.inference.window, by_size.cfg.inference.window = "crop", (16, 16, 16)
    by_name.cfg.inference.overlap = by_size.cfg.inference.overlap = 0.25
    images = {"flair": head["flair"], "t2": head["t2"]}
    a, b = by_name.predict(images), by_size.predict(images)
    assert np.array_equal(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels))
    one_pass = Predictor.from_bundle(tiny_bundle, "cpu").predict(images)
    assert not np.array_equal(sitk.GetArrayFromImage(one_pass.reconstructions["t1"]),
                              sitk.GetArrayFromImage(a.reconstructions["t1"]))


def test_bad_inputs_raise_input_error(predictor, head, tmp_path):
    with pytest.raises(InputError, match="no sequence given"):
        predictor.predict({m: None for m in MODALITIES})
    with pytest.raises(InputError, match="does not exist"):
        predictor.predict({"flair": tmp_path / "missing.nii.gz"})
    empty = to_image(np.zeros(TINY_SHAPE, np.float32))
    with pytest.raises(InputError, match="empty"):
        predictor.predict({"flair": head["flair"], "t2": empty})
    nan = to_image(np.full(TINY_SHAPE, np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        predictor.predict({"t1": nan})
    with pytest.raises(InputError, match="reference sequence 't2' was not given"):
        predictor.predict({"flair": head["flair"]}, reference="t2")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read FLAIR"):
        predictor.predict({"flair": tmp_path / "junk.nii.gz"})


def test_benchmark_child_times_counts_and_writes(tiny_bundle, make_case, tmp_path):
    from AllStageTraining.benchmark import child_ours, count_flops_ours, label_agreement, markdown_table

    case = make_case(seed=5)
    spec = {"bundle": str(tiny_bundle), "device": "cpu", "threads": None, "precision": "float32", "window": None,
            "overlap": 0.0, "out": str(tmp_path), "images": {m: str(p) if m != "t2" else None for m, p in case.items()}}
    result = child_ours(spec)
    assert result["io_s"] >= result["model_s"] > 0 and result["peak_rss_mb"] > 50
    assert (tmp_path / "seg.nii.gz").is_file() and (tmp_path / "recon_t2.nii.gz").is_file()
    agreement = label_agreement(result["labels"], result["labels"])
    assert (agreement["WT"], agreement["TC"], agreement["ET"]) == (1.0, 1.0, 1.0) and set(agreement["voxels"]) == {"WT", "TC", "ET"}
    # Fully convolutional: FLOPs grow with the voxel count; the MAE pass adds to the segmenter's.
    cfg = Predictor.from_bundle(tiny_bundle, "cpu").cfg
    small, large = count_flops_ours(cfg, (16, 16, 16), False), count_flops_ours(cfg, (32, 32, 32), False)
    assert 7.5 * small < large < 8.5 * small
    assert count_flops_ours(cfg, (16, 16, 16), True) > 1.5 * small
    report = {"device": "cpu", "device_name": "x", "threads": 1, "case": "tiny", "load_average_at_start": None,
              "runs": {"ours": {**result, "ratio_to_segresnet": 0.5}}, "step_rates": {}}
    assert "| ours |" in markdown_table(report)


def test_benchmark_times_a_trained_bundle_in_its_own_windows_one_and_several_per_float32_call(tiny_run, make_case,
                                                                                                tmp_path):
    import shutil

    from AllStageTraining.benchmark import child_ours
    from AllStageTraining.benchmark.run import plan
    from AllStageTraining.config import RunConfig
    from AllStageTraining.inference.bundle import export_bundle

    assert all(spec.get("images") != "no_t1ce" for quick in (False, True) for _, _, spec in plan(quick, "bfloat16"))
    for quick, repeat in ((False, 3), (True, 1)):
        rows = [spec for _, _, spec in plan(quick, "bfloat16", "b") if spec.get("images") == "no_t1ce"]
        assert [row.get("cpu_float32_windows") for row in rows] == [1, None]
        assert all(row["bundle"] == "b" and row["window"] == "bundle" and row["repeat"] == repeat for row in rows)
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # a bundle whose own window is not the spec's
    cfg = RunConfig.load(run / "config.json")
    cfg.inference.window, cfg.inference.overlap = (16, 16, 16), 0.25
    cfg.save(run / "config.json")
    bundle = export_bundle(run, tmp_path / "bundle", {"note": "random weights, for tests only"})
    case = make_case(seed=5)
    spec = {"bundle": str(bundle), "device": "cpu", "threads": None, "precision": "float32", "window": "bundle",
            "overlap": 0.0, "out": str(tmp_path / "own"), "cpu_float32_windows": 1,
            "images": {m: str(p) if m in ("flair", "t2") else None for m, p in case.items()}}
    own = child_ours(spec)
    assert (own["window"], own["overlap"], own["windows_per_call"]) == ([16, 16, 16], 0.25, 1)
    assert own["precision"] == "float32" and own["flops"] is None  # windows: no one-pass FLOP count
    default = child_ours({**spec, "out": str(tmp_path / "default"), "cpu_float32_windows": 4})
    assert default["windows_per_call"] == 4 and label_equal(own["labels"], default["labels"])
    one_pass = child_ours({**spec, "window": None, "out": str(tmp_path / "one_pass")})
    assert one_pass["window"] is None and one_pass["windows_per_call"] is None and one_pass["flops"] > 0


@pytest.mark.parametrize("method", ["ours", "ours-display-mae"])
def test_benchmark_child_without_synthesis_counts_the_mae_only_where_the_labels_need_it(method, make_case, tmp_path):
    """``synthesize: False`` writes no synthesized sequence; the MAE pass (timed and counted) stays only for a
    method whose MAE completes the segmenter's inputs."""
    from AllStageTraining.benchmark import child_ours, count_flops_ours
    from AllStageTraining.inference.bundle import export_bundle

    bundle = export_bundle(save_tiny_run(tmp_path / "run", method=method), tmp_path / "bundle", {"note": "test"})
    case = make_case(seed=6)
    base = {"bundle": str(bundle), "device": "cpu", "threads": None, "precision": "float32", "window": None,
            "overlap": 0.0, "images": {m: str(p) if m in ("flair", "t1ce") else None for m, p in case.items()}}
    shown = child_ours({**base, "out": str(tmp_path / "shown")})
    labels_only = child_ours({**base, "out": str(tmp_path / "labels"), "synthesize": False})
    assert sorted(p.name for p in (tmp_path / "shown").glob("recon_*")) == ["recon_t1.nii.gz", "recon_t2.nii.gz"]
    assert not list((tmp_path / "labels").glob("recon_*"))
    cfg = Predictor.from_bundle(bundle, "cpu").cfg
    shape = labels_only["padded_shape"]
    assert shown["flops"] == count_flops_ours(cfg, shape, True)
    assert labels_only["flops"] == count_flops_ours(cfg, shape, method == "ours")
    assert label_equal(shown["labels"], labels_only["labels"])


def label_equal(path_a: str, path_b: str) -> bool:
    return np.array_equal(*(sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in (path_a, path_b)))
