"""What the hyper-network reads about a scenario: conditioned prompt embeddings or the availability bits."""

import pytest
import torch

from AllStageTraining.constants import SCENARIOS
from AllStageTraining.nets.scenario_codes import (
    availability_bits,
    code_size,
    condition_embeddings,
    mean_pairwise_cosine,
    scenario_codes,
)


def _template_like_embeddings(seed=0, shared=8.0, dim=32):
    """15 embeddings dominated by one shared direction, as prompts from one template are (cosine ~0.98)."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(dim, generator=g) * shared
    return torch.nn.functional.normalize(common + torch.randn(len(SCENARIOS), dim, generator=g), dim=-1)


def test_centring_removes_the_shared_part_and_whitening_makes_scenarios_equidistant():
    raw = _template_like_embeddings()
    assert mean_pairwise_cosine(condition_embeddings(raw, "none")) > 0.9
    centred = condition_embeddings(raw, "centre")
    assert abs(mean_pairwise_cosine(centred)) < 0.1
    assert torch.allclose(centred.norm(dim=-1), torch.ones(len(SCENARIOS)), atol=1e-5)
    whitened = condition_embeddings(raw, "whiten")
    assert whitened.shape == (len(SCENARIOS), code_size("text", "whiten", raw.shape[1]))
    similarity = whitened @ whitened.T
    off_diagonal = similarity[~torch.eye(len(SCENARIOS), dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1 / 14), atol=1e-4)


def test_bits_are_the_availability_masks_and_need_no_text():
    bits = scenario_codes(None, "bits", "none")
    assert bits.shape == (15, 4) and torch.equal(bits, availability_bits())
    assert bits[-1].tolist() == [1.0] * 4
    assert [b > 0 for b in bits[0].tolist()] == list(SCENARIOS[0].mask)
    with pytest.raises(ValueError):
        scenario_codes(None, "text", "centre")
    with pytest.raises(ValueError):
        condition_embeddings(_template_like_embeddings(), "sphere")
