"""Networks made from the critic (`build_critic`) and operations on critics, built from a
DataInfo and a NetworkConfig, for the adversarial baselines:

- DeterministicEncoder: the critic body with `latent_dim` linear outputs (α-GAN, BiGAN, AGE);
  optionally projected onto the unit sphere (AGE, α-GAN App. H.3).
- JointDiscriminator: BiGAN's D(x, z) (AVAE Fig. 5 caption).
- build_code_discriminator: α-GAN's code discriminator CZ (App. H.4: 3 layers of 750, no BN).
- replace_batch_norm: a critic without batch norm (WGAN-GP: the penalty is per example).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.networks import MLP, ConvCritic, build_critic, n_blocks
from pipeline.sections import NetworkConfig

DETERMINISTIC_LOG_SIGMA = -10.0  # log σ reported by deterministic encoders (σ = e^-10 ≈ 4.5e-5)


class DeterministicEncoder(nn.Module):
    """x -> z = E(x): the critic body with latent_dim outputs and no output activation
    (α-GAN App. H.4); sphere=True projects codes onto the unit sphere (AGE)."""

    def __init__(self, info: DataInfo, net: NetworkConfig, sphere: bool = False):
        super().__init__()
        self.sphere = sphere
        self.body = build_critic(info, net, out_dim=net.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return F.normalize(z, dim=1) if self.sphere else z

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_sigma) with log_sigma a constant DETERMINISTIC_LOG_SIGMA (a point mass)."""
        mu = self(x)
        return mu, torch.full_like(mu, DETERMINISTIC_LOG_SIGMA)


def joint_hidden(info: DataInfo, net: NetworkConfig) -> int:
    """Units of the BiGAN joint-discriminator MLPs: the critic's top channel count for images
    (4w at 32 px, 8w at 64 px), net.mlp_hidden for vector data."""
    if info.kind == "vector":
        return net.mlp_hidden
    return net.width << n_blocks(info.resolution)


class JointDiscriminator(nn.Module):
    """BiGAN D(x, z) (AVAE Fig. 5 caption): z through a two-hidden-layer MLP, x through a
    critic-style network, the two representations concatenated (leaky ReLU) and fed to a
    two-hidden-layer MLP with one output logit (D = P(real pair))."""

    def __init__(self, info: DataInfo, net: NetworkConfig):
        super().__init__()
        hidden = joint_hidden(info, net)
        self.image_branch = build_critic(info, net, out_dim=hidden)
        self.latent_branch = MLP(net.latent_dim, hidden, hidden, leaky=True)
        self.joint = MLP(2 * hidden, 1, hidden, leaky=True)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.image_branch(x), self.latent_branch(z)], dim=1)
        return self.joint(F.leaky_relu(h, 0.2))


class CodeDiscriminator(nn.Module):
    """MLP on latents: `layers` hidden layers of `hidden` units, leaky ReLU 0.2, no batch norm,
    one output logit CZ = P(z from the prior)  # α-GAN App. H.4"""

    def __init__(self, latent_dim: int, hidden: int = 750, layers: int = 3):
        super().__init__()
        dims = [latent_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            body += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*body, nn.Linear(dims[-1], 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_code_discriminator(net: NetworkConfig, hidden: int = 750, layers: int = 3) -> CodeDiscriminator:
    """α-GAN's code discriminator on net.latent_dim codes (App. H.4: 3 layers of 750 units)."""
    return CodeDiscriminator(net.latent_dim, hidden, layers)


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap every BatchNorm2d of `module` in place for 'layer' norm (GroupNorm with one group,
    WGAN-GP §4's recommendation), 'none' (Identity) or keep it ('batch'); returns module."""
    if norm not in ("layer", "none", "batch"):
        raise ValueError(f"norm = {norm!r}; use 'layer', 'none' or 'batch'")
    if norm == "batch":
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            new = nn.GroupNorm(1, child.num_features) if norm == "layer" else nn.Identity()
            setattr(module, name, new)
        else:
            replace_batch_norm(child, norm)
    return module
