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

    - a method with a stage 1 (``has_mae``) gets a MultimodalMAE, the others None; the MAE is built first
      (random initialization order) only where it completes the segmenter's inputs;
    - a personalizing method gets a segmenter personalized as ``cfg.seg.personalize`` (needs ``embeddings``
      (15, E) unless "none"); the others a plain segmenter (``embeddings`` ignored).
    ValueError for an unknown method.
    """
    method = get_method(cfg.method)
    seg_cfg = cfg.seg if method.personalizes else dataclasses.replace(cfg.seg, personalize="none")

    def segmenter() -> PersonalizedSegmenter:
        return PersonalizedSegmenter(cfg.net, seg_cfg, None if seg_cfg.personalize == "none" else embeddings)

    if not method.completes_inputs:  # segmenter first: the same initial weights whether or not a display MAE exists
        first = segmenter()
        return (MultimodalMAE(cfg.net, cfg.mae) if method.has_mae else None), first
    mae = MultimodalMAE(cfg.net, cfg.mae)
    return mae, segmenter()
