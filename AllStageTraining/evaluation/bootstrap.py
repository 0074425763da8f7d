"""Bootstrap confidence intervals over test cases and seeds, for means and paired differences.

Values are keyed by ``(seed, case_id)``: one number per test case of one seed's split (for example a case's
mean Dice over the 15 scenarios). The resampling is hierarchical: draw the seeds with replacement, then, within
each drawn seed, its test cases with replacement; the statistic is the mean over everything drawn. With one seed
this is the ordinary case bootstrap. A paired difference applies the same draws to ``a - b`` over the keys both
methods have, so the variation between cases that both methods share cancels out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Key = tuple[int, str]

#: Resamples per interval and the generator seed: fixed, so that a table is reproducible to the digit.
N_RESAMPLES = 2000
RESAMPLE_SEED = 20240602


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap interval; ``n`` values over ``n_seeds`` seeds."""

    mean: float
    low: float
    high: float
    n: int
    n_seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict:
        """``{"mean", "low", "high", "n"}`` rounded to 6 decimals, None where not finite (no value to resample)."""
        finite = lambda v: round(float(v), 6) if np.isfinite(v) else None  # noqa: E731
        return {"mean": finite(self.mean), "low": finite(self.low), "high": finite(self.high), "n": self.n}

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"mean [low, high]"``, e.g. ``"67.0 [64.2, 69.8]"`` for Dice fractions at scale 100."""
        if not np.isfinite(self.mean):
            return "–"
        f = f"{{:.{digits}f}}"
        return f"{f.format(scale * self.mean)} [{f.format(scale * self.low)}, {f.format(scale * self.high)}]"

    def format_difference(self, scale: float = 100.0, digits: int = 1) -> str:
        """A difference with its signs, ``"+3.2 [+0.5, +6.1]"``; bold when the interval excludes zero and rests on
        two values or more (one value makes no interval); ``"–"`` when there is nothing to show."""
        if self.n == 0 or not np.isfinite(self.mean):
            return "–"
        text = " ".join((signed(self.mean, scale, digits),
                         f"[{signed(self.low, scale, digits)}, {signed(self.high, scale, digits)}]"))
        return f"**{text}**" if self.excludes_zero and self.n > 1 else text


def signed(value: float, scale: float = 100.0, digits: int = 1) -> str:
    """``scale * value`` with its sign, e.g. ``"+3.2"`` (never ``"-0.0"``)."""
    return f"{round(scale * value, digits) + 0.0:+.{digits}f}"


def _grouped(values: Mapping[Key, float]) -> list[np.ndarray]:
    """The values as one float64 array per seed (seeds in sorted order, cases in sorted order)."""
    by_seed: dict[int, list[tuple[str, float]]] = {}
    for (seed, case), value in values.items():
        by_seed.setdefault(int(seed), []).append((str(case), float(value)))
    return [np.array([v for _, v in sorted(items)], dtype=np.float64) for _, items in sorted(by_seed.items())]


def bootstrap_mean(values: Mapping[Key, float], *, level: float = 0.95, n_resamples: int = N_RESAMPLES,
                   seed: int = RESAMPLE_SEED) -> Interval:
    """Mean of ``values`` with its hierarchical bootstrap interval (seeds, then cases within a seed).

    NaN values are dropped. An empty input gives NaN bounds and ``n = 0``.
    """
    groups = [g[np.isfinite(g)] for g in _grouped(values)]
    groups = [g for g in groups if g.size]
    n = sum(g.size for g in groups)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, 0)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for r in range(n_resamples):
        chosen = rng.integers(len(groups), size=len(groups)) if len(groups) > 1 else [0]
        total, count = 0.0, 0
        for g in (groups[i] for i in chosen):
            total += g[rng.integers(g.size, size=g.size)].sum()
            count += g.size
        stats[r] = total / count
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    mean = float(np.concatenate(groups).mean())
    return Interval(mean, float(low), float(high), n, len(groups))


def paired_difference(a: Mapping[Key, float], b: Mapping[Key, float], **kwargs) -> Interval:
    """Mean of ``a - b`` over the keys both have, with its hierarchical bootstrap interval."""
    common = sorted(set(a) & set(b))
    return bootstrap_mean({key: a[key] - b[key] for key in common}, **kwargs)
