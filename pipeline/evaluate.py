"""Evaluation of one trained cell: a registry of metrics over shared, computed-once inputs
(samples, reconstructions, feature sets), and the PNG strips a person looks at.

Each registered metric returns `Row`s (values only); `pipeline.run.evaluate_cell` adds the
provenance (cell, checkpoint, git revision, params hash) and writes long-format Parquet.
Samples are generated once per cell and quantised to 8 bits (what saving them as PNG would
keep, clean-fid's folder protocol); each feature set (dataset classifier, Inception) is
extracted once and shared by every metric that uses it; real-data statistics are cached
under a hash of dataset + extractor (`evaluate.stats_cache`).

Pretrained networks (Inception, AlexNet, LPIPS' linear layers) are resolved by
`pipeline.weights` and checked against their published sha256; when absent or different, the
metrics that need them are rows with status `missing` and the reason. A network can be injected
explicitly (`Networks`, tests only): its label then goes into the `features` column. Feature
extractors run with TF32 off (`metrics.fp32_matmul`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from pipeline import metrics, weights  # noqa: E402
from pipeline.autoencoder import TrainedAutoencoder  # noqa: E402
from pipeline.classifier import Classifier, dataset_without_classifier, predict  # noqa: E402
from pipeline.data import Prepared  # noqa: E402
from pipeline.datainfo import to_model_scale, to_unit_scale  # noqa: E402
from pipeline.io import atomic_write  # noqa: E402
from pipeline.methods import Method  # noqa: E402
from pipeline.schema import stable_hash  # noqa: E402
from pipeline.sections import EvaluateConfig  # noqa: E402


@dataclass
class Row:
    """One metric value before provenance is attached."""

    metric: str
    value: float
    split: str
    scale: str
    n_samples: int
    features: str = ""
    status: str = "ok"
    reason: str = ""
    time_s: float = 0.0


def missing(metric: str, split: str, scale: str, n: int, features: str, reason: str) -> Row:
    return Row(metric, float("nan"), split, scale, n, features, "missing", reason)


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def to_u8(images01: torch.Tensor) -> np.ndarray:
    """[0,1] images -> uint8 (round to the nearest grey level, as a PNG would store them)."""
    return (images01.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@dataclass
class Networks:
    """Feature networks given explicitly (tests): (module, label) pairs; None = resolve real weights."""

    inception: tuple[metrics.InceptionFeatures, str] | None = None
    lpips: tuple[nn.Module, str] | None = None


@dataclass
class MetricSpec:
    """A registered metric: name, function Cell -> rows, what a cell needs for it to apply, the
    names of the rows it may write (default: its own name) and the pretrained weights it needs
    (keys of WEIGHTS; without them its rows are `missing`)."""

    name: str
    fn: Callable[["Cell"], list[Row]]
    needs: frozenset = field(default_factory=frozenset)  # subset of NEEDS
    rows: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.rows = tuple(self.rows) or (self.name,)


# posterior: a stochastic encoder; classifier / autoencoder: the dataset's own networks (train_classifier)
NEEDS = {"image", "vector", "encoder", "posterior", "classifier", "autoencoder"}
WHY_NOT = {  # the reason a metric needing this fact of the model does not apply to it (an `n/a` row)
    "encoder": "the model has no encoder (nothing to reconstruct with)",
    "posterior": "the model's encoder is deterministic (no q(z|x) to draw from or measure a KL of)",
}
DATASET_NETWORKS = ("classifier", "autoencoder")  # without one the metrics needing it are `missing` rows
WEIGHTS = {  # pretrained weights a metric may declare -> the files it needs, each checked (pipeline.weights)
    "inception": lambda cfg: [weights.inception(cfg.inception_weights)],
    "lpips": lambda cfg: [weights.alexnet(cfg.alexnet_weights), weights.lpips_linear()],
}
METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *needs: str, rows: tuple[str, ...] = (), weights: tuple[str, ...] = ()):
    """Decorator: add a metric to METRICS; `needs` say which cells it applies to, `rows` the metric
    rows it writes (default: `name` alone), `weights` the pretrained weights it needs (WEIGHTS)."""
    unknown = (set(needs) - NEEDS) | (set(weights) - set(WEIGHTS))
    if unknown:
        raise ValueError(f"metric {name}: unknown needs or weights {unknown}; allowed {sorted(NEEDS)} "
                         f"and {sorted(WEIGHTS)}")

    def deco(fn: Callable[["Cell"], list[Row]]):
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = MetricSpec(name, fn, frozenset(needs), rows, tuple(weights))
        return fn

    return deco


def weights_reason(name: str, cfg: EvaluateConfig) -> str:
    """Why the weights `name` (a WEIGHTS key) cannot be used: the first file absent or not the
    published one ('' when every file is verified)."""
    return next((w.reason for w in WEIGHTS[name](cfg) if not w.verified), "")


def chosen_metrics(selected: list[str], kind: str) -> list[MetricSpec]:
    """The selected metrics (evaluate.metrics, empty = all) made for this kind of data (image or
    vector): the others are no column of that dataset's table."""
    chosen = selected or list(METRICS)
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown:
        raise ValueError(f"evaluate.metrics: unknown {unknown}; registered metrics: {sorted(METRICS)}")
    return [METRICS[name] for name in chosen if METRICS[name].needs & {"image", "vector"} <= {kind}]


class Cell:
    """Shared inputs of one cell's metrics, each computed on first use and then reused."""

    def __init__(self, method: Method, data: Prepared, cfg: EvaluateConfig, classifier: Classifier | None = None,
                 classifier_stats: metrics.Stats | None = None, seed: int = 0, networks: Networks | None = None,
                 autoencoder: TrainedAutoencoder | None = None):
        self.method, self.data, self.cfg, self.info = method.eval(), data, cfg, data.info
        self.device = method.device  # the model's device; every result comes back to the CPU
        self.classifier, self.classifier_stats, self.seed = classifier, classifier_stats, seed
        self.autoencoder = autoencoder
        self.networks = networks or Networks()
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        test = data.x("test")
        self.test_u8 = np.array(test[:cfg.n_recon] if cfg.n_recon else test)  # writable copy
        self.test_labels = None if data.y("test") is None else np.array(data.y("test")[:len(self.test_u8)])
        self.decode = lambda z: self.on_device(method.decode, z)
        with torch.no_grad():
            self.has_encoder = method.encode(self.model_scale(self.test_u8[:2]).to(self.device)) is not None

    # ------------------------------------------------------------ which metrics apply
    def facts(self) -> set[str]:
        facts = {self.info.kind}
        facts |= {"encoder"} if self.has_encoder else set()
        facts |= {"posterior"} if self.has_encoder and self.method.stochastic_encoder else set()
        facts |= {"classifier"} if self.classifier is not None and self.test_labels is not None else set()
        facts |= {"autoencoder"} if self.autoencoder is not None else set()
        return facts

    def chosen(self) -> list[MetricSpec]:
        return chosen_metrics(self.cfg.metrics, self.info.kind)

    def not_applicable(self, spec: MetricSpec) -> str:
        """Why `spec` does not apply to this cell's model ('' when it does)."""
        lacking = sorted(spec.needs & set(WHY_NOT) - self.facts())
        return "; ".join(WHY_NOT[fact] for fact in lacking)

    def unavailable(self, spec: MetricSpec) -> str:
        """Why `spec` cannot be computed for lack of a network of the dataset's own ('' when it can):
        the dataset has no labels (no classifier), or none was given."""
        fix = "was given (evaluate --classifier <the train_classifier stage's folder>)"
        why = {"classifier": dataset_without_classifier(self.data) or f"no dataset classifier {fix}",
               "autoencoder": f"no dataset autoencoder {fix}"}
        return "; ".join(why[fact] for fact in DATASET_NETWORKS if fact in spec.needs - self.facts())

    def rows(self) -> list[Row]:
        """Every chosen metric's rows; one that does not apply to this cell's model is an `n/a`
        row saying why, one whose dataset network is absent a `missing` row saying why (never absent)."""
        rows = []
        for spec in self.chosen():
            why = self.not_applicable(spec)
            status, why = ("n/a", why) if why else ("missing", self.unavailable(spec))
            if why:
                rows += [Row(name, float("nan"), "", "", 0, "", status, why) for name in spec.rows]
                continue
            t0 = time.perf_counter()
            try:
                out = spec.fn(self)
                undeclared = sorted({row.metric for row in out} - set(spec.rows))
                if undeclared:
                    raise ValueError(f"metric {spec.name!r} wrote rows {undeclared} it does not declare "
                                     f"{list(spec.rows)}")
            except Exception as e:  # recorded, not hidden: the row says which metric failed and why
                print(f"  metric {spec.name} failed: {type(e).__name__}: {e}")
                out = [Row(spec.name, float("nan"), "", "", 0, "", "failed", f"{type(e).__name__}: {e}")]
            per_row = (time.perf_counter() - t0) / max(len(out), 1)
            for row in out:
                row.time_s = row.time_s or per_row
            rows += out
        return rows

    def on_device(self, fn: Callable[..., Any], *inputs: torch.Tensor, bf16: bool = False) -> Any:
        """fn(*inputs) on the model's device (in bf16 autocast if asked); its tensor (or tuple of
        tensors) comes back as fp32 on the CPU."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        with torch.no_grad(), autocast:
            out = fn(*(x.to(self.device) for x in inputs))
        return tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu()

    # ------------------------------------------------------------ scales
    def model_scale(self, x_u8: np.ndarray) -> torch.Tensor:
        return to_model_scale(torch.from_numpy(np.asarray(x_u8)), self.info)

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model-scale images -> [0, 1] (the scale every image metric states)."""
        return x.clamp(0, 1) if self.info.scale == "[0,1]" else to_unit_scale(x)

    @property
    def scale(self) -> str:
        return "[0,1]" if self.info.kind == "image" else self.info.scale

    # ------------------------------------------------------------ shared inputs
    @cached_property
    def samples(self) -> torch.Tensor:
        """n_samples generated samples on the model scale (generated once)."""
        bf16 = self.cfg.autocast == "bf16"
        return batched(lambda b: self.on_device(lambda: self.method.sample(len(b)), bf16=bf16),
                       torch.empty(self.cfg.n_samples, 0), self.cfg.batch_size)

    @cached_property
    def samples_u8(self) -> np.ndarray:
        return to_u8(self.unit(self.samples))

    @cached_property
    def samples01(self) -> torch.Tensor:
        return torch.from_numpy(self.samples_u8).float() / 255

    @cached_property
    def test01(self) -> torch.Tensor:
        return torch.from_numpy(self.test_u8).float() / 255

    @cached_property
    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_sigma) of q(z|x) on the test images."""
        x = self.model_scale(self.test_u8)
        parts = [self.on_device(self.method.encode, x[i:i + self.cfg.batch_size])
                 for i in range(0, len(x), self.cfg.batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @cached_property
    def recon(self) -> torch.Tensor:
        """Reconstructions of the test images on the model scale."""
        return batched(lambda b: self.on_device(self.method.reconstruct, b), self.model_scale(self.test_u8),
                       self.cfg.batch_size)

    @cached_property
    def recon_u8(self) -> np.ndarray:
        return to_u8(self.unit(self.recon))

    @cached_property
    def recon01(self) -> torch.Tensor:
        return self.unit(self.recon)

    def classifier_features(self, images_u8: np.ndarray, desc: str) -> np.ndarray:
        return metrics.extract_features(metrics.array_source(images_u8), self.classifier.features, len(images_u8),
                                        self.cfg.batch_size, desc=desc)

    @cached_property
    def sample_classifier_features(self) -> np.ndarray:
        return self.classifier_features(self.samples_u8, "classifier samples")

    # ------------------------------------------------------------ Inception
    @cached_property
    def inception(self) -> tuple[metrics.InceptionFeatures | None, str, str]:
        """(network on the model's device or None, features label, reason when None)."""
        if self.networks.inception is not None:
            net, label = self.networks.inception
            return net.to(self.device), label, ""
        found = weights.inception(self.cfg.inception_weights)
        if not found.verified:
            return None, weights.INCEPTION_NAME, found.reason
        return (metrics.load_inception(found.path).to(self.device),
                f"{weights.INCEPTION_NAME}:sha256={weights.digest(found.path)}", "")

    def inception_features(self, images_u8: np.ndarray, desc: str) -> dict[int, np.ndarray]:
        net = self.inception[0]
        source = metrics.rgb_source(metrics.array_source(images_u8))
        feats = metrics.extract_features(source, net, len(images_u8), self.cfg.batch_size, resize="clean", desc=desc,
                                         device=self.device)
        return metrics.split_taps(feats)

    @cached_property
    def sample_inception_features(self) -> dict[int, np.ndarray]:
        return self.inception_features(self.samples_u8, "inception samples")

    @cached_property
    def train_inception(self) -> tuple[dict[int, metrics.Stats], np.ndarray]:
        """Inception statistics of the whole training split at every feature size, and its 2048-d
        features (KID, precision/recall/density/coverage), cached under a hash."""
        train = self.data.x("train")
        key = stable_hash({"data": self.data.meta["files"], "split": "train", "n": len(train),
                           "extractor": self.inception[1], "taps": metrics.TAPS, "mode": "clean",
                           "features": 2048})

        def compute() -> dict[str, np.ndarray]:
            taps = self.inception_features(train, "inception train")
            stats = {f"{size}__{part}": value for size, f in taps.items()
                     for part, value in zip(("mu", "sigma"), metrics.feature_stats(f))}
            return {**stats, "features_2048": taps[2048]}

        arrays = metrics.cached_arrays(self.cfg.stats_cache or None, f"inception-train-{key}", compute)
        return ({size: (arrays[f"{size}__mu"], arrays[f"{size}__sigma"]) for size in metrics.TAPS},
                arrays["features_2048"])

    # ------------------------------------------------------------ precision / recall / density / coverage
    @cached_property
    def prdc_count(self) -> int:
        """Samples and training images compared by precision/recall/density/coverage."""
        return min(self.cfg.n_samples, metrics.PRDC_SAMPLES, len(self.data.x("train")))

    @cached_property
    def prdc_train_index(self) -> np.ndarray:
        """The training images they are compared with: a fixed draw (seed 0, the same for every cell)."""
        n_train = len(self.data.x("train"))
        return np.sort(np.random.default_rng(0).choice(n_train, self.prdc_count, replace=False))


# ---------------------------------------------------------------- reconstruction (test split)


@register_metric("mse", "encoder")
def mse_metric(cell: Cell) -> list[Row]:
    """AVAE T1: per-pixel squared error of test reconstructions."""
    if cell.info.kind == "image":
        return [Row("mse", metrics.mse(cell.test01, cell.recon01), "test", "[0,1]", len(cell.test_u8))]
    x = cell.model_scale(cell.test_u8)
    return [Row("mse", metrics.mse(x, cell.recon), "test", cell.scale, len(x))]


@register_metric("kl", "encoder", "posterior")
def kl_metric(cell: Cell) -> list[Row]:
    """AVAE §5: KL(q(z|x) ‖ p(z)) of the encoder on the test split, nats."""
    return [Row("kl", metrics.mean_kl(*cell.posterior), "test", "nats", len(cell.test_u8))]


@register_metric("cosine", "encoder", "image")
def cosine_metric(cell: Cell) -> list[Row]:
    """AVAE-S T3: cosine similarity of an image and its reconstruction."""
    return [Row("cosine", metrics.cosine(cell.test01, cell.recon01), "test", "[0,1]", len(cell.test_u8))]


@register_metric("lpips", "encoder", "image", weights=("lpips",))
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


@register_metric("recon_variance", "encoder", "posterior")
def recon_variance_metric(cell: Cell) -> list[Row]:
    """LSR-GAN T1: variance among images decoded from several z ~ q(z|x) of one x."""
    n = min(cell.cfg.n_variance, len(cell.test_u8))
    mu, log_sigma = (t[:n] for t in cell.posterior)
    unit = cell.unit if cell.info.kind == "image" else (lambda t: t)
    with torch.no_grad():
        value = metrics.recon_variance(lambda z: unit(batched(cell.decode, z, cell.cfg.batch_size)), mu, log_sigma,
                                       cell.cfg.variance_draws)
    return [Row("recon_variance", value, "test", cell.scale, n, f"draws={cell.cfg.variance_draws}")]


@register_metric("recon_accuracy", "encoder", "image", "classifier",
                 rows=("recon_accuracy", "recon_accuracy_relative"))
def recon_accuracy_metric(cell: Cell) -> list[Row]:
    """LSR-GAN T1: classifier accuracy on reconstructions, absolute and relative."""
    absolute, relative = metrics.recon_accuracy(lambda u8: predict(cell.classifier, u8, cell.cfg.batch_size),
                                                cell.test_u8, cell.recon_u8, cell.test_labels)
    n, label = len(cell.test_u8), f"classifier:{cell.info.name}"
    return [Row("recon_accuracy", absolute, "test", "[0,255]", n, label),
            Row("recon_accuracy_relative", relative, "test", "[0,255]", n, label)]


# ---------------------------------------------------------------- generation


@register_metric("fd_classifier", "image", "classifier")
def fd_classifier_metric(cell: Cell) -> list[Row]:
    """Fréchet distance in the dataset classifier's feature space, samples vs training split."""
    value = metrics.frechet_distance(metrics.feature_stats(cell.sample_classifier_features), cell.classifier_stats)
    return [Row("fd_classifier", value, "train", "[0,255]", cell.cfg.n_samples, f"classifier:{cell.info.name}")]


@register_metric("fd_autoencoder", "image", "autoencoder")
def fd_autoencoder_metric(cell: Cell) -> list[Row]:
    """Fréchet distance in the bottleneck features of the dataset autoencoder (trained without
    labels; pipeline.autoencoder), samples vs training split."""
    ae = cell.autoencoder
    features = metrics.extract_features(metrics.array_source(cell.samples_u8), ae.model.features, len(cell.samples_u8),
                                        cell.cfg.batch_size, desc="autoencoder samples")
    value = metrics.frechet_distance(metrics.feature_stats(features), ae.stats)
    return [Row("fd_autoencoder", value, "train", "[0,255]", cell.cfg.n_samples, ae.label)]


@register_metric("inception_score_classifier", "image", "classifier")
def classifier_is_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: the Inception score computed with a classifier trained on the dataset."""
    with torch.no_grad():
        logits = cell.classifier.head(torch.from_numpy(cell.sample_classifier_features).float())
    value, _ = metrics.inception_score(torch.softmax(logits.double(), 1).numpy(), cell.cfg.is_splits)
    return [Row("inception_score_classifier", value, "samples", "[0,255]", cell.cfg.n_samples,
                f"classifier:{cell.info.name};splits={cell.cfg.is_splits}")]


FID_SIZES = (64, 192, 768)  # AVAE-S T3 feature sizes besides 2048 (= fid)
FID_ROWS = ("fid", *(f"fid_{s}" for s in FID_SIZES), "kid")


@register_metric("fid", "image", rows=FID_ROWS, weights=("inception",))
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


@register_metric("fid_seeded", "image", "encoder", rows=SEEDED_ROWS, weights=("inception",))
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


@register_metric("inception_score", "image", weights=("inception",))
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


PRDC = ("precision", "recall", "density", "coverage")


def prdc_rows(real: np.ndarray, fake: np.ndarray, suffix: str, scale: str, label: str) -> list[Row]:
    values = metrics.prdc(real, fake)
    return [Row(name + suffix, values[name], "train", scale, len(fake),
                f"{label};k={metrics.PR_K if name in ('precision', 'recall') else metrics.DC_K}") for name in PRDC]


@register_metric("prdc", "image", rows=PRDC, weights=("inception",))
def prdc_metric(cell: Cell) -> list[Row]:
    """Precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem et al. 2020) in
    Inception's 2048-d space: N samples vs N training images, N = min(n_samples, 10,000)."""
    net, label, reason = cell.inception
    n = cell.prdc_count
    if net is None:
        return [missing(name, "train", "[0,255]", n, f"{label}/2048", reason) for name in PRDC]
    real = cell.train_inception[1][cell.prdc_train_index]
    return prdc_rows(real, cell.sample_inception_features[2048][:n], "", "[0,255]", f"{label}/2048")


@register_metric("prdc_classifier", "image", "classifier", rows=tuple(f"{name}_classifier" for name in PRDC))
def prdc_classifier_metric(cell: Cell) -> list[Row]:
    """Precision, recall, density, coverage in the dataset classifier's feature space (as prdc)."""
    real = cell.classifier_features(np.asarray(cell.data.x("train")[cell.prdc_train_index]), "classifier train")
    return prdc_rows(real, cell.sample_classifier_features[:cell.prdc_count], "_classifier", "[0,255]",
                     f"classifier:{cell.info.name}")


@register_metric("diversity", "image", rows=("diversity", "diversity_test"))
def diversity_metric(cell: Cell) -> list[Row]:
    """α-GAN §4: 1 − mean pairwise MS-SSIM of samples, and of the test split itself."""
    k = cell.cfg.diversity_pairs
    return [Row("diversity", metrics.diversity(cell.samples01, k, cell.seed), "samples", "[0,1]", k, "ms-ssim"),
            Row("diversity_test", metrics.diversity(cell.test01, k, cell.seed), "test", "[0,1]", k, "ms-ssim")]


@register_metric("indep_critic")
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


SHARPNESS_ROWS = tuple(f"sharpness_{kind}{suffix}" for suffix in ("", "_recon", "_test")
                       for kind in ("laplace", "norm_laplace"))


@register_metric("sharpness", "image", rows=SHARPNESS_ROWS)
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


@register_metric("fd_data", "vector")
def fd_data_metric(cell: Cell) -> list[Row]:
    """Fréchet distance between samples and the training split in data space."""
    fake = cell.samples.numpy()
    value = metrics.frechet_distance(metrics.feature_stats(fake), metrics.feature_stats(cell.data.x("train")))
    return [Row("fd_data", value, "train", cell.info.scale, len(fake), "identity")]


# ---------------------------------------------------------------- pictures


class Pictures:
    """PNG files of one cell: samples, reconstructions, interpolation strip, latent traversals."""

    def __init__(self, cell: Cell, out_dir: Path):
        self.cell, self.out_dir = cell, Path(out_dir)
        self.k = cell.cfg.grid_rows

    def save_all(self) -> list[Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.cell.info.kind != "image":
            return [self.scatter()]
        paths = [self.samples()]
        if self.cell.has_encoder:
            paths.append(self.reconstructions())
        return paths + [self.interpolation(), self.traversals()]

    def _save(self, images01: torch.Tensor, name: str, nrow: int) -> Path:
        """A PNG grid, written atomically (format named: the temporary file ends in .tmp)."""
        return atomic_write(self.out_dir / name,
                            lambda p: save_image(images01, p, nrow=nrow, padding=1, format="png"))

    def samples(self) -> Path:
        return self._save(self.cell.samples01[:self.k * self.k], "samples.png", self.k)

    def reconstructions(self) -> Path:
        """Alternating rows: test originals, then their reconstructions."""
        x, x_hat, k = self.cell.test01, self.cell.recon01, self.k
        rows = [t for i in range(0, k * k // 2, k) for t in (x[i:i + k], x_hat[i:i + k])]
        return self._save(torch.cat(rows), "reconstructions.png", k)

    def decode01(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.cell.unit(self.cell.decode(z))

    def anchors(self, n: int) -> torch.Tensor:
        """Latent codes to start from: posterior means of test images, or prior draws without an encoder."""
        if self.cell.has_encoder:
            return self.cell.posterior[0][:n]
        return torch.randn(n, self.cell.method.net.latent_dim, generator=self.cell.generator)

    def interpolation(self) -> Path:
        """Rows of linear interpolations between the codes of two test images (AVAE-S Fig. 3)."""
        steps = self.cell.cfg.strip_steps
        codes = self.anchors(2 * min(self.k, 4))
        rows = max(1, len(codes) // 2)
        t = torch.linspace(0, 1, steps)[:, None]
        z = torch.cat([(1 - t) * codes[2 * r] + t * codes[2 * r + 1] for r in range(rows)])
        return self._save(self.decode01(z), "interpolation.png", steps)

    def traversals(self) -> Path:
        """One row per latent dimension: that coordinate swept over [-3, 3] from a test image's code (AVAE-S Fig. 2)."""
        steps = self.cell.cfg.strip_steps
        base = self.anchors(1)[0]
        dims = min(self.k, base.numel())
        values = torch.linspace(-3, 3, steps)
        z = base.repeat(dims * steps, 1)
        for d in range(dims):
            z[d * steps:(d + 1) * steps, d] = values
        return self._save(self.decode01(z), "traversals.png", steps)

    def scatter(self) -> Path:
        fake = self.cell.samples[:2000].numpy()
        real = np.asarray(self.cell.data.x("test"))[:2000]
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="data")
        ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.3, label="samples")
        ax.legend(markerscale=5)
        fig.tight_layout()
        path = atomic_write(self.out_dir / "samples.png", lambda p: fig.savefig(p, format="png"))
        plt.close(fig)
        return path


class CellEvaluator:
    """Every applicable metric of one cell, and its pictures under out_dir."""

    def __init__(self, method: Method, data: Prepared, cfg: EvaluateConfig, out_dir: Path,
                 classifier: Classifier | None = None, classifier_stats=None, seed: int = 0,
                 networks: Networks | None = None, autoencoder: TrainedAutoencoder | None = None):
        self.cell = Cell(method, data, cfg, classifier, classifier_stats, seed, networks, autoencoder)
        self.out_dir = Path(out_dir)

    def rows(self) -> list[Row]:
        rows = self.cell.rows()
        Pictures(self.cell, self.out_dir).save_all()
        return rows
