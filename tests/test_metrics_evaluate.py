"""The per-cell evaluator: which rows each kind of method gets, honest `missing` rows without
weights, random networks injected explicitly, fixture weight files found where
`python -m pipeline weights` looks, and the PNG strips."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from pipeline import evaluate, metrics, weights
from pipeline.classifier import Classifier, predict
from pipeline.config import ClassifierConfig, EvaluateConfig
from pipeline.methods import REGISTRY
from tests.conftest import ROOT, TINY_NET
from tests.test_metrics import random_inception

RECON = {"mse", "kl", "cosine", "lpips", "recon_variance", "recon_accuracy", "recon_accuracy_relative", "fid_seeded",
         "sharpness_laplace_recon", "sharpness_norm_laplace_recon"}
GENERATION = {"fd_classifier", "inception_score_classifier", "fid", "fid_64", "fid_192", "fid_768", "inception_score",
              "diversity", "diversity_test", "indep_critic", "sharpness_laplace", "sharpness_norm_laplace",
              "sharpness_laplace_test", "sharpness_norm_laplace_test"}
NEEDS_WEIGHTS = {"fid", "fid_64", "fid_192", "fid_768", "fid_seeded", "inception_score", "lpips"}


def cfg(tmp_path, **over) -> EvaluateConfig:
    base = dict(n_samples=48, batch_size=24, grid_rows=4, n_variance=8, variance_draws=3, diversity_pairs=16,
                critic_steps=3, critic_batch_size=8, is_splits=2, strip_steps=4, stats_cache=str(tmp_path / "cache"))
    return EvaluateConfig(**{**base, **over})


def build(name: str, info):
    method_cls = REGISTRY[name]
    config = method_cls.config_cls() if name != "vae" else method_cls.config_cls(beta=1.0)
    return method_cls(config, info, TINY_NET).eval()


def classifier_for(prepared):
    torch.manual_seed(0)
    clf = Classifier(prepared.info, ClassifierConfig(width=4, feature_dim=8)).eval()
    train = prepared.x("train")
    feats = metrics.extract_features(metrics.array_source(train), clf.features, len(train), 32)
    return clf, metrics.feature_stats(feats)


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """Point every weights lookup at empty places."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights.INCEPTION_ENV, str(tmp_path / "absent" / weights.INCEPTION_FILE))
    monkeypatch.delenv(weights.ALEXNET_ENV, raising=False)
    monkeypatch.setattr(weights, "inception", lambda explicit="": weights._find(
        "Inception (clean-fid)", weights.INCEPTION_FILE, explicit, weights.INCEPTION_ENV, tmp_path / "absent",
        weights.INCEPTION_URL))


def rows_by_metric(rows):
    return {r.metric: r for r in rows}


def test_vae_cell_rows_without_weights_are_missing_with_reason(image_prepared, tmp_path, no_weights):
    clf, stats = classifier_for(image_prepared)
    out = tmp_path / "cell"
    rows = evaluate.CellEvaluator(build("vae", image_prepared.info), image_prepared, cfg(tmp_path), out,
                                  clf, stats).rows()
    by = rows_by_metric(rows)
    assert set(by) == RECON | GENERATION
    for name in NEEDS_WEIGHTS:
        assert by[name].status == "missing" and "not found" in by[name].reason and np.isnan(by[name].value)
    for name in set(by) - NEEDS_WEIGHTS:
        assert by[name].status == "ok" and np.isfinite(by[name].value), name
    assert 0 <= by["recon_accuracy"].value <= 1 and 0 <= by["diversity"].value <= 1
    assert by["fd_classifier"].features == "classifier:fashion_mnist"
    for png in ("samples.png", "reconstructions.png", "interpolation.png", "traversals.png"):
        assert (out / png).stat().st_size > 0


def test_gan_cell_says_why_it_has_no_reconstruction_rows(image_prepared, tmp_path, no_weights):
    clf, stats = classifier_for(image_prepared)
    rows = evaluate.CellEvaluator(build("gan", image_prepared.info), image_prepared, cfg(tmp_path), tmp_path / "g",
                                  clf, stats).rows()
    assert {r.metric for r in rows if r.status != "n/a"} == GENERATION
    not_applicable = {r.metric: r.reason for r in rows if r.status == "n/a"}
    registered_recon = {name for name, spec in evaluate.METRICS.items() if "encoder" in spec.needs}
    assert set(not_applicable) == registered_recon  # one row per registered metric, never absent
    assert all("no encoder" in reason for reason in not_applicable.values()), not_applicable
    assert not (tmp_path / "g" / "reconstructions.png").exists()
    assert (tmp_path / "g" / "interpolation.png").exists()  # from prior draws


def test_injected_random_networks_run_the_weighted_metrics(image_prepared, tmp_path, no_weights):
    torch.manual_seed(0)
    lpips_model = metrics.lpips_with_backbone(torchvision.models.alexnet())
    nets = evaluate.Networks(inception=(random_inception(), "random-test-inception"),
                             lpips=(lpips_model, "random-test-alexnet"))
    c = cfg(tmp_path, metrics=["lpips", "inception_score"])  # fid / fid_seeded (slow sqrtm): the next test
    cell = evaluate.Cell(build("vae", image_prepared.info), image_prepared, c, networks=nets)
    by = rows_by_metric(cell.rows())
    assert set(by) == {"lpips", "inception_score"}
    for name in by:
        assert by[name].status == "ok" and np.isfinite(by[name].value), name
        assert by[name].features.startswith("random-test"), "an injected network is named as such"
    assert by["inception_score"].value >= 1.0


def test_metric_selection_and_unknown_names(image_prepared, tmp_path, no_weights):
    vae = build("vae", image_prepared.info)
    rows = evaluate.Cell(vae, image_prepared, cfg(tmp_path, metrics=["mse", "sharpness"])).rows()
    assert {r.metric for r in rows} == {"mse", "sharpness_laplace", "sharpness_norm_laplace", "sharpness_laplace_recon",
                                        "sharpness_norm_laplace_recon", "sharpness_laplace_test",
                                        "sharpness_norm_laplace_test"}
    with pytest.raises(ValueError, match="unknown \\['fid50k'\\]"):
        evaluate.Cell(vae, image_prepared, cfg(tmp_path, metrics=["fid50k"])).rows()


def test_recon_accuracy_of_the_originals_is_the_classifier_test_accuracy(image_prepared):
    from pipeline.classifier import train_classifier

    clf, accuracy = train_classifier(image_prepared, ClassifierConfig(epochs=1, batch_size=32, width=4, feature_dim=8))
    test, labels = image_prepared.x("test"), image_prepared.y("test")
    absolute, relative = metrics.recon_accuracy(lambda u8: predict(clf, u8), test, test, labels)
    assert absolute == pytest.approx(accuracy) and relative == 1.0


def fixture_inception_file(path):
    """A TorchScript module with clean-fid's InceptionV3W interface (layers, output, forward flags)."""

    class FakeInception(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(3, 64, 3, stride=4), pool0=nn.MaxPool2d(3, 2), conv_4=nn.Conv2d(64, 192, 1),
                pool1=nn.MaxPool2d(3, 2), mixed_7=nn.Conv2d(192, 768, 3, stride=4),
                mixed_10=nn.Conv2d(768, 2048, 1), pool2=nn.AdaptiveAvgPool2d(1)))
            self.output = nn.Linear(2048, 1008)

        def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                    no_output_bias: bool = False) -> torch.Tensor:
            features = self.layers((img - 128.0) / 128.0).reshape(-1, 2048)
            if return_features:
                return features
            return torch.softmax(self.output(features), dim=1)

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(FakeInception()).save(str(path))


@pytest.mark.slow  # scipy's sqrtm of 2048 x 2048 covariances
def test_fixture_weight_files_are_found_and_used(image_prepared, tmp_path, monkeypatch):
    """Weight files of the right format where `python -m pipeline weights` says: fid/lpips/IS compute
    (the values are meaningless, the code path is proven)."""
    from pipeline.cli import main

    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv(weights.ALEXNET_ENV, raising=False)
    inception_file = tmp_path / "weights" / weights.INCEPTION_FILE
    monkeypatch.setenv(weights.INCEPTION_ENV, str(inception_file))
    alexnet_file = weights.alexnet().looked[-1]  # the torch hub cache the report names
    assert str(alexnet_file).startswith(str(torch_home))
    fixture_inception_file(inception_file)
    alexnet_file.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), alexnet_file)

    assert main(["--params", str(ROOT / "params.yaml"), "weights"]) == 0
    assert weights.inception().present and weights.alexnet().present

    c = cfg(tmp_path, metrics=["fid", "fid_seeded", "inception_score", "lpips"])
    by = rows_by_metric(evaluate.Cell(build("vae", image_prepared.info), image_prepared, c).rows())
    assert set(by) == {"fid", "fid_64", "fid_192", "fid_768", "fid_seeded", "inception_score", "lpips"}
    assert len(list((tmp_path / "cache").glob("inception-train-*.npz"))) == 1, "train statistics cached by hash"
    for row in by.values():
        assert row.status == "ok" and np.isfinite(row.value)
    assert by["fid"].features.startswith(f"inception-2015-12-05:sha256={weights.digest(inception_file)}")
    assert by["lpips"].features == f"lpips-alex-v0.1:sha256={weights.digest(alexnet_file)}"


def test_weights_report_lists_places(capsys, tmp_path, monkeypatch):
    from pipeline.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert main(["--params", str(ROOT / "params.yaml"), "weights"]) == 0
    out = capsys.readouterr().out
    assert "alexnet-owt-7be5be79.pth" in out and "inception-2015-12-05.pt" in out and "fid, fid_64" in out


def test_toy_cell(toy_prepared, tmp_path):
    vae = build("vae", toy_prepared.info)
    rows = evaluate.CellEvaluator(vae, toy_prepared, cfg(tmp_path, n_samples=200), tmp_path / "t").rows()
    assert {r.metric for r in rows} == {"mse", "kl", "recon_variance", "fd_data", "indep_critic"}
    assert (tmp_path / "t" / "samples.png").exists()


def test_a_metric_that_raises_is_recorded_as_failed(image_prepared, tmp_path, monkeypatch):
    def broken(cell):
        raise RuntimeError("covariance is not finite")

    monkeypatch.setitem(evaluate.METRICS, "broken", evaluate.MetricSpec("broken", broken, frozenset({"image"})))
    rows = evaluate.Cell(build("gan", image_prepared.info), image_prepared,
                         cfg(tmp_path, metrics=["broken", "diversity"])).rows()
    by = rows_by_metric(rows)
    assert by["broken"].status == "failed" and by["broken"].reason == "RuntimeError: covariance is not finite"
    assert by["diversity"].status == "ok"


def test_bf16_sample_generation_matches_fp32_within_rounding(image_prepared, tmp_path):
    """evaluate.autocast: bf16 changes generated images by bf16 rounding only (same z draws),
    and a metric computed on them by little."""
    torch.manual_seed(0)
    vae = build("vae", image_prepared.info)
    cells = {}
    for mode in ("off", "bf16"):  # each cell seeds the RNG: its samples are drawn before the next cell
        cells[mode] = evaluate.Cell(vae, image_prepared, cfg(tmp_path, autocast=mode, metrics=["sharpness"]))
        cells[mode].samples
    fp32, bf16 = cells["off"].samples, cells["bf16"].samples
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.device.type == "cpu"
    assert not torch.equal(fp32, bf16), "bf16 autocast was not applied"
    assert (fp32 - bf16).abs().max() < 0.02 and (fp32 - bf16).abs().mean() < 0.002
    u8_levels = np.abs(cells["off"].samples_u8.astype(int) - cells["bf16"].samples_u8.astype(int))
    assert u8_levels.mean() < 1.0  # well under one grey level on average
    value = {mode: rows_by_metric(cell.rows())["sharpness_laplace"].value for mode, cell in cells.items()}
    assert value["bf16"] == pytest.approx(value["off"], rel=0.05)


@pytest.mark.parametrize("stage1", ["vae", "vae_s"])
def test_fine_tuned_models_get_every_decoder_metric_and_strip(stage1, image_prepared, tmp_path, no_weights):
    """AVAE / AVAE-S (004) declare their decoder: posterior draws, interpolations and traversals
    are computed for them like for the VAE they start from."""
    from pipeline.methods.avae_finetune import AvaeFinetune, AvaeFinetuneConfig
    from tests.test_methods_two_stage import frozen_export

    source = build(stage1, image_prepared.info)
    method = AvaeFinetune(AvaeFinetuneConfig(stage1=stage1), image_prepared.info, TINY_NET,
                          frozen_export(tmp_path, source)).eval()
    out = tmp_path / "cell"
    rows = rows_by_metric(evaluate.CellEvaluator(method, image_prepared, cfg(tmp_path, metrics=["recon_variance", "kl"]),
                                                 out).rows())
    assert rows["recon_variance"].status == "ok" and rows["recon_variance"].value > 0
    assert rows["kl"].status == "ok"
    for png in ("reconstructions.png", "interpolation.png", "traversals.png"):
        assert (out / png).stat().st_size > 0
