"""Which subsets the stage-2 views keep: uniform over the subsets of A, or balanced over the 15 scenarios."""

from collections import Counter

import pytest
import torch

from AllStageTraining.constants import SCENARIOS
from AllStageTraining.training.scenario_sampling import draw_subsets, mask_code, subset_probabilities


def _frequencies(present_sets, mode, draws_per_case=4000):
    table = subset_probabilities(present_sets, mode)
    available = torch.tensor([m for m in present_sets for _ in range(draws_per_case)])
    subsets = draw_subsets(available, table, torch.Generator().manual_seed(0))
    assert bool(subsets.any(1).all()) and not bool((subsets & ~available).any())
    counts = Counter(mask_code(row) for row in subsets.tolist())
    return {code: n / len(subsets) for code, n in counts.items()}


def test_uniform_draws_every_subset_of_a_equally_often():
    frequencies = _frequencies([[True, False, True, True]], "uniform")
    assert len(frequencies) == 7  # every non-empty subset of {flair, t1, t2}, A itself included
    assert all(abs(f - 1 / 7) < 0.02 for f in frequencies.values())
    single = draw_subsets(torch.tensor([[False, True, False, False]] * 20), subset_probabilities([], "uniform"))
    assert single.tolist() == [[False, True, False, False]] * 20


def test_balanced_makes_every_scenario_equally_frequent_where_uniform_does_not():
    # a ratio-style split: complete cases plus one case for each proper subset of the sequences
    present_sets = [[True] * 4] * 6 + [list(s.mask) for s in SCENARIOS[:-1]]
    uniform = _frequencies(present_sets, "uniform", 2000)
    balanced = _frequencies(present_sets, "balanced", 2000)
    single, triple = mask_code([True, False, False, False]), mask_code([True, True, True, False])
    assert uniform[single] > 1.5 * uniform[triple]  # one-sequence scenarios drawn more often
    assert len(balanced) == len(SCENARIOS)
    assert all(abs(f - 1 / 15) < 0.01 for f in balanced.values())


def test_balanced_narrows_the_spread_when_exact_balance_is_impossible():
    # complete cases and FLAIR + T1ce cases: the latter alone draw F, C and FC a sixth of the time each
    present_sets = [[True, True, True, True], [True, True, False, False]]
    uniform = _frequencies(present_sets, "uniform")
    balanced = _frequencies(present_sets, "balanced")
    spread = lambda f: max(f.values()) / min(f.values())  # noqa: E731
    assert len(balanced) == len(SCENARIOS) and spread(balanced) < spread(uniform) / 1.5
    table = subset_probabilities(present_sets, "balanced")
    assert torch.allclose(table[[3, 15]].sum(1), torch.ones(2, dtype=table.dtype))


def test_balanced_equals_uniform_when_every_case_is_complete():
    complete = [[True] * 4]
    assert torch.allclose(subset_probabilities(complete, "balanced"), subset_probabilities(complete, "uniform"))


def test_unknown_mode_and_empty_cases_are_refused():
    with pytest.raises(ValueError):
        subset_probabilities([[True] * 4], "sometimes")
    with pytest.raises(ValueError):
        subset_probabilities([[False] * 4], "balanced")
