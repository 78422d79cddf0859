"""Evaluation of one trained cell: metric rows (values only; provenance is added by the
caller) and the PNG grids a person looks at."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from pipeline import metrics, weights  # noqa: E402
from pipeline.classifier import Classifier  # noqa: E402
from pipeline.config import EvaluateConfig  # noqa: E402
from pipeline.data import Prepared, to_model_scale, to_unit_scale  # noqa: E402
from pipeline.methods import Method  # noqa: E402


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


def timed(fn: Callable[[], Row]) -> Row:
    t0 = time.perf_counter()
    row = fn()
    row.time_s = time.perf_counter() - t0
    return row


def missing(metric: str, split: str, scale: str, n: int, features: str, reason: str) -> Row:
    return Row(metric, float("nan"), split, scale, n, features, "missing", reason)


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


class CellEvaluator:
    """Computes every applicable metric of one cell and writes its grids to out_dir."""

    def __init__(self, method: Method, data: Prepared, cfg: EvaluateConfig, out_dir: Path,
                 classifier: Classifier | None = None, classifier_stats=None, seed: int = 0):
        self.method, self.data, self.cfg, self.out_dir = method.eval(), data, cfg, Path(out_dir)
        self.classifier, self.classifier_stats = classifier, classifier_stats
        self.info = data.info
        torch.manual_seed(seed)
        test = data.x("test")
        self.test_u8 = np.array(test[:cfg.n_recon] if cfg.n_recon else test)  # writable copy
        self.has_encoder = method.encode(to_model_scale(torch.from_numpy(self.test_u8[:2]), self.info)) is not None

    # ------------------------------------------------------------ generation helpers
    def samples_model_scale(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return batched(lambda b: self.method.sample(len(b)), torch.empty(n, 0), self.cfg.batch_size)

    def sample_source(self) -> metrics.ImageSource:
        """Generated images in [0, 255] for clean-fid's feature extraction."""
        return lambda n: to_unit_scale(self.method.sample(n)) * 255.0

    def reconstructions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(originals, reconstructions) of the test split on the model scale."""
        x = to_model_scale(torch.from_numpy(self.test_u8), self.info)
        return x, batched(self.method.reconstruct, x, self.cfg.batch_size)

    # ------------------------------------------------------------ metrics
    def rows(self) -> list[Row]:
        rows: list[Row] = []
        image = self.info.kind == "image"
        scale = "[0,1]" if image else self.info.scale
        n_test = len(self.test_u8)
        if self.has_encoder:
            x, x_hat = self.reconstructions()
            if image:
                x, x_hat = to_unit_scale(x), to_unit_scale(x_hat)
            rows.append(timed(lambda: Row("mse", metrics.mse(x, x_hat), "test", scale, n_test)))
            rows.append(timed(lambda: Row("kl", self.kl(), "test", "nats", n_test)))
            if image:
                rows.append(timed(lambda: self.lpips(x, x_hat)))
            self.save_reconstructions(x, x_hat)
        if image:
            if self.classifier is not None:
                rows.append(timed(self.fd_classifier))
            rows.append(timed(self.fid))
            self.save_samples()
        else:
            rows.append(timed(self.fd_data))
            self.save_scatter()
        return rows

    def kl(self) -> float:
        x = to_model_scale(torch.from_numpy(self.test_u8), self.info)
        with torch.no_grad():
            mu, log_sigma = (torch.cat(t) for t in zip(*(self.method.encode(x[i:i + self.cfg.batch_size])
                                                         for i in range(0, len(x), self.cfg.batch_size))))
        return metrics.mean_kl(mu, log_sigma)

    def fd_classifier(self) -> Row:
        n = self.cfg.n_samples
        feats = metrics.extract_features(self.sample_source(), self.classifier.features, n, self.cfg.batch_size,
                                         desc="fd_classifier")
        value = metrics.frechet_distance(metrics.feature_stats(feats), self.classifier_stats)
        return Row("fd_classifier", value, "train", "[0,255]", n, f"classifier:{self.info.name}")

    def fid(self) -> Row:
        n = self.cfg.n_samples
        found = weights.inception(self.cfg.inception_weights)
        if not found.present:
            return missing("fid", "train", "[0,255]", n, "inception-2015-12-05", found.reason)
        extractor = metrics.load_inception(found.path)
        rgb = lambda source: (lambda k: metrics.to_255_rgb(source(k) / 255.0))  # noqa: E731
        train_source = metrics.array_source(self.data.x("train"))
        real = metrics.extract_features(rgb(train_source), extractor, len(self.data.x("train")),
                                        self.cfg.batch_size, resize="clean", desc="fid train")
        fake = metrics.extract_features(rgb(self.sample_source()), extractor, n, self.cfg.batch_size,
                                        resize="clean", desc="fid samples")
        value = metrics.frechet_distance(metrics.feature_stats(fake), metrics.feature_stats(real))
        return Row("fid", value, "train", "[0,255]", n, f"inception-2015-12-05:{found.path}")

    def lpips(self, x01: torch.Tensor, y01: torch.Tensor) -> Row:
        found = weights.alexnet(self.cfg.alexnet_weights)
        if not found.present:
            return missing("lpips", "test", "[-1,1]", len(x01), "lpips-alex-v0.1", found.reason)
        model = metrics.load_lpips(found.path)
        value = metrics.lpips_distance(model, x01, y01, self.cfg.batch_size)
        return Row("lpips", value, "test", "[-1,1]", len(x01), f"lpips-alex-v0.1:{found.path}")

    def fd_data(self) -> Row:
        """Vector data: Fréchet distance between samples and the training split in data space."""
        n = self.cfg.n_samples
        fake = self.samples_model_scale(n).numpy()
        value = metrics.frechet_distance(metrics.feature_stats(fake), metrics.feature_stats(self.data.x("train")))
        return Row("fd_data", value, "train", self.info.scale, n, "identity")

    # ------------------------------------------------------------ pictures
    def save_samples(self) -> None:
        k = self.cfg.grid_rows
        save_image(to_unit_scale(self.samples_model_scale(k * k)), self.out_dir / "samples.png", nrow=k, padding=1)

    def save_reconstructions(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """Alternating rows: originals, then their reconstructions."""
        if self.info.kind != "image":
            return
        k = self.cfg.grid_rows
        rows = [t for i in range(0, k * k // 2, k) for t in (x[i:i + k], x_hat[i:i + k])]
        save_image(torch.cat(rows), self.out_dir / "reconstructions.png", nrow=k, padding=1)

    def save_scatter(self) -> None:
        fake = self.samples_model_scale(2000).numpy()
        real = np.asarray(self.data.x("test"))[:2000]
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="data")
        ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.3, label="samples")
        ax.legend(markerscale=5)
        fig.tight_layout()
        fig.savefig(self.out_dir / "samples.png")
        plt.close(fig)
