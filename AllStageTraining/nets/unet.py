"""3D residual U-Net: the backbone shared by the multimodal MAE and the segmenter.

Shapes (4 levels, base width ``w``; input spatial sizes must be multiples of ``2**(levels-1)``)::

    x                    (B, in_channels, D, H, W)
    encode(x)[0]         (B, w,  D,   H,   W)      level 0 (full resolution)
    encode(x)[1]         (B, 2w, D/2, H/2, W/2)
    encode(x)[2]         (B, 4w, D/4, H/4, W/4)
    encode(x)[3]         (B, 8w, D/8, H/8, W/8)    bottleneck
    decode(...) features (B, w,  D,   H,   W)
    decode(...) deep     [(B, 2w, D/2, ...), (B, 4w, D/4, ...)]   finest first (empty without deep supervision)
    forward(x)           ((B, out_channels, D, H, W), [(B, out_channels, D/2, ...), (B, out_channels, D/4, ...)])

Blocks: ``conv3x3x3 - GroupNorm - act - conv3x3x3 - GroupNorm (+ shortcut) - act``; the shortcut is a strided
1x1x1 convolution when the channel count or resolution changes. Downsampling is the first convolution of
each encoder level (stride 2); upsampling is a transposed convolution (or trilinear interpolation followed by
a 1x1x1 convolution) and the skip is concatenated (or added).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import NetConfig

#: One decoder GroupNorm's modulation: ``(scale, shift)``, each (B, C); applied as ``norm(x) * (1 + scale) + shift``.
Modulation = tuple[Tensor, Tensor]


class GroupNorm3d(nn.GroupNorm):
    """``nn.GroupNorm`` that can also apply a per-sample modulation, and that, when a backward pass will follow,
    normalizes a channels-last-3d input in the contiguous layout and hands it back channels-last.

    ``forward(x, (scale, shift))`` returns ``norm(x) * (1 + scale) + shift`` (scale, shift (B, C)). With one
    sample the modulation is folded into GroupNorm's affine parameters (weight ``w * (1 + s)``, bias
    ``b * (1 + s) + t``), so the kernel writes the modulated output in one pass and no full-size temporary is
    made: at inference on a 1 mm case each modulated norm of the top decoder level saved two 123 MB tensors
    (bfloat16, width 16) and their page faults; the separate multiply and add had taken 20% of the segmenter's
    time. With more samples (training batches) it multiplies and adds after the norm, in the norm output's dtype
    (bfloat16 under CPU autocast: ``1 + scale`` then rounds to steps of about 0.008).

    The layout switch: PyTorch's CPU backward of channels-last GroupNorm is slow (here, on a (4, 8, 48^3)
    activation, forward + backward took 37 ms in float32 and 108 ms in bfloat16 against 10 ms and 9 ms
    contiguous), the largest cost of a width-8 training step under bfloat16 autocast. Its forward alone is
    fast, and the two copies are not (1 x 16 x 128 x 160 x 128, 2 threads: 84 ms channels-last against 310 ms
    through the copies in float32, 49 against 214 ms in bfloat16), so inference and other passes without
    gradients keep the channels-last kernel."""

    def forward(self, x: Tensor, modulation: Modulation | None = None) -> Tensor:
        weight, bias = self.weight, self.bias
        if modulation is not None and x.shape[0] == 1 and self.affine:
            scale, shift = (m[0].to(weight.dtype) for m in modulation)
            weight, bias = weight * (1 + scale), bias * (1 + scale) + shift
            modulation = None
        to_contiguous = (x.requires_grad and torch.is_grad_enabled() and x.dim() == 5 and not x.is_contiguous()
                         and x.is_contiguous(memory_format=torch.channels_last_3d))
        out = F.group_norm(x.contiguous() if to_contiguous else x, self.num_groups, weight, bias, self.eps)
        if to_contiguous:
            out = out.contiguous(memory_format=torch.channels_last_3d)
        if modulation is None:
            return out
        scale, shift = (m.to(out.dtype)[:, :, None, None, None] for m in modulation)
        return torch.addcmul(shift, out, 1 + scale)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm (:class:`GroupNorm3d`) with ``groups`` groups, or the largest divisor of ``channels`` below it."""
    return GroupNorm3d(math.gcd(groups, channels), channels)


def _activate(x: Tensor, activation: str) -> Tensor:
    if activation == "gelu":
        return F.gelu(x)
    return F.leaky_relu(x, 0.01, inplace=True)  # in place: GroupNorm's backward does not need its output


class ResidualBlock(nn.Module):
    """Two 3x3x3 convolutions with GroupNorm and a residual connection; ``stride`` 2 halves each axis."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, activation: str, stride: int = 1):
        super().__init__()
        self.activation = activation
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels, groups)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels, groups)
        self.shortcut = (
            nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False)
            if in_channels != out_channels or stride != 1
            else nn.Identity()
        )

    def forward(self, x: Tensor, modulation: tuple[Modulation | None, Modulation | None] = (None, None)) -> Tensor:
        out = _activate(self.norm1(self.conv1(x), modulation[0]), self.activation)
        out = self.norm2(self.conv2(out), modulation[1])
        out += self.shortcut(x)  # in place, shortcut last: at most 4 block-sized tensors alive at once
        return _activate(out, self.activation)


class UpBlock(nn.Module):
    """Upsample by 2 (``up``), merge the encoder skip (concatenate or add), then a residual block (``block``).

    ``ResidualUNet.decode`` runs the three steps itself so that each input is released as soon as it is used.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, activation: str, upsample: str, merge: str):
        super().__init__()
        self.merge = merge
        if upsample == "transpose":
            self.up = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                nn.Conv3d(in_channels, out_channels, 1),
            )
        block_in = 2 * out_channels if merge == "concat" else out_channels
        self.block = ResidualBlock(block_in, out_channels, groups, activation)


class ResidualUNet(nn.Module):
    """Residual U-Net with ``cfg.levels`` levels of widths ``w, 2w, 4w, ...`` and GroupNorm(``cfg.groups``).

    Args:
        in_channels: input channels (4 images in MODALITIES order).
        out_channels: channels of the 1x1x1 output heads (4 for the MAE, 3 regions for the segmenter).
        cfg: width, levels, groups and whether the two coarser decoder levels get deep-supervision heads.
        activation: ``"leakyrelu"`` (slope 0.01) or ``"gelu"``.
        upsample: ``"transpose"`` (transposed convolution) or ``"trilinear"`` (+ 1x1x1 convolution).
        merge: ``"concat"`` or ``"add"`` for the skip connections.
        final_head: build the full-resolution 1x1x1 head (``forward`` needs it); a caller with its own head
            (the personalized segmenter) passes False so that no parameter goes unused.

    Speed on CPU: after ``model.to(memory_format=torch.channels_last_3d)`` (inputs then follow automatically)
    the 3D convolutions ran 1.6x to 2.4x faster here (2 cores, width 16, 96^3 inference; width 8, 2x64^3
    training step), with the same outputs to float32 rounding. Such parameters are not contiguous: call
    ``.contiguous()`` on them before saving with safetensors.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cfg: NetConfig,
        *,
        activation: str = "leakyrelu",
        upsample: str = "transpose",
        merge: str = "concat",
        final_head: bool = True,
    ):
        super().__init__()
        if activation not in ("leakyrelu", "gelu"):
            raise ValueError(f"activation must be 'leakyrelu' or 'gelu', not {activation!r}")
        if upsample not in ("transpose", "trilinear"):
            raise ValueError(f"upsample must be 'transpose' or 'trilinear', not {upsample!r}")
        if merge not in ("concat", "add"):
            raise ValueError(f"merge must be 'concat' or 'add', not {merge!r}")
        if cfg.levels < 2:
            raise ValueError("a U-Net needs at least 2 levels")
        self.levels = cfg.levels
        self.widths = [cfg.width * 2**i for i in range(cfg.levels)]
        self.encoder = nn.ModuleList(
            [ResidualBlock(in_channels, self.widths[0], cfg.groups, activation)]
            + [
                ResidualBlock(self.widths[i - 1], self.widths[i], cfg.groups, activation, stride=2)
                for i in range(1, cfg.levels)
            ]
        )
        # decoder[j] brings level (levels-1-j) up to level (levels-2-j): coarse to fine.
        self.decoder = nn.ModuleList(
            [
                UpBlock(self.widths[i + 1], self.widths[i], cfg.groups, activation, upsample, merge)
                for i in reversed(range(cfg.levels - 1))
            ]
        )
        #: Decoder levels (1 = half resolution, ...) whose outputs are returned for deep supervision, finest first.
        self.deep_levels = list(range(1, min(2, cfg.levels - 2) + 1)) if cfg.deep_supervision else []
        self.head = nn.Conv3d(self.widths[0], out_channels, 1) if final_head else None
        self.deep_heads = nn.ModuleList([nn.Conv3d(self.widths[i], out_channels, 1) for i in self.deep_levels])
        #: Spatial sizes must be multiples of this (``NetConfig.size_divisor``).
        self.divisor = cfg.size_divisor

    def decoder_norm_channels(self) -> list[int]:
        """Channel counts of the decoder GroupNorms, in the order ``decode`` applies ``modulation``."""
        return [c for block in self.decoder for c in (block.block.norm1.num_channels, block.block.norm2.num_channels)]

    def encode(self, x: Tensor) -> list[Tensor]:
        """(B, in, D, H, W) -> skips, full resolution first, bottleneck (B, w*2**(levels-1), D/8, ...) last."""
        bad = [s for s in x.shape[2:] if s % self.divisor]
        if x.dim() != 5 or bad:
            raise ValueError(
                f"ResidualUNet expects (B, C, D, H, W) with D, H, W multiples of {self.divisor}; got {tuple(x.shape)}"
            )
        if self.encoder[0].conv1.weight.is_contiguous(memory_format=torch.channels_last_3d):
            x = x.contiguous(memory_format=torch.channels_last_3d)  # follow a channels-last model (see class doc)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[Tensor], modulation: list[Modulation] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Skips from ``encode`` -> (features (B, w, D, H, W), deep features, finest first).

        ``skips`` is emptied as the decoder consumes it, so that at inference each encoder activation is freed
        as soon as it has been used (pass ``list(skips)`` to keep yours). ``modulation`` holds one
        ``(scale, shift)`` pair of (B, C) tensors per entry of ``decoder_norm_channels()``.
        """
        n_norms = 2 * len(self.decoder)
        if modulation is not None and len(modulation) != n_norms:
            raise ValueError(f"modulation needs {n_norms} (scale, shift) pairs, got {len(modulation)}")
        if len(skips) != self.levels:
            raise ValueError(f"decode needs {self.levels} skips, got {len(skips)}")
        x = skips.pop()
        deep: dict[int, Tensor] = {}
        for j, block in enumerate(self.decoder):
            level = self.levels - 2 - j
            pair = (modulation[2 * j], modulation[2 * j + 1]) if modulation is not None else (None, None)
            # One step at a time, never holding a tensor in a call's arguments longer than needed.
            x = block.up(x)
            x = torch.cat([x, skips.pop()], dim=1) if block.merge == "concat" else x + skips.pop()
            x = block.block(x, pair)
            if level in self.deep_levels:
                deep[level] = x
        return x, [deep[level] for level in self.deep_levels]

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, in, D, H, W) -> (out (B, out, D, H, W), deep outputs (B, out, D/2, ...), (B, out, D/4, ...))."""
        if self.head is None:
            raise RuntimeError("this ResidualUNet was built without a final head; use encode/decode")
        features, deep = self.decode(self.encode(x))
        return self.head(features), [head(d) for head, d in zip(self.deep_heads, deep)]


def use_channels_last(module: nn.Module) -> nn.Module:
    """Put the weights of every 3-D (transposed) convolution in ``module`` in channels-last-3d memory format.

    On the CPU this makes training steps about 8x and inference about 1.6x faster here (oneDNN's backward
    kernels are much slower on the default layout); ``ResidualUNet`` then converts its input to match.
    """
    for child in module.modules():
        if isinstance(child, (nn.Conv3d, nn.ConvTranspose3d)):
            child.to(memory_format=torch.channels_last_3d)
    return module

