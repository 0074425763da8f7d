"""Personalized segmenter and build_models: outputs, scenarios, init from the MAE, saved embeddings."""

import pytest
import torch
import torch.nn.functional as F

from AllStageTraining.config import preset
from AllStageTraining.constants import FULL_SCENARIO, SCENARIOS, scenario_by_short
from AllStageTraining.nets.build import build_models
from AllStageTraining.nets.mae import MultimodalMAE
from AllStageTraining.nets.segmenter import PersonalizedSegmenter

torch.set_num_threads(1)


def embeddings():
    return F.normalize(torch.randn(len(SCENARIOS), 24, generator=torch.Generator().manual_seed(0)), dim=1)


@pytest.mark.parametrize("personalize", ["both", "head", "norm", "none"])
def test_forward_shapes_and_backward(personalize):
    cfg = preset("tiny")
    cfg.seg.personalize = personalize
    torch.manual_seed(0)
    seg = PersonalizedSegmenter(cfg.net, cfg.seg, embeddings())
    out = seg(torch.randn(2, 4, 32, 32, 32), torch.tensor([FULL_SCENARIO.index, 3]))
    assert out["logits"].shape == (2, 3, 32, 32, 32)
    assert [tuple(d.shape) for d in out["deep"]] == [(2, 3, 16, 16, 16), (2, 3, 8, 8, 8)]
    assert out["bottleneck"].shape == (2, 32, 4, 4, 4)
    (out["logits"].mean() + sum(d.mean() for d in out["deep"])).backward()
    unused = [n for n, p in seg.named_parameters() if p.grad is None]
    if personalize == "norm":  # zero-initialized modulation: its upstream gets no gradient at step 0
        unused = [n for n in unused if not n.startswith(("hypernet.projection", "hypernet.controller"))]
    assert unused == []
    assert ("embeddings" in seg.state_dict()) == (personalize != "none")


@pytest.mark.parametrize("personalize", ["both", "none"])
def test_inference_without_deep_heads_gives_the_same_logits_channels_last_or_not(personalize):
    from AllStageTraining.nets.unet import use_channels_last

    cfg = preset("tiny")
    cfg.seg.personalize = personalize
    torch.manual_seed(0)
    seg = PersonalizedSegmenter(cfg.net, cfg.seg, embeddings()).eval()
    x, scenario = torch.randn(2, 4, 32, 32, 32), torch.tensor([FULL_SCENARIO.index, 3])
    with torch.no_grad():
        full = seg(x, scenario)
        plain = seg(x, scenario, deep=False)
        last = use_channels_last(seg)(x, scenario, deep=False)
    assert plain["deep"] == [] and len(full["deep"]) == 2
    assert torch.equal(plain["logits"], full["logits"])
    assert torch.allclose(last["logits"], full["logits"], atol=1e-5)


def test_scenario_changes_the_output():
    cfg = preset("tiny")
    torch.manual_seed(0)
    seg = PersonalizedSegmenter(cfg.net, cfg.seg, embeddings()).eval()
    x = torch.randn(1, 4, 32, 32, 32).expand(2, -1, -1, -1, -1)
    with torch.no_grad():
        out = seg(x, torch.tensor([scenario_by_short("F").index, scenario_by_short("C12").index]))["logits"]
    assert not torch.allclose(out[0], out[1])


def test_init_from_mae_copies_encoder_and_decoder():
    cfg = preset("tiny")
    torch.manual_seed(0)
    mae = MultimodalMAE(cfg.net, cfg.mae).eval()
    torch.manual_seed(1)
    seg = PersonalizedSegmenter(cfg.net, cfg.seg, embeddings()).eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(seg.backbone.encode(x)[-1], mae.backbone.encode(x)[-1])
        copied = seg.init_from_mae(mae)
        assert copied and not any(k.startswith("head") for k in copied)
        mae_skips, seg_skips = mae.backbone.encode(x), seg.backbone.encode(x)
        assert all(torch.equal(a, b) for a, b in zip(mae_skips, seg_skips))
        assert torch.equal(mae.backbone.decode(mae_skips)[0], seg.backbone.decode(seg_skips)[0])
    other = preset("tiny")
    other.net.width = 8
    with pytest.raises(ValueError, match="differ"):
        PersonalizedSegmenter(other.net, other.seg, embeddings()).init_from_mae(mae)


def test_embeddings_travel_in_the_state_dict():
    cfg = preset("tiny")
    seg = PersonalizedSegmenter(cfg.net, cfg.seg, embeddings())
    clone = PersonalizedSegmenter(cfg.net, cfg.seg, torch.zeros(len(SCENARIOS), 24))
    clone.load_state_dict(seg.state_dict())
    assert torch.equal(clone.embeddings, embeddings())


def test_build_models_per_method():
    cfg = preset("tiny")
    mae, seg = build_models(cfg, embeddings())
    assert isinstance(mae, MultimodalMAE) and seg.hypernet is not None
    cfg.method = "m3ae-style"
    mae, seg = build_models(cfg, None)
    assert isinstance(mae, MultimodalMAE) and seg.hypernet is None and seg.static_head is not None
    cfg.method = "zero-fill"
    mae, seg = build_models(cfg, None)
    assert mae is None and seg.hypernet is None
    cfg.method = "ours"
    with pytest.raises(ValueError, match="embeddings"):
        build_models(cfg, None)
    cfg.method = "unet"
    with pytest.raises(ValueError, match="unknown method"):
        build_models(cfg, None)
