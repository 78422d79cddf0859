"""The registered metrics: one small function each, from a cell's shared inputs (`Cell`) to its
rows, registered with every fact about the metric (`pipeline.evaluate.registry`). The maths
lives in `pipeline.metrics`; these adapters pick the inputs, the counts and the provenance
labels. Registration order is evaluation order: reconstructions and the posterior draws come
first, then the samples (both draw from the seeded global generator).
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline import metrics, weights
from pipeline.classifier import predict
from pipeline.evaluate.cell import Cell, batched
from pipeline.evaluate.registry import (GENERATION, HIGHER, LOWER, RECONSTRUCTION, Row, RowSpec, missing,
                                        register_metric, weights_reason)


# ---------------------------------------------------------------- reconstruction (test split)


@register_metric("mse", "encoder", better=LOWER, section=RECONSTRUCTION)
def mse_metric(cell: Cell) -> list[Row]:
    """AVAE T1: per-pixel squared error of test reconstructions."""
    if cell.info.kind == "image":
        return [Row("mse", metrics.mse(cell.test01, cell.recon01), "test", "[0,1]", len(cell.test_u8))]
    x = cell.model_scale(cell.test_u8)
    return [Row("mse", metrics.mse(x, cell.recon), "test", cell.scale, len(x))]


@register_metric("lpips", "encoder", "image", weights=("lpips",), better=LOWER, section=RECONSTRUCTION)
def lpips_metric(cell: Cell) -> list[Row]:
    """AVAE T1: LPIPS v0.1 (AlexNet) of test reconstructions."""
    n = len(cell.test_u8)
    if cell.networks.lpips is not None:
        model, label = cell.networks.lpips
    else:
        wrong = weights_reason("lpips", cell.cfg)
        if wrong:
            return [missing("lpips", "test", "[-1,1]", n, "lpips-alex-v0.1", wrong)]
        found = weights.alexnet(cell.cfg.alexnet_weights)
        model, label = metrics.load_lpips(found.path), f"lpips-alex-v0.1:sha256={weights.digest(found.path)}"
    return [Row("lpips", metrics.lpips_distance(model, cell.test01, cell.recon01, cell.cfg.batch_size),
                "test", "[-1,1]", n, label)]


@register_metric("cosine", "encoder", "image", better=HIGHER, section=RECONSTRUCTION)
def cosine_metric(cell: Cell) -> list[Row]:
    """AVAE-S T3: cosine similarity of an image and its reconstruction."""
    return [Row("cosine", metrics.cosine(cell.test01, cell.recon01), "test", "[0,1]", len(cell.test_u8))]


@register_metric("kl", "encoder", "posterior", section=RECONSTRUCTION)  # no direction: AVAE §5 matches it over models
def kl_metric(cell: Cell) -> list[Row]:
    """AVAE §5: KL(q(z|x) ‖ p(z)) of the encoder on the test split, nats."""
    return [Row("kl", metrics.mean_kl(*cell.posterior), "test", "nats", len(cell.test_u8))]


@register_metric("recon_variance", "encoder", "posterior", better=LOWER, section=RECONSTRUCTION)
def recon_variance_metric(cell: Cell) -> list[Row]:
    """LSR-GAN T1: variance among images decoded from several z ~ q(z|x) of one x."""
    n = min(cell.cfg.n_variance, len(cell.test_u8))
    mu, log_sigma = (t[:n] for t in cell.posterior)
    unit = cell.unit if cell.info.kind == "image" else (lambda t: t)
    with torch.no_grad():
        value = metrics.recon_variance(lambda z: unit(batched(cell.decode, z, cell.cfg.batch_size)), mu, log_sigma,
                                       cell.cfg.variance_draws)
    return [Row("recon_variance", value, "test", cell.scale, n, f"draws={cell.cfg.variance_draws}")]


@register_metric("recon_accuracy", "encoder", "image", "classifier", rows=("recon_accuracy", "recon_accuracy_relative"),
                 better=HIGHER, section=RECONSTRUCTION)
def recon_accuracy_metric(cell: Cell) -> list[Row]:
    """LSR-GAN T1: classifier accuracy on reconstructions, absolute and relative."""
    absolute, relative = metrics.recon_accuracy(lambda u8: predict(cell.classifier, u8, cell.cfg.batch_size),
                                                cell.test_u8, cell.recon_u8, cell.test_labels)
    n, label = len(cell.test_u8), f"classifier:{cell.info.name}"
    return [Row("recon_accuracy", absolute, "test", "[0,255]", n, label),
            Row("recon_accuracy_relative", relative, "test", "[0,255]", n, label)]


# ---------------------------------------------------------------- Inception: generation and seeded generation


FID_SIZES = (64, 192, 768)  # AVAE-S T3 feature sizes besides 2048 (= fid)
FID_ROWS = ("fid", *(f"fid_{s}" for s in FID_SIZES), "kid")


@register_metric("fid", "image", rows=FID_ROWS, weights=("inception",), better=LOWER, section=GENERATION)
def fid_metric(cell: Cell) -> list[Row]:
    """AVAE T1 fid (clean-fid, 2048 features), AVAE-S T3 fid_64/_192/_768, and clean-fid's KID
    beside them: n_samples samples vs the training split."""
    net, label, reason = cell.inception
    n = cell.cfg.n_samples
    names = {2048: "fid", **{s: f"fid_{s}" for s in FID_SIZES}}
    if net is None:
        return ([missing(names[s], "train", "[0,255]", n, f"{label}/{s}", reason) for s in names]
                + [missing("kid", "train", "[0,255]", n, f"{label}/2048", reason)])
    fake, (real_stats, real_features) = cell.sample_inception_features, cell.train_inception
    rows = [Row(names[s], metrics.frechet_distance(metrics.feature_stats(fake[s]), real_stats[s]), "train", "[0,255]",
                n, f"{label}/{s}") for s in names]
    kid = metrics.kernel_distance(real_features, fake[2048], cell.seed)
    return rows + [Row("kid", kid, "train", "[0,255]", n, f"{label}/2048")]


SEEDED_ROWS = ("fid_seeded", "fid_random", "kid_seeded", "kid_random")


@register_metric("fid_seeded", "image", "encoder", rows=SEEDED_ROWS, weights=("inception",), better=LOWER,
                 section=RECONSTRUCTION)
def fid_seeded_metric(cell: Cell) -> list[Row]:
    """LSR-GAN §2.2: FID and KID of N images generated from test-example latents (reconstructions)
    and of N generated from random latents (the first N samples), vs the training split, at equal
    N = min(test images, n_samples): FID's small-sample bias is then the same for both."""
    net, label, reason = cell.inception
    n = min(len(cell.test_u8), cell.cfg.n_samples)
    if net is None:
        return [missing(name, "train", "[0,255]", n, f"{label}/2048", reason) for name in SEEDED_ROWS]
    real_stats, real_features = cell.train_inception
    sets = {"seeded": cell.inception_features(cell.recon_u8[:n], "inception reconstructions")[2048],
            "random": cell.sample_inception_features[2048][:n]}
    rows = [Row(f"fid_{kind}", metrics.frechet_distance(metrics.feature_stats(f), real_stats[2048]), "train",
                "[0,255]", n, f"{label}/2048") for kind, f in sets.items()]
    return rows + [Row(f"kid_{kind}", metrics.kernel_distance(real_features, f, cell.seed), "train", "[0,255]", n,
                       f"{label}/2048") for kind, f in sets.items()]


# ---------------------------------------------------------------- generation


@register_metric("fd_classifier", "image", "classifier", better=LOWER, section=GENERATION)
def fd_classifier_metric(cell: Cell) -> list[Row]:
    """Fréchet distance in the dataset classifier's feature space, samples vs training split."""
    value = metrics.frechet_distance(metrics.feature_stats(cell.sample_classifier_features), cell.classifier_stats)
    return [Row("fd_classifier", value, "train", "[0,255]", cell.cfg.n_samples, f"classifier:{cell.info.name}")]


@register_metric("fd_autoencoder", "image", "autoencoder", better=LOWER, section=GENERATION)
def fd_autoencoder_metric(cell: Cell) -> list[Row]:
    """Fréchet distance in the bottleneck features of the dataset autoencoder (trained without
    labels; pipeline.autoencoder), samples vs training split."""
    ae = cell.autoencoder
    features = metrics.extract_features(metrics.array_source(cell.samples_u8), ae.model.features, len(cell.samples_u8),
                                        cell.cfg.batch_size, desc="autoencoder samples")
    value = metrics.frechet_distance(metrics.feature_stats(features), ae.stats)
    return [Row("fd_autoencoder", value, "train", "[0,255]", cell.cfg.n_samples, ae.label)]


@register_metric("inception_score", "image", weights=("inception",), better=HIGHER, section=GENERATION)
def inception_score_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: Inception score with the ImageNet Inception as stylegan2-ada's is50k computes it
    (samples at their own size, resized bilinearly inside the TorchScript file; no output bias)."""
    net, label, reason = cell.inception
    n = cell.cfg.n_samples
    if net is None:
        return [missing("inception_score", "samples", "[0,255]", n, label, reason)]
    source = metrics.rgb_source(metrics.array_source(cell.samples_u8))
    probs = metrics.extract_features(source, lambda x: metrics.imagenet_probs(net, x), n, cell.cfg.batch_size,
                                     desc="inception probabilities", device=cell.device)
    value, _ = metrics.inception_score(probs, cell.cfg.is_splits)
    return [Row("inception_score", value, "samples", "[0,255]", n,
                f"{label};resize=bilinear-in-network;splits={cell.cfg.is_splits}")]


@register_metric("inception_score_classifier", "image", "classifier", better=HIGHER, section=GENERATION)
def classifier_is_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: the Inception score computed with a classifier trained on the dataset."""
    with torch.no_grad():
        logits = cell.classifier.head(torch.from_numpy(cell.sample_classifier_features).float())
    value, _ = metrics.inception_score(torch.softmax(logits.double(), 1).numpy(), cell.cfg.is_splits)
    return [Row("inception_score_classifier", value, "samples", "[0,255]", cell.cfg.n_samples,
                f"classifier:{cell.info.name};splits={cell.cfg.is_splits}")]


PRDC = ("precision", "recall", "density", "coverage")


def prdc_row_specs(suffix: str) -> tuple[RowSpec, ...]:
    """Precision, recall and coverage: higher is better; density has no better direction (1 on
    average for samples from the data distribution, Naeem et al. 2020)."""
    return tuple(RowSpec(name + suffix, "" if name == "density" else HIGHER, GENERATION) for name in PRDC)


def prdc_rows(real: np.ndarray, fake: np.ndarray, suffix: str, scale: str, label: str) -> list[Row]:
    values = metrics.prdc(real, fake)
    return [Row(name + suffix, values[name], "train", scale, len(fake),
                f"{label};k={metrics.PR_K if name in ('precision', 'recall') else metrics.DC_K}") for name in PRDC]


@register_metric("prdc", "image", rows=prdc_row_specs(""), weights=("inception",))
def prdc_metric(cell: Cell) -> list[Row]:
    """Precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem et al. 2020) in
    Inception's 2048-d space: N samples vs N training images, N = min(n_samples, 10,000)."""
    net, label, reason = cell.inception
    n = cell.prdc_count
    if net is None:
        return [missing(name, "train", "[0,255]", n, f"{label}/2048", reason) for name in PRDC]
    real = cell.train_inception[1][cell.prdc_train_index]
    return prdc_rows(real, cell.sample_inception_features[2048][:n], "", "[0,255]", f"{label}/2048")


@register_metric("prdc_classifier", "image", "classifier", rows=prdc_row_specs("_classifier"))
def prdc_classifier_metric(cell: Cell) -> list[Row]:
    """Precision, recall, density, coverage in the dataset classifier's feature space (as prdc)."""
    return prdc_rows(cell.prdc_train_classifier_features, cell.sample_classifier_features[:cell.prdc_count],
                     "_classifier", "[0,255]",
                     f"classifier:{cell.info.name}")


@register_metric("diversity", "image", rows=(RowSpec("diversity", section=GENERATION, reference="diversity_test"),
                                             RowSpec("diversity_test")))  # no direction: read against the data's
def diversity_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: 1 − mean pairwise MS-SSIM of samples, and of the test split itself."""
    k = cell.cfg.diversity_pairs
    return [Row("diversity", metrics.diversity(cell.samples01, k, cell.seed), "samples", "[0,1]", k, "ms-ssim"),
            Row("diversity_test", metrics.diversity(cell.test01, k, cell.seed), "test", "[0,1]", k, "ms-ssim")]


@register_metric("indep_critic", better=HIGHER, section=GENERATION)
def indep_critic_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: −W from an independent WGAN-GP critic (convolutional on images, an MLP on vectors);
    the test split is halved into critic-training data ('validation') and evaluation data
    ('test'), the samples likewise."""
    if cell.info.kind == "image":
        return [independent_critic_row(cell, cell.model_scale(cell.test_u8), cell.model_scale(cell.samples_u8))]
    real = torch.from_numpy(np.asarray(cell.test_u8, dtype=np.float32))
    return [independent_critic_row(cell, real, cell.samples.float())]


def independent_critic_row(cell: Cell, real: torch.Tensor, fake: torch.Tensor) -> Row:
    """Train the critic on the first halves of real and fake, report −W on the second halves."""
    half_r, half_f = len(real) // 2, len(fake) // 2
    s = cell.cfg
    settings = metrics.CriticSettings(s.critic_steps, s.critic_batch_size, s.critic_lr, s.critic_width)
    value = metrics.independent_critic(real[:half_r], fake[:half_f], real[half_r:], fake[half_f:], settings, cell.seed)
    return Row("indep_critic", value, "test", cell.info.scale, len(fake) - half_f,
               f"wgan-gp-critic:steps={s.critic_steps}")


def sharpness_row_specs() -> tuple[RowSpec, ...]:
    """Higher is sharper; samples in the generation table, reconstructions in the reconstruction
    table, both beside the test images' own value (AVAE-S T3's ground truth)."""
    rows = []
    for suffix, section in (("", GENERATION), ("_recon", RECONSTRUCTION)):
        rows += [RowSpec(f"sharpness_{kind}{suffix}", HIGHER, section, f"sharpness_{kind}_test")
                 for kind in ("laplace", "norm_laplace")]
    return (*rows, RowSpec("sharpness_laplace_test"), RowSpec("sharpness_norm_laplace_test"))


@register_metric("sharpness", "image", rows=sharpness_row_specs())
def sharpness_metric(cell: Cell) -> list[Row]:
    """AVAE-S §III Laplacian variance and LSR-GAN's luminance-normalised Laplacian, on samples,
    test reconstructions (when there is an encoder) and the test images themselves."""
    sets = [("", "samples", cell.samples01), ("_test", "test", cell.test01)]
    if cell.has_encoder:
        sets.insert(1, ("_recon", "test", cell.recon01))
    rows = []
    for suffix, split, images in sets:
        rows += [Row(f"sharpness_laplace{suffix}", metrics.laplace_variance(images), split, "[0,1]", len(images),
                     "laplace-3x3;gray"),
                 Row(f"sharpness_norm_laplace{suffix}", metrics.norm_laplace(images), split, "[0,1]", len(images),
                     "sum|laplace-3x3|/sum(local-luminance);gray")]
    return rows


# ---------------------------------------------------------------- vector data (toy2d)


@register_metric("fd_data", "vector", better=LOWER, section=GENERATION)
def fd_data_metric(cell: Cell) -> list[Row]:
    """Fréchet distance between samples and the training split in data space."""
    fake = cell.samples.numpy()
    value = metrics.frechet_distance(metrics.feature_stats(fake), metrics.feature_stats(cell.data.x("train")))
    return [Row("fd_data", value, "train", cell.info.scale, len(fake), "identity")]

#####PICT
