"""What the hyper-network is told about a scenario: its prompt's text embedding, conditioned, or a 4-bit code.

The 15 prompts come from one template, so their raw text embeddings are nearly identical (mean pairwise cosine
0.94 for an untrained open_clip encoder, 0.99 for the pretrained all-MiniLM-L6-v2): the part they share swamps
the part that names the sequences, and a small MLP cannot tell the scenarios apart. Conditioning removes the
shared part:

- ``none``: the embeddings as the encoder gave them (L2-normalized);
- ``centre``: minus their mean over the 15 scenarios, then L2-normalized (keeps the encoder's geometry: prompts
  that name similar sequences stay close);
- ``whiten``: centred, then projected on their principal directions and scaled to unit variance per direction
  (every scenario equally far from the others; the encoder's geometry is lost), rescaled to unit norm.

``bits`` ignores the text and uses the availability mask itself, +1 present / -1 absent (15, 4): the
ablation that tells whether language helps at all.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..constants import SCENARIOS

SOURCE_CHOICES = ("text", "bits")
NORM_CHOICES = ("none", "centre", "whiten")
WHITENED_DIM = len(SCENARIOS) - 1


def availability_bits() -> Tensor:
    """(15, 4) float32: +1 where the scenario has the sequence, -1 where it lacks it (SCENARIOS x MODALITIES)."""
    return torch.tensor([[1.0 if present else -1.0 for present in s.mask] for s in SCENARIOS])


def condition_embeddings(embeddings: Tensor, norm: str) -> Tensor:
    """(15, E) text embeddings -> (15, E') conditioned codes (see the module docstring); float32."""
    if norm not in NORM_CHOICES:
        raise ValueError(f"embedding conditioning must be one of {NORM_CHOICES}, not {norm!r}")
    x = embeddings.detach().double()
    if norm == "none":
        return torch.nn.functional.normalize(x, dim=-1).float()
    centred = x - x.mean(0, keepdim=True)
    if norm == "centre":
        return torch.nn.functional.normalize(centred, dim=-1).float()
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    directions = WHITENED_DIM  # 15 centred points span at most 14 dimensions
    whitened = torch.zeros(len(x), directions, dtype=x.dtype)
    keep = (s[:directions] > s[0] * 1e-6).nonzero().flatten()
    whitened[:, keep] = u[:, keep] * (len(SCENARIOS) ** 0.5)  # unit variance per direction
    return torch.nn.functional.normalize(whitened, dim=-1).float()


def scenario_codes(embeddings: Tensor | None, source: str, norm: str) -> Tensor:
    """The (15, D) float32 codes the hyper-network reads, one row per scenario in SCENARIOS order."""
    if source not in SOURCE_CHOICES:
        raise ValueError(f"scenario code source must be one of {SOURCE_CHOICES}, not {source!r}")
    if source == "bits":
        return availability_bits()
    if embeddings is None or embeddings.shape[0] != len(SCENARIOS):
        raise ValueError(f"text scenario codes need embeddings of shape ({len(SCENARIOS)}, E)")
    return condition_embeddings(embeddings, norm)


def code_size(source: str, norm: str, embed_dim: int | None) -> int:
    """D, the width of ``scenario_codes``' output, from the configuration alone (the hyper-network's input)."""
    if source == "bits":
        return len(SCENARIOS[0].mask)
    if embed_dim is None:
        raise ValueError("text scenario codes need the embeddings' width")
    return WHITENED_DIM if norm == "whiten" else embed_dim


def mean_pairwise_cosine(codes: Tensor) -> float:
    """Mean cosine similarity between different rows of ``codes`` (15, D): how alike the scenarios look."""
    unit = torch.nn.functional.normalize(codes.double(), dim=-1)
    similarity = unit @ unit.T
    n = similarity.shape[0]
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))
