"""BiGAN / ALI (Donahue et al. 2017; Dumoulin et al. 2017): AVAE Table 1 row (SPEC §3.6).

An encoder E(x), a generator G(z) and a discriminator D(x, z) on pairs: real pairs (x, E(x))
against generated pairs (G(z), z). D = P(real pair) minimises the cross-entropy; E and G
together minimise it with the labels inverted (the non-saturating form of BiGAN §3.4).
Reconstruction is G(E(x)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline import losses
from pipeline.methods import EncoderGeneratorMethod, Example, Learning, OptimiserConfig, Phase, register
from pipeline.networks import build_generator
from pipeline.networks.critics import DeterministicEncoder, JointDiscriminator
from pipeline.schema import ConfigError


@dataclass
class BiganConfig(OptimiserConfig):
    """lr, beta1, beta2 (OptimiserConfig): Adam for the discriminator and for the
    encoder+generator pair, DCGAN's (AVAE §5, for every model); generator_steps:
    encoder+generator updates per discriminator update."""

    generator_steps: int = 1  # AVAE T1: one update each

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.generator_steps < 1:
            raise ConfigError("params: 'models.*' (bigan) needs generator_steps >= 1")


@register
class Bigan(EncoderGeneratorMethod):
    """E, G and the joint discriminator D(x, z) of AVAE Fig. 5's caption."""

    name = "bigan"
    config_cls = BiganConfig
    # BiGAN's reconstructions are loose (AVAE T1): its learning check is on samples only
    examples = {"bigan": Example(learning=Learning("toy2d", 600, config={"lr": 1e-3}, samples=0.5))}

    def __init__(self, config: BiganConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.encoder = DeterministicEncoder(info, net)
        self.generator = build_generator(net.latent_dim, info, net)
        self.discriminator = JointDiscriminator(info, net)

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z = self.prior(len(x))
            z_hat, fake = self.encoder(x), self.generator(z)
        loss = losses.gan_discriminator_loss(self.discriminator(x, z_hat), self.discriminator(fake, z))  # BiGAN eq. 3
        return {"loss": loss}

    def encoder_generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.prior(len(x))
        logit_real, logit_fake = self.discriminator(x, self.encoder(x)), self.discriminator(self.generator(z), z)
        return {"loss": losses.gan_discriminator_loss(logit_fake, logit_real)}  # labels inverted

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("discriminator", [self.discriminator], self.discriminator_loss, c.lr, betas),
                Phase("encoder_generator", [self.encoder, self.generator], self.encoder_generator_loss, c.lr,
                      betas, c.generator_steps)]
