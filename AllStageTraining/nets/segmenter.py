"""The personalized segmenter: the MAE's residual U-Net + a scenario-driven hyper-network head.

forward(x (B, 4, D, H, W), scenario (B,) long indices into SCENARIOS, *, deep=True) returns
``{"logits": (B, 3, D, H, W), "deep": [(B, 3, D/2, ...), (B, 3, D/4, ...)], "bottleneck": (B, 8w, D/8, ...)}``
("deep" is [] with ``deep=False``: inference skips the deep-supervision heads)
with region logits in REGIONS order (WT, TC, ET).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import NetConfig, SegConfig
from ..constants import NUM_MODALITIES, REGIONS, SCENARIOS
from .hypernet import PERSONALIZE_CHOICES, ScenarioHyperNetwork, StaticHead, dynamic_head
from .scenario_codes import code_size, scenario_codes
from .unet import ResidualUNet


class PersonalizedSegmenter(nn.Module):
    """Residual U-Net (same encoder/decoder as the MAE) with a dynamic or static head.

    ``seg.personalize``: "both" (dynamic head + decoder-norm modulation), "head", "norm" or "none" (a plain
    U-Net with a shared head; used by the baselines). ``embeddings`` (15, E) are the scenario prompts' text
    embeddings, kept as a persistent buffer so that they are saved with the weights; they may be None when
    nothing is personalized or when the scenario codes are the availability bits (``seg.scenario_code``).
    The hyper-network reads ``nets.scenario_codes.scenario_codes(embeddings, seg.scenario_code,
    seg.embedding_norm)``, recomputed from the buffer at every call (15 rows: negligible). Deep-supervision
    heads are always static 1x1x1 convolutions.
    """

    def __init__(self, net: NetConfig, seg: SegConfig, embeddings: Tensor | None):
        super().__init__()
        if seg.personalize not in PERSONALIZE_CHOICES:
            raise ValueError(f"personalize must be one of {PERSONALIZE_CHOICES}, not {seg.personalize!r}")
        self.personalize = seg.personalize
        self.backbone = ResidualUNet(NUM_MODALITIES, len(REGIONS), net, final_head=False)
        self.hypernet = None
        self.static_head = None
        self.code_source, self.code_norm = seg.scenario_code, seg.embedding_norm
        if seg.personalize != "none":
            if seg.scenario_code == "text":
                if embeddings is None or embeddings.shape[0] != len(SCENARIOS):
                    raise ValueError(f"personalize={seg.personalize!r} with text scenario codes needs prompt "
                                     f"embeddings of shape ({len(SCENARIOS)}, E)")
                self.register_buffer("embeddings", embeddings.detach().float().clone())
            else:
                self.embeddings = None
            self.hypernet = ScenarioHyperNetwork(
                embed_dim=code_size(seg.scenario_code, seg.embedding_norm,
                                    None if embeddings is None else embeddings.shape[1]),
                code_dim=seg.code_dim,
                bottleneck_channels=self.backbone.widths[-1],
                norm_channels=self.backbone.decoder_norm_channels(),
                head_in=self.backbone.widths[0],
                head_hidden=seg.head_channels,
                personalize=seg.personalize,
            )
        if seg.personalize in ("none", "norm"):
            self.static_head = StaticHead(self.backbone.widths[0], seg.head_channels)

    def forward(self, x: Tensor, scenario: Tensor | None = None, *,
                deep: bool = True) -> dict[str, Tensor | list[Tensor]]:
        """x (B, 4, D, H, W), scenario (B,) indices into SCENARIOS (ignored when nothing is personalized);
        ``deep=False`` skips the deep-supervision heads (inference needs only the logits; "deep" is then [])."""
        skips = self.backbone.encode(x)
        bottleneck = skips[-1]
        head_params = modulation = None
        if self.hypernet is not None:
            if scenario is None:
                raise ValueError("a personalized segmenter needs the scenario index of each sample")
            codes = scenario_codes(self.embeddings, self.code_source, self.code_norm).to(bottleneck.device)
            embedding = codes[scenario.to(codes.device).long()]
            # float32 even under autocast: a few hundred numbers that scale every voxel's features and logits
            with torch.autocast("cuda" if bottleneck.is_cuda else "cpu", enabled=False):
                head_params, modulation = self.hypernet(embedding.float(), bottleneck.float().mean(dim=(2, 3, 4)))
        features, deep_features = self.backbone.decode(skips, modulation)
        logits = dynamic_head(features, head_params) if head_params is not None else self.static_head(features)
        del features
        deep_logits = [head(d) for head, d in zip(self.backbone.deep_heads, deep_features)] if deep else []
        return {"logits": logits, "deep": deep_logits, "bottleneck": bottleneck}

    @torch.no_grad()
    def init_from_mae(self, mae: nn.Module) -> list[str]:
        """Copy the MAE backbone's encoder and decoder weights (not its 4-channel head). Returns the copied keys."""
        source = {k: v for k, v in mae.backbone.state_dict().items() if k.startswith(("encoder.", "decoder."))}
        target = self.backbone.state_dict()
        mismatched = [k for k, v in source.items() if k not in target or target[k].shape != v.shape]
        if mismatched:
            raise ValueError(f"MAE and segmenter backbones differ (width/levels?): {mismatched[:5]}")
        self.backbone.load_state_dict(source, strict=False)
        return sorted(source)
