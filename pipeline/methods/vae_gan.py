"""VAE/GAN (Larsen et al. 2016, "Autoencoding beyond pixels"): AVAE Table 1 row (SPEC §3.5).

The decoder doubles as the generator. The discriminator sees real images, reconstructions
and prior samples; the reconstruction loss is a Gaussian likelihood of the discriminator's
last hidden layer, L_llike = ½‖Dis_l(x̃) − Dis_l(x)‖², not of pixels. Updates (Larsen
Algorithm 1): encoder ← β·L_prior + L_llike; decoder ← γ·L_llike − L_GAN (non-saturating
form); discriminator ← −L_GAN. The discriminator never receives the L_llike gradient.
As in Larsen et al.'s code (model/aegan.py), images go through the discriminator in joined
batches, so its batch norm normalises them together: [x̃, x] for L_llike, [x, x̃, x_p] for L_GAN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.methods import EncoderDecoderMethod, Example, Learning, OptimiserConfig, Phase, register
from pipeline.networks import Encoder, build_critic, build_generator
from pipeline.schema import ConfigError


@dataclass
class VaeGanConfig(OptimiserConfig):
    """gamma: weight of the hidden-layer reconstruction in the decoder loss; beta: KL weight in
    the encoder loss (AVAE §5 tuned it so that the KL matches the other models'); sigma:
    'learned' (input-independent, AVAE Fig. 5) or 'encoder'; lr, beta1, beta2 (OptimiserConfig):
    Adam for the three networks, DCGAN's (AVAE §5)."""

    gamma: float = 1e-2  # AVAE authors' code: γ = 1e-2
    beta: float = 1.0  # KL weight (AVAE §5 tunes it per dataset: 4/5/10/10/20)
    sigma: Literal["learned", "encoder"] = "learned"  # AVAE Fig. 5 caption: σ learned directly

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0 or self.beta < 0:
            raise ConfigError("params: 'models.*' (vae_gan) needs gamma >= 0 and beta >= 0")


@register
class VaeGan(EncoderDecoderMethod):
    """Encoder E, decoder/generator Dec and discriminator Dis = P(real), three phases."""

    name = "vae_gan"
    config_cls = VaeGanConfig
    examples = {"vae_gan": Example(learning=Learning("toy2d", 600, config={"lr": 1e-3}, samples=0.5,
                                                     reconstructions=0.5)),
                "encoder_sigma": Example({"sigma": "encoder", "beta": 4.0})}

    def __init__(self, config: VaeGanConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.encoder = Encoder(info, net, config.sigma)
        self.decoder = build_generator(net.latent_dim, info, net)
        self.discriminator = build_critic(info, net)

    def hidden_recon(self, x_tilde: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of L_llike = ½‖Dis_l(x̃) − Dis_l(x)‖², Dis_l the discriminator's
        last hidden layer, x̃ and x passed as one batch  # Larsen et al. eq. 8-9"""
        h_tilde, h = self.discriminator(torch.cat([x_tilde, x]), hidden=True).split([len(x_tilde), len(x)])
        return losses.sum_squares_recon(h_tilde, h).mean()

    def discriminate(self, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Dis's logits of the batches passed together as one batch, split back."""
        return self.discriminator(torch.cat(batches)).split([len(b) for b in batches])

    def encoder_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, log_sigma = self.encoder(x)
        x_tilde = self.decoder(losses.reparameterize(mu, log_sigma))
        kl = losses.kl_standard_normal(mu, log_sigma).mean()  # L_prior
        hidden_recon = self.hidden_recon(x_tilde, x)
        return {"loss": self.config.beta * kl + hidden_recon, "kl": kl, "hidden_recon": hidden_recon}

    def decoder_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z = losses.reparameterize(*self.encoder(x))
        x_tilde, x_p = self.decoder(z), self.decoder(self.prior(len(x)))
        hidden_recon = self.hidden_recon(x_tilde, x)
        _, logit_tilde, logit_p = self.discriminate(x, x_tilde, x_p)
        gan = losses.gan_generator_loss(logit_tilde) + losses.gan_generator_loss(logit_p)
        return {"loss": self.config.gamma * hidden_recon + gan, "hidden_recon": hidden_recon, "gan": gan}

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            x_tilde = self.decoder(losses.reparameterize(*self.encoder(x)))
            x_p = self.decoder(self.prior(len(x)))
        loss = losses.gan_discriminator_loss_recon_and_samples(*self.discriminate(x, x_tilde, x_p))  # Larsen L_GAN
        return {"loss": loss}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("encoder", [self.encoder], self.encoder_loss, c.lr, betas),
                Phase("decoder", [self.decoder], self.decoder_loss, c.lr, betas),
                Phase("discriminator", [self.discriminator], self.discriminator_loss, c.lr, betas)]
