"""004's adversarial fine-tuning (§II-B, Algorithm 1 second loop): "AVAE" on a plain VAE export
and AVAE-S on a VAE-S export (SPEC §3.11). One method; which stage-1 objective it keeps
minimising is read from the export (the grid's `export` names the stage-1 model).

The frozen export's encoder/decoder are copied into trainable networks. The decoder doubles
as generator; the discriminator Dis (= P(real)) is the encoder with max pooling instead of
strided down-sampling (004 §III), trained on real x against reconstructions x̃ = Dec(Enc(x)).
Each iteration first measures Dis's accuracy on the batch, then (Algorithm 1):
  if accuracy < 0.7: Dis minimises −log Dis(x) − log(1 − Dis(x̃));
  if accuracy > 0.5: the VAE minimises L_VAE − log Dis(x̃).
Algorithm 1 prints the VAE's adversarial term as "+ log Dis(X̃)"; minimised literally it would
help the discriminator, so the generator-side term here is the non-saturating −log Dis(x̃) of
004 eq. 12's min-max game. Its weight follows 004 §III's rule that every loss component is on
the same scale: the first `balance_steps` iterations probe −log Dis(x̃) (weight 1) and the
largest weighted component of L_VAE, then the weight is fixed at their ratio (unweighted, a
term near 0.7 beside an L_VAE in the thousands barely acts). `adversarial: false` is the
iteration-matched control: the stage-1 objective trained on for the same iterations, every
iteration, no discriminator, so a table separates "adversarial" from "more training".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline import losses
from pipeline.methods import REGISTRY, Example, Learning, Method, OptimiserConfig, Phase, build_method, register
from pipeline.networks.architectures import build_pooled_discriminator
from pipeline.schema import ConfigError, from_dict
from pipeline.sections import ModelSpec


@dataclass
class AvaeFinetuneConfig(OptimiserConfig):
    """adversarial: train against the discriminator (false: the iteration-matched control, L_VAE
    alone every iteration); dis_update_below / vae_update_above: accuracy gates of 004 Algorithm
    1; adversarial_weight: weight of −log Dis(x̃) in the VAE update, or null to balance it onto
    L_VAE's scale after a probe of `balance_steps` iterations (004 §III); lr, beta1, beta2
    (OptimiserConfig): Adam for both phases (not given in 004; the pipeline's DCGAN default)."""

    adversarial: bool = True  # false: the control row (no discriminator, no gate)
    dis_update_below: float = 0.7  # 004 Algorithm 1: update Dis while Accuracy_Dis < 0.7
    vae_update_above: float = 0.5  # 004 Algorithm 1: update the VAE while Accuracy_Dis > 0.5
    adversarial_weight: float | None = None  # None: same scale as L_VAE's components (004 §III)
    balance_steps: int = 100  # probe of the adversarial term (004 §III: one epoch)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0.0 <= self.vae_update_above <= 1.0 and 0.0 <= self.dis_update_below <= 1.0):
            raise ConfigError("params: 'models.*.dis_update_below' and 'vae_update_above' are accuracies in [0, 1]")
        if self.adversarial_weight is not None and self.adversarial_weight < 0:
            raise ConfigError("params: 'models.*.adversarial_weight' must be >= 0 (or null)")
        if self.balance_steps < 1:
            raise ConfigError("params: 'models.*.balance_steps' must be >= 1")


def stage1_from_export(vae, info, net) -> Method:
    """A trainable copy of the stage-1 method recorded in a frozen export (weights and fixed
    loss state included)."""
    objective = getattr(vae, "objective", None)
    if not objective:
        raise ValueError("this VAE export records no stage-1 objective (exported before vae_export/2); "
                         "re-run `dvc repro pretrain_vae` to fine-tune it")
    method = objective["method"]
    config = from_dict(REGISTRY[method].config_cls, objective["config"], f"export objective ({method})")
    stage1 = build_method(ModelSpec(f"stage-1 {method}", method, config), info, net)
    stage1.encoder.load_state_dict(vae.encoder.state_dict())
    stage1.decoder.load_state_dict(vae.decoder.state_dict())
    stage1.load_objective_state(objective["state"])
    return stage1.requires_grad_(True)


@register
class AvaeFinetune(Method):
    """Encoder/decoder from a stage-1 export, fine-tuned against a max-pooling discriminator."""

    name = "avae_finetune"
    config_cls = AvaeFinetuneConfig
    examples = {  # 004's AVAE (on a plain VAE) and AVAE-S (on VAE-S), and the iteration-matched control
        "avae": Example({"balance_steps": 3}, learning=Learning(
            "bars", 60, batch_size=16, latent_dim=8, stage1_iterations=300, stage1_config={"lr": 1e-3},
            reconstructions=0.7)),
        "avae_s": Example({"balance_steps": 3}, stage1={"method": "vae_s", "balance_steps": 3}, vector=False,
                          learning=Learning("bars", 60, batch_size=16, latent_dim=8, stage1_iterations=200,
                                            stage1_config={"balance_steps": 20, "lr": 2e-3}, reconstructions=0.7)),
        "control": Example({"adversarial": False}, stage1={"method": "vae_s", "balance_steps": 3}, vector=False),
    }
    needs_vae = True

    def __init__(self, config: AvaeFinetuneConfig, info, net, vae=None):
        super().__init__(config, info, net)
        if vae is None:
            raise ValueError("avae_finetune fine-tunes a stage-1 export: pass vae=load_vae_export(...)")
        self.vae_model = stage1_from_export(vae, info, net)  # trainable encoder + decoder (+ its loss state)
        if config.adversarial:
            self.discriminator = build_pooled_discriminator(vae.architecture, info, net)
        self.register_buffer("dis_accuracy", torch.tensor(0.0))  # Accuracy_Dis of this iteration
        fixed = config.adversarial_weight is not None
        self.register_buffer("adversarial_weight", torch.tensor(config.adversarial_weight if fixed else 1.0))
        self.register_buffer("probe_sums", torch.zeros(2))  # L_VAE's largest weighted component, −log Dis(x̃)
        self.register_buffer("probe_steps", torch.tensor(config.balance_steps if fixed else 0))

    @torch.no_grad()
    def _probe(self, scale: torch.Tensor, adversarial: torch.Tensor) -> None:
        """Accumulate both means; at the probe's end weight the adversarial term onto L_VAE's
        scale  # 004 §III: all loss components in the same scale"""
        self.probe_sums += torch.stack([scale, adversarial.detach()])
        self.probe_steps += 1
        if int(self.probe_steps) == self.config.balance_steps:
            self.adversarial_weight.copy_(self.probe_sums[0] / self.probe_sums[1].clamp_min(1e-12))

    def measure_accuracy(self, logit_real: torch.Tensor, logit_recon: torch.Tensor) -> torch.Tensor:
        """Accuracy_Dis on real x and reconstructions x̃, before this iteration's update (004 Algorithm 1)."""
        return losses.discriminator_accuracy(logit_real.detach(), logit_recon.detach())

    def discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            mu, log_sigma = self.vae_model.encoder(x)
            x_recon = self.vae_model.decoder(losses.reparameterize(mu, log_sigma))
        logit_real, logit_recon = self.discriminator(x), self.discriminator(x_recon)
        self.dis_accuracy.copy_(self.measure_accuracy(logit_real, logit_recon))
        loss = losses.gan_discriminator_loss(logit_real, logit_recon)  # 004 eq. 11 L_Dis
        gate = (self.dis_accuracy < self.config.dis_update_below).float()  # 004 Algorithm 1
        return {"loss": loss, "accuracy": self.dis_accuracy.clone(), "gate": gate}

    def vae_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        terms, x_recon = self.vae_model.vae_terms(x)  # L_VAE of the stage-1 method
        if not self.config.adversarial:
            return terms  # the control: more stage-1 training
        adversarial = losses.gan_generator_loss(self.discriminator(x_recon))  # −log Dis(x̃)
        if self.training and int(self.probe_steps) < self.config.balance_steps:
            self._probe(self.vae_model.loss_scale(terms), adversarial)
        gate = (self.dis_accuracy > self.config.vae_update_above).float()  # 004 Algorithm 1
        return {**terms, "loss": terms["loss"] + self.adversarial_weight * adversarial,  # 004 eq. 11
                "vae_loss": terms["loss"], "adversarial": adversarial,
                "adversarial_weight": self.adversarial_weight.clone(), "gate": gate}

    def phases(self) -> list[Phase]:
        c = self.config
        betas = c.betas
        vae = Phase("vae", [self.vae_model], self.vae_loss, c.lr, betas)
        if not c.adversarial:
            return [vae]
        return [Phase("discriminator", [self.discriminator], self.discriminator_loss, c.lr, betas), vae]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae_model.decoder(z)

    def encode(self, x):
        return self.vae_model.encoder(x)
