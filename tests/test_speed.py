"""Every speed option of the training loop gives the plain loop's result within numerical
tolerance (a few hundred steps on the CPU, same seed, same batches)."""

import pytest
import torch

from pipeline.config import parse_params
from pipeline.run import train_cell
from pipeline.training import network_modules
from tests.conftest import ROOT, tiny_params

pytestmark = pytest.mark.slow
MODELS = {"vae": {"method": "vae", "beta": 1.0, "lr": 0.001}, "gan": {"method": "gan"},
          "avae_b": {"method": "avae", "latent_loss": "b"}, "wgan_gp": {"method": "wgan_gp"},
          "vae_gan": {"method": "vae_gan"}}


def run(tmp_path, tag, dataset, model, iterations, **speed):
    params = parse_params(tiny_params(
        grid={"datasets": [dataset], "seeds": [0], "pretrain": ["vae"], "baselines": ["gan", "wgan_gp", "vae_gan"],
              "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["vae"], "toy": []},
        networks={"width": 4, "latent_dim": 4, "mlp_hidden": 32},
        models=MODELS,
        train={"iterations": iterations, "batch_size": 16, "log_every": iterations, "checkpoint_every": iterations,
               "device": "cpu", **speed}))
    data = tmp_path / ("fmnist" if dataset == "fashion_mnist" else "toy2d")
    vae_dir = tmp_path / "vae_plain"
    if model != "vae" and not vae_dir.exists():
        train_cell(params, dataset, "vae", 0, data, vae_dir, tmp_path / "ck_vae_plain")
    method = train_cell(params, dataset, model, 0, data, tmp_path / tag, tmp_path / f"ck_{tag}",
                        vae_dir if model != "vae" else None)
    losses = (tmp_path / tag / "train_log.csv").read_text().splitlines()[-1].split(",")[1:]
    return method, torch.tensor([float(v) for v in losses])


def weights(method):
    return torch.cat([v.flatten() for v in method.state_dict().values() if v.is_floating_point()])


def relative_to_training(a, b, init):
    """‖w_a − w_b‖ / ‖w_a − w_init‖: how far the option moved the weights, relative to how far
    training moved them."""
    wa, wb, w0 = weights(a), weights(b), weights(init)
    return float((wa - wb).norm() / (wa - w0).norm())


def initial(tmp_path, dataset, model):
    from pipeline.export import load_vae_export
    from pipeline.methods import build_method

    params = parse_params(tiny_params(networks={"width": 4, "latent_dim": 4, "mlp_hidden": 32}, models=MODELS))
    torch.manual_seed(0)
    spec = params.model(model, "fashion_mnist")
    from pipeline.data import load_prepared
    info = load_prepared(tmp_path / ("fmnist" if dataset == "fashion_mnist" else "toy2d")).info
    vae = load_vae_export(tmp_path / "vae_plain" / "export.pt") if model != "vae" else None
    return build_method(spec, info, params.networks, vae)


@pytest.mark.parametrize("option", [{"channels_last": True}, {"fused_optimizer": True}])
def test_exact_options_match_the_plain_loop(option, image_prepared, tmp_path):
    plain, plain_losses = run(tmp_path, "plain", "fashion_mnist", "vae", 60)
    fast, fast_losses = run(tmp_path, "fast", "fashion_mnist", "vae", 60, **option)
    # float summation order differs; Adam turns that into ~1 % of the training displacement
    # after 60 steps (a wrong result would be of the order of 100 %)
    assert relative_to_training(plain, fast, initial(tmp_path, "fashion_mnist", "vae")) < 0.03
    assert torch.allclose(plain_losses, fast_losses, rtol=1e-2)


def test_bf16_autocast_matches_within_tolerance(image_prepared, tmp_path):
    _, plain_losses = run(tmp_path, "plain", "fashion_mnist", "vae", 60)
    fast, fast_losses = run(tmp_path, "bf16", "fashion_mnist", "vae", 60, autocast="bf16")
    # columns: loss, recon, kl. bf16 keeps ~3 significant digits: the total agrees to 1 %, each
    # term to within 1 % of the total (the small KL term moves by a few hundredths of a nat)
    assert torch.allclose(plain_losses[0], fast_losses[0], rtol=0.01), (plain_losses, fast_losses)
    assert ((plain_losses - fast_losses).abs() < 0.01 * plain_losses[0]).all(), (plain_losses, fast_losses)
    assert all(p.dtype == torch.float32 for p in fast.parameters())  # weights stay fp32


def test_bf16_autocast_covers_the_networks_only(image_prepared, tmp_path, monkeypatch):
    from pipeline import losses
    from pipeline.data import BatchSampler
    from pipeline.methods.vae import VAE, VaeConfig
    from pipeline.sections import NetworkConfig, TrainConfig
    from pipeline.training import Trainer

    vae = VAE(VaeConfig(), image_prepared.info, NetworkConfig(width=4, latent_dim=4))
    sampler = BatchSampler(image_prepared.x("train"), image_prepared.info, 8, torch.device("cpu"), 0)
    trainer = Trainer(vae, sampler, TrainConfig(autocast="bf16", iterations=2), tmp_path / "ck", tmp_path / "log.csv",
                      "test")
    inner = []
    vae.encoder.body.features[0].register_forward_hook(lambda m, i, out: inner.append(out.dtype))
    in_loss_code = []
    kl = losses.kl_standard_normal
    monkeypatch.setattr(losses, "kl_standard_normal",
                        lambda *a: in_loss_code.append(torch.is_autocast_enabled("cpu")) or kl(*a))
    trainer.step()
    assert inner and set(inner) == {torch.bfloat16}  # convs inside a network run in bf16
    assert in_loss_code == [False]  # the loss code between the networks is not autocast
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    mu, log_sigma = vae.encoder(x)
    assert mu.dtype == log_sigma.dtype == torch.float32  # a network's outputs leave it as fp32
    assert all(t.dtype == torch.float32 for t in vae.vae_loss(x).values())


def test_compile_matches_the_plain_loop(toy_prepared, tmp_path):
    plain, plain_losses = run(tmp_path, "plain", "toy2d", "avae_b", 100)
    fast, fast_losses = run(tmp_path, "compiled", "toy2d", "avae_b", 100, compile=True)
    assert relative_to_training(plain, fast, initial(tmp_path, "toy2d", "avae_b")) < 0.03
    assert torch.allclose(plain_losses, fast_losses, rtol=1e-2)


@pytest.mark.parametrize("model", ["vae_gan", "wgan_gp"])
def test_compile_trains_a_hidden_layer_loss_and_a_gradient_penalty(model, image_prepared, tmp_path):
    # VAE/GAN calls its discriminator twice per step, once for the hidden layer (batch norm's
    # running statistics change in between); WGAN-GP differentiates its critic's gradient
    plain, plain_losses = run(tmp_path, "plain", "fashion_mnist", model, 20)
    fast, fast_losses = run(tmp_path, "compiled", "fashion_mnist", model, 20, compile=True)
    assert relative_to_training(plain, fast, initial(tmp_path, "fashion_mnist", model)) < 0.03
    assert torch.allclose(plain_losses, fast_losses, rtol=1e-2)


def test_network_modules_finds_every_network(image_prepared):
    from pipeline.methods.gan import GAN, GanConfig
    from pipeline.sections import NetworkConfig

    gan = GAN(GanConfig(), image_prepared.info, NetworkConfig(width=4, latent_dim=4))
    assert network_modules(gan) == [gan.generator, gan.discriminator]


def test_bench_prints_the_side_by_side_table(capsys):
    from pipeline import bench

    params = parse_params(tiny_params(train={"iterations": 10, "batch_size": 8, "device": "cpu",
                                             "channels_last": True, "fused_optimizer": True}))
    assert bench.main(params, "params.yaml", ["gan", "avae_b"], 32, 3, steps=2, warmup=1, all_on=False,
                      packing=1, as_json=False, plain_only=False) == 0
    out = capsys.readouterr().out
    assert "| gan | 32 |" in out and "| avae_b | 32 |" in out and "device-hours" in out
    assert "evaluation feature paths" in out and "metrics" in out and "inception" in out
    assert "'channels_last': True" in out
    rows = bench.bench(params, ["gan"], 32, 3, 2, 1, bench.ALL_OFF, plain_only=False)
    assert rows[0]["plain"]["flops"] > 0 and rows[0]["fast"]["it_s"] > 0


def test_bench_each_option_alone(capsys):
    from pipeline import bench

    params = parse_params(tiny_params(train={"iterations": 10, "batch_size": 8, "device": "cpu"}))
    assert bench.main(params, "params.yaml", ["vae"], 32, 1, steps=2, warmup=1, all_on=False, packing=1,
                      as_json=False, plain_only=False, each=True) == 0
    out = capsys.readouterr().out
    assert "| model | plain | channels_last | autocast | fused_optimizer | compile |" in out
    row = next(line for line in out.splitlines() if line.startswith("| vae | ") and line.count("(") == 4)
    assert all(float(cell.split()[0]) > 0 for cell in row.strip("| ").split(" | ")[1:])


def test_grid_projection_adds_training_and_metrics_hours():
    from pipeline import bench
    from pipeline.config import load_params

    params = load_params(ROOT / "params" / "avae.yaml")  # 7 rows x 5 datasets x 5 seeds x 5e4 iterations
    cells = 7 * 5 * 5
    hour_per_cell = 50_000 / 3600  # it/s at which one cell trains in an hour
    rows = [{"model": "avae_b", "fast": {"it_s": hour_per_cell}, "gen_img_s": 1e15}]  # the others take its rate
    fast = 1e15  # image/s of the paths that should not count
    inception_hour_per_cell = 50_000 / 3600  # Inception img/s at which one cell's 50k samples take an hour
    hours = bench.project(params, rows, {"inception_img_s": inception_hour_per_cell, "classifier_img_s": fast,
                                         "resize299_img_s": fast})
    assert hours["train_h"] == pytest.approx(cells)
    assert hours["metrics_h"] == pytest.approx(cells + 5)  # + each dataset's real statistics once
    assert hours["total_h"] == pytest.approx(2 * cells + 5)
    assert bench.project(params, rows)["total_h"] == pytest.approx(cells)  # training only without extractor rates
    alpha = load_params(ROOT / "params" / "alpha_gan.yaml")  # 27 rows, 1e5 iterations on ColorMNIST, 2e5 else
    assert bench.project(alpha, rows)["train_h"] == pytest.approx(27 * (1e5 + 2e5 + 2e5) / 50_000)


def test_cells_packed_as_concurrent_processes_match_cells_run_one_after_another(toy_prepared, tmp_path):
    """orchestration.cells_per_gpu packs cells as concurrent processes: two seeds trained at the
    same time end bitwise where the same two trained one after another do (nothing shared)."""
    import os
    import subprocess
    import sys

    import yaml

    from pipeline.run import load_model
    from tests.conftest import ROOT

    raw = tiny_params(train={"iterations": 300, "batch_size": 32, "log_every": 50, "checkpoint_every": 100,
                             "device": "cpu", "threads": 1, "deterministic": True})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))

    def command(seed: int, tag: str) -> list[str]:
        return [sys.executable, "-m", "pipeline", "--params", str(params_file), "train", "toy2d", "vae", str(seed),
                "--data", str(tmp_path / "toy2d"), "--out", str(tmp_path / tag / f"seed{seed}"),
                "--checkpoints", str(tmp_path / tag / f"ck{seed}")]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for seed in (0, 1):
        subprocess.run(command(seed, "sequential"), cwd=ROOT, env=env, check=True, capture_output=True)
    packed = [subprocess.Popen(command(seed, "packed"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for seed in (0, 1)]
    assert [p.wait() for p in packed] == [0, 0]
    for seed in (0, 1):
        a, _ = load_model(tmp_path / "sequential" / f"seed{seed}" / "model.pt")
        b, _ = load_model(tmp_path / "packed" / f"seed{seed}" / "model.pt")
        assert torch.equal(weights(a), weights(b)), f"seed {seed}"
    a0, _ = load_model(tmp_path / "packed" / "seed0" / "model.pt")
    a1, _ = load_model(tmp_path / "packed" / "seed1" / "model.pt")
    assert not torch.equal(weights(a0), weights(a1))  # two different seeds, not one run twice


def test_flop_count_equals_torch_flop_counter_and_survives_autograd_grad():
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline import bench

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4))
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False) as reference:
        net(x).sum().backward()
    with bench.FlopCount() as ours:
        net(x).sum().backward()
    assert ours.total == reference.get_total_flops() > 0
    with bench.FlopCount() as ours:  # WGAN-GP's gradient penalty: FlopCounterMode raises here
        (grad,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
        grad.pow(2).sum().backward()
    assert ours.total > 0


def test_every_registered_model_benches(capsys):
    from pipeline import bench
    from pipeline.methods import REGISTRY

    raw = tiny_params(train={"iterations": 10, "batch_size": 8, "device": "cpu"})
    raw["models"] = {name: {"method": name} for name in REGISTRY}
    raw["networks"]["latent_dim"] = 4  # AGE: the unit sphere needs >= 2
    raw["grid"].update({"pretrain": ["vae"], "baselines": ["gan"], "stage2": [], "evaluate": ["vae", "gan"]})
    params = parse_params(raw)
    rows = bench.bench(params, sorted(REGISTRY), 32, 1, steps=1, warmup=1, speed=bench.ALL_OFF, plain_only=False)
    assert [r["model"] for r in rows] == sorted(REGISTRY)
    assert all(r["fast"]["flops"] > 0 and r["fast"]["it_s"] > 0 for r in rows)
