"""α-GAN (Rosca et al. 2017, 002 §3, Algorithm 1, App. D and H): SPEC §3.8.

Networks: a deterministic encoder E (no output activation), a generator G, an image
discriminator D = P(real) and a code discriminator CZ = P(z from the prior). With
ẑ = E(x), x̂ = G(ẑ), z ~ N(0, I), R_D(x) = −log D(x) + log(1 − D(x)) and likewise R_C:
    encoder        λ_E‖x − x̂‖₁ + R_C(ẑ)                          (Algorithm 1 eq. 11)
    generator      λ_G‖x − x̂‖₁ + R_D(x̂) + R_D(G(z))              (eq. 13)
    discriminator  −log D(x) − log(1 − D(x̂)) − log(1 − D(G(z)))  (eq. 15)
    code disc.     −log(1 − CZ(ẑ)) − log CZ(z)                    (eq. 17)
The encoder and generator take `generator_steps` (2) updates for each D and CZ update.
latent_regulariser 'empirical_kl' is the App. D ablation: CZ is replaced by the empirical KL
of eq. 18 divided by the latent size (no code discriminator is built).
‖·‖₁ is taken per pixel (mean absolute error), the scale on which λ ∈ {1, 5, 10, 50} is swept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.methods import EncoderGeneratorMethod, Example, Learning, OptimiserConfig, Phase, register
from pipeline.networks import build_critic, build_generator
from pipeline.networks.critics import DeterministicEncoder, build_code_discriminator
from pipeline.schema import ConfigError


@dataclass
class AlphaGanConfig(OptimiserConfig):
    """encoder_recon_weight / generator_recon_weight: λ on the L1 reconstruction in the
    encoder / generator losses; latent_regulariser: 'code_discriminator' (α-GAN) or
    'empirical_kl' (App. D ablation); generator_steps: encoder and generator updates per D/CZ
    update; lr (OptimiserConfig): Adam lr of encoder and generator; discriminator_lr,
    code_discriminator_lr; beta1, beta2 (OptimiserConfig): Adam betas of all four; code_hidden /
    code_layers: the code discriminator MLP."""

    encoder_recon_weight: float = 10.0  # α-GAN App. H.1: swept over {1, 5, 10, 50}
    generator_recon_weight: float = 10.0  # α-GAN App. H.1: swept over {1, 5, 10, 50}
    latent_regulariser: Literal["code_discriminator", "empirical_kl"] = "code_discriminator"  # App. D
    generator_steps: int = 2  # α-GAN §6: encoder and generator updated twice per D / CZ update
    lr: float = 1e-4  # α-GAN T2: generator/encoder swept over {1e-4, 5e-4}
    beta2: float = 0.9  # α-GAN App. H: β2 = 0.9 (β1 = 0.5)
    discriminator_lr: float = 5e-4  # α-GAN T2: 5e-4
    code_discriminator_lr: float = 5e-4  # α-GAN T2: 5e-4
    code_hidden: int = 750  # α-GAN App. H.4: 750 units per layer
    code_layers: int = 3  # α-GAN App. H.4: 3 layers, no batch norm

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = (min(self.discriminator_lr, self.code_discriminator_lr) > 0
              and min(self.encoder_recon_weight, self.generator_recon_weight) >= 0
              and self.generator_steps >= 1 and self.code_hidden >= 1 and self.code_layers >= 1)
        if not ok:
            raise ConfigError("params: 'models.*' (alpha_gan) needs learning rates > 0, recon weights >= 0, "
                              "generator_steps >= 1 and a code discriminator of >= 1 layer of >= 1 unit")


FAST = {"lr": 1e-3, "discriminator_lr": 1e-3}  # the learning checks' lr's: toy2d learns in hundreds of steps


@register
class AlphaGan(EncoderGeneratorMethod):
    """Encoder, generator, image discriminator and code discriminator (or empirical KL)."""

    name = "alpha_gan"
    config_cls = AlphaGanConfig
    examples = {
        "alpha_gan": Example(learning=Learning("toy2d", 600, config={**FAST, "code_discriminator_lr": 1e-3,
                                                                     "code_hidden": 128},  # a narrower CZ: seconds
                                               samples=0.5, reconstructions=0.5)),
        "empirical_kl": Example({"latent_regulariser": "empirical_kl"},  # α-GAN App. D
                                learning=Learning("toy2d", 600, config=FAST, samples=0.5, reconstructions=0.5)),
    }

    def __init__(self, config: AlphaGanConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.encoder = DeterministicEncoder(info, net)
        self.generator = build_generator(net.latent_dim, info, net)
        self.discriminator = build_critic(info, net)
        self.code_discriminator = None
        if config.latent_regulariser == "code_discriminator":
            self.code_discriminator = build_code_discriminator(net, config.code_hidden, config.code_layers)

    def latent_term(self, z_hat: torch.Tensor) -> torch.Tensor:
        """R_C(ẑ) averaged over the batch (eq. 11), or eq. 18 / latent size (App. D)."""
        if self.code_discriminator is None:
            return losses.empirical_kl(z_hat) / z_hat.shape[1]
        return losses.synthetic_likelihood_ratio(self.code_discriminator(z_hat)).mean()

    def encoder_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z_hat = self.encoder(x)
        recon = losses.l1_recon(self.generator(z_hat), x).mean()
        latent = self.latent_term(z_hat)
        return {"loss": self.config.encoder_recon_weight * recon + latent, "recon": recon,
                "latent": latent}  # α-GAN eq. 11

    def generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z_hat = self.encoder(x)
        x_hat, x_p = self.generator(z_hat), self.generator(self.prior(len(x)))
        recon = losses.l1_recon(x_hat, x).mean()
        adv_recon = losses.synthetic_likelihood_ratio(self.discriminator(x_hat)).mean()
        adv_sample = losses.synthetic_likelihood_ratio(self.discriminator(x_p)).mean()
        loss = self.config.generator_recon_weight * recon + adv_recon + adv_sample  # α-GAN eq. 13
        return {"loss": loss, "recon": recon, "adv_recon": adv_recon, "adv_sample": adv_sample}

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            x_hat, x_p = self.generator(self.encoder(x)), self.generator(self.prior(len(x)))
        d = self.discriminator
        return {"loss": losses.gan_discriminator_loss_recon_and_samples(d(x), d(x_hat), d(x_p))}  # eq. 15

    def code_discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z_hat = self.encoder(x)
        cz = self.code_discriminator
        return {"loss": losses.gan_discriminator_loss(cz(self.prior(len(x))), cz(z_hat))}  # eq. 17: prior is real

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        phases = [Phase("encoder", [self.encoder], self.encoder_loss, c.lr, betas, c.generator_steps),
                  Phase("generator", [self.generator], self.generator_loss, c.lr, betas, c.generator_steps),
                  Phase("discriminator", [self.discriminator], self.discriminator_loss, c.discriminator_lr, betas)]
        if self.code_discriminator is not None:
            phases.append(Phase("code_discriminator", [self.code_discriminator], self.code_discriminator_loss,
                                c.code_discriminator_lr, betas))
        return phases
