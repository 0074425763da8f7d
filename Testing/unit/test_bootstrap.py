"""Bootstrap intervals over test cases and seeds, and paired differences."""

import numpy as np
import pytest

from AllStageTraining.evaluation.bootstrap import bootstrap_mean, paired_difference


def _values(seeds=3, cases=12, mean=0.7, spread=0.1, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return {(s, f"case{c:02d}"): float(mean + shift + spread * rng.standard_normal()) for s in range(seeds)
            for c in range(cases)}


def test_interval_holds_the_mean_and_narrows_with_more_cases():
    small, large = _values(cases=6), _values(cases=60)
    a, b = bootstrap_mean(small), bootstrap_mean(large)
    for interval, values in ((a, small), (b, large)):
        assert interval.low < interval.mean < interval.high
        assert interval.mean == pytest.approx(np.mean(list(values.values())))
    assert (b.high - b.low) < (a.high - a.low)
    assert a.n == 18 and a.n_seeds == 3
    assert bootstrap_mean(small) == a  # fixed resampling seed: reproducible to the digit


def test_paired_difference_sees_a_small_shift_that_the_spread_between_cases_hides():
    rng = np.random.default_rng(1)
    base = {(s, f"c{c}"): float(rng.uniform(0.3, 0.95)) for s in range(3) for c in range(12)}
    better = {k: v + 0.02 + 0.005 * rng.standard_normal() for k, v in base.items()}
    unpaired = (bootstrap_mean(better), bootstrap_mean(base))
    assert unpaired[0].low < unpaired[1].high  # the two intervals overlap
    difference = paired_difference(better, base)
    assert difference.excludes_zero and difference.low > 0
    assert difference.mean == pytest.approx(0.02, abs=0.005)


def test_no_difference_gives_an_interval_around_zero_and_empty_input_is_nan():
    a = _values(seed=2)
    rng = np.random.default_rng(3)
    b = {k: v + rng.normal(0, 0.02) for k, v in a.items()}
    assert not paired_difference(a, b).excludes_zero
    empty = bootstrap_mean({})
    assert empty.n == 0 and np.isnan(empty.mean) and empty.format() == "–"
    assert empty.to_json() == {"mean": None, "low": None, "high": None, "n": 0}
    one = bootstrap_mean({(0, "a"): 0.1234567})
    assert one.to_json() == {"mean": 0.123457, "low": 0.123457, "high": 0.123457, "n": 1}
    assert bootstrap_mean({(0, "a"): 0.5, (0, "b"): float("nan")}).n == 1
