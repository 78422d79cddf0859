"""The shared inputs of one cell's metrics, each computed once and reused: samples (quantised to
8 bits, as PNGs would store them), reconstructions, the posterior, feature sets of the dataset
classifier and of Inception, the training split's cached Inception statistics; and the runner that
gives every chosen metric its rows (`n/a` or `missing` rows with the reason where it cannot run).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from pipeline import metrics, weights
from pipeline.autoencoder import TrainedAutoencoder
from pipeline.classifier import Classifier, dataset_without_classifier
from pipeline.data import Prepared
from pipeline.datainfo import to_model_scale, to_unit_scale
from pipeline.evaluate.registry import DATASET_NETWORKS, WHY_NOT, MetricSpec, Row, chosen_metrics
from pipeline.methods import Method
from pipeline.schema import stable_hash
from pipeline.sections import EvaluateConfig


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
                rows += [Row(name, float("nan"), "", "", 0, "", status, why) for name in spec.row_names]
                continue
            t0 = time.perf_counter()
            try:
                out = spec.fn(self)
                undeclared = sorted({row.metric for row in out} - set(spec.row_names))
                if undeclared:
                    raise ValueError(f"metric {spec.name!r} wrote rows {undeclared} it does not declare "
                                     f"{list(spec.row_names)}")
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
    def prdc_train_classifier_features(self) -> np.ndarray:
        """The classifier features of those training images, cached under a hash of the data, the
        draw and the classifier's weights (every cell of a dataset shares them)."""
        weights_digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes()
                                                 for t in self.classifier.state_dict().values())).hexdigest()
        key = stable_hash({"data": self.data.meta["files"], "split": "train", "n": self.prdc_count,
                           "classifier": weights_digest, "batch_size": self.cfg.batch_size})

        def compute() -> dict[str, np.ndarray]:
            images = np.asarray(self.data.x("train")[self.prdc_train_index])
            return {"features": self.classifier_features(images, "classifier train")}

        return metrics.cached_arrays(self.cfg.stats_cache or None, f"classifier-prdc-train-{key}", compute)["features"]

    @cached_property
    def prdc_train_index(self) -> np.ndarray:
        """The training images they are compared with: a fixed draw (seed 0, the same for every cell)."""
        n_train = len(self.data.x("train"))
        return np.sort(np.random.default_rng(0).choice(n_train, self.prdc_count, replace=False))
