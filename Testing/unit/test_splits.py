"""Split files: determinism, missing-ratio arithmetic, missing rates, the prepare CLI, and that a sequence
marked missing is never opened downstream."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_case

from AllStageTraining.cli import main as cli_main
from AllStageTraining.constants import MODALITIES
from AllStageTraining.data.cache import CaseCache
from AllStageTraining.data.discovery import CaseFiles
from AllStageTraining.data.preprocess import ImageError, load_case
from AllStageTraining.data.splits import (
    cases_for_split, load_split, make_split, parse_missing_rates, save_split, scenario_counts,
)


def fake_cases(n, modalities=MODALITIES, label=True, prefix="case"):
    """CaseFiles with paths that are never opened (make_split only looks at names)."""
    return [CaseFiles(f"{prefix}{i:03d}", {m: Path(f"/data/{prefix}{i:03d}/{m}.nii.gz") for m in modalities},
                      Path(f"/data/{prefix}{i:03d}/seg.nii.gz") if label else None) for i in range(n)]


def test_split_sizes_determinism_and_complete_test_cases():
    cases = fake_cases(24) + fake_cases(6, modalities=("flair", "t2"), prefix="partial") + fake_cases(2, label=False, prefix="nolabel")
    split = make_split(cases, seed=3, val_fraction=0.15, test_fraction=0.2)
    assert len(split["test"]) == 6 and len(split["val"]) == 5 and len(split["train"]) == 19  # 30 labelled
    assert split["unlabelled"] == ["nolabel000", "nolabel001"]
    assert not any(cid.startswith("partial") for cid in split["test"])
    everything = split["train"] + split["val"] + split["test"]
    assert len(set(everything)) == 30 and set(split["available"]) == set(everything)
    assert split["available"]["partial000"] == ["flair", "t2"] and split["missing"] == {"mode": "real"}
    assert make_split(cases, seed=3, val_fraction=0.15, test_fraction=0.2) == split
    assert make_split(cases, seed=4, val_fraction=0.15, test_fraction=0.2)["test"] != split["test"]
    with pytest.raises(ValueError, match="only 24 of 30 labelled cases have all four"):
        make_split(cases, seed=0, val_fraction=0.0, test_fraction=0.9)


def test_missing_ratio_arithmetic_and_uniform_subsets():
    kept_counter = Counter()
    for seed in range(200):
        split = make_split(fake_cases(20), seed=seed, val_fraction=0.0, test_fraction=0.0, missing_ratio=0.5)
        reduced = [cid for cid in split["train"] if len(split["available"][cid]) < 4]
        assert len(split["train"]) == 20 and len(reduced) == 10 and split["missing"]["n_cases"] == 10
        assert sorted(reduced) == split["missing"]["cases"]
        for cid in reduced:
            kept = tuple(split["available"][cid])
            assert 1 <= len(kept) <= 3 and list(kept) == [m for m in MODALITIES if m in kept]
            kept_counter[kept] += 1
    assert len(kept_counter) == 14  # every non-empty proper subset occurs
    expected = 2000 / 14
    chi2 = sum((c - expected) ** 2 / expected for c in kept_counter.values())
    assert chi2 < 36.1, kept_counter  # 13 degrees of freedom, p = 0.001
    # rounding half up: 0.25 * 18 = 4.5 -> 5; a second run with the same seed is identical
    split = make_split(fake_cases(18), seed=1, val_fraction=0.0, test_fraction=0.0, missing_ratio=0.25)
    assert split["missing"]["n_cases"] == 5
    assert split == make_split(fake_cases(18), seed=1, val_fraction=0.0, test_fraction=0.0, missing_ratio=0.25)


def test_missing_ratio_respects_real_missing_and_single_sequence_cases():
    cases = fake_cases(5, modalities=("t1",), prefix="single") + fake_cases(5, modalities=("flair", "t1ce"), prefix="two")
    split = make_split(cases, seed=0, val_fraction=0.0, test_fraction=0.0, missing_ratio=0.5)
    assert all(cid.startswith("two") for cid in split["missing"]["cases"]) and len(split["missing"]["cases"]) == 5
    for cid in split["train"]:
        expected = [["t1"]] if cid.startswith("single") else [["flair"], ["t1ce"]]
        assert split["available"][cid] in expected
    with pytest.raises(ValueError, match="needs 8 training cases with at least two sequences, but only 5"):
        make_split(cases, seed=0, val_fraction=0.0, test_fraction=0.0, missing_ratio=0.8)


def test_missing_rates():
    rates = parse_missing_rates("0.2,0.4,0.6,0.8")
    assert rates == {"flair": 0.2, "t1ce": 0.4, "t1": 0.6, "t2": 0.8}
    split = make_split(fake_cases(2000), seed=0, val_fraction=0.1, test_fraction=0.1, missing_rates=rates)
    train = split["train"]
    dropped = {m: np.mean([m not in split["available"][cid] for cid in train]) for m in MODALITIES}
    for m, rate in rates.items():  # the keep-one rule lowers each rate by at most P(all dropped) = 0.0384
        assert rate - 0.07 < dropped[m] < rate + 0.035, (m, dropped[m])
    assert all(split["available"][cid] for cid in train)
    assert all(len(split["available"][cid]) == 4 for cid in split["test"] + split["val"])
    everything = make_split(fake_cases(50), seed=1, val_fraction=0, test_fraction=0,
                            missing_rates=dict.fromkeys(MODALITIES, 1.0))
    assert {len(v) for v in everything["available"].values()} == {1}
    with pytest.raises(ValueError, match="needs 4 comma-separated numbers"):
        parse_missing_rates("0.1,0.2")


def test_save_load_and_scenario_counts(tmp_path):
    split = make_split(fake_cases(30), seed=2, val_fraction=0.1, test_fraction=0.1, missing_ratio=1.0)
    save_split(split, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json") == split
    counts = scenario_counts(split)
    assert sum(counts.values()) == len(split["train"]) and "FC12" not in counts


def _written_cases(root, n=6):
    for i in range(n):
        write_case(root, f"BraTS20_Training_{i:03d}", seed=i)
    write_case(root, "BraTS20_Training_900", modalities=("flair", "t1"), seed=9)


def test_prepare_cli_subprocess_and_dropped_sequences_are_never_opened(tmp_path):
    data = tmp_path / "data"
    _written_cases(data)
    out = tmp_path / "split.json"
    result = subprocess.run([sys.executable, "-m", "AllStageTraining", "prepare", "--data", str(data), "--out", str(out),
                             "--seed", "1", "--val-fraction", "0", "--test-fraction", "0.3", "--missing-ratio", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cases: 5 train, 0 val, 2 test (seed 1)" in result.stdout
    assert "training cases per scenario:" in result.stdout
    split = load_split(out)
    assert split["data_root"] == str(data.resolve()) and split["missing"]["n_cases"] == 5

    # overwrite every dropped training sequence with garbage: nothing downstream may notice
    garbage = []
    for cid in split["train"]:
        for path in sorted((data / cid).glob("*.nii.gz")):
            modality = path.name[len(cid) + 1: -len(".nii.gz")]
            if modality in MODALITIES and modality not in split["available"][cid]:
                path.write_bytes(os.urandom(200))
                garbage.append(path)
    assert garbage
    with pytest.raises(ImageError, match="cannot read"):  # the garbage really is unreadable
        load_case({"flair": garbage[0]}, case_id="g")

    train = cases_for_split(split, "train")
    assert [c.case_id for c in train] == split["train"]
    cache = CaseCache(tmp_path / "cache")
    for case in train:
        assert list(case.modalities) == split["available"][case.case_id]
        assert not set(case.images.values()) & set(garbage)
        pre = cache.get(case)
        assert pre.available.tolist() == [m in split["available"][case.case_id] for m in MODALITIES]
        assert not np.asarray(pre.image)[~pre.available].any()
    test = cases_for_split(split, "test")
    assert all(c.complete for c in test)


def test_prepare_reports_bad_cases_and_skip_bad(tmp_path, capsys):
    data = tmp_path / "data"
    _written_cases(data, n=3)
    write_case(data, "broken", modalities=())
    out = tmp_path / "split.json"
    args = ["prepare", "--data", str(data), "--out", str(out), "--test-fraction", "0", "--val-fraction", "0"]
    assert cli_main(args) == 2
    assert "broken: no image at all" in capsys.readouterr().err and not out.exists()
    assert cli_main(args + ["--skip-bad", "--missing-rates", "0.5,0.5,0.5,0.5"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: skipped: broken" in captured.err and "rates flair 0.5" in captured.out
    split = json.loads(out.read_text())
    assert "broken" not in split["available"] and split["missing"]["mode"] == "rates"
    with pytest.raises(SystemExit):
        cli_main(args + ["--missing-ratio", "0.5", "--missing-rates", "0,0,0,0"])


def test_missing_settings_name_their_folders_and_make_their_splits():
    from AllStageTraining.data.splits import MissingSetting

    ratio, rates = MissingSetting(ratio=0.5), MissingSetting.parse_rates("0.6,0.4,0.2,0.8")
    assert (ratio.tag, ratio.label, MissingSetting(ratio=0.0).tag) == ("r0.5", "ratio 0.5", "r0")
    assert rates.tag == "rates0.6-0.4-0.2-0.8" and rates.label == "rates FLAIR 0.6, T1ce 0.4, T1 0.2, T2 0.8"
    assert [MissingSetting.from_dict(json.loads(json.dumps(s.to_dict()))) for s in (ratio, rates)] == [ratio, rates]
    cases = fake_cases(20)
    by_rates = make_split(cases, seed=1, val_fraction=0.1, test_fraction=0.2, **rates.split_arguments())
    by_ratio = make_split(cases, seed=1, val_fraction=0.1, test_fraction=0.2, **ratio.split_arguments())
    assert by_rates["missing"]["rates"] == dict(zip(MODALITIES, (0.6, 0.4, 0.2, 0.8)))
    assert by_ratio["missing"]["mode"] == "ratio" and by_ratio["missing"]["ratio"] == 0.5
    # the same test and validation cases for every setting of a seed
    assert (by_rates["test"], by_rates["val"]) == (by_ratio["test"], by_ratio["val"])
    for bad in ({"ratio": 1.5}, {"rates": (0.1, 0.2)}, {}, {"ratio": 0.5, "rates": (0, 0, 0, 0)}):
        with pytest.raises(ValueError):
            MissingSetting(**bad)
