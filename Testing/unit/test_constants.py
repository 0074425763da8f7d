"""The fixed conventions: scenario order, masks, names, prompts, regions."""

import itertools

import pytest

from AllStageTraining import constants as C


def test_fifteen_unique_nonempty_subsets_in_literature_order():
    masks = [s.mask for s in C.SCENARIOS]
    assert len(masks) == 15 == len(set(masks))
    every_nonempty = {m for m in itertools.product([False, True], repeat=4) if any(m)}
    assert set(masks) == every_nonempty
    assert [s.short for s in C.SCENARIOS] == "2 C 1 F C2 C1 F1 12 F2 FC FC1 F12 FC2 C12 FC12".split()
    assert [s.index for s in C.SCENARIOS] == list(range(15))
    assert C.FULL_SCENARIO.mask == (True, True, True, True)


def test_short_names_follow_the_modality_codes():
    assert C.MODALITIES == ("flair", "t1ce", "t1", "t2")
    fc2 = C.scenario_by_short("FC2")
    assert fc2.modalities == ("flair", "t1ce", "t2")
    assert fc2.missing == ("t1",)
    assert fc2.display == "FLAIR + T1ce + T2"
    assert C.scenario_from_modalities(["t2", "flair", "t1ce"]) is fc2
    assert C.scenario_from_mask((0, 1, 0, 0)).short == "C"


def test_invalid_scenarios_are_refused_with_a_message():
    with pytest.raises(ValueError, match="at least one sequence"):
        C.scenario_from_mask((0, 0, 0, 0))
    with pytest.raises(ValueError, match="unknown sequence"):
        C.scenario_from_modalities(["pd"])
    with pytest.raises(ValueError, match="unknown scenario"):
        C.scenario_by_short("X")


def test_prompts_are_distinct_and_name_present_and_missing():
    prompts = [s.prompt for s in C.SCENARIOS]
    assert len(set(prompts)) == 15
    assert C.scenario_by_short("FC").prompt == "A brain MRI scan with FLAIR and T1ce available; T1 and T2 missing."
    assert C.FULL_SCENARIO.prompt.endswith("T1 and T2 available; none missing.")


def test_regions_are_nested_label_sets():
    assert C.REGIONS == ("WT", "TC", "ET")
    assert C.REGION_LABELS["ET"] < C.REGION_LABELS["TC"] < C.REGION_LABELS["WT"]
    assert set(C.LABEL_NAMES) == set(C.REGION_LABELS["WT"]) == {1, 2, 4}
