"""AVAE (Plumerault et al., 000/001 §4): a generator G(z, ξ) and critic C on a frozen VAE.

The VAE (E, D) is the stage-1 export; its encoder only ever receives gradients from L_VAE,
which stage 1 already minimised, so here it is frozen and G, C are trained (SPEC §3.9).
Table 1 variants: with ξ and L_Z^a, without ξ and L_Z^a, without ξ and L_Z^b.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.methods import Example, Learning, Method, OptimiserConfig, Phase, register
from pipeline.networks import build_critic, build_generator


@dataclass
class AvaeConfig(OptimiserConfig):
    """xi: give the generator extra noise ξ (of the latent size) beside z; latent_loss:
    'a' (AVAE eq. 12) or 'b' (eq. 16); lr, beta1, beta2 (OptimiserConfig): Adam (DCGAN
    settings, AVAE §5)."""

    xi: bool = False  # AVAE T1 best row: without ξ
    latent_loss: Literal["a", "b"] = "b"  # AVAE T1 best row: L_Z^b


@register
class AVAE(Method):
    """L_C (eq. 13) for the critic; L_G = L_Z + L_M (eqs. 12/16 + 15) for the generator."""

    name = "avae"
    config_cls = AvaeConfig
    examples = {  # AVAE T1's three rows
        "xi_a": Example({"xi": True, "latent_loss": "a"}),
        "a": Example({"latent_loss": "a"}),
        "b": Example({"latent_loss": "b"}, learning=Learning("toy2d", 1500, latent_dim=1, stage1_iterations=1500,
                                                             stage1_config={"lr": 1e-3}, samples=0.1,
                                                             reconstructions=0.35)),
    }
    needs_vae = True

    def __init__(self, config: AvaeConfig, info, net, vae=None):
        super().__init__(config, info, net)
        if vae is None:
            raise ValueError("AVAE is trained on a frozen VAE export: pass vae=load_vae_export(...)")
        self.vae = vae  # frozen: no phase lists it, its parameters never require grad
        in_dim = net.latent_dim * (2 if config.xi else 1)
        self.generator = build_generator(in_dim, info, net)
        self.critic = build_critic(info, net)
        self.latent_loss = {"a": losses.latent_recon_a, "b": losses.latent_recon_b}[config.latent_loss]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z, ξ) with fresh ξ ~ N(0, I), or G(z) without ξ."""
        if self.config.xi:
            z = torch.cat([z, torch.randn_like(z)], dim=1)
        return self.generator(z)

    def critic_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.decode(self.prior(len(x)))
        return {"loss": losses.avae_critic_loss(self.critic(x), self.critic(fake))}  # AVAE eq. 13

    def generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.prior(len(x))
        fake = self.decode(z)
        mu_fake, log_sigma_fake = self.vae.encoder(fake)
        latent_recon = self.latent_loss(mu_fake, z, log_sigma_fake).mean()  # AVAE eq. 12 / 16
        manifold = losses.avae_manifold_loss(self.critic(fake))  # AVAE eq. 15
        return {"loss": latent_recon + manifold, "latent_recon": latent_recon, "manifold": manifold}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("critic", [self.critic], self.critic_loss, c.lr, betas),
                Phase("generator", [self.generator], self.generator_loss, c.lr, betas)]

    def encode(self, x):
        return self.vae.encoder(x)  # reconstructions: G(μ(x), ξ)
