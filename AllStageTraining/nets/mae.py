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
from ..constants import NUM_MODALITIES
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
        """box (B, 3, 2) in [-1, 1], shape (D, H, W) -> fill (B, 4, D, H, W)."""
        box = box.to(self.volume)
        t = [torch.linspace(0, 1, n, device=box.device, dtype=box.dtype) for n in shape]
        # Per axis a, coordinate = start + (stop - start) * t: (B, size_a).
        z, y, x = (torch.lerp(box[:, a, 0:1], box[:, a, 1:2], t[a]) for a in range(3))
        batch, (d, h, w) = box.shape[0], shape
        grid = torch.stack(  # grid_sample wants (x, y, z) in the last dimension
            [
                x[:, None, None, :].expand(batch, d, h, w),
                y[:, None, :, None].expand(batch, d, h, w),
                z[:, :, None, None].expand(batch, d, h, w),
            ],
            dim=-1,
        )
        volume = self.volume.unsqueeze(0).expand(batch, *self.volume.shape)
        return F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)


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
        """x (B, 4, D, H, W) real images, brain (B, 1, D, H, W), present (B, 4) bool: EMA step per sequence."""
        inside = brain[:, 0] > 0
        for m in range(self.quantiles.shape[0]):
            samples = present[:, m].bool()
            if not samples.any():
                continue
            values = x[samples, m][inside[samples]].float()
            if values.numel() == 0:
                continue
            batch_q = self.quantiles_of(values).to(self.quantiles)
            if self.initialized[m]:
                self.quantiles[m].mul_(self.momentum).add_(batch_q, alpha=1 - self.momentum)
            else:
                self.quantiles[m].copy_(batch_q)
                self.initialized[m] = True

    def wasserstein(self, recon: Tensor, brain: Tensor, modality_mask: Tensor) -> Tensor:
        """1-D Wasserstein-1 distance between the reconstruction's brain intensities and the EMA, averaged.

        recon (B, 4, D, H, W), brain (B, 1, D, H, W), modality_mask (B, 4) bool: the (sample, sequence) pairs
        to score (absent sequences). W1 is the mean absolute difference of the quantile functions at
        ``levels``; the EMA side carries no gradient. Sequences the EMA has never seen are skipped. Returns a
        scalar (0 when nothing is scored).
        """
        inside = brain[:, 0] > 0
        distances = []
        for b, m in modality_mask.bool().nonzero().tolist():
            if not self.initialized[m]:
                continue
            values = recon[b, m][inside[b]]
            if values.numel() == 0:
                continue
            q = self.quantiles_of(values.float())
            distances.append((q - self.quantiles[m].detach()).abs().mean())
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

    def complete(self, x: Tensor, available: Tensor, box: Tensor) -> Tensor:
        """Real available sequences kept, every absent one replaced by its reconstruction (no patch masking).

        x (B, 4, D, H, W) (absent channels' values are ignored), available (B, 4) bool, box (B, 3, 2).
        """
        visible = available.bool()[:, :, None, None, None]
        return torch.where(visible, x, self(x, visible, box))
