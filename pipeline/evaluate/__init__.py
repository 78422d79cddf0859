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

Modules: `registry` (every fact about each metric), `cell` (the shared inputs and the runner),
`adapters` (the registered metrics, in evaluation order), `pictures` (the PNG files).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.autoencoder import TrainedAutoencoder
from pipeline.classifier import Classifier
from pipeline.data import Prepared
from pipeline.evaluate import adapters  # importing it registers the metrics
from pipeline.evaluate.cell import Cell, Networks
from pipeline.evaluate.pictures import Pictures
from pipeline.evaluate.registry import METRICS, MetricSpec, Row, RowSpec, chosen_metrics, weights_reason
from pipeline.methods import Method
from pipeline.sections import EvaluateConfig

__all__ = ["METRICS", "Cell", "CellEvaluator", "MetricSpec", "Networks", "Pictures", "Row", "RowSpec", "adapters",
           "chosen_metrics", "weights_reason"]


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
