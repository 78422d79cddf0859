"""The two-stage methods: VAE architectures and export, VAE-S (004 §II-A), LSR-GAN (003), 004's
adversarial fine-tuning (AVAE / AVAE-S). Loss terms against hand-computed values, which modules each
update touches, gating, export round-trips, resume, and their own learning checks (the contract
every method passes is tests/test_method_contract.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import losses
from pipeline.config import parse_params
from pipeline.data import BatchSampler
from pipeline.datainfo import DataInfo, to_model_scale
from pipeline.export import ExportError, export_vae, load_vae_export, record_hash
from pipeline.methods import REGISTRY
from pipeline.methods.avae_finetune import AvaeFinetune, AvaeFinetuneConfig
from pipeline.methods.lsr_gan import LSRGAN, LsrGanConfig
from pipeline.methods.vae import VAE, VaeConfig
from pipeline.methods.vae_s import REC_TERMS, VAES, VaeSConfig
from pipeline.run import train_cell
from pipeline.schema import ConfigError
from pipeline.ssim import ssim
from pipeline.sections import NetworkConfig, TrainConfig
from pipeline.training import Trainer
from tests.conftest import tiny_params

NET = NetworkConfig(width=4, latent_dim=8, mlp_hidden=32)
INFO = DataInfo("fashion_mnist", "image", (1, 32, 32), "[-1,1]", 10)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def moved(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def frozen_export(tmp_path, stage1, name="export.pt"):
    """Export a stage-1 method the way train_cell does and load it back frozen."""
    export_vae(stage1, tmp_path / name, {})
    return load_vae_export(tmp_path / name)


def vae_s_stage1(**overrides):
    return VAES(VaeSConfig(weights=[1.0, 2.0, 3.0, 4.0, 5.0], **overrides), INFO, NET)


# ------------------------------------------------------------------ loss terms, hand-computed


def test_ssim_of_an_image_with_itself_is_one_and_of_constant_images_is_the_luminance_term():
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    a, b = torch.full((1, 1, 16, 16), 0.25), torch.full((1, 1, 16, 16), 0.75)
    c1 = 0.01 ** 2  # no variance: SSIM = (2ab + C1) / (a² + b² + C1)
    assert ssim(a, b).item() == pytest.approx((2 * 0.25 * 0.75 + c1) / (0.25 ** 2 + 0.75 ** 2 + c1), rel=1e-5)


def step_edge(rows=5, cols=6):
    """Left half 0, right half 1: a vertical step edge."""
    x = torch.zeros(1, 1, rows, cols)
    x[..., cols // 2:] = 1.0
    return x


def test_sobel_on_a_step_edge():
    edges = losses.sobel_edges(step_edge())  # 'valid': 3 x 4 output per direction
    gx, gy = edges[0, 0], edges[0, 1]
    # Gx = Σ_rows (1, 2, 1)·(x[c + 1] − x[c − 1]) = 4 where the 3x3 window straddles the edge
    assert torch.equal(gx, torch.tensor([[0.0, 4.0, 4.0, 0.0]] * 3))
    assert torch.equal(gy, torch.zeros(3, 4))
    loss = losses.sum_squares(losses.sobel_edges(step_edge()), losses.sobel_edges(torch.zeros(1, 1, 5, 6)))
    assert loss.item() == 3 * (16 + 16)


def test_gabor_responses_on_a_step_edge_match_the_filter_formula():
    size, sigma, wavelength, gamma = 7, 2.0, 4.0, 0.5
    x = step_edge(7, 9)
    out = losses.gabor_textures(x)  # 4 orientations x 1 x 3 output columns
    assert out.shape == (1, 4, 1, 3)
    assert torch.allclose(losses.gabor_textures(torch.ones(1, 1, 7, 9)), torch.zeros(1, 4, 1, 3), atol=1e-5)
    for k in range(4):  # direct evaluation of exp(−(x'² + γ²y'²)/2σ²)·cos(2πx'/λ), minus its mean
        theta = math.pi * k / 4
        kernel = np.zeros((size, size))
        for i in range(size):
            for j in range(size):
                u, v = j - 3, i - 3  # x = column offset, y = row offset
                xr = u * math.cos(theta) + v * math.sin(theta)
                yr = -u * math.sin(theta) + v * math.cos(theta)
                kernel[i, j] = math.exp(-(xr ** 2 + gamma ** 2 * yr ** 2) / (2 * sigma ** 2)) * math.cos(
                    2 * math.pi * xr / wavelength)
        kernel -= kernel.mean()
        for col in range(3):
            expected = (kernel * x[0, 0, :, col:col + size].numpy()).sum()
            assert out[0, k, 0, col].item() == pytest.approx(expected, abs=1e-5)


def test_structure_aware_terms_vanish_for_a_perfect_reconstruction():
    x = torch.rand(3, 1, 32, 32)
    terms = losses.structure_aware_terms(x, x)
    assert set(terms) == set(REC_TERMS)
    for name, value in terms.items():
        assert value.shape == (3,) and value.abs().max() < 1e-5, name
    y = x.clone()
    y[:, :, :, :16] += 0.1  # half the pixels off by 0.1 = 25.5 grey levels
    assert losses.structure_aware_terms(y, x)["mae"][0].item() == pytest.approx(25.5 / 2, rel=1e-4)
    assert losses.structure_aware_terms(y, x)["mse"][0].item() == pytest.approx(25.5 ** 2 / 2, rel=1e-4)
    flat = torch.full((1, 1, 32, 32), 0.5)  # 004 §III's example: L1 of 30 grey levels is an L2 of 900
    terms = losses.structure_aware_terms(flat + 30 / 255, flat)
    assert terms["mae"].item() == pytest.approx(30, rel=1e-4) and terms["mse"].item() == pytest.approx(900, rel=1e-4)


def test_total_correlation_is_zero_in_one_dimension_and_larger_for_duplicated_latents():
    torch.manual_seed(1)
    mu1 = torch.randn(64, 1)
    ls1 = torch.full_like(mu1, -2.0)
    z1 = losses.reparameterize(mu1, ls1)
    assert losses.total_correlation_mws(z1, mu1, ls1, 1000).item() == pytest.approx(0.0, abs=1e-5)
    mu_ind = torch.randn(256, 2)
    mu_dup = torch.cat([mu_ind[:, :1], mu_ind[:, :1]], dim=1)  # z_2 = z_1: maximally dependent
    ls = torch.full_like(mu_ind, -2.0)
    tc_ind = losses.total_correlation_mws(mu_ind, mu_ind, ls, 1000)
    tc_dup = losses.total_correlation_mws(mu_dup, mu_dup, ls, 1000)
    assert tc_dup > tc_ind + 1.0


def test_lsr_gan_latent_term_is_the_gaussian_negative_log_density():
    z = torch.tensor([[0.0, 1.0]])
    mu = torch.zeros(1, 2)
    log_sigma = torch.tensor([[0.0, math.log(2.0)]])
    # −log N(0; 0, 1) − log N(1; 0, 4) = ½log2π + (½·¼ + log 2 + ½log2π)
    expected = math.log(2 * math.pi) + 0.125 + math.log(2.0)
    assert losses.latent_log_density_loss(z, mu, log_sigma).item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_accuracy_counts_real_and_fake_decisions():
    acc = losses.discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-2.0, -3.0, 0.5]))
    assert acc.item() == pytest.approx(3 / 5)


# ------------------------------------------------------------------ architectures and export


@pytest.mark.parametrize("architecture", ["dcgan", "resnet", "avae_s"])
@pytest.mark.parametrize("sigma", ["learned", "encoder"])
def test_export_roundtrip_for_each_architecture(architecture, sigma, tmp_path):
    vae = VAE(VaeConfig(architecture=architecture, sigma=sigma), INFO, NET).eval()
    frozen = frozen_export(tmp_path, vae)
    assert frozen.architecture == architecture and frozen.objective["method"] == "vae"
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        for a, b in zip(frozen.encoder(x), vae.encoder(x)):
            assert torch.equal(a, b)
        z = torch.randn(4, NET.latent_dim)
        assert torch.equal(frozen.decoder(z), vae.decoder(z))
        assert vae.decoder(z).shape == x.shape
    assert all(not p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("architecture,resolution", [("resnet", 64), ("avae_s", 64), ("avae_s", 96)])
def test_architectures_build_at_their_other_sizes(architecture, resolution):
    info = DataInfo("celeba", "image", (3, resolution, resolution), "[-1,1]", 0)
    vae = VAE(VaeConfig(architecture=architecture), info, NET).eval()
    with torch.no_grad():
        assert vae.reconstruct(torch.randn(2, 3, resolution, resolution)).shape == (2, 3, resolution, resolution)


def test_avae_s_decoder_has_no_transposed_convolutions():
    vae = VAE(VaeConfig(architecture="avae_s"), INFO, NET)
    kinds = {type(m).__name__ for m in vae.decoder.modules()}
    assert "ConvTranspose2d" not in kinds and "Upsample" in kinds


def test_unsupported_resolution_is_refused_with_the_fix():
    info = DataInfo("celeba", "image", (3, 96, 96), "[-1,1]", 0)
    with pytest.raises(ValueError, match="resnet architecture supports"):
        VAE(VaeConfig(architecture="resnet"), info, NET)


def test_old_format_export_loads_as_dcgan_and_a_wrong_architecture_fails_clearly(tmp_path):
    vae = VAE(VaeConfig(), INFO, NET)
    frozen_export(tmp_path, vae)
    blob = torch.load(tmp_path / "export.pt", weights_only=False)
    old = dict(blob, format="vae_export/1", arch={k: v for k, v in blob["arch"].items()
                                                  if k not in ("architecture", "objective")})
    del old["record_hash"]  # vae_export/1 files carry no record hash
    torch.save(old, tmp_path / "old.pt")
    loaded = load_vae_export(tmp_path / "old.pt")
    assert loaded.architecture == "dcgan" and loaded.objective is None
    wrong = dict(blob, arch=dict(blob["arch"], architecture="avae_s"))
    wrong["record_hash"] = record_hash(wrong)  # a consistent file, just of the wrong architecture
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ExportError, match="do not fit the recorded architecture 'avae_s'"):
        load_vae_export(tmp_path / "wrong.pt")


# ------------------------------------------------------------------ VAE-S


def probe_run(method, calls: int):
    """`calls` training losses on one batch; the component weights each call used."""
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    history = []
    for _ in range(calls):
        terms = method.vae_loss(x)
        assert torch.isfinite(terms["loss"])
        history.append(method.component_weights.clone())
    return history, terms


def test_vae_s_probes_with_unit_weights_then_puts_every_component_on_the_largest_scale():
    method = VAES(VaeSConfig(balance_steps=3, balance="all"), INFO, NET).train()
    history, terms = probe_run(method, 5)
    assert torch.equal(history[0], torch.ones(6)) and torch.equal(history[1], torch.ones(6))  # 004: probed first
    assert torch.equal(history[2], history[3]) and torch.equal(history[3], history[4])  # then fixed
    means = method.probe_sums / method.probe_steps
    assert method.components == [*REC_TERMS, "kl"]
    assert torch.allclose(method.component_weights * means, means.max().expand(6), rtol=1e-5)  # 004 §III
    assert {"tc", "kl", *REC_TERMS} <= set(terms)
    w = method.component_weights
    expected = sum(w[i] * terms[k] for i, k in enumerate(REC_TERMS)) + w[5] * (terms["kl"] + terms["tc"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)  # TC shares the KL's weight
    assert {"component_weights", "probe_sums", "probe_steps"} <= set(method.state_dict())  # checkpointed


def test_vae_s_balancing_the_reconstruction_only_keeps_kl_at_one():
    method = VAES(VaeSConfig(balance_steps=2), INFO, NET).train()  # the default: eq. 5's λ's only
    probe_run(method, 3)
    means = (method.probe_sums / method.probe_steps)[:5]
    assert method.component_weights[5].item() == 1.0
    assert torch.allclose(method.component_weights[:5] * means, means.max().expand(5), rtol=1e-5)


def test_the_vanilla_004_vae_is_mse_and_kl_on_one_scale_without_tc():
    method = VAES(VaeSConfig(terms=["mse"], total_correlation=False, balance_steps=2, balance="all"), INFO, NET).train()
    _, terms = probe_run(method, 3)
    assert method.components == ["mse", "kl"] and "tc" not in terms and "dssim" not in terms
    w = method.component_weights
    means = method.probe_sums / method.probe_steps
    assert (w * means)[0].item() == pytest.approx((w * means)[1].item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((w[0] * terms["mse"] + w[1] * terms["kl"]).item(), rel=1e-5)


def test_vae_s_given_weights_are_used_as_is():
    method = vae_s_stage1().train()
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    torch.manual_seed(0)
    terms = method.vae_loss(x)
    assert torch.equal(method.component_weights, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 1.0]))
    rec = sum(w * terms[k] for w, k in zip([1, 2, 3, 4, 5], REC_TERMS))
    assert terms["recon"].item() == pytest.approx(rec.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((rec + terms["kl"] + terms["tc"]).item(), rel=1e-5)


def test_vae_s_refuses_vector_data_and_bad_weights():
    with pytest.raises(ConfigError, match="needs image data"):
        VAES(VaeSConfig(), DataInfo("toy2d", "vector", (2,), "raw", 0), NET)
    with pytest.raises(ConfigError, match="5 numbers"):
        VaeSConfig(weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="distinct terms"):
        VaeSConfig(terms=["mse", "l2"])


def test_vae_s_export_carries_the_fixed_weights(tmp_path):
    short = VAES(VaeSConfig(balance_steps=5), INFO, NET).train()
    short.vae_loss(torch.rand(4, 1, 32, 32) * 2 - 1)  # a run that ends during the probe exports what it used
    assert short.export().objective["state"]["weights"] == short.component_weights.tolist()
    frozen = frozen_export(tmp_path, vae_s_stage1())
    assert frozen.objective["method"] == "vae_s" and frozen.architecture == "avae_s"
    assert frozen.objective["state"]["weights"] == [1.0, 2.0, 3.0, 4.0, 5.0, 1.0]


# ------------------------------------------------------------------ LSR-GAN


def lsr_gan(tmp_path, architecture="resnet", **config):
    frozen = frozen_export(tmp_path, VAE(VaeConfig(architecture=architecture, reconstruction="log_mse",
                                                   sigma="encoder"), INFO, NET))
    return LSRGAN(LsrGanConfig(**config), INFO, NET, frozen)


def one_iteration(method, tmp_path, batch=8):
    sampler = BatchSampler(np.random.default_rng(0).integers(0, 256, (32, 1, 32, 32), dtype=np.uint8), INFO,
                           batch, torch.device("cpu"), 0)
    trainer = Trainer(method.train(), sampler, TrainConfig(iterations=10, device="cpu"), tmp_path / "ck",
                      tmp_path / "log.csv", "test")
    trainer.step()
    return trainer.sums


def test_lsr_gan_starts_from_the_decoder_and_never_changes_the_frozen_vae(tmp_path):
    method = lsr_gan(tmp_path)
    assert type(method.discriminator).__name__ == "PatchDiscriminator"  # 003 App. D beside a ResNet VAE
    for (k, a), b in zip(method.generator.state_dict().items(), method.vae.decoder.state_dict().values()):
        assert torch.equal(a, b), k
    vae_before, gen_before, dis_before = snapshot(method.vae), snapshot(method.generator), snapshot(method.discriminator)
    sums = one_iteration(method, tmp_path)
    assert not moved(vae_before, method.vae)  # weights and batch-norm statistics
    assert moved(gen_before, method.generator) and moved(dis_before, method.discriminator)
    assert {"generator/latent_nll", "generator/adversarial", "discriminator/loss"} <= set(sums)


def test_lsr_gan_generator_loss_adds_lambda_times_the_latent_nll(tmp_path):
    method = lsr_gan(tmp_path, "dcgan", latent_nll_weight=5.0, init_from_decoder=False).eval()
    torch.manual_seed(3)
    terms = method.generator_loss(torch.zeros(4, 1, 32, 32))
    assert terms["loss"].item() == pytest.approx((terms["adversarial"] + 5.0 * terms["latent_nll"]).item(), rel=1e-6)
    torch.manual_seed(3)
    z = method.prior(4)
    fake = method.generator(z)
    assert terms["latent_nll"].item() == pytest.approx(
        losses.gaussian_nll(z, *method.vae.encoder(fake)).mean().item(), rel=1e-5)


# ------------------------------------------------------------------ 004 fine-tuning (AVAE / AVAE-S)


def finetune(tmp_path, source, **config):
    return AvaeFinetune(AvaeFinetuneConfig(**config), INFO, NET, frozen_export(tmp_path, source))


@pytest.mark.parametrize("accuracy,dis_moves,vae_moves", [(0.8, False, True), (0.6, True, True), (0.4, True, False)])
def test_gating_skips_the_right_updates(accuracy, dis_moves, vae_moves, tmp_path, monkeypatch):
    method = finetune(tmp_path, vae_s_stage1())
    monkeypatch.setattr(method, "measure_accuracy", lambda real, recon: torch.tensor(accuracy))
    dis_before, vae_before = snapshot(method.discriminator), snapshot(method.vae_model)
    sums = one_iteration(method, tmp_path)
    dis_params = {n for n, _ in method.discriminator.named_parameters()}  # (BN statistics move in any forward)
    assert bool(moved(dis_before, method.discriminator) & dis_params) == dis_moves
    vae_params = {n for n, _ in method.vae_model.named_parameters()}
    assert bool(moved(vae_before, method.vae_model) & vae_params) == vae_moves
    assert sums["discriminator/gate"].item() == float(dis_moves) and sums["vae/gate"].item() == float(vae_moves)


def test_finetune_copies_the_export_into_trainable_networks_with_its_objective(tmp_path):
    stage1 = vae_s_stage1()
    method = finetune(tmp_path, stage1)
    assert isinstance(method.vae_model, VAES)
    assert torch.equal(method.vae_model.component_weights, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 1.0]))
    assert not method.vae_model.balancing  # the λ's stay fixed while fine-tuning
    for (k, a), b in zip(method.vae_model.encoder.state_dict().items(), stage1.encoder.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(p.requires_grad for p in method.vae_model.parameters())
    kinds = {type(m).__name__ for m in method.discriminator.modules()}
    assert "MaxPool2d" in kinds  # 004 §III: the encoder with max pooling instead of strided convs
    plain = finetune(tmp_path, VAE(VaeConfig(), INFO, NET))
    assert type(plain.vae_model) is VAE


def test_finetune_refuses_an_old_export(tmp_path):
    frozen = frozen_export(tmp_path, VAE(VaeConfig(), INFO, NET))
    frozen.objective = None  # what a vae_export/1 file loads as
    with pytest.raises(ValueError, match="records no stage-1 objective"):
        AvaeFinetune(AvaeFinetuneConfig(), INFO, NET, frozen)


def test_finetune_weights_the_adversarial_term_onto_the_scale_of_l_vae_after_its_probe(tmp_path, monkeypatch):
    method = finetune(tmp_path, vae_s_stage1(), balance_steps=3).train()
    monkeypatch.setattr(method, "measure_accuracy", lambda real, recon: torch.tensor(0.6))  # both phases update
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    scales, adversarial, weights = [], [], []
    for _ in range(4):
        method.discriminator_loss(x)
        terms = method.vae_loss(x)
        scales.append(method.vae_model.loss_scale(terms).item())
        adversarial.append(terms["adversarial"].item())
        weights.append(terms["adversarial_weight"].item())
    assert weights[:2] == [1.0, 1.0]  # probing
    expected = sum(scales[:3]) / sum(adversarial[:3])  # 004 §III: the same scale as L_VAE's largest component
    assert weights[2] == pytest.approx(expected, rel=1e-5) and weights[3] == weights[2]
    assert terms["loss"].item() == pytest.approx(terms["vae_loss"].item() + weights[3] * adversarial[3], rel=1e-5)
    assert weights[3] > 10  # −log Dis(x̃) ~ 0.7 against per-image sums: unweighted it would barely act


def test_the_control_row_is_the_stage1_objective_every_iteration_without_a_discriminator(tmp_path):
    stage1 = vae_s_stage1()
    control = finetune(tmp_path, stage1, adversarial=False).train()
    assert [p.name for p in control.phases()] == ["vae"] and not hasattr(control, "discriminator")
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    torch.manual_seed(3)
    terms = control.vae_loss(x)
    torch.manual_seed(3)
    expected, _ = control.vae_model.vae_terms(x)
    assert "gate" not in terms and terms["loss"].item() == pytest.approx(expected["loss"].item())


# ------------------------------------------------------------------ pipeline: params, train_cell, resume


def image_params(iterations=6, **models):
    raw = tiny_params(train={"iterations": iterations, "batch_size": 16, "log_every": 2, "checkpoint_every": 2,
                             "device": "cpu", "threads": 1})
    raw["networks"] = {"width": 4, "latent_dim": 8, "mlp_hidden": 32}
    raw["datasets"]["fashion_mnist"] = {}
    raw["grid"] = {"datasets": ["fashion_mnist"], "seeds": [0], "pretrain": ["vae", "vae_s"], "baselines": [],
                   "stage2": [{"model": "lsr_gan", "export": "vae"}, {"model": "avae_finetune", "export": "vae"},
                              {"model": "avae_s", "export": "vae_s"}],
                   "evaluate": ["vae", "vae_s", "lsr_gan", "avae_finetune", "avae_s"], "toy": []}
    raw["models"] = {"vae": {"method": "vae", "lr": 0.001}, "vae_s": {"method": "vae_s", "balance_steps": 3,
                                                                     "lr": 0.001},
                     "lsr_gan": {"method": "lsr_gan"}, "avae_finetune": {"method": "avae_finetune"},
                     "avae_s": {"method": "avae_finetune"}, **models}
    return parse_params(raw)


def test_params_grid_wires_stage2_by_export():
    params = image_params()
    assert REGISTRY[params.models["vae_s"]["method"]].exports_vae
    assert params.grid.stage1_of("avae_s") == "vae_s" and params.grid.stage1_of("lsr_gan") == "vae"


def test_vae_s_killed_during_the_probe_resumes_to_the_same_weights(bars_dir, tmp_path):
    params = image_params(iterations=6)
    straight = train_cell(params, "fashion_mnist", "vae_s", 0, bars_dir, tmp_path / "a", tmp_path / "ck_a")
    train_cell(params, "fashion_mnist", "vae_s", 0, bars_dir, tmp_path / "b", tmp_path / "ck_b", stop_at=3)
    resumed = train_cell(params, "fashion_mnist", "vae_s", 0, bars_dir, tmp_path / "b", tmp_path / "ck_b")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert load_vae_export(tmp_path / "b" / "export.pt").objective["state"]["weights"] == \
        straight.component_weights.tolist()


# ------------------------------------------------------------------ learning checks (slow)


def as_tensor(prepared, split):
    return to_model_scale(torch.from_numpy(np.array(prepared.x(split))), prepared.info)


@pytest.mark.slow
def test_avae_finetune_discriminator_learns_to_tell_reconstructions(bars_dir, tmp_path):
    # its reconstructions are the contract's learning check (avae_finetune's "avae" example)
    params = image_params(iterations=300)
    train_cell(params, "fashion_mnist", "vae", 0, bars_dir, tmp_path / "vae", tmp_path / "ck1")
    params = image_params(iterations=60)
    train_cell(params, "fashion_mnist", "avae_finetune", 0, bars_dir, tmp_path / "ft", tmp_path / "ck2",
               tmp_path / "vae")
    log = pd.read_csv(tmp_path / "ft" / "train_log.csv")
    assert log["discriminator/accuracy"].max() > 0.6  # the discriminator separates x from Dec(Enc(x))


@pytest.mark.slow
def test_lsr_gan_generator_encodes_its_latent_better_than_an_untrained_one(toy_prepared, tmp_path):
    raw = tiny_params(train={"iterations": 800, "batch_size": 64, "log_every": 50, "checkpoint_every": 800,
                             "device": "cpu", "threads": 1})
    raw["grid"]["stage2"] = [{"model": "lsr_gan", "export": "vae"}]
    raw["grid"]["evaluate"] = ["vae", "lsr_gan"]
    raw["models"]["lsr_gan"] = {"method": "lsr_gan", "init_from_decoder": False, "lr": 0.001}
    raw["models"]["vae"]["sigma"] = "encoder"
    params = parse_params(raw)
    data_dir = tmp_path / "toy2d"
    train_cell(params, "toy2d", "vae", 0, data_dir, tmp_path / "vae", tmp_path / "ck1")
    method = train_cell(params, "toy2d", "lsr_gan", 0, data_dir, tmp_path / "lsr", tmp_path / "ck2", tmp_path / "vae")
    fresh = LSRGAN(params.model("lsr_gan", "toy2d").config, method.info, params.networks, method.vae).eval()
    method.eval()
    torch.manual_seed(5)
    z = torch.randn(2000, 1)
    real = as_tensor(toy_prepared, "test")
    with torch.no_grad():
        nll_trained = losses.latent_log_density_loss(z, *method.vae.encoder(method.generator(z))).item()
        nll_fresh = losses.latent_log_density_loss(z, *fresh.vae.encoder(fresh.generator(z))).item()
        gap_trained = (method.generator(z).mean(0) - real.mean(0)).abs().sum().item() + \
            (method.generator(z).std(0) - real.std(0)).abs().sum().item()
        gap_fresh = (fresh.generator(z).mean(0) - real.mean(0)).abs().sum().item() + \
            (fresh.generator(z).std(0) - real.std(0)).abs().sum().item()
    assert nll_trained < nll_fresh - 0.5  # G(z) keeps z recoverable by the frozen encoder (003 eq. 4)
    assert gap_trained < 0.5 * gap_fresh  # and its samples moved to the data's mean and spread
