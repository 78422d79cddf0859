"""β-VAE (AVAE eq. 9; LSR-GAN eq. 5 and App. A): stage 1 of the pipeline, exported frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.methods import EncoderDecoderMethod, Example, Learning, OptimiserConfig, Phase, Stage1Export, register
from pipeline.networks.architectures import build_decoder, build_encoder
from pipeline.schema import ConfigError, to_dict


@dataclass
class VaeConfig(OptimiserConfig):
    """beta: KL weight (β-VAE; LSR-GAN Table 1 sweeps it); reconstruction: 'mse' (½ sum of squares, AVAE eq. 9)
    or 'log_mse' (LSR-GAN App. A); sigma: 'learned' (input-independent, AVAE Fig. 5) or
    'encoder' (output by the encoder); architecture: encoder/decoder family, 'dcgan' (AVAE
    Fig. 5), 'resnet' (LSR-GAN App. D Table 3) or 'avae_s' (004 Table I); lr, beta1, beta2
    (OptimiserConfig): Adam, the AVAE authors' 2e-4 with DCGAN's betas (AVAE §5)."""

    beta: float = 1.0  # KL weight: AVAE eq. 9 is the plain VAE (β = 1)
    reconstruction: Literal["mse", "log_mse"] = "mse"  # AVAE eq. 9 / LSR-GAN App. A
    sigma: Literal["learned", "encoder"] = "learned"  # AVAE Fig. 5 caption: sigma learned directly
    architecture: Literal["dcgan", "resnet", "avae_s"] = "dcgan"  # AVAE Fig. 5 / 003 Table 3 / 004 Table I

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError("params: 'models.*.beta' must be >= 0")


@register
class VAE(EncoderDecoderMethod):
    """Encoder E and decoder D trained on L = recon(D(z), x) + β·KL(q(z|x) ‖ p(z))."""

    name = "vae"
    config_cls = VaeConfig
    examples = {
        "beta_vae": Example(learning=Learning("toy2d", 1500, latent_dim=1, config={"lr": 1e-3}, reconstructions=0.35)),
        "resnet_log_mse": Example({"architecture": "resnet", "reconstruction": "log_mse", "sigma": "encoder"},
                                  vector=False),  # LSR-GAN's stage 1 (App. A, App. D Table 3)
        "avae_s_architecture": Example({"architecture": "avae_s", "beta": 4.0}, vector=False),  # 004 Table I
    }

    def __init__(self, config: VaeConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.encoder = build_encoder(config.architecture, info, net, config.sigma)
        self.decoder = build_decoder(config.architecture, net.latent_dim, info, net)
        self.recon = {"mse": losses.sum_squares_recon, "log_mse": losses.log_mse_recon}[config.reconstruction]

    def vae_terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The named terms of L_VAE and the reconstruction x̃ = D(z), z ~ q(z|x), they used."""
        mu, log_sigma = self.encoder(x)
        x_recon = self.decoder(losses.reparameterize(mu, log_sigma))
        recon = self.recon(x_recon, x).mean()
        kl = losses.kl_standard_normal(mu, log_sigma).mean()
        return {"loss": recon + self.config.beta * kl, "recon": recon, "kl": kl}, x_recon  # AVAE eq. 9

    def vae_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vae_terms(x)[0]

    def loss_scale(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The larger weighted component of L_VAE (reconstruction or β·KL)."""
        return torch.maximum(terms["recon"], self.config.beta * terms["kl"]).detach()

    def export(self) -> Stage1Export:
        """The encoder and decoder with their architecture, and the stage-1 objective (method,
        config, fixed loss state), so that 004's fine-tuning can rebuild L_VAE."""
        return Stage1Export(self.encoder, self.decoder, self.config.sigma, self.config.architecture,
                            {"method": self.name, "config": to_dict(self.config), "state": self.objective_state()})

    def objective_state(self) -> dict:
        """Loss state fixed during training that the objective needs later (none for the β-VAE)."""
        return {}

    def load_objective_state(self, state: dict) -> None:
        """Restore what objective_state() returned."""

    def phases(self) -> list[Phase]:
        c = self.config
        return [Phase("vae", [self.encoder, self.decoder], self.vae_loss, c.lr, c.betas)]
