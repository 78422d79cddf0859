"""Networks, built from a DataInfo and a NetworkConfig and handed to methods.

Images: the DCGAN-style architecture of AVAE Fig. 5 (5x5 kernels, 'same' padding, width
multiplier w). Vectors (toy2d): two-hidden-layer MLPs of `mlp_hidden` units (AVAE §5.1).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.sections import NetworkConfig


def n_blocks(resolution: int) -> int:
    """Up/down-blocks between 4x4 and the image besides the outermost conv (Fig. 5: 3 at 64 px)."""
    blocks = {32: 2, 64: 3, 128: 4}
    if resolution not in blocks:
        raise ValueError(f"image resolution {resolution} not supported; use one of {sorted(blocks)}")
    return blocks[resolution]


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """AVAE Fig. 5 Up-block: transposed conv 5x5 stride 2 (no bias) -> BN -> ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1, bias=False),
        nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def down_block(c_in: int, c_out: int) -> nn.Sequential:
    """AVAE Fig. 5 Down-block: conv 5x5 stride 2 (no bias) -> BN -> leaky ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, stride=2, padding=2, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


class ConvGenerator(nn.Module):
    """AVAE Fig. 5 generator/decoder: dense -> 4x4x(2^k w) -> BN -> ReLU -> up-blocks -> tconv -> tanh."""

    def __init__(self, in_dim: int, info: DataInfo, width: int):
        super().__init__()
        k = n_blocks(info.resolution)
        top = width * 2 ** k  # 8w at 64 px
        self.top = top
        self.dense = nn.Linear(in_dim, 4 * 4 * top)
        self.stem = nn.Sequential(nn.BatchNorm2d(top), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[up_block(top >> i, top >> (i + 1)) for i in range(k)])
        self.to_image = nn.ConvTranspose2d(top >> k, info.channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.dense(z).view(-1, self.top, 4, 4))
        return torch.tanh(self.to_image(self.blocks(h)))


class ConvCritic(nn.Module):
    """AVAE Fig. 5 critic body: conv w stride 2 -> leaky ReLU -> down-blocks -> dense `out_dim`.

    Returns raw outputs (logits); the sigmoid of Fig. 5 lives in the losses.
    """

    def __init__(self, out_dim: int, info: DataInfo, width: int):
        super().__init__()
        k = n_blocks(info.resolution)
        self.features = nn.Sequential(
            nn.Conv2d(info.channels, width, 5, stride=2, padding=2), nn.LeakyReLU(0.2, inplace=True),
            *[down_block(width << i, width << (i + 1)) for i in range(k)], nn.Flatten())
        self.head = nn.Linear((width << k) * 4 * 4, out_dim)

    def forward(self, x: torch.Tensor, hidden: bool = False) -> torch.Tensor:
        """The logits, or with hidden=True the last hidden layer (the flattened last conv block)."""
        features = self.features(x)
        return features if hidden else self.head(features)


class MLP(nn.Module):
    """Two hidden layers of `hidden` units (AVAE §5.1 toy networks)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, leaky: bool = False):
        super().__init__()
        act = (lambda: nn.LeakyReLU(0.2)) if leaky else nn.ReLU
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), act(), nn.Linear(hidden, hidden), act(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor, hidden: bool = False) -> torch.Tensor:
        """The outputs, or with hidden=True the second hidden layer's activations."""
        return self.net[:-1](x) if hidden else self.net(x)


def build_generator(in_dim: int, info: DataInfo, net: NetworkConfig) -> nn.Module:
    """Generator / decoder: latent (in_dim) -> data."""
    if info.kind == "vector":
        return MLP(in_dim, info.dim, net.mlp_hidden)
    return ConvGenerator(in_dim, info, net.width)


def build_critic(info: DataInfo, net: NetworkConfig, out_dim: int = 1) -> nn.Module:
    """Critic / discriminator (or encoder body when out_dim > 1): data -> out_dim raw outputs."""
    if info.kind == "vector":
        return MLP(info.dim, out_dim, net.mlp_hidden, leaky=True)
    return ConvCritic(out_dim, info, net.width)


class Encoder(nn.Module):
    """Gaussian encoder q(z|x) = N(mu(x), diag sigma^2): the critic body with latent outputs.

    sigma='learned': sigma independent of x, a learned per-dimension constant (AVAE Fig. 5
    caption; log sigma initialised at 0 as in the authors' code). sigma='encoder': the
    network outputs log sigma beside mu.
    """

    def __init__(self, info: DataInfo, net: NetworkConfig, sigma: str, body: nn.Module | None = None):
        super().__init__()
        self.sigma_mode = sigma
        self.latent_dim = net.latent_dim
        out = net.latent_dim * (2 if sigma == "encoder" else 1)
        self.body = body if body is not None else build_critic(info, net, out_dim=out)  # any body with `out` outputs
        if sigma == "learned":
            self.log_sigma = nn.Parameter(torch.zeros(net.latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (mu, log_sigma), both batch x latent_dim."""
        h = self.body(x)
        if self.sigma_mode == "encoder":
            mu, log_sigma = h.chunk(2, dim=1)
            return mu, log_sigma.clamp(-10, 5)
        return h, self.log_sigma.expand_as(h)
