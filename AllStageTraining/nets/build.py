"""The one place that turns a RunConfig into networks (training, export and bundle loading all use it)."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..config import RunConfig
from .mae import MultimodalMAE
from .segmenter import PersonalizedSegmenter

METHODS = ("ours", "zero-fill", "m3ae-style")


def build_models(cfg: RunConfig, embeddings: Tensor | None) -> tuple[MultimodalMAE | None, PersonalizedSegmenter]:
    """(MAE or None, segmenter) for ``cfg.seg.method``.

    - "ours": MAE + segmenter personalized as ``cfg.seg.personalize`` (needs ``embeddings`` (15, E) unless "none").
    - "m3ae-style": MAE + a plain segmenter (no hyper-network; ``embeddings`` ignored).
    - "zero-fill": no MAE (None) + a plain segmenter.
    """
    method = cfg.seg.method
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    mae = None if method == "zero-fill" else MultimodalMAE(cfg.net, cfg.mae)
    seg_cfg = cfg.seg if method == "ours" else dataclasses.replace(cfg.seg, personalize="none")
    segmenter = PersonalizedSegmenter(cfg.net, seg_cfg, None if seg_cfg.personalize == "none" else embeddings)
    return mae, segmenter
