"""Every registered method through one contract (as pythae runs each model's configs through the
same test classes), once per example config its file declares (`Method.examples`): output shapes,
each phase moves only its own modules, eval changes nothing, a save/load round trip through the
real train_cell and load_model, and (slow) a short learning check. A registered method that
declares no example fails here, so a new method cannot skip the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import metrics
from pipeline.data import BatchSampler, load_prepared
from pipeline.datainfo import to_model_scale
from pipeline.export import load_vae_export
from pipeline.methods import REGISTRY, Example, Method, build_method
from pipeline.run import load_model, train_cell
from tests.conftest import TINY_NET, assert_each_phase_moves_only_its_modules
from tests.method_examples import CASES, build_example, example_of, example_params

IDS = [f"{name}-{example}" for name, example in CASES]
LEARNING = [case for case in CASES if example_of(*case).learning is not None]


def missing_declarations(registry: dict) -> list[str]:
    """What the registered methods fail to declare for this contract, one line each."""
    problems = []
    for name, cls in registry.items():
        if not cls.examples:
            problems.append(f"method {name!r} declares no example: give its class "
                            "`examples = {<name>: Example(...)}` (README, Adding a method)")
        elif not any(example.learning for example in cls.examples.values()):
            problems.append(f"method {name!r}: none of its examples carries a learning check (Example(learning=...))")
        for key, example in cls.examples.items():
            if "method" in example.config:
                problems.append(f"method {name!r}, example {key!r}: its config names a method")
            if cls.needs_vae and not REGISTRY[example.stage1["method"]].exports_vae:
                problems.append(f"method {name!r}, example {key!r}: its stage1 {example.stage1['method']!r} "
                                "exports nothing")
    return problems


def test_every_registered_method_declares_examples_and_a_learning_check():
    assert missing_declarations(REGISTRY) == []


def test_a_method_without_examples_fails_the_contract():
    class Bare(Method):
        name, config_cls = "bare", dict

        def phases(self):
            return []

        def decode(self, z):
            return z

    class Quiet(Bare):
        examples = {"plain": Example()}

    assert missing_declarations({"bare": Bare, "quiet": Quiet}) == [
        "method 'bare' declares no example: give its class `examples = {<name>: Example(...)}` "
        "(README, Adding a method)",
        "method 'quiet': none of its examples carries a learning check (Example(learning=...))"]


def batch(prepared, n: int, split: str = "train") -> torch.Tensor:
    return BatchSampler(prepared.x(split), prepared.info, n, torch.device("cpu"), 0).next()


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name,example", CASES, ids=IDS)
def test_output_contract(name, example, image_prepared, toy_prepared, tmp_path):
    for prepared in [image_prepared, *([toy_prepared] if example_of(name, example).vector else [])]:
        info = prepared.info
        method = build_example(name, example, info, tmp_path / info.name).eval()
        x = batch(prepared, 6, "test")
        with torch.no_grad():
            samples, decoded = method.sample(5), method.decode(method.prior(3))
            posterior, recon = method.encode(x), method.reconstruct(x)
        assert samples.shape == (5, *info.shape) and decoded.shape == (3, *info.shape)
        if info.kind == "image":
            assert samples.abs().max() <= 1  # tanh outputs on the [-1, 1] model scale
        if posterior is None:
            assert recon is None
            continue
        mu, log_sigma = posterior
        assert mu.shape == log_sigma.shape == (6, TINY_NET.latent_dim)
        assert recon.shape == x.shape and not recon.requires_grad
        if not method.stochastic_encoder:  # a point mass: one constant log σ, nothing to draw
            assert torch.all(log_sigma == log_sigma.flatten()[0])


@pytest.mark.parametrize("name,example", CASES, ids=IDS)
def test_each_phase_moves_only_its_modules(name, example, image_prepared, tmp_path):
    method = build_example(name, example, image_prepared.info, tmp_path).train()
    assert_each_phase_moves_only_its_modules(method, batch(image_prepared, 8))


@pytest.mark.parametrize("name,example", CASES, ids=IDS)
def test_eval_changes_nothing(name, example, image_prepared, tmp_path):
    method = build_example(name, example, image_prepared.info, tmp_path).eval()
    before = state(method)
    with torch.no_grad():
        method.sample(8)
        method.reconstruct(batch(image_prepared, 8, "test"))
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())


@pytest.mark.parametrize("name,example", CASES, ids=IDS)
def test_train_cell_save_load_roundtrip(name, example, image_prepared, tmp_path):
    params = example_params(name, example, "fashion_mnist", train={
        "iterations": 4, "batch_size": 16, "log_every": 2, "checkpoint_every": 2, "device": "cpu", "threads": 1})
    data_dir, vae_dir = tmp_path / "fmnist", None
    if REGISTRY[name].needs_vae:
        vae_dir = tmp_path / "stage1"
        train_cell(params, "fashion_mnist", "stage1", 0, data_dir, vae_dir, tmp_path / "ck_stage1")
    method = train_cell(params, "fashion_mnist", "model", 0, data_dir, tmp_path / "model", tmp_path / "ck", vae_dir)
    loaded, blob = load_model(tmp_path / "model" / "model.pt")
    assert blob["iterations"] == 4 and blob["method"] == name and type(loaded) is type(method)
    assert list(loaded.state_dict()) == list(method.state_dict())
    assert all(torch.equal(v.cpu(), loaded.state_dict()[k]) for k, v in method.state_dict().items())
    header = (tmp_path / "model" / "train_log.csv").read_text().splitlines()[0]
    assert header.startswith("iteration,") and all(f"{p.name}/loss" in header for p in method.phases())
    if method.exports_vae:  # the frozen export holds what the method declares it exports
        frozen, exported = load_vae_export(tmp_path / "model" / "export.pt"), method.export()
        for part, frozen_part in ((exported.encoder, frozen.encoder), (exported.decoder, frozen.decoder)):
            assert all(torch.equal(v.cpu(), frozen_part.state_dict()[k]) for k, v in part.state_dict().items())


# ------------------------------------------------------------------ learning (slow)


def sample_fd(method, x_train: torch.Tensor, n: int = 2000) -> float:
    """Fréchet distance between n samples and the training points, in data space (toy2d)."""
    with torch.no_grad():
        samples = method.eval().sample(n).flatten(1).numpy()
    return metrics.frechet_distance(metrics.feature_stats(samples), metrics.feature_stats(x_train.flatten(1).numpy()))


def recon_ratio(method, x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """Test reconstruction MSE over the MSE of predicting the training mean."""
    with torch.no_grad():
        recon = method.eval().reconstruct(x_test)
    return float((recon - x_test).pow(2).mean() / (x_train.mean(0, keepdim=True) - x_test).pow(2).mean())


@pytest.mark.slow
@pytest.mark.parametrize("name,example", LEARNING, ids=[f"{n}-{e}" for n, e in LEARNING])
def test_learns(name, example, request, tmp_path):
    learning = example_of(name, example).learning
    data_dir = tmp_path / "toy2d" if learning.data == "toy2d" else None
    if data_dir is not None:
        request.getfixturevalue("toy_prepared")  # prepares toy2d there
    else:
        data_dir = request.getfixturevalue("bars_dir")
    data = load_prepared(data_dir)
    dataset = data.info.name
    stage1 = {**learning.stage1_config, "train": {"iterations": learning.stage1_iterations,
                                                  "checkpoint_every": max(learning.stage1_iterations, 1)}}
    networks = {"width": 4, "latent_dim": learning.latent_dim, "mlp_hidden": learning.mlp_hidden}
    params = example_params(
        name, example, dataset, networks=networks,
        train={"iterations": learning.iterations, "batch_size": learning.batch_size, "log_every": 50,
               "checkpoint_every": learning.iterations, "device": "cpu", "threads": 1},
        config=learning.config, stage1_config=stage1)
    vae_dir, vae = None, None
    if REGISTRY[name].needs_vae:
        vae_dir = tmp_path / "stage1"
        train_cell(params, dataset, "stage1", 0, data_dir, vae_dir, tmp_path / "ck_stage1")
        vae = load_vae_export(vae_dir / "export.pt")
    torch.manual_seed(0)  # the initial weights train_cell starts from
    initial = build_method(params.model("model", dataset), data.info, params.networks, vae)
    trained = train_cell(params, dataset, "model", 0, data_dir, tmp_path / "model", tmp_path / "ck", vae_dir)
    x_train, x_test = (to_model_scale(torch.from_numpy(np.array(data.x(s))), data.info) for s in ("train", "test"))
    if learning.samples is not None:
        before, after = sample_fd(initial, x_train), sample_fd(trained, x_train)
        assert after < learning.samples * before, (after, before)
    if learning.reconstructions is not None:
        ratio = recon_ratio(trained, x_train, x_test)
        assert ratio < learning.reconstructions, ratio
