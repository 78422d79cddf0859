"""The per-cell evaluator: which rows each kind of method gets, honest `missing` rows without
weights or with other files under the weights' names, random networks injected explicitly
(never under a real name), and the PNG strips."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from pipeline import evaluate, metrics, weights
from pipeline.autoencoder import Autoencoder, TrainedAutoencoder
from pipeline.classifier import Classifier, predict
from pipeline.evaluate import registry
from pipeline.methods import REGISTRY, build_method
from pipeline.sections import AutoencoderConfig, ClassifierConfig, EvaluateConfig, ModelSpec
from tests.conftest import ROOT, TINY_NET
from tests.test_metrics import RandomInceptionBase, random_inception

IMAGE_METRICS = evaluate.chosen_metrics([], "image")  # the registry's facts, not a list kept by hand
ENCODER_ROWS = {row for spec in IMAGE_METRICS if "encoder" in spec.needs for row in spec.row_names}  # n/a without one
RECON = ENCODER_ROWS | {row.name for spec in IMAGE_METRICS for row in spec.rows
                        if row.section == registry.RECONSTRUCTION}
GENERATION = {row for spec in IMAGE_METRICS for row in spec.row_names} - RECON
NEEDS_WEIGHTS = {row for spec in IMAGE_METRICS if spec.weights for row in spec.row_names}
PRDC = set(evaluate.METRICS["prdc"].row_names)


def cfg(tmp_path, **over) -> EvaluateConfig:
    base = dict(n_samples=48, batch_size=24, grid_rows=4, n_variance=8, variance_draws=3, diversity_pairs=16,
                critic_steps=3, critic_batch_size=8, is_splits=2, strip_steps=4, stats_cache=str(tmp_path / "cache"))
    return EvaluateConfig(**{**base, **over})


def build(name: str, info):
    """Method `name` with its default config (untrained)."""
    return build_method(ModelSpec(name, name, REGISTRY[name].config_cls()), info, TINY_NET).eval()


def classifier_for(prepared):
    torch.manual_seed(0)
    clf = Classifier(prepared.info, ClassifierConfig(width=4, feature_dim=8)).eval()
    train = prepared.x("train")
    feats = metrics.extract_features(metrics.array_source(train), clf.features, len(train), 32)
    return clf, metrics.feature_stats(feats)


def autoencoder_for(prepared) -> TrainedAutoencoder:
    """An untrained dataset autoencoder with its training-split statistics (the code path only)."""
    torch.manual_seed(0)
    ae = Autoencoder(prepared.info, AutoencoderConfig(width=4, feature_dim=8)).eval()
    train = prepared.x("train")
    feats = metrics.extract_features(metrics.array_source(train), ae.features, len(train), 32)
    return TrainedAutoencoder(ae, metrics.feature_stats(feats), "random-test-autoencoder")


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """Point every weights lookup at empty places."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(weights.INCEPTION_ENV, str(tmp_path / "absent" / weights.INCEPTION_FILE))
    monkeypatch.delenv(weights.ALEXNET_ENV, raising=False)
    monkeypatch.setattr(weights, "inception", lambda explicit="": weights._find(
        "Inception (clean-fid)", weights.INCEPTION_FILE, explicit, weights.INCEPTION_ENV, tmp_path / "absent",
        weights.INCEPTION_URL, weights.INCEPTION_SHA256))


def rows_by_metric(rows):
    return {r.metric: r for r in rows}


def test_vae_cell_rows_without_weights_are_missing_with_reason(image_prepared, tmp_path, no_weights):
    clf, stats = classifier_for(image_prepared)
    out = tmp_path / "cell"
    rows = evaluate.CellEvaluator(build("vae", image_prepared.info), image_prepared, cfg(tmp_path), out,
                                  clf, stats, autoencoder=autoencoder_for(image_prepared)).rows()
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
                                  clf, stats, autoencoder=autoencoder_for(image_prepared)).rows()
    assert {r.metric for r in rows if r.status != "n/a"} == GENERATION
    not_applicable = {r.metric: r.reason for r in rows if r.status == "n/a"}
    assert set(not_applicable) == ENCODER_ROWS  # one row per registered metric, never absent
    assert all("no encoder" in reason for reason in not_applicable.values()), not_applicable
    assert not (tmp_path / "g" / "reconstructions.png").exists()
    assert (tmp_path / "g" / "interpolation.png").exists()  # from prior draws


def test_injected_random_networks_run_the_weighted_metrics(image_prepared, tmp_path, no_weights):
    torch.manual_seed(0)
    lpips_model = metrics.lpips_with_backbone(torchvision.models.alexnet())
    nets = evaluate.Networks(inception=(random_inception(), "random-test-inception"),
                             lpips=(lpips_model, "random-test-alexnet"))
    c = cfg(tmp_path, metrics=["lpips", "inception_score", "prdc"])  # fid / fid_seeded (slow sqrtm): below
    cell = evaluate.Cell(build("vae", image_prepared.info), image_prepared, c, networks=nets)
    by = rows_by_metric(cell.rows())
    assert set(by) == {"lpips", "inception_score", *PRDC}
    for name in by:
        assert by[name].status == "ok" and np.isfinite(by[name].value), name
        assert by[name].features.startswith("random-test"), "an injected network is named as such"
    assert by["inception_score"].value >= 1.0
    assert 0 <= by["precision"].value <= 1 and by["coverage"].n_samples == 48  # min(n_samples, 10,000, train)
    # IS as stylegan2-ada: 8-bit samples at their own 32 px into the network's own resize, no output bias
    assert {call for call in cell.inception[0].base.calls if call[0][-1] != 299} == {((24, 3, 32, 32), True)}


def test_prdc_in_the_classifier_space_compares_equal_counts(image_prepared, tmp_path):
    clf, stats = classifier_for(image_prepared)
    cell = evaluate.Cell(build("gan", image_prepared.info), image_prepared, cfg(tmp_path, metrics=["prdc_classifier"]),
                         clf, stats)
    by = rows_by_metric(cell.rows())
    assert set(by) == {f"{name}_classifier" for name in PRDC}
    assert all(row.status == "ok" and row.n_samples == 48 for row in by.values())
    assert len(cell.prdc_train_index) == 48 and len(set(cell.prdc_train_index)) == 48
    # the training images' features are cached for the next cell of the dataset, and equal a fresh extraction
    cached = list(Path(cfg(tmp_path).stats_cache).glob("classifier-prdc-train-*.npz"))
    assert len(cached) == 1
    fresh = cell.classifier_features(np.asarray(image_prepared.x("train")[cell.prdc_train_index]), "again")
    assert np.array_equal(np.load(cached[0])["features"], fresh)
    other = evaluate.Cell(build("gan", image_prepared.info), image_prepared, cfg(tmp_path, metrics=["prdc_classifier"]),
                          clf, stats, seed=1)
    assert np.array_equal(other.prdc_train_classifier_features, fresh)


def test_independent_critic_is_one_metric_on_images_and_vectors(image_prepared, toy_prepared, tmp_path):
    for prepared, model in ((toy_prepared, "vae"), (image_prepared, "gan")):
        c = cfg(tmp_path, n_samples=64, metrics=["indep_critic"])
        rows = evaluate.Cell(build(model, prepared.info), prepared, c).rows()
        assert [(r.metric, r.status) for r in rows] == [("indep_critic", "ok")], prepared.info.name


def test_a_metric_writing_rows_it_does_not_declare_fails(image_prepared, tmp_path, monkeypatch):
    def sloppy(cell):
        return [evaluate.Row("sloppy_other", 1.0, "test", "[0,1]", 1)]

    monkeypatch.setitem(evaluate.METRICS, "sloppy", evaluate.MetricSpec("sloppy", sloppy, frozenset({"image"})))
    rows = evaluate.Cell(build("gan", image_prepared.info), image_prepared, cfg(tmp_path, metrics=["sloppy"])).rows()
    assert rows[0].status == "failed" and "sloppy_other" in rows[0].reason


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


@pytest.mark.slow  # scipy's sqrtm of 2048 x 2048 covariances
def test_injected_random_inception_gives_fid_and_kid_with_seeded_and_random_at_equal_counts(image_prepared, tmp_path):
    """A random stand-in, injected under a label that is not the real name: the FID/KID code path runs
    and the train features are cached; fid_seeded and fid_random use the same number of images."""
    nets = evaluate.Networks(inception=(random_inception(), "random-test-inception"))
    c = cfg(tmp_path, n_samples=40, metrics=["fid", "fid_seeded"])  # 40 samples, 32 test images: N = 32
    cell = evaluate.Cell(build("vae", image_prepared.info), image_prepared, c, networks=nets)
    by = rows_by_metric(cell.rows())
    assert set(by) == {"fid", "fid_64", "fid_192", "fid_768", "kid", "fid_seeded", "fid_random", "kid_seeded",
                       "kid_random"}
    for row in by.values():
        assert row.status == "ok" and np.isfinite(row.value) and row.features.startswith("random-test-inception")
    n_test = len(image_prepared.x("test"))
    assert {by[m].n_samples for m in ("fid_seeded", "fid_random", "kid_seeded", "kid_random")} == {min(n_test, 40)}
    assert by["fid"].n_samples == by["kid"].n_samples == 40
    assert len(list((tmp_path / "cache").glob("inception-train-*.npz"))) == 1, "train statistics cached by hash"


def write_random_weights(inception_file, alexnet_file):
    """Files of the right format but random weights, under the real names."""
    torch.manual_seed(0)
    inception_file.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(RandomInceptionBase()).save(str(inception_file))
    alexnet_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), alexnet_file)


def test_random_weights_under_the_real_names_are_missing_with_both_hashes(image_prepared, tmp_path, monkeypatch,
                                                                           capsys):
    """Weight files where `python -m pipeline weights` looks, of the right format but not the
    published files: every row that needs them is `missing`, naming the file, both hashes and the fix."""
    from pipeline.cli import main

    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv(weights.ALEXNET_ENV, raising=False)
    inception_file = tmp_path / "weights" / weights.INCEPTION_FILE
    monkeypatch.setenv(weights.INCEPTION_ENV, str(inception_file))
    alexnet_file = weights.alexnet().looked[-1]  # the torch hub cache the report names
    assert str(alexnet_file).startswith(str(torch_home))
    write_random_weights(inception_file, alexnet_file)

    assert main(["--params", str(ROOT / "params.yaml"), "weights"]) == 0
    assert capsys.readouterr().out.count("WRONG FILE") == 2
    assert weights.inception().present and not weights.inception().verified and not weights.alexnet().verified

    weighted = [name for name, spec in evaluate.METRICS.items() if spec.weights]
    cell = evaluate.Cell(build("vae", image_prepared.info), image_prepared, cfg(tmp_path, metrics=weighted))
    by = rows_by_metric(cell.rows())
    assert set(by) == NEEDS_WEIGHTS
    for name, path, expected in [("fid", inception_file, weights.INCEPTION_SHA256),
                                 ("lpips", alexnet_file, weights.ALEXNET_SHA256)]:
        row = by[name]
        assert row.status == "missing" and np.isnan(row.value)
        assert str(path) in row.reason and expected in row.reason and weights.sha256(path) in row.reason
        assert "download" in row.reason
    assert all(row.status == "missing" for row in by.values())
    assert not list((tmp_path / "cache").glob("*.npz")), "nothing computed with the wrong file"


def test_the_shipped_lpips_linear_layers_are_the_published_file():
    assert weights.lpips_linear().verified, weights.lpips_linear().reason


def test_weights_report_lists_places(capsys, tmp_path, monkeypatch):
    from pipeline.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert main(["--params", str(ROOT / "params.yaml"), "weights"]) == 0
    out = capsys.readouterr().out
    assert "alexnet-owt-7be5be79.pth" in out and "inception-2015-12-05.pt" in out and "fid, fid_64" in out
    assert weights.INCEPTION_SHA256 in out and weights.ALEXNET_SHA256 in out


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
    method = AvaeFinetune(AvaeFinetuneConfig(), image_prepared.info, TINY_NET,
                          frozen_export(tmp_path, source)).eval()
    out = tmp_path / "cell"
    rows = rows_by_metric(evaluate.CellEvaluator(method, image_prepared, cfg(tmp_path, metrics=["recon_variance", "kl"]),
                                                 out).rows())
    assert rows["recon_variance"].status == "ok" and rows["recon_variance"].value > 0
    assert rows["kl"].status == "ok"
    for png in ("reconstructions.png", "interpolation.png", "traversals.png"):
        assert (out / png).stat().st_size > 0
