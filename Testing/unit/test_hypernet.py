"""Hyper-network: generated parameters depend on the scenario, gradients reach the projection MLP, and the
per-sample dynamic head is exactly an ordinary convolution stack."""

import pytest
import torch
import torch.nn.functional as F

from AllStageTraining.nets.hypernet import ScenarioHyperNetwork, StaticHead, dynamic_head
from AllStageTraining.runtime import cpu_has_native_bfloat16

torch.set_num_threads(1)
NORMS = [16, 16, 8, 8, 4, 4]


def make(personalize="both"):
    torch.manual_seed(0)
    return ScenarioHyperNetwork(32, 8, 32, NORMS, head_in=4, head_hidden=4, personalize=personalize)


def test_shapes_and_norm_modulation_starts_as_identity():
    hyper = make()
    params, modulation = hyper(torch.randn(3, 32), torch.randn(3, 32))
    assert [(tuple(w.shape), tuple(b.shape)) for w, b in params] == [((3, 4, 4), (3, 4)), ((3, 4, 4), (3, 4)), ((3, 3, 4), (3, 3))]
    assert [tuple(s.shape) for s, _ in modulation] == [(3, c) for c in NORMS]
    assert all(s.abs().sum() == 0 and t.abs().sum() == 0 for s, t in modulation)


def test_different_scenarios_give_different_parameters_and_gradient_reaches_projection():
    hyper = make()
    embeddings = F.normalize(torch.randn(2, 32), dim=1)
    pooled = torch.randn(1, 32).expand(2, 32)  # same image feature, different scenarios
    params, _ = hyper(embeddings, pooled)
    for weight, bias in params:
        assert not torch.allclose(weight[0], weight[1]) and not torch.allclose(bias[0], bias[1])
    features = torch.randn(2, 4, 4, 4, 4)
    dynamic_head(features, params).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hyper.projection.parameters())


def test_dynamic_head_equals_ordinary_convolution():
    torch.manual_seed(1)
    hyper = make()
    params, _ = hyper(torch.randn(3, 32), torch.randn(3, 32))
    features = torch.randn(3, 4, 6, 5, 4)
    out = dynamic_head(features, params)
    assert out.shape == (3, 3, 6, 5, 4)
    for b in range(3):
        x = features[b : b + 1]
        for i, (weight, bias) in enumerate(params):
            x = F.conv3d(x, weight[b][:, :, None, None, None], bias[b])
            if i < len(params) - 1:
                x = F.leaky_relu(x, 0.01)
        assert torch.allclose(out[b : b + 1], x, atol=1e-5)


def test_dynamic_head_on_channels_last_features_and_under_bfloat16_autocast():
    torch.manual_seed(2)
    params, _ = make()(torch.randn(2, 32), torch.randn(2, 32))
    features = torch.randn(2, 4, 6, 8, 4)
    reference = dynamic_head(features, params)
    last = dynamic_head(features.contiguous(memory_format=torch.channels_last_3d), params)
    assert torch.allclose(last, reference, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = dynamic_head(features, params)
        first = [(w[:1], b[:1]) for w, b in params]
        one = dynamic_head(features[:1].contiguous(memory_format=torch.channels_last_3d), first)
    assert low.dtype == torch.bfloat16
    if cpu_has_native_bfloat16():  # elsewhere bfloat16 convolutions take PyTorch's slow path, contiguous
        assert one.is_contiguous(memory_format=torch.channels_last_3d)  # oneDNN kept the layout: no reorders
    assert torch.allclose(low.float(), reference, atol=0.05 * reference.abs().max().item())


def test_static_head_has_the_dynamic_head_shape():
    head = StaticHead(4, 4)
    assert head(torch.randn(2, 4, 4, 4, 4)).shape == (2, 3, 4, 4, 4)


@pytest.mark.parametrize("personalize,has_head,has_norm", [("head", True, False), ("norm", False, True)])
def test_personalize_choices(personalize, has_head, has_norm):
    params, modulation = make(personalize)(torch.randn(2, 32), torch.randn(2, 32))
    assert (params is not None) == has_head and (modulation is not None) == has_norm
    with pytest.raises(ValueError):
        make("none")
