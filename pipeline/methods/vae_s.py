"""VAE-S (004 §II-A, Algorithm 1 first loop): a VAE with the structure-aware reconstruction loss
and a total-correlation penalty; stage 1 of AVAE-S, exported frozen like the β-VAE.

L_REC = λ1·MAE + λ2·MSE + λ3·(1 − SSIM) + λ4·‖Sobel(x) − Sobel(x̃)‖² + λ5·‖Gabor(x) − Gabor(x̃)‖²
L_VAE = L_REC + KL + TC  (004 eqs. 5, 10, 11)
004 §III sets the weights by one rule only: "make all loss components to be in the same scale.
This way, all components contribute almost equally in the final loss" (e.g. λ_L1 = 30 when L1 ≈ 30
and L2 ≈ 900), found by probing "the loss components for 1 epoch". So the first `balance_steps`
iterations train with unit weights and record each component's mean; then every balanced
component is weighted onto the scale of the largest one (λ_i = max_j m_j / m_i) and the weights
stay fixed. `balance: all` balances every component of L_VAE: the reconstruction terms and the
KL (TC, a term of the KL's decomposition in nats, shares the KL's weight), as "all components
... in the final loss" says; `balance: reconstruction` balances λ1..λ5 only and keeps KL and TC
at weight 1, as eq. 11 prints them. The same method with `terms: [mse]` and no TC is 004's
vanilla VAE ("MSE reconstruction loss and a Gaussian prior KL"): every 004 model then shares one
objective family, network, σ and pretraining length (004 §III: "All models share the same
architectures"). The probe sums, its step count and the weights are buffers, so they are in
every checkpoint and in the export (004's fine-tuning keeps them). Terms are means over pixels
on the 0-255 scale, as §III's example states them (L1 ≈ 30, L2 ≈ 900); 1 − SSIM is scale-free.
The default is `balance: reconstruction`: the rule sets eq. 5's λ's ("we determined the λ_l1
as 30"), eq. 11 and Algorithm 1 add KL and TC unweighted, and it keeps 004's vanilla VAE close
to VAE-S in mse as Table III reports (0.0102 vs 0.0094); `balance: all` collapsed the vanilla
VAE's KL to ~2 nats on Fashion-MNIST (README, departures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from pipeline import losses
from pipeline.datainfo import to_unit_scale
from pipeline.methods import Example, Learning, Method, OptimiserConfig, register
from pipeline.methods.vae import VAE
from pipeline.networks.architectures import build_decoder, build_encoder
from pipeline.schema import ConfigError

REC_TERMS = ("mae", "mse", "dssim", "sobel", "gabor")  # 004 eq. 5, in the order of λ1..λ5


@dataclass
class VaeSConfig(OptimiserConfig):
    """terms: the reconstruction terms of L_REC (004 eq. 5: all five; ['mse']: 004's vanilla
    VAE); total_correlation: add TC to L_VAE (004 eqs. 10-11; off for the vanilla VAE);
    balance: which components the same-scale rule weights ('reconstruction': the terms only, KL
    and TC at 1; 'all': the terms and the KL, TC sharing the KL's weight); weights: λ per
    term, fixed (KL and TC at 1), or null to probe and balance; balance_steps: iterations the
    components are probed with unit weights before the weights are fixed (004: one epoch);
    tc_dataset_size: N of the minibatch-weighted-sampling TC estimator (Chen et al. 2018; it only
    shifts the logged TC by (K − 1)·log(N·M), never its gradient); sigma: 'encoder' (004 Table I:
    z_mean, z_sigma) or 'learned'; architecture: encoder/decoder family (004 Table I: 'avae_s');
    lr, beta1, beta2 (OptimiserConfig): Adam (not given in 004; the pipeline's DCGAN default)."""

    terms: list[str] = field(default_factory=lambda: list(REC_TERMS))  # 004 eq. 5
    total_correlation: bool = True  # 004 eqs. 10-11
    balance: Literal["reconstruction", "all"] = "reconstruction"  # 004 eq. 5 λ's (§III); eq. 11: KL, TC at 1
    weights: list[float] | None = None  # λ per term; None = probe, then balance (004 §III)
    balance_steps: int = 100  # probe length in iterations (004 §III: 1 epoch)
    tc_dataset_size: int = 60_000  # N in Chen et al. 2018 §4.1 (Fashion-MNIST training split)
    sigma: Literal["learned", "encoder"] = "encoder"  # 004 Table I: z_mean, z_sigma layers
    architecture: Literal["dcgan", "resnet", "avae_s"] = "avae_s"  # 004 Table I

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [t for t in self.terms if t not in REC_TERMS]
        if unknown or not self.terms or len(set(self.terms)) != len(self.terms):
            raise ConfigError(f"params: 'models.*.terms' = {self.terms} must be distinct terms of {list(REC_TERMS)}")
        if self.weights is not None and (len(self.weights) != len(self.terms) or any(w < 0 for w in self.weights)):
            raise ConfigError(f"params: 'models.*.weights' must be {len(self.terms)} numbers >= 0 for "
                              f"{self.terms}, or null to probe and balance; got {self.weights}")
        if self.balance_steps < 1 or self.tc_dataset_size < 2:
            raise ConfigError("params: 'models.*.balance_steps' must be >= 1 and 'tc_dataset_size' >= 2")


@register
class VAES(VAE):
    """The β-VAE's encoder/decoder contract (export, sample, reconstruct) with 004's L_VAE."""

    name = "vae_s"
    config_cls = VaeSConfig
    examples = {
        "vae_s": Example({"balance_steps": 3}, vector=False, learning=Learning(
            "bars", 200, batch_size=16, latent_dim=8, config={"balance_steps": 20, "lr": 2e-3}, reconstructions=0.7)),
        "vanilla_004": Example({"terms": ["mse"], "total_correlation": False, "balance_steps": 3}, vector=False),
        "fixed_weights": Example({"weights": [1.0, 2.0, 3.0, 4.0, 5.0], "balance": "all", "architecture": "dcgan"},
                                 vector=False),
    }

    def __init__(self, config: VaeSConfig, info, net, vae=None):
        Method.__init__(self, config, info, net)
        if info.kind != "image":
            raise ConfigError(f"params: vae_s needs image data (SSIM, Sobel and Gabor terms); "
                              f"{info.name!r} is {info.kind} data: use method vae for it")
        self.encoder = build_encoder(config.architecture, info, net, config.sigma)
        self.decoder = build_decoder(config.architecture, net.latent_dim, info, net)
        self.components = [*config.terms, "kl"]  # the weighted components of L_VAE (TC takes the KL's weight)
        fixed = config.weights is not None
        self.register_buffer("component_weights", torch.tensor([*config.weights, 1.0] if fixed
                                                               else [1.0] * len(self.components)))
        self.register_buffer("probe_sums", torch.zeros(len(self.components)))
        self.register_buffer("probe_steps", torch.tensor(config.balance_steps if fixed else 0))

    @property
    def balancing(self) -> bool:
        return int(self.probe_steps) < self.config.balance_steps

    @torch.no_grad()
    def _probe(self, per_component: torch.Tensor) -> None:
        """Accumulate the unweighted component means; at the probe's end weight each balanced one
        onto the largest's scale, λ_i = max_j m_j / m_i  # 004 §III"""
        self.probe_sums += per_component.detach()
        self.probe_steps += 1
        if self.balancing:
            return
        means = (self.probe_sums / self.probe_steps).clamp_min(1e-12)
        balanced = len(self.components) if self.config.balance == "all" else len(self.config.terms)
        weights = torch.ones_like(means)
        weights[:balanced] = means[:balanced].max() / means[:balanced]
        self.component_weights.copy_(weights)

    def vae_terms(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mu, log_sigma = self.encoder(x)
        z = losses.reparameterize(mu, log_sigma)
        x_recon = self.decoder(z)
        rec = losses.structure_aware_terms(to_unit_scale(x_recon), to_unit_scale(x))  # 004 eq. 5
        kl = losses.kl_standard_normal(mu, log_sigma).mean()
        per_component = torch.stack([*(rec[k].mean() for k in self.config.terms), kl])
        if self.training and self.balancing:
            self._probe(per_component)
        weighted = self.component_weights * per_component
        terms = {k: per_component[i] for i, k in enumerate(self.config.terms)}
        loss = weighted.sum()  # 004 eq. 11: λ-weighted L_REC + KL
        if self.config.total_correlation:
            tc = losses.total_correlation_mws(z, mu, log_sigma, self.config.tc_dataset_size)  # 004 eq. 10
            loss = loss + self.component_weights[-1] * tc
            terms["tc"] = tc
        return {"loss": loss, "recon": weighted[:-1].sum(), "kl": kl, **terms}, x_recon

    def loss_scale(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The largest weighted component of L_VAE (what the same-scale rule brings others to)."""
        per_component = torch.stack([*(terms[k] for k in self.config.terms), terms["kl"]])
        return (self.component_weights * per_component).max().detach()

    def objective_state(self) -> dict:
        """The weights as trained (a run shorter than balance_steps exports unit weights)."""
        if self.balancing:
            print(f"[vae_s] note: training ended after {int(self.probe_steps)} of {self.config.balance_steps} "
                  "probe steps; the unit weights of the probe are exported as the fixed ones")
        return {"components": self.components, "weights": self.component_weights.tolist()}

    def load_objective_state(self, state: dict) -> None:
        """Fix the weights to those of the stage-1 run (probing is over)."""
        self.component_weights.copy_(torch.tensor(state["weights"]))
        self.probe_steps.fill_(self.config.balance_steps)
