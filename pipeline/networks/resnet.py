"""LSR-GAN networks (003 App. D, Table 3): ResNet encoder / decoder-generator and the
DCGAN-style patch discriminator.

Table 3 (CIFAR-10, 32 px, the paper's channel counts for width w = 64):
  encoder: ResBlock down 64 (w) -> down 128 (2w) -> down 32 (w/2) -> FC 128 (2w), BN, ReLU -> heads;
  decoder: FC 512 (4·4·w/2), BN, ReLU -> ResBlock up 128 (2w) -> up 64 (w) -> up 32 (w/2) -> conv to
  the image; discriminator: 4x4 stride-2 convs 32, 64, 128 (w/2, w, 2w; BN on the last two,
  leaky ReLU) -> a 4x4 stride-2 conv to a patch map of logits (Table 3's sigmoid is in the losses).
At 64 px one more 2w block is inserted in the encoder and decoder and one 4w conv in the
discriminator. The paper's Fig. 7 (block layout) is not in the text: blocks here are the
pre-activation ResNet block of He et al. (2016) with a 1x1 shortcut. Outputs use tanh, as
every image model of this pipeline works on the [-1, 1] scale (003's sigmoid on [0, 1] is
the same model up to the affine map between the scales).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.datainfo import DataInfo

RESOLUTIONS = (32, 64)


def check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"the resnet architecture supports {list(RESOLUTIONS)} px images, not {resolution}; "
                         "choose architecture 'dcgan' or 'avae_s' for this dataset")


def channel_plan(width: int, resolution: int) -> list[int]:
    """Encoder block channels (Table 3 at 32 px: w, 2w, w/2); 64 px adds a 2w block."""
    check_resolution(resolution)
    half = max(width // 2, 1)
    return [width, 2 * width, half] if resolution == 32 else [width, 2 * width, 2 * width, half]


class ResBlock(nn.Module):
    """Pre-activation residual block: BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus a
    1x1-conv shortcut; resample 'down' pools by 2 at the end (avg, or max for 004's pooled
    discriminator), 'up' doubles the size by nearest-neighbour at the start. The first block on
    raw pixels (first=True) skips the leading BN -> ReLU, as in He et al.'s pre-activation nets."""

    def __init__(self, c_in: int, c_out: int, resample: str, pool: str = "avg", first: bool = False):
        super().__init__()
        self.resample, self.pool = resample, pool
        self.bn1 = nn.Identity() if first else nn.BatchNorm2d(c_in)
        self.act1 = nn.Identity() if first else nn.ReLU()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def _down(self, h: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(h, 2) if self.pool == "max" else F.avg_pool2d(h, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv1(self.act1(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        out = h + self.shortcut(x)
        return self._down(out) if self.resample == "down" else out


class ResNetEncoderBody(nn.Module):
    """Table 3 encoder: ResBlocks down to 4x4 -> FC 2w, BN, ReLU -> dense `out_dim` (raw outputs).

    pool='max' gives 004's discriminator variant ("the encoder with max pooling").
    """

    def __init__(self, out_dim: int, info: DataInfo, width: int, pool: str = "avg"):
        super().__init__()
        plan = channel_plan(width, info.resolution)
        ins = [info.channels, *plan[:-1]]
        self.blocks = nn.Sequential(*[ResBlock(a, b, "down", pool, first=i == 0)
                                      for i, (a, b) in enumerate(zip(ins, plan))])
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(plan[-1] * 4 * 4, 2 * width),
                                    nn.BatchNorm1d(2 * width), nn.ReLU(inplace=True))
        self.head = nn.Linear(2 * width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(F.relu(self.blocks(x))))


class ResNetDecoder(nn.Module):
    """Table 3 decoder/generator: FC 4·4·(w/2), BN, ReLU -> ResBlocks up -> BN, ReLU, conv3x3 -> tanh."""

    def __init__(self, in_dim: int, info: DataInfo, width: int):
        super().__init__()
        enc = channel_plan(width, info.resolution)
        self.top = enc[-1]
        ups = [2 * width] * (len(enc) - 2) + [width, enc[-1]]  # Table 3: up 2w, w, w/2
        self.dense = nn.Sequential(nn.Linear(in_dim, 4 * 4 * self.top), nn.BatchNorm1d(4 * 4 * self.top),
                                   nn.ReLU(inplace=True))
        ins = [self.top, *ups[:-1]]
        self.blocks = nn.Sequential(*[ResBlock(a, b, "up") for a, b in zip(ins, ups)])
        self.to_image = nn.Sequential(nn.BatchNorm2d(ups[-1]), nn.ReLU(inplace=True),
                                      nn.Conv2d(ups[-1], info.channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, self.top, 4, 4)
        return torch.tanh(self.to_image(self.blocks(h)))


class PatchDiscriminator(nn.Module):
    """Table 3 discriminator (DCGAN, Radford et al.): 4x4 stride-2 convs w/2, w, 2w (BN on all but
    the first, leaky ReLU 0.2) -> 4x4 stride-2 conv to one channel: a patch map of logits."""

    def __init__(self, info: DataInfo, width: int):
        super().__init__()
        check_resolution(info.resolution)
        chans = [max(width // 2, 1), width, 2 * width] + ([4 * width] if info.resolution == 64 else [])
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([info.channels, *chans[:-1]], chans)):
            layers.append(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, batch x 1 x 2 x 2 (every patch is a real/fake decision)."""
        return self.net(x)
