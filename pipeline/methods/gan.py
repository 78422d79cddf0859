"""GAN (DCGAN): AVAE Table 1 row "GAN" and α-GAN's baseline (SPEC §3.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline import losses
from pipeline.methods import Example, Learning, Method, OptimiserConfig, Phase, register
from pipeline.networks import build_critic, build_generator
from pipeline.schema import ConfigError


@dataclass
class GanConfig(OptimiserConfig):
    """lr, beta1, beta2 (OptimiserConfig): Adam for both networks, DCGAN's; generator_steps:
    generator updates per discriminator update (1 in AVAE's runs, 2 in α-GAN's)."""

    generator_steps: int = 1  # AVAE T1: 1; α-GAN baselines: 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.generator_steps < 1:
            raise ConfigError("params: 'models.*.generator_steps' must be >= 1")


@register
class GAN(Method):
    """Generator G(z) and discriminator D(x) = P(real): cross-entropy D, non-saturating G."""

    name = "gan"
    config_cls = GanConfig
    examples = {"dcgan": Example(learning=Learning("toy2d", 600, config={"lr": 1e-3}, samples=0.5)),
                "two_generator_steps": Example({"generator_steps": 2})}  # α-GAN's baseline setting

    def __init__(self, config: GanConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.generator = build_generator(net.latent_dim, info, net)
        self.discriminator = build_critic(info, net)

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator(self.prior(len(x)))
        loss = losses.gan_discriminator_loss(self.discriminator(x), self.discriminator(fake))  # AVAE eq. 3
        return {"loss": loss}

    def generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.generator(self.prior(len(x)))
        return {"loss": losses.gan_generator_loss(self.discriminator(fake))}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("discriminator", [self.discriminator], self.discriminator_loss, c.lr, betas),
                Phase("generator", [self.generator], self.generator_loss, c.lr, betas, c.generator_steps)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)
