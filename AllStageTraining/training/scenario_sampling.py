"""Which real sequences a stage-2 view keeps: a non-empty subset S of a sample's present set A.

Availability masks are coded as integers, bit ``m`` for ``MODALITIES[m]`` (so 15 = all four). ``uniform`` draws
each of the 2^|A| - 1 non-empty subsets of A with equal probability. That makes the 15 scenarios unequally
frequent as soon as some training cases are incomplete: a case with FLAIR and T1ce only yields FLAIR, T1ce or
both, never a three-sequence scenario, so one-sequence scenarios end up trained about three times as often as
three-sequence ones. ``balanced`` reweights the subsets of each A (iterative proportional fitting over the
training set's present sets) so that every scenario that some case can produce is drawn equally often overall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
from torch import Tensor

from ..constants import NUM_MODALITIES

N_CODES = 2**NUM_MODALITIES
SAMPLING_CHOICES = ("uniform", "balanced")
#: Floor of a subset's weight relative to the largest: exact balance can be impossible (cases with FLAIR and T1ce
#: only already over-supply F, C and FC), and then the fit starves those subsets in the other cases' draws.
MIN_RELATIVE_WEIGHT = 1e-3


def mask_code(mask) -> int:
    """4 booleans in MODALITIES order -> bit code (bit m set when MODALITIES[m] is present)."""
    return sum(int(bool(v)) << m for m, v in enumerate(mask))


def codes(masks: Tensor) -> Tensor:
    """(B, 4) bool -> (B,) long bit codes."""
    weights = 2 ** torch.arange(masks.shape[1], device=masks.device)
    return (masks.long() * weights).sum(1)


def _subset_support() -> Tensor:
    """(16, 16) bool: [A, S] is True when S is a non-empty subset of A."""
    a = torch.arange(N_CODES)[:, None]
    s = torch.arange(N_CODES)[None, :]
    return (s & a == s) & (s > 0)


def subset_probabilities(present_sets: Iterable, mode: str = "uniform", iterations: int = 500) -> Tensor:
    """(16, 16) float64 table P[A, S]: the probability of keeping S when a sample has present set A.

    present_sets: the training cases' availability masks (one per case; cases are drawn uniformly).
    ``uniform``: P[A, S] = 1 / (2^|A| - 1). ``balanced``: P[A, S] proportional to a weight w[S] shared by all A,
    fitted so that the resulting frequency of each reachable scenario over the training cases is equal. Rows of
    present sets that no case has are still filled (uniform weights there), so any A can be drawn.
    """
    if mode not in SAMPLING_CHOICES:
        raise ValueError(f"student subset sampling must be one of {SAMPLING_CHOICES}, not {mode!r}")
    support = _subset_support().double()
    weights = torch.ones(N_CODES, dtype=torch.float64)
    if mode == "balanced":
        counts = Counter(mask_code(m) for m in present_sets)
        if not counts or 0 in counts:
            raise ValueError("every training case needs at least one sequence")
        case_share = torch.zeros(N_CODES, dtype=torch.float64)
        for code, count in counts.items():
            case_share[code] = count / sum(counts.values())
        reachable = (case_share[:, None] * support).sum(0) > 0
        target = reachable.double() / reachable.sum()
        for _ in range(iterations):
            table = support * weights
            table = table / table.sum(1, keepdim=True).clamp(min=1e-300)
            marginal = (case_share[:, None] * table).sum(0)
            weights = torch.where(reachable, weights * target / marginal.clamp(min=1e-300), weights)
            weights = (weights / weights[reachable].max()).clamp(min=MIN_RELATIVE_WEIGHT)
    table = support * weights
    return table / table.sum(1, keepdim=True).clamp(min=1e-300)


def draw_subsets(available: Tensor, probabilities: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random non-empty subset S of each sample's present set A: (B, 4) bool -> (B, 4) bool.

    ``probabilities`` is a table from ``subset_probabilities``; draws use ``generator`` (CPU) so that a resumed
    run repeats them.
    """
    present = available.detach().bool().cpu()
    if not bool(present.any(1).all()):
        raise ValueError("every sample needs at least one available sequence")
    rows = probabilities[codes(present)].float()
    chosen = torch.multinomial(rows, 1, generator=generator)[:, 0]
    bits = (chosen[:, None] >> torch.arange(NUM_MODALITIES)) & 1
    return bits.bool().to(available.device)
