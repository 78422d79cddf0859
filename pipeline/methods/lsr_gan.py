"""LSR-GAN (003 §2.2, App. D): a GAN trained on a frozen β-VAE export (SPEC §3.10).

D is trained as a normal GAN (003 eq. 3); G minimises −log D(G(z)) − λ·log q(z | G(z)) (003
eq. 4 with the non-saturating generator term), q(·|x) = N(μ(x), σ(x)) the frozen encoder's
posterior, so that the generator "imagines" images whose code is z. The encoder stays frozen
in eval mode (no phase lists it). The generator has the export's decoder architecture and,
as in the authors' code, starts from the trained decoder's weights; beside a ResNet export
the discriminator is App. D's DCGAN patch discriminator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline import losses
from pipeline.methods import Example, Learning, Method, OptimiserConfig, Phase, register
from pipeline.networks.architectures import build_decoder, build_gan_discriminator
from pipeline.schema import ConfigError


@dataclass
class LsrGanConfig(OptimiserConfig):
    """latent_nll_weight: λ of 003 eq. 4 (swept over 0.01 … 20; default 1); init_from_decoder:
    start G from the frozen decoder's weights (the authors' code does); lr, beta1, beta2
    (OptimiserConfig): Adam for G and D (003 App. D: 2e-4, β1 = 0.5; the authors' code: β2 = 0.999)."""

    latent_nll_weight: float = 1.0  # λ, 003 eq. 4 / App. C.2 (default 1)
    init_from_decoder: bool = True  # authors' code: G initialised from the VAE decoder

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_nll_weight < 0:
            raise ConfigError("params: 'models.*.latent_nll_weight' must be >= 0")


@register
class LSRGAN(Method):
    """Generator G(z) and discriminator D = P(real) on a frozen VAE; G also keeps z recoverable."""

    name = "lsr_gan"
    config_cls = LsrGanConfig
    examples = {
        "lsr_gan": Example(stage1={"method": "vae", "architecture": "resnet", "reconstruction": "log_mse",
                                   "sigma": "encoder"}, vector=False),  # 003's setting
        "from_scratch": Example({"init_from_decoder": False, "latent_nll_weight": 5.0},
                                stage1={"method": "vae", "sigma": "encoder"},
                                learning=Learning("toy2d", 800, latent_dim=1, mlp_hidden=32, config={"lr": 1e-3},
                                                  stage1_iterations=800, stage1_config={"lr": 1e-3}, samples=0.5)),
    }
    needs_vae = True

    def __init__(self, config: LsrGanConfig, info, net, vae=None):
        super().__init__(config, info, net)
        if vae is None:
            raise ValueError("LSR-GAN is trained on a frozen VAE export: pass vae=load_vae_export(...)")
        self.vae = vae  # frozen: no phase lists it, its parameters never require grad
        self.generator = build_decoder(vae.architecture, net.latent_dim, info, net)
        if config.init_from_decoder:
            self.generator.load_state_dict(vae.decoder.state_dict())
        self.discriminator = build_gan_discriminator(vae.architecture, info, net)

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator(self.prior(len(x)))
        return {"loss": losses.gan_discriminator_loss(self.discriminator(x), self.discriminator(fake))}  # 003 eq. 3

    def generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.prior(len(x))
        fake = self.generator(z)
        adversarial = losses.gan_generator_loss(self.discriminator(fake))
        latent_nll = losses.latent_log_density_loss(z, *self.vae.encoder(fake))  # −log q(z|G(z))
        loss = adversarial + self.config.latent_nll_weight * latent_nll  # 003 eq. 4
        return {"loss": loss, "adversarial": adversarial, "latent_nll": latent_nll}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("discriminator", [self.discriminator], self.discriminator_loss, c.lr, betas),
                Phase("generator", [self.generator], self.generator_loss, c.lr, betas)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def encode(self, x):
        return self.vae.encoder(x)  # 003 §2: reconstructions are G seeded with the test image's code
