"""The dataset classifier: trained on the training split, its penultimate layer is the
feature space of `fd_classifier` (a Fréchet distance that needs no downloaded weights).

Inputs follow clean-fid's feature-extractor convention: float images in [0, 255], N x C x H x W.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.data import Prepared
from pipeline.datainfo import DataInfo
from pipeline.io import atomic_torch_save, safe_torch_load
from pipeline.sections import ClassifierConfig

CLASSIFIER_FORMAT = "classifier/1"


class Classifier(nn.Module):
    """Three conv layers (w, 2w, 4w; 3x3, each max-pooled) -> dense feature_dim -> classes."""

    def __init__(self, info: DataInfo, cfg: ClassifierConfig):
        super().__init__()
        w = cfg.width
        self.body = nn.Sequential(
            nn.Conv2d(info.channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(4 * w * (info.resolution // 8) ** 2, cfg.feature_dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(cfg.feature_dim, info.n_classes))

    def features(self, x255: torch.Tensor) -> torch.Tensor:
        """Penultimate features (before the ReLU, so no dead dimensions) of images in [0, 255]
        (clean-fid's extractor convention)."""
        return self.body(x255 / 127.5 - 1.0)

    def forward(self, x255: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x255))


@torch.no_grad()
def predict(model: Classifier, images_u8: np.ndarray, batch: int = 1000) -> np.ndarray:
    model.eval()
    out = [model(torch.from_numpy(np.asarray(images_u8[i:i + batch])).float()).argmax(1).numpy()
           for i in range(0, len(images_u8), batch)]
    return np.concatenate(out)


def why_no_classifier(name: str, kind: str, n_classes: int, labels: dict | None = None) -> str:
    """Why dataset `name` has no classifier ('' when it can have one): vector data, no labels, a
    single class. `labels` is meta.json's labels record, which only image_folder writes."""
    if kind != "image":
        return f"{name} is {kind} data: no classifier (evaluate measures fd_data in data space instead)"
    if n_classes == 0:
        origin = " (its images lie directly in the folder, not in class subfolders)" if labels else ""
        return (f"{name} has no labels{origin}: the classifier-based metrics need a labelled dataset "
                "(image_folder: class subfolders <class>/<image>, or a split_file with a label column)")
    if n_classes == 1:
        return f"{name} has a single class: a classifier has nothing to learn (give it two classes or more)"
    return ""


def dataset_without_classifier(data: Prepared) -> str:
    """why_no_classifier of a prepared dataset."""
    info = data.info
    return why_no_classifier(info.name, info.kind, info.n_classes, data.meta.get("labels"))


def fit(model: nn.Module, loss_of: Callable[[torch.Tensor], torch.Tensor], n: int, epochs: int, batch_size: int,
        lr: float, seed: int, desc: str) -> nn.Module:
    """Adam over `epochs` passes of n examples in shuffled batches (the last partial batch of a
    pass is dropped); loss_of(indices) -> the batch loss. Returns the model in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=epochs * (n // batch_size), desc=desc, unit="step", mininterval=2.0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            loss = loss_of(order[i:i + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return model.eval()


def train_classifier(data: Prepared, cfg: ClassifierConfig, seed: int = 0) -> tuple[Classifier, float]:
    """Train on the training split; returns the model (eval mode) and its test accuracy."""
    why = dataset_without_classifier(data)
    if why or data.y("train") is None:
        raise ValueError(why or f"{data.info.name}: the classifier needs a labelled image dataset")
    torch.manual_seed(seed)
    model = Classifier(data.info, cfg)
    x = torch.from_numpy(np.ascontiguousarray(data.x("train")))
    y = torch.from_numpy(np.ascontiguousarray(data.y("train")))
    fit(model, lambda idx: F.cross_entropy(model(x[idx].float()), y[idx]), len(x), cfg.epochs, cfg.batch_size,
        cfg.lr, seed, f"classifier {data.info.name}")
    accuracy = float((predict(model, data.x("test")) == data.y("test")).mean())
    return model, accuracy


def save_classifier(model: Classifier, info: DataInfo, cfg: ClassifierConfig, accuracy: float, path: Path) -> None:
    atomic_torch_save({"format": CLASSIFIER_FORMAT, "info": asdict(info), "config": asdict(cfg),
                       "state_dict": model.state_dict(), "test_accuracy": accuracy}, path)


def load_classifier(path: str | Path) -> tuple[Classifier, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"classifier {path} not found: run `dvc repro train_classifier` first")
    blob = safe_torch_load(path, "re-run `dvc repro train_classifier`")
    if not isinstance(blob, dict) or blob.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path} is not a {CLASSIFIER_FORMAT} file; re-run `dvc repro train_classifier`")
    model = Classifier(DataInfo.from_dict(blob["info"]), ClassifierConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
