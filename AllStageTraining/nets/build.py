"""The one place that turns a RunConfig into networks (training, export and bundle loading all use it)."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..config import RunConfig
from ..methods import get_method
from .mae import MultimodalMAE
from .segmenter import PersonalizedSegmenter


def build_models(cfg: RunConfig, embeddings: Tensor | None) -> tuple[MultimodalMAE | None, PersonalizedSegmenter]:
    """(MAE or None, segmenter) for the method ``cfg.method`` (``methods.get_method``).

    - a method with a stage 1 (``has_mae``) gets a MultimodalMAE, the others None;
    - a personalizing method gets a segmenter personalized as ``cfg.seg.personalize`` (needs ``embeddings``
      (15, E) unless "none"); the others a plain segmenter (``embeddings`` ignored).
    ValueError for an unknown method.
    """
    method = get_method(cfg.method)
    mae = MultimodalMAE(cfg.net, cfg.mae) if method.has_mae else None
    seg_cfg = cfg.seg if method.personalizes else dataclasses.replace(cfg.seg, personalize="none")
    segmenter = PersonalizedSegmenter(cfg.net, seg_cfg, None if seg_cfg.personalize == "none" else embeddings)
    return mae, segmenter
