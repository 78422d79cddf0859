"""AVAE Fig. 5 networks at 32 and 64 px, and the MLPs for vector data."""

import pytest
import torch

from pipeline.datainfo import DataInfo
from pipeline.networks import ConvCritic, ConvGenerator, Encoder, build_critic, build_generator
from pipeline.sections import NetworkConfig


@pytest.mark.parametrize("res,channels", [(32, 1), (32, 3), (64, 3)])
def test_conv_shapes(res, channels):
    info = DataInfo("x", "image", (channels, res, res), "[-1,1]", 10)
    net = NetworkConfig(width=8, latent_dim=5)
    g = build_generator(5, info, net)
    x = g(torch.randn(3, 5))
    assert x.shape == (3, channels, res, res) and x.abs().max() <= 1  # tanh output
    assert build_critic(info, net)(x).shape == (3, 1)


def test_fig5_channel_widths_at_64px():
    info = DataInfo("x", "image", (3, 64, 64), "[-1,1]", 0)
    g = ConvGenerator(10, info, width=2)
    assert g.dense.out_features == 4 * 4 * 8 * 2  # 4x4x8w
    assert [b[0].out_channels for b in g.blocks] == [8, 4, 2]  # 4w, 2w, w
    assert all(b[0].kernel_size == (5, 5) and b[0].bias is None for b in g.blocks)
    c = ConvCritic(1, info, width=2)
    convs = [m for m in c.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [2, 4, 8, 16]  # w, 2w, 4w, 8w


@pytest.mark.parametrize("sigma", ["learned", "encoder"])
def test_encoder_sigma_modes(sigma):
    info = DataInfo("x", "image", (1, 32, 32), "[-1,1]", 10)
    enc = Encoder(info, NetworkConfig(width=4, latent_dim=6), sigma)
    mu, log_sigma = enc(torch.randn(4, 1, 32, 32))
    assert mu.shape == log_sigma.shape == (4, 6)
    if sigma == "learned":  # input-independent (AVAE Fig. 5), initialised at sigma = 1
        assert torch.equal(log_sigma[0], log_sigma[1]) and log_sigma.abs().max() == 0
    else:
        assert not torch.equal(log_sigma[0], log_sigma[1])


def test_mlp_for_vector_data():
    info = DataInfo("toy2d", "vector", (2,), "raw", 0)
    net = NetworkConfig(latent_dim=1, mlp_hidden=128)
    g = build_generator(1, info, net)
    hidden = [m for m in g.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in hidden] == [128, 128, 2]  # AVAE §5.1: two hidden layers of 128


def test_unsupported_resolution_is_clear():
    with pytest.raises(ValueError, match="resolution 48 not supported"):
        build_generator(4, DataInfo("x", "image", (3, 48, 48), "[-1,1]", 0), NetworkConfig(width=2, latent_dim=4))
