"""WGAN-GP (Gulrajani et al. 2017): α-GAN's Wasserstein baseline (SPEC §3.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.methods import Example, Learning, Method, OptimiserConfig, Phase, register
from pipeline.networks import build_critic, build_generator
from pipeline.networks.critics import replace_batch_norm
from pipeline.schema import ConfigError


@dataclass
class WganGpConfig(OptimiserConfig):
    """penalty: gradient-penalty weight; critic_steps: critic updates per generator update;
    lr, beta1, beta2 (OptimiserConfig): Adam for both networks; critic_norm: normalisation inside the critic's
    down-blocks ('layer', 'none' or 'batch' — batch norm couples the examples whose
    per-example input gradients the penalty constrains)."""

    penalty: float = 10.0  # α-GAN App. H.1 / WGAN-GP: λ = 10
    critic_steps: int = 5  # α-GAN §6 / WGAN-GP: 5 critic updates per generator update
    lr: float = 1e-4  # WGAN-GP default; α-GAN T2 sweeps {1e-4, 2e-4, 3e-4}
    beta2: float = 0.9  # α-GAN App. H / WGAN-GP: β2 = 0.9 (β1 = 0.5)
    critic_norm: Literal["layer", "none", "batch"] = "layer"  # WGAN-GP §4: no batch norm in the critic

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.penalty < 0 or self.critic_steps < 1:
            raise ConfigError("params: 'models.*' (wgan_gp) needs penalty >= 0 and critic_steps >= 1")


@register
class WganGp(Method):
    """Generator G(z) and Wasserstein critic C(x): C minimises E C(G(z)) − E C(x) + λ·GP,
    G minimises −E C(G(z))."""

    name = "wgan_gp"
    config_cls = WganGpConfig
    twice_differentiated = ("critic",)  # WGAN-GP eq. 3: the penalty's gradient of the critic's gradient
    examples = {"wgan_gp": Example(learning=Learning("toy2d", 400, config={"lr": 1e-3}, samples=0.5)),
                "no_critic_norm": Example({"critic_norm": "none"})}

    def __init__(self, config: WganGpConfig, info, net, vae=None):
        super().__init__(config, info, net)
        self.generator = build_generator(net.latent_dim, info, net)
        self.critic = replace_batch_norm(build_critic(info, net), config.critic_norm)

    def critic_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator(self.prior(len(x)))
        wasserstein = losses.wasserstein_critic_loss(self.critic(x), self.critic(fake))  # WGAN-GP eq. 3
        penalty = losses.gradient_penalty(self.critic, x, fake).mean()
        return {"loss": wasserstein + self.config.penalty * penalty, "wasserstein": -wasserstein,
                "gradient_penalty": penalty}

    def generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.generator(self.prior(len(x)))
        return {"loss": losses.wasserstein_generator_loss(self.critic(fake))}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        return [Phase("critic", [self.critic], self.critic_loss, c.lr, betas, c.critic_steps),
                Phase("generator", [self.generator], self.generator_loss, c.lr, betas)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)
