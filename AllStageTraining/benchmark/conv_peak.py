"""The machine's measured 3-D convolution peak per precision, the yardstick for each run's GFLOP/s.

One 3x3x3 convolution (C in, C out, padding 1, no bias) over a (1, C, S, S, S) input, for the shapes in
``CONV_SHAPES`` (the channel counts of the networks' four levels at sizes of their order), channels-last on
the CPU as our networks run there, under ``torch.inference_mode`` and the same autocast the networks use
(disabled for float32, bfloat16 or float16 autocast otherwise). Each shape is called until ``min_seconds``
have passed (at least ``min_calls`` times, after one warm-up call); its rate is FLOPs / its fastest call
(multiply-add = 2 FLOPs, as ``FlopCounterMode`` counts). The peak of a precision is the best shape's rate.
"""

from __future__ import annotations

import time

from ..runtime import set_threads
from .processes import sync

#: (channels, cube side) of the timed convolutions.
CONV_SHAPES: tuple[tuple[int, int], ...] = ((16, 96), (32, 64), (64, 48), (128, 32))


def conv3d_flops(channels: int, side: int) -> int:
    """FLOPs of one 3x3x3 convolution, ``channels`` in and out, over a side^3 output."""
    return 2 * channels * channels * 27 * side**3


def _autocast(device_type: str, precision: str):
    import torch

    if precision == "float32":
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype={"bfloat16": torch.bfloat16, "float16": torch.float16}[precision])


def conv3d_rate(channels: int, side: int, precision: str, device: str = "cpu", *, min_seconds: float = 0.5,
                min_calls: int = 3) -> float:
    """GFLOP/s of the fastest call of one 3x3x3 convolution (see the module docstring)."""
    import torch

    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(1, channels, side, side, side, device=device)
    if device == "cpu":
        conv = conv.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    fastest, calls, started = float("inf"), 0, time.perf_counter()
    with torch.inference_mode(), _autocast(torch.device(device).type, precision):
        conv(x)
        sync(device)
        while calls < min_calls or time.perf_counter() - started < min_seconds:
            start = time.perf_counter()
            conv(x)
            sync(device)
            fastest = min(fastest, time.perf_counter() - start)
            calls += 1
    return conv3d_flops(channels, side) / fastest / 1e9


def child_conv_peak(spec: dict) -> dict:
    """{precision: {"gflop_per_s": the best shape's rate, "shapes": {"CxS^3": rate}}} for spec's precisions.

    spec: device, threads, precisions (list), shapes (optional list of [channels, side]), min_seconds."""
    set_threads(spec["threads"])
    shapes = [tuple(s) for s in spec.get("shapes") or CONV_SHAPES]
    out = {}
    for precision in spec["precisions"]:
        rates = {f"{c}x{s}^3": conv3d_rate(c, s, precision, spec["device"], min_seconds=spec.get("min_seconds", 0.5))
                 for c, s in shapes}
        out[precision] = {"gflop_per_s": max(rates.values()), "shapes": rates}
    return out
