"""AVAE-S networks (004 Table I): nearest-neighbour upsampling, no transposed convolutions.

Table I (CelebA 96 px, width w = 24, latent 32):
  encoder: per level c in (w, 2w, 4w, 8w): conv3x3 stride 1, BN, ReLU -> conv4x4 stride 2, BN,
  ReLU; then FC 2w, BN, tanh -> (z_mean, z_sigma);
  decoder: FC 2w, BN, tanh -> FC s·s·8w, BN, tanh (s = 6 at 96 px) -> per level c in (8w, 4w, 2w,
  w): conv3x3, BN, ReLU, NN-upsample, conv3x3, BN, ReLU -> 1x1 conv to the image.
The discriminator (004 §III) is the encoder with max pooling instead of the stride-2 convs.
Sizes: 32 px (three levels from 4x4), 64 px (four levels from 4x4), 96 px (four from 6x6).
Table I ends in a sigmoid on [0, 1]; here tanh, since the pipeline's images are on [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.networks import n_blocks

LAYOUT = {32: (4, 3), 64: (4, 4), 96: (6, 4)}  # resolution -> (start size, levels)


def layout(resolution: int) -> tuple[int, int]:
    if resolution not in LAYOUT:
        raise ValueError(f"the avae_s architecture supports {sorted(LAYOUT)} px images, not {resolution}")
    return LAYOUT[resolution]


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    pad = 1  # 3x3 stride 1 and 4x4 stride 2 both keep 'same' / halve with padding 1
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class AvaeSEncoderBody(nn.Module):
    """Table I encoder up to `out_dim` raw outputs (after FC 2w, BN, tanh).

    pool='max': the 004 discriminator, each stride-2 conv replaced by a 2x2 max pooling.
    """

    def __init__(self, out_dim: int, info: DataInfo, width: int, pool: str = "stride"):
        super().__init__()
        start, levels = layout(info.resolution)
        layers: list[nn.Module] = []
        c_in = info.channels
        for i in range(levels):
            c = width << i
            layers += conv_bn_relu(c_in, c, 3, 1)
            layers += [nn.MaxPool2d(2)] if pool == "max" else conv_bn_relu(c, c, 4, 2)
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(c_in * start * start, 2 * width), nn.BatchNorm1d(2 * width), nn.Tanh())
        self.head = nn.Linear(2 * width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(x)))


class AvaeSDecoder(nn.Module):
    """Table I decoder: two dense layers (BN, tanh), then conv / NN-upsample / conv levels -> 1x1 conv -> tanh."""

    def __init__(self, in_dim: int, info: DataInfo, width: int):
        super().__init__()
        self.start, levels = layout(info.resolution)
        self.top = width << (levels - 1)
        self.dense = nn.Sequential(
            nn.Linear(in_dim, 2 * width), nn.BatchNorm1d(2 * width), nn.Tanh(),
            nn.Linear(2 * width, self.start * self.start * self.top),
            nn.BatchNorm1d(self.start * self.start * self.top), nn.Tanh())
        layers: list[nn.Module] = []
        c_in = self.top
        for i in reversed(range(levels)):
            c = width << i
            layers += conv_bn_relu(c_in, c, 3, 1) + [nn.Upsample(scale_factor=2, mode="nearest")]
            layers += conv_bn_relu(c, c, 3, 1)
            c_in = c
        self.blocks = nn.Sequential(*layers)
        self.to_image = nn.Conv2d(c_in, info.channels, 1)  # Table I: 1x1 conv_transpose == 1x1 conv

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, self.top, self.start, self.start)
        return torch.tanh(self.to_image(self.blocks(h)))


def max_pool_conv_critic(info: DataInfo, width: int, out_dim: int = 1) -> nn.Module:
    """004's discriminator built on the AVAE Fig. 5 encoder (architecture 'dcgan'): every stride-2
    conv replaced by a 'same' stride-1 conv and a 2x2 max pooling."""
    k = n_blocks(info.resolution)
    layers: list[nn.Module] = [nn.Conv2d(info.channels, width, 5, padding=2), nn.MaxPool2d(2),
                               nn.LeakyReLU(0.2, inplace=True)]
    for i in range(k):
        layers += [nn.Conv2d(width << i, width << (i + 1), 5, padding=2, bias=False), nn.MaxPool2d(2),
                   nn.BatchNorm2d(width << (i + 1)), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear((width << k) * 4 * 4, out_dim))

