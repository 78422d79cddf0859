"""fd_autoencoder: the Fréchet distance in the bottleneck of an autoencoder the pipeline trains on
the dataset without labels. It is clean-fid's frechet_distance of the extracted features, a model
that copies the training images scores far better than noise, and the autoencoder is the same
for the same seed."""

import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid
from torch import nn

from pipeline import autoencoder, evaluate
from pipeline import data as datamod
from pipeline.datainfo import to_model_scale
from pipeline.methods import Method
from pipeline.sections import AutoencoderConfig, DatasetConfig
from tests.conftest import TINY_NET
from tests.shapes import write_shapes
from tests.test_metrics_evaluate import cfg

TINY_AE = AutoencoderConfig(epochs=3, batch_size=16, lr=3e-3, width=8, feature_dim=16)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """An unlabelled folder of 400 disc/square images, prepared (32 px, 3 channels)."""
    root = write_shapes(tmp_path_factory.mktemp("raw") / "shapes", 200, labelled=False)
    entry = DatasetConfig(source=str(root), loader="image_folder", resolution=32, crop="none")
    return datamod.load_prepared(datamod.prepare("shapes", entry, tmp_path_factory.mktemp("prep") / "shapes"))


@pytest.fixture(scope="module")
def trained(shapes):
    model, test_mse = autoencoder.train_autoencoder(shapes, TINY_AE)
    feats = features(model, shapes.x("train"))
    return autoencoder.TrainedAutoencoder(model, (feats.mean(0), np.cov(feats, rowvar=False)), "test-autoencoder")


def features(model: autoencoder.Autoencoder, images_u8: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.features(torch.from_numpy(np.asarray(images_u8)).float()).double().numpy()


class Replay(Method):
    """A 'model' whose samples are given uint8 images in turn (the training split: a model that
    copies it; uniform noise: one that learnt nothing)."""

    name = "replay"
    config_cls = dict

    def __init__(self, images_u8: np.ndarray, info):
        super().__init__({}, info, TINY_NET)
        self.register_buffer("images", to_model_scale(torch.from_numpy(np.asarray(images_u8)), info))
        self.anchor = nn.Parameter(torch.zeros(1))  # the device of a model is that of its parameters
        self.position = 0

    def phases(self):
        return []

    def decode(self, z):
        idx = (self.position + torch.arange(len(z))) % len(self.images)
        self.position = int(idx[-1]) + 1
        return self.images[idx]


def fd_row(images_u8, data, trained, tmp_path, n_samples):
    cell = evaluate.Cell(Replay(images_u8, data.info), data, cfg(tmp_path, metrics=["fd_autoencoder"],
                                                                   n_samples=n_samples), autoencoder=trained)
    (row,) = cell.rows()
    assert row.metric == "fd_autoencoder" and row.status == "ok", row
    return row, cell


def test_fd_autoencoder_is_clean_fids_frechet_distance_of_the_bottleneck_features(shapes, trained, tmp_path):
    rng = np.random.default_rng(1)
    fakes = rng.integers(0, 256, (150, 3, 32, 32), dtype=np.uint8)
    row, cell = fd_row(fakes, shapes, trained, tmp_path, 150)
    assert np.array_equal(cell.samples_u8, fakes)
    fake = features(trained.model, fakes)
    expected = cleanfid.frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), *trained.stats)
    assert row.value == pytest.approx(expected, rel=1e-6)
    assert (row.split, row.scale, row.n_samples, row.features) == ("train", "[0,255]", 150, "test-autoencoder")


def test_copying_the_training_images_scores_far_better_than_noise(shapes, trained, tmp_path):
    train = np.asarray(shapes.x("train"))
    copies, _ = fd_row(train[::2], shapes, trained, tmp_path, 180)  # 180 of the 360 training images
    noise, _ = fd_row(np.random.default_rng(2).integers(0, 256, train.shape, dtype=np.uint8), shapes, trained,
                      tmp_path, 180)
    assert noise.value > 20 * copies.value, (copies.value, noise.value)


def test_the_autoencoder_is_the_same_for_a_seed_and_learns_the_data(shapes):
    (a, mse_a), (b, mse_b) = (autoencoder.train_autoencoder(shapes, TINY_AE) for _ in range(2))
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), name
    assert mse_a == mse_b
    other, _ = autoencoder.train_autoencoder(shapes, AutoencoderConfig(**{**vars(TINY_AE), "seed": 1}))
    assert not torch.equal(other.encoder[0].weight, a.encoder[0].weight)
    train, test = (np.asarray(shapes.x(split), dtype=np.float64) / 127.5 - 1 for split in ("train", "test"))
    mean_image = float(((test - train.mean(0)) ** 2).mean())  # what a bottleneck holding nothing gives
    assert mse_a < 0.85 * mean_image, (mse_a, mean_image)  # measured 0.13-0.17 of 0.225 over seeds 0-3


def test_a_vector_dataset_has_no_autoencoder(toy_prepared):
    with pytest.raises(ValueError, match="toy2d: the autoencoder of fd_autoencoder is for image data"):
        autoencoder.train_autoencoder(toy_prepared, TINY_AE)
