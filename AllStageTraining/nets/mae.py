"""Multimodal masked autoencoder (stage 1): learned fill, random visibility, reconstruction, quantile EMA.

Tensors are (B, 4, D, H, W) in MODALITIES order, intensities z-scored inside the brain (0 = the mean).
A crop's ``box`` (B, 3, 2) gives, per array axis (z, y, x), the crop's first and last voxel centre in the
normalized coordinates of the case's brain box ([-1, 1] spans the whole preprocessed volume; a flipped crop
has the two numbers of that axis swapped).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAEConfig, NetConfig
from ..constants import CLIP_Z, NUM_MODALITIES
from .unet import ResidualUNet


class LearnedFill(nn.Module):
    """A learnable coarse volume per sequence over the whole brain box ("model inversion", as in M3AE).

    ``volume`` is (4, *grid), initialized to 0 (the z-scored mean). ``forward(box, shape)`` samples it
    trilinearly at the crop's voxel centres: the same box gives identical values, a flipped box a flipped fill.
    """

    def __init__(self, grid: tuple[int, int, int], channels: int = NUM_MODALITIES):
        super().__init__()
        self.volume = nn.Parameter(torch.zeros(channels, *grid))

    def forward(self, box: Tensor, shape: tuple[int, int, int]) -> Tensor:
        """box (B, 3, 2) in [-1, 1], shape (D, H, W) -> fill (B, 4, D, H, W).

        Trilinear sampling of an axis-aligned grid is separable: one (size x grid) interpolation matrix per axis,
        applied one axis at a time (what ``grid_sample(align_corners=True, padding_mode="border")`` computes, at
        a fraction of its cost, forward and backward).
        """
        box = box.to(self.volume)
        weights = [_axis_weights(box[:, a], n, g) for a, (n, g) in enumerate(zip(shape, self.volume.shape[1:]))]
        out = torch.einsum("cijk,bxk->bcijx", self.volume, weights[2])
        out = torch.einsum("bcijx,byj->bciyx", out, weights[1])
        return torch.einsum("bciyx,bzi->bczyx", out, weights[0])


def _axis_weights(ends: Tensor, size: int, grid: int) -> Tensor:
    """Linear-interpolation weights (B, size, grid) of ``size`` voxel centres spread from ``ends[:, 0]`` to
    ``ends[:, 1]`` (normalized coordinates, [-1, 1] spanning the ``grid`` nodes; beyond it the border node)."""
    t = torch.linspace(0, 1, size, device=ends.device, dtype=ends.dtype)
    coordinate = torch.lerp(ends[:, 0:1], ends[:, 1:2], t)  # (B, size)
    position = ((coordinate + 1) * 0.5 * (grid - 1)).clamp(0, grid - 1)
    low = position.floor().clamp(max=max(grid - 2, 0))
    frac = (position - low)[..., None]
    nodes = torch.arange(grid, device=ends.device, dtype=ends.dtype)
    below = (nodes == low[..., None]).to(ends.dtype)
    above = (nodes == low[..., None] + 1).to(ends.dtype)
    return below * (1 - frac) + above * frac


def random_visibility(
    available: Tensor,
    shape: tuple[int, int, int],
    patch: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Which voxels of each sample the MAE may see: (B, 4) bool availability -> visible (B, 4, D, H, W) bool.

    Per sample: absent sequences are invisible; a uniformly random number 0..present-1 of the present
    sequences is dropped entirely; the remaining ("kept") sequences are cut into ``patch``^3 tokens and
    ``round((1 - mask_ratio) * n)`` of their ``n = kept * tokens_per_sequence`` tokens, drawn jointly over the
    kept sequences, stay visible (at least one). The ratio is over the tokens of the kept sequences, not over
    all four: so the masking task is equally hard whatever a sample has, and a 0.875 ratio never runs out of
    tokens. Random numbers come from ``generator`` (CPU) or the global RNG.
    """
    batch, channels = available.shape
    grid = [-(-s // patch) for s in shape]  # tokens per axis (the last ones may be cut by the crop)
    n_tokens = grid[0] * grid[1] * grid[2]
    tokens = torch.zeros(batch, channels, n_tokens, dtype=torch.bool)
    present = available.detach().bool().cpu()
    for b in range(batch):
        kept = present[b].nonzero().flatten()
        if len(kept) == 0:
            raise ValueError(f"sample {b} has no available sequence")
        n_drop = int(torch.randint(0, len(kept), (1,), generator=generator))
        kept = kept[torch.randperm(len(kept), generator=generator)[n_drop:]]
        n_candidates = len(kept) * n_tokens
        n_visible = max(1, round((1 - mask_ratio) * n_candidates))
        chosen = torch.randperm(n_candidates, generator=generator)[:n_visible]
        rows = torch.zeros(n_candidates, dtype=torch.bool)
        rows[chosen] = True
        tokens[b, kept] = rows.view(len(kept), n_tokens)
    tokens = tokens.view(batch, channels, *grid).to(available.device)
    for axis in range(3):
        tokens = tokens.repeat_interleave(patch, dim=2 + axis)
    return tokens[:, :, : shape[0], : shape[1], : shape[2]].contiguous()


#: Brain voxels per sequence from which a batch's quantiles are estimated for the EMA update.
EMA_MAX_VALUES = 65536
#: How L_pop measures the distance to the population prior (see ``QuantileEMA.wasserstein``).
POP_ESTIMATORS = ("quantiles", "voxels")


class QuantileEMA(nn.Module):
    """Running estimate of each sequence's intensity distribution inside the brain, as quantiles.

    Buffers: ``quantiles`` (n_modalities, n_quantiles) at the probability levels ``levels`` (bin midpoints
    (i + 0.5) / n); ``initialized`` (n_modalities,) bool. An update moves only the sequences that are
    present in at least one sample of the batch: ``new = momentum * old + (1 - momentum) * batch``, and the
    first update of a sequence copies the batch's quantiles.
    """

    def __init__(self, n_modalities: int = NUM_MODALITIES, n_quantiles: int = 64, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("levels", (torch.arange(n_quantiles) + 0.5) / n_quantiles, persistent=False)
        self.register_buffer("quantiles", torch.zeros(n_modalities, n_quantiles))
        self.register_buffer("initialized", torch.zeros(n_modalities, dtype=torch.bool))

    def quantiles_of(self, values: Tensor) -> Tensor:
        """Differentiable quantiles (n_quantiles,) of a 1-D tensor (sort + linear interpolation)."""
        ordered = values.sort().values
        position = self.levels.to(ordered) * (len(ordered) - 1)
        low = position.floor().long()
        high = torch.clamp(low + 1, max=len(ordered) - 1)
        return torch.lerp(ordered[low], ordered[high], position - low)

    @torch.no_grad()
    def update(self, x: Tensor, brain: Tensor, present: Tensor) -> None:
        """x (B, 4, D, H, W) real images, brain (B, 1, D, H, W), present (B, 4) bool: EMA step per sequence.

        The batch's quantiles come from at most ``EMA_MAX_VALUES`` brain voxels per sequence (an evenly strided
        subset): a quantile estimate needs no more, and sorting every voxel of the batch each step cost more
        than a fifth of a stage-1 step on the CPU.
        """
        inside = brain[:, 0] > 0
        for m in range(self.quantiles.shape[0]):
            samples = present[:, m].bool()
            if not samples.any():
                continue
            values = x[samples, m][inside[samples]].float()
            if values.numel() == 0:
                continue
            values = values[:: -(-values.numel() // EMA_MAX_VALUES)]
            batch_q = self.quantiles_of(values).to(self.quantiles)
            if self.initialized[m]:
                self.quantiles[m].mul_(self.momentum).add_(batch_q, alpha=1 - self.momentum)
            else:
                self.quantiles[m].copy_(batch_q)
                self.initialized[m] = True

    def quantile_function(self, modality: int, levels: Tensor) -> Tensor:
        """The EMA quantile function of ``modality`` at probability ``levels`` (linear between the stored levels,
        constant beyond the first and last); no gradient."""
        stored = self.quantiles[modality].detach()
        position = (levels * len(stored) - 0.5).clamp(0, len(stored) - 1)
        low = position.floor().long().clamp(max=len(stored) - 2) if len(stored) > 1 else position.long()
        high = (low + 1).clamp(max=len(stored) - 1)
        return torch.lerp(stored[low], stored[high], position - low)

    def wasserstein(self, recon: Tensor, brain: Tensor, modality_mask: Tensor, estimator: str = "quantiles") -> Tensor:
        """1-D Wasserstein-1 distance between the reconstruction's brain intensities and the EMA, averaged.

        recon (B, 4, D, H, W), brain (B, 1, D, H, W), modality_mask (B, 4) bool: the (sample, sequence) pairs
        to score (absent sequences). The EMA side carries no gradient. Sequences the EMA has never seen are
        skipped. Returns a scalar (0 when nothing is scored). ``estimator``:

        - "quantiles": the mean absolute difference of the two quantile functions at the EMA's ``levels``;
          the gradient reaches only the two order statistics around each level (2 x n_quantiles voxels);
        - "voxels": every brain voxel of the reconstruction, in sorted order, against the EMA quantile function
          at its rank (i + 0.5) / N: the same distance, with the gradient spread over the whole brain.
        """
        if estimator not in POP_ESTIMATORS:
            raise ValueError(f"population distance estimator must be one of {POP_ESTIMATORS}, not {estimator!r}")
        inside = brain[:, 0] > 0
        distances = []
        for b, m in modality_mask.bool().nonzero().tolist():
            if not self.initialized[m]:
                continue
            values = recon[b, m][inside[b]].float()
            if values.numel() == 0:
                continue
            if estimator == "quantiles":
                distances.append((self.quantiles_of(values) - self.quantiles[m].detach()).abs().mean())
            else:
                ordered = values.sort().values
                ranks = (torch.arange(len(ordered), device=ordered.device, dtype=ordered.dtype) + 0.5) / len(ordered)
                distances.append((ordered - self.quantile_function(m, ranks).to(ordered)).abs().mean())
        if not distances:
            return recon.new_zeros(())
        return torch.stack(distances).mean()


class MultimodalMAE(nn.Module):
    """Learned fill + residual U-Net that reconstructs all four sequences from whatever is visible.

    ``backbone`` is ``ResidualUNet(4, 4, net)`` without deep-supervision heads (the segmenter copies its
    encoder and decoder). ``quantile_ema`` holds the population prior of ``L_pop``; it is a buffer-only
    submodule so that it travels in checkpoints with the weights.
    """

    def __init__(self, net: NetConfig, mae: MAEConfig):
        super().__init__()
        self.fill = LearnedFill(tuple(mae.fill_grid))
        self.backbone = ResidualUNet(NUM_MODALITIES, NUM_MODALITIES, dataclasses.replace(net, deep_supervision=False))
        self.quantile_ema = QuantileEMA(NUM_MODALITIES, mae.n_quantiles, mae.ema_momentum)

    def masked_input(self, x: Tensor, visible: Tensor, box: Tensor) -> Tensor:
        """The network input: x where visible, the learned fill everywhere else. (B, 4, D, H, W)."""
        return torch.where(visible, x, self.fill(box, tuple(x.shape[2:])))

    def forward(self, x: Tensor, visible: Tensor, box: Tensor) -> Tensor:
        """x (B, 4, D, H, W), visible (B, 4, D, H, W) bool (or broadcastable), box (B, 3, 2) -> recon (B, 4, D, H, W)."""
        out, _ = self.backbone(self.masked_input(x, visible, box))
        return out

    def complete(self, x: Tensor, available: Tensor, box: Tensor, brain: Tensor) -> Tensor:
        """Real available sequences kept, every absent one replaced by its reconstruction (no patch masking).

        x (B, 4, D, H, W) (absent channels' values are ignored), available (B, 4) bool, box (B, 3, 2), brain
        (B, 1, D, H, W) (> 0 inside). See ``merge`` for how the completions are held to the real channels'
        convention.
        """
        return self.merge(x, self(x, available.bool()[:, :, None, None, None], box), available, brain)

    @staticmethod
    def merge(x: Tensor, recon: Tensor, available: Tensor, brain: Tensor) -> Tensor:
        """x's available channels, ``recon``'s for the others, clipped to [-CLIP_Z, CLIP_Z] and 0 outside the brain
        like real channels (so that nothing but their content tells completions apart). Shapes as ``complete``."""
        completed = recon.clamp(-CLIP_Z, CLIP_Z) * (brain > 0)
        return torch.where(available.bool()[:, :, None, None, None], x, completed.to(x.dtype))
