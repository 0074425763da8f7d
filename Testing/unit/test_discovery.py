"""Case discovery over the BraTS 2018, 2019-2021 and 2023+ layouts, with missing files and bad names."""

import re

import pytest
from data_helpers import write_case

from AllStageTraining.data.discovery import DiscoveryError, find_cases


def test_brats2020_layout_with_missing_sequence_and_no_label(tmp_path):
    write_case(tmp_path, "BraTS20_Training_002")
    write_case(tmp_path, "BraTS20_Training_001", modalities=("flair", "t1ce", "t2"))
    write_case(tmp_path, "BraTS20_Training_003", label=False, extension=".nii")
    (tmp_path / "name_mapping.csv").write_text("not a case\n")
    (tmp_path / "cache" / "BraTS20_Training_001" / "0123abcd").mkdir(parents=True)  # not data: ignored
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003"]
    first, second, third = cases
    assert first.available == (True, True, False, True) and first.modalities == ("flair", "t1ce", "t2")
    assert first.images["t1ce"].name == "BraTS20_Training_001_t1ce.nii.gz"
    assert first.label.name == "BraTS20_Training_001_seg.nii.gz" and not first.complete
    assert second.complete and second.convention == "brats2020"
    assert third.label is None and third.images["t1"].name.endswith("_t1.nii")


def test_brats2018_layout_in_hgg_lgg_folders(tmp_path):
    write_case(tmp_path / "HGG", "Brats18_2013_2_1")
    write_case(tmp_path / "LGG", "Brats18_TCIA10_103_1", extension=".nii", modalities=("t1", "t2"))
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["Brats18_2013_2_1", "Brats18_TCIA10_103_1"]
    assert {c.convention for c in cases} == {"brats2018"}
    assert cases[1].available == (False, False, True, True)
    assert cases[1].images["t1"].parent.parent.name == "LGG"


def test_brats2023_layout(tmp_path):
    paths = write_case(tmp_path, "BraTS-GLI-00000-000", convention="brats2023")
    write_case(tmp_path, "BraTS-GLI-00002-000", convention="brats2023", modalities=("t1ce",))
    cases = find_cases(tmp_path)
    assert [c.convention for c in cases] == ["brats2023", "brats2023"]
    assert cases[0].images == {"flair": paths["flair"], "t1ce": paths["t1ce"], "t1": paths["t1"], "t2": paths["t2"]}
    assert cases[0].images["flair"].name.endswith("-t2f.nii.gz") and cases[0].label.name.endswith("-seg.nii.gz")
    assert cases[1].available == (False, True, False, False)


def test_loose_files_in_root_are_grouped_by_name(tmp_path):
    for case_id in ("a", "b"):
        for path in write_case(tmp_path, case_id).values():
            path.rename(tmp_path / path.name)
        (tmp_path / case_id).rmdir()
    cases = find_cases(tmp_path)
    assert [(c.case_id, c.complete) for c in cases] == [("a", True), ("b", True)]


def _bad_folder(root):
    write_case(root, "good_1")
    write_case(root, "good_2", convention="brats2023")
    write_case(root, "only_label", modalities=())
    paths = write_case(root, "double_flair")
    (paths["flair"].parent / "double_flair_flair.nii").write_bytes(b"x")
    paths = write_case(root, "odd_name")
    (paths["t2"].parent / "odd_name_T2weighted.nii.gz").write_bytes(b"x")
    (root / "empty_case").mkdir()


def test_bad_cases_are_all_named_in_one_error(tmp_path):
    _bad_folder(tmp_path)
    with pytest.raises(DiscoveryError) as raised:
        find_cases(tmp_path)
    message = str(raised.value)
    assert "4 problem(s)" in message
    assert re.search(r"only_label: no image at all", message)
    assert re.search(r"empty_case: no image at all", message)
    assert re.search(r"double_flair: two or more files for the sequence flair: double_flair_flair.nii, "
                     r"double_flair_flair.nii.gz", message)
    assert re.search(r"odd_name: unrecognised file name 'odd_name_T2weighted.nii.gz'", message)
    assert "good_1" not in message and "good_2" not in message


def test_non_strict_returns_good_cases_and_problems(tmp_path):
    _bad_folder(tmp_path)
    cases, problems = find_cases(tmp_path, strict=False)
    assert [c.case_id for c in cases] == ["good_1", "good_2"]
    assert len(problems) == 4 and all(isinstance(p, str) for p in problems)


def test_duplicate_case_names_and_empty_root(tmp_path):
    write_case(tmp_path / "HGG", "same")
    write_case(tmp_path / "LGG", "same")
    with pytest.raises(DiscoveryError, match="same: the same case name occurs twice"):
        find_cases(tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DiscoveryError, match="no BraTS case found"):
        find_cases(tmp_path / "nothing")
    with pytest.raises(DiscoveryError, match="is not a folder"):
        find_cases(tmp_path / "absent")


def test_restricted_case_hides_dropped_paths(tmp_path):
    case = find_cases(write_case(tmp_path, "c")["flair"].parent.parent)[0]
    kept = case.restricted(["t1", "flair"])
    assert set(kept.images) == {"flair", "t1"} and kept.available == (True, False, True, False)
    assert set(case.images) == {"flair", "t1ce", "t1", "t2"}  # the original is unchanged
    with pytest.raises(ValueError, match="have no file"):
        kept.restricted(["t2"])
