"""Residual U-Net backbone: shapes, deep supervision, modulation and the memory-lean decoder."""

import dataclasses

import pytest
import torch

from AllStageTraining.config import preset
from AllStageTraining.nets.unet import GroupNorm3d, ResidualUNet

torch.set_num_threads(1)


@pytest.fixture
def net_cfg():
    return preset("tiny").net  # width 4, 4 levels, 2 groups


def test_shapes_at_32(net_cfg):
    torch.manual_seed(0)
    net = ResidualUNet(4, 3, net_cfg)
    x = torch.randn(2, 4, 32, 32, 32)
    skips = net.encode(x)
    assert [tuple(s.shape) for s in skips] == [(2, 4, 32, 32, 32), (2, 8, 16, 16, 16), (2, 16, 8, 8, 8), (2, 32, 4, 4, 4)]
    out, deep = net(x)
    assert out.shape == (2, 3, 32, 32, 32)
    assert [tuple(d.shape) for d in deep] == [(2, 3, 16, 16, 16), (2, 3, 8, 8, 8)]
    assert net.decoder_norm_channels() == [16, 16, 8, 8, 4, 4]


@pytest.mark.parametrize("kwargs", [dict(activation="gelu", upsample="trilinear", merge="add"), dict()])
def test_variants_run_and_backpropagate(net_cfg, kwargs):
    net = ResidualUNet(4, 4, dataclasses.replace(net_cfg, deep_supervision=False), **kwargs)
    x = torch.randn(1, 4, 16, 24, 32, requires_grad=True)
    out, deep = net(x)
    assert out.shape == (1, 4, 16, 24, 32) and deep == []
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_rejects_sizes_not_multiple_of_8(net_cfg):
    with pytest.raises(ValueError, match="multiples of 8"):
        ResidualUNet(4, 3, net_cfg).encode(torch.zeros(1, 4, 32, 30, 32))


def test_decode_consumes_skips_and_zero_modulation_is_identity(net_cfg):
    torch.manual_seed(1)
    net = ResidualUNet(4, 3, net_cfg).eval()
    x = torch.randn(2, 4, 16, 16, 16)
    with torch.no_grad():
        skips = net.encode(x)
        reference, _ = net.decode(list(skips))
        zeros = [(torch.zeros(2, c), torch.zeros(2, c)) for c in net.decoder_norm_channels()]
        same, _ = net.decode(skips, zeros)
        assert skips == []  # the decoder released every encoder activation
        assert torch.allclose(same, reference, atol=1e-6)
        shifted = [(torch.zeros(2, c), torch.full((2, c), 0.5)) for c in net.decoder_norm_channels()]
        other, _ = net.decode(net.encode(x), shifted)
        assert not torch.allclose(other, reference, atol=1e-3)


def test_channels_last_model_gives_the_same_output(net_cfg):
    torch.manual_seed(2)
    net = ResidualUNet(4, 3, net_cfg).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        reference, _ = net(x)
        net.to(memory_format=torch.channels_last_3d)
        fast, _ = net(x)
    assert torch.allclose(fast, reference, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_group_norm_keeps_channels_last_and_the_numbers_with_and_without_gradients(grad):
    torch.manual_seed(3)
    norm = GroupNorm3d(2, 6)
    x = torch.randn(2, 6, 5, 6, 7).contiguous(memory_format=torch.channels_last_3d).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        out = norm(x)
    expected = torch.nn.functional.group_norm(x.detach().contiguous(), 2, norm.weight, norm.bias, norm.eps)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(out.detach(), expected, atol=1e-5)
    if grad:
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("batch", [1, 3])
def test_group_norm_modulation_is_norm_times_one_plus_scale_plus_shift(batch):
    """One sample folds the modulation into the affine parameters, several multiply and add after the norm:
    both are norm(x) * (1 + scale) + shift, with gradients reaching x, scale and shift."""
    torch.manual_seed(4)
    norm = GroupNorm3d(2, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(batch, 6, 4, 5, 6).contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
    scale, shift = torch.randn(batch, 6, requires_grad=True), torch.randn(batch, 6, requires_grad=True)
    out = norm(x, (scale, shift))
    plain = torch.nn.functional.group_norm(x.detach(), 2, norm.weight.detach(), norm.bias.detach(), norm.eps)
    expected = plain * (1 + scale.detach()[:, :, None, None, None]) + shift.detach()[:, :, None, None, None]
    assert torch.allclose(out.detach(), expected, atol=1e-5)
    out.square().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (x, scale, shift))
    with torch.inference_mode():
        assert torch.allclose(norm(x.detach(), (scale.detach(), shift.detach())), expected, atol=1e-5)
