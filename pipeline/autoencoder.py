"""The dataset autoencoder: trained on the training split without labels, its bottleneck is the
feature space of `fd_autoencoder`, a Fréchet distance (Heusel et al. 2017, through clean-fid's
`frechet_distance`) that needs neither labels nor downloaded weights, so every image dataset
has a generation-quality number offline, labelled or not.

Its limits: the features are those of one small network trained on one dataset with its own
seed (`autoencoder.seed`), so values compare models of that dataset under the same autoencoder
only, never with FID or across datasets, settings or seeds of the autoencoder; a reconstruction
objective keeps what the pixels' squared error weighs (layout, shading) more than fine texture.

Inputs follow clean-fid's feature-extractor convention: float images in [0, 255], N x C x H x W.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import metrics
from pipeline.classifier import fit
from pipeline.data import Prepared
from pipeline.datainfo import DataInfo
from pipeline.io import atomic_savez, atomic_torch_save, safe_torch_load
from pipeline.sections import AutoencoderConfig
from pipeline.weights import digest

AUTOENCODER_FORMAT = "autoencoder/1"
MODEL_FILE, STATS_FILE = "autoencoder.pt", "autoencoder_stats.npz"  # in the train_classifier stage's folder


class Autoencoder(nn.Module):
    """Encoder as the dataset classifier's body (3x3 convs w, 2w, 4w, each max-pooled, then a dense
    bottleneck of feature_dim); decoder mirrors it with nearest-neighbour upsampling to the
    encoder's sizes and 3x3 convs, tanh output on the [-1, 1] scale."""

    def __init__(self, info: DataInfo, cfg: AutoencoderConfig):
        super().__init__()
        w, r = cfg.width, info.resolution
        self.encoder = nn.Sequential(
            nn.Conv2d(info.channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(4 * w * (r // 8) ** 2, cfg.feature_dim))
        self.decoder = nn.Sequential(
            nn.Linear(cfg.feature_dim, 4 * w * (r // 8) ** 2), nn.ReLU(), nn.Unflatten(1, (4 * w, r // 8, r // 8)),
            nn.Upsample(size=r // 4), nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Upsample(size=r // 2), nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(),
            nn.Upsample(size=r), nn.Conv2d(w, info.channels, 3, padding=1), nn.Tanh())

    def features(self, x255: torch.Tensor) -> torch.Tensor:
        """Bottleneck codes (linear, no activation) of images in [0, 255]."""
        return self.encoder(x255 / 127.5 - 1.0)

    def forward(self, x255: torch.Tensor) -> torch.Tensor:
        """Reconstructions on the [-1, 1] scale."""
        return self.decoder(self.features(x255))


@dataclass
class TrainedAutoencoder:
    """What fd_autoencoder needs: the network, the training split's (mean, covariance) in its
    features, and the label of its feature space (dataset, seed, file hash) for the `features` column."""

    model: Autoencoder
    stats: metrics.Stats
    label: str


def reconstruction_error(model: Autoencoder, images_u8: np.ndarray, batch: int = 500) -> float:
    """Mean squared error of the reconstructions on the [-1, 1] scale."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(images_u8), batch):
            x = torch.from_numpy(np.asarray(images_u8[i:i + batch])).float()
            total += float(F.mse_loss(model(x), x / 127.5 - 1.0, reduction="sum"))
    return total / max(1, int(np.prod(images_u8.shape)))


def train_autoencoder(data: Prepared, cfg: AutoencoderConfig) -> tuple[Autoencoder, float]:
    """Train on the training split's images alone (labels unused) with the squared error on the
    [-1, 1] scale; returns the model (eval mode) and its test reconstruction error."""
    if data.info.kind != "image":
        raise ValueError(f"{data.info.name}: the autoencoder of fd_autoencoder is for image data")
    torch.manual_seed(cfg.seed)
    model = Autoencoder(data.info, cfg)
    x = torch.from_numpy(np.ascontiguousarray(data.x("train")))

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        batch = x[idx].float()
        return F.mse_loss(model(batch), batch / 127.5 - 1.0)

    fit(model, loss_of, len(x), cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, f"autoencoder {data.info.name}")
    return model, reconstruction_error(model, data.x("test"))


def save(model: Autoencoder, info: DataInfo, cfg: AutoencoderConfig, stats: metrics.Stats, n_train: int,
         out_dir: Path) -> dict:
    """autoencoder.pt and the training split's feature statistics `stats` beside it; returns the
    record for classifier.json."""
    out_dir = Path(out_dir)
    atomic_torch_save({"format": AUTOENCODER_FORMAT, "info": asdict(info), "config": asdict(cfg),
                       "state_dict": model.state_dict()}, out_dir / MODEL_FILE)
    atomic_savez(out_dir / STATS_FILE, mu=stats[0], sigma=stats[1], n=n_train)
    return {"file": MODEL_FILE, "sha256": digest(out_dir / MODEL_FILE), "n_train": n_train, "config": asdict(cfg)}


def load(folder: str | Path) -> TrainedAutoencoder:
    """The autoencoder and its cached training-split statistics from the train_classifier stage's folder."""
    folder = Path(folder)
    path, fix = folder / MODEL_FILE, "re-run `dvc repro train_classifier`"
    if not path.exists() or not (folder / STATS_FILE).exists():
        raise FileNotFoundError(f"{path} or {folder / STATS_FILE} not found: {fix}")
    blob = safe_torch_load(path, fix)
    if not isinstance(blob, dict) or blob.get("format") != AUTOENCODER_FORMAT:
        raise ValueError(f"{path} is not a {AUTOENCODER_FORMAT} file; {fix}")
    info, cfg = DataInfo.from_dict(blob["info"]), AutoencoderConfig(**blob["config"])
    model = Autoencoder(info, cfg)
    model.load_state_dict(blob["state_dict"])
    stats = np.load(folder / STATS_FILE)
    label = f"autoencoder:{info.name}:seed={cfg.seed}:sha256={digest(path)}"
    return TrainedAutoencoder(model.eval(), (stats["mu"], stats["sigma"]), label)
