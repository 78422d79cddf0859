"""VAE-S (004 §II-A, Algorithm 1 first loop): a VAE with the structure-aware reconstruction loss
and a total-correlation penalty; stage 1 of AVAE-S, exported frozen like the β-VAE.

L_REC = λ1·MAE + λ2·MSE + λ3·(1 − SSIM) + λ4·‖Sobel(x) − Sobel(x̃)‖² + λ5·‖Gabor(x) − Gabor(x̃)‖²
L_VAE = L_REC + KL + TC  (004 eqs. 5, 10, 11)
The λ's are given in params or auto-balanced (004 §III: "we probed the loss components for 1
epoch and determined the weights" so that every term is on the same scale, e.g. λ_L1 = 30
when L1 ≈ 30 and L2 ≈ 900): for the first `balance_steps` iterations each λ_i is the running
mean of the largest term divided by the running mean of term i; then the λ's are fixed. The
probe sums, its step count and the λ's are buffers, so they are in every checkpoint (a
resumed run continues with the same weights) and in the export (004's fine-tuning keeps them).
Terms are per-image sums on the [0, 1] scale (Table I's sigmoid output scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from pipeline import losses
from pipeline.config import ConfigError
from pipeline.data import to_unit_scale
from pipeline.methods import Method, register
from pipeline.methods.vae import VAE
from pipeline.networks.architectures import build_decoder, build_encoder

REC_TERMS = ("mae", "mse", "dssim", "sobel", "gabor")  # 004 eq. 5, in the order of λ1..λ5


@dataclass
class VaeSConfig:
    """weights: λ1..λ5 of 004 eq. 5 for (mae, mse, dssim, sobel, gabor), or null to auto-balance;
    balance_steps: iterations the terms are probed before the λ's are fixed (004: one epoch);
    kl_weight / tc_weight: weights of KL and TC in L_VAE (004 eq. 11: 1 and 1);
    tc_dataset_size: N of the minibatch-weighted-sampling TC estimator (Chen et al. 2018; it only
    shifts the logged TC by (K − 1)·log(N·M), never its gradient); sigma: 'encoder' (004 Table I:
    z_mean, z_sigma) or 'learned'; architecture: encoder/decoder family (004 Table I: 'avae_s');
    lr, beta1, beta2: Adam."""

    weights: list[float] | None = None  # λ1..λ5; None = auto-balance (004 §III)
    balance_steps: int = 100  # probe length in iterations (004 §III: 1 epoch)
    kl_weight: float = 1.0  # 004 eq. 11: L_KL unweighted
    tc_weight: float = 1.0  # 004 eq. 11: L_KL-TC unweighted
    tc_dataset_size: int = 60_000  # N in Chen et al. 2018 §4.1 (Fashion-MNIST training split)
    sigma: Literal["learned", "encoder"] = "encoder"  # 004 Table I: z_mean, z_sigma layers
    architecture: Literal["dcgan", "resnet", "avae_s"] = "avae_s"  # 004 Table I
    lr: float = 2e-4  # not given in 004; the pipeline's DCGAN default
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self) -> None:
        if self.weights is not None and (len(self.weights) != len(REC_TERMS) or any(w < 0 for w in self.weights)):
            raise ConfigError(f"params: 'models.*.weights' must be {len(REC_TERMS)} numbers >= 0 for "
                              f"{list(REC_TERMS)}, or null to auto-balance; got {self.weights}")
        if self.balance_steps < 1 or self.tc_dataset_size < 2 or self.lr <= 0:
            raise ConfigError("params: 'models.*.balance_steps' must be >= 1, 'tc_dataset_size' >= 2, 'lr' > 0")
        if self.kl_weight < 0 or self.tc_weight < 0:
            raise ConfigError("params: 'models.*.kl_weight' and 'tc_weight' must be >= 0")


@register
class VAES(VAE):
    """The β-VAE's encoder/decoder contract (export, sample, reconstruct) with 004's L_VAE."""

    name = "vae_s"
    config_cls = VaeSConfig
    exports_vae = True

    def __init__(self, config: VaeSConfig, info, net, vae=None):
        Method.__init__(self, config, info, net)
        if info.kind != "image":
            raise ConfigError(f"params: vae_s needs image data (SSIM, Sobel and Gabor terms); "
                              f"{info.name!r} is {info.kind} data: use method vae for it")
        self.encoder = build_encoder(config.architecture, info, net, config.sigma)
        self.decoder = build_decoder(config.architecture, net.latent_dim, info, net)
        fixed = config.weights is not None
        self.register_buffer("rec_weights", torch.tensor(config.weights if fixed else [1.0] * len(REC_TERMS)))
        self.register_buffer("probe_sums", torch.zeros(len(REC_TERMS)))
        self.register_buffer("probe_steps", torch.tensor(config.balance_steps if fixed else 0))

    @classmethod
    def check_config(cls, config: VaeSConfig, dataset: str) -> None:
        """Every VaeSConfig is valid on image datasets; vector data is refused at construction."""

    @property
    def balancing(self) -> bool:
        return int(self.probe_steps) < self.config.balance_steps

    @torch.no_grad()
    def _probe(self, per_term: torch.Tensor) -> None:
        """Accumulate the unweighted term means and re-balance: λ_i = max_j m_j / m_i  # 004 §III"""
        self.probe_sums += per_term.detach()
        self.probe_steps += 1
        means = (self.probe_sums / self.probe_steps).clamp_min(1e-12)
        self.rec_weights.copy_(means.max() / means)

    def vae_terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mu, log_sigma = self.encoder(x)
        z = losses.reparameterize(mu, log_sigma)
        x_recon = self.decoder(z)
        rec = losses.structure_aware_terms(to_unit_scale(x_recon), to_unit_scale(x))  # 004 eq. 5
        per_term = torch.stack([rec[k].mean() for k in REC_TERMS])
        if self.training and self.balancing:
            self._probe(per_term)
        rec_loss = (self.rec_weights * per_term).sum()  # 004 eq. 5
        kl = losses.kl_standard_normal(mu, log_sigma).mean()
        tc = losses.total_correlation_mws(z, mu, log_sigma, self.config.tc_dataset_size)  # 004 eq. 10
        loss = rec_loss + self.config.kl_weight * kl + self.config.tc_weight * tc  # 004 eq. 11 (L_VAE)
        terms = {"loss": loss, "recon": rec_loss, "kl": kl, "tc": tc,
                 **{k: per_term[i] for i, k in enumerate(REC_TERMS)}}
        return terms, x_recon

    def objective_state(self) -> dict:
        """The λ's as trained (a run shorter than balance_steps exports those its probe reached)."""
        if self.balancing:
            print(f"[vae_s] note: training ended after {int(self.probe_steps)} of {self.config.balance_steps} "
                  "probe steps; the loss weights reached so far are exported as the fixed ones")
        return {"rec_weights": self.rec_weights.tolist()}

    def load_objective_state(self, state: dict) -> None:
        """Fix the λ's to those of the stage-1 run (probing is over)."""
        self.rec_weights.copy_(torch.tensor(state["rec_weights"]))
        self.probe_steps.fill_(self.config.balance_steps)
