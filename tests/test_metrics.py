"""Each metric against a known value (pure maths; networks randomly initialised and passed explicitly)."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import metrics


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    stats = metrics.feature_stats(x)
    assert metrics.frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_closed_form_for_gaussians():
    # N(m1, diag a) vs N(m2, diag b): ‖m1 − m2‖² + Σ (√a − √b)²
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance((m1, np.diag(a)), (m2, np.diag(b))) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_shifted_gaussian_samples():
    rng = np.random.default_rng(1)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    x, y = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4)) + shift
    fd = metrics.frechet_distance(metrics.feature_stats(x), metrics.feature_stats(y))
    assert fd == pytest.approx((shift ** 2).sum(), abs=0.05)


def test_cached_stats_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"64": (np.zeros(2), np.eye(2))}

    first = metrics.cached_stats(tmp_path, "k1", compute)
    second = metrics.cached_stats(tmp_path, "k1", compute)
    assert len(calls) == 1 and np.array_equal(first["64"][1], second["64"][1])
    metrics.cached_stats(tmp_path, "k2", compute)  # another key: computed again
    assert len(calls) == 2


# ---------------------------------------------------------------- reconstruction


def test_mse_and_cosine_known_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert metrics.mse(x, x + 0.5) == pytest.approx(0.25)
    assert metrics.cosine(x, 3 * x) == pytest.approx(1.0)
    assert metrics.cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(0.0)
    assert metrics.cosine(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])) == pytest.approx(2 ** -0.5)


def test_recon_variance_is_the_posterior_variance_through_an_identity_decoder():
    mu = torch.zeros(2000, 3)
    log_sigma = torch.full((2000, 3), np.log(0.5))
    assert metrics.recon_variance(lambda z: z, mu, log_sigma, draws=8) == pytest.approx(0.25, rel=0.05)
    deterministic = torch.full((10, 3), -30.0)
    assert metrics.recon_variance(lambda z: z, mu[:10], deterministic, draws=4) == pytest.approx(0.0, abs=1e-20)


def test_recon_accuracy_absolute_and_relative():
    predict = lambda u8: u8.reshape(len(u8), -1)[:, 0] % 3  # noqa: E731  (a "classifier": first pixel mod 3)
    originals = np.array([[0], [1], [2], [3]], dtype=np.uint8)
    recon = np.array([[0], [1], [5], [4]], dtype=np.uint8)  # predictions 0 1 2 1; on originals 0 1 2 0
    labels = np.array([0, 1, 1, 0])
    absolute, relative = metrics.recon_accuracy(predict, originals, recon, labels)
    assert absolute == pytest.approx(0.5) and relative == pytest.approx(0.75)


# ---------------------------------------------------------------- MS-SSIM / diversity


def test_ms_ssim_of_identical_images_is_one_and_diversity_zero():
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(metrics.ms_ssim(x, x), torch.ones(6, dtype=torch.float64))
    same = x[:1].repeat(10, 1, 1, 1)
    assert metrics.diversity(same, n_pairs=20) == pytest.approx(0.0, abs=1e-9)


def test_ms_ssim_falls_with_noise_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g)
    y = (x + 0.3 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    s = metrics.ms_ssim(x, y)
    assert (s < 0.95).all() and (s > 0).all()
    assert torch.allclose(s, metrics.ms_ssim(y, x))
    noise = torch.rand(200, 1, 32, 32, generator=g)
    assert metrics.diversity(noise, n_pairs=100) > 0.9  # independent noise: nearly nothing in common


# ---------------------------------------------------------------- sharpness


def checkerboard(n: int = 8) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((i + j) % 2).float()[None, None]


def test_laplacian_variance_of_constant_and_checkerboard():
    assert metrics.laplace_variance(torch.full((3, 1, 8, 8), 0.7)) == pytest.approx(0.0, abs=1e-12)
    # valid 6x6 region of an 8x8 checkerboard: L = −4 on ones, +4 on zeros, 18 each -> variance 16
    assert metrics.laplace_variance(checkerboard()) == pytest.approx(16.0)
    rgb = checkerboard().repeat(1, 3, 1, 1)  # grayscale of equal channels is the same image
    assert metrics.laplace_variance(rgb) == pytest.approx(16.0)


def test_normalised_laplacian_of_constant_and_checkerboard():
    assert metrics.norm_laplace(torch.full((2, 1, 8, 8), 0.5)) == pytest.approx(0.0, abs=1e-12)
    # |L| = 4 everywhere; 3x3 mean luminance 5/9 around a one, 4/9 around a zero -> mean(7.2, 9) = 8.1
    assert metrics.norm_laplace(checkerboard()) == pytest.approx(8.1)


# ---------------------------------------------------------------- Inception score


def test_inception_score_bounds():
    k = 5
    confident_uniform = np.eye(k)[np.arange(1000) % k]  # every class equally often, each sure
    assert metrics.inception_score(confident_uniform, splits=10)[0] == pytest.approx(k, rel=1e-6)
    collapsed = np.tile(np.eye(k)[0], (1000, 1))
    assert metrics.inception_score(collapsed, splits=10)[0] == pytest.approx(1.0, rel=1e-6)


def random_inception() -> metrics.InceptionFeatures:
    """A randomly initialised stand-in with the TorchScript module's layer names (not Inception!)."""
    torch.manual_seed(0)
    layers = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 64, 3, stride=4), pool0=nn.MaxPool2d(3, 2), conv_4=nn.Conv2d(64, 192, 1),
        pool1=nn.MaxPool2d(3, 2), mixed_7=nn.Conv2d(192, 768, 3, stride=4), mixed_10=nn.Conv2d(768, 2048, 1),
        pool2=nn.AdaptiveAvgPool2d(1)))
    base = nn.Module()
    base.layers, base.output = layers, nn.Linear(2048, 1008)
    return metrics.InceptionFeatures(base).eval()


def test_inception_taps_give_the_four_feature_sizes_and_probabilities():
    net = random_inception()
    with torch.no_grad():
        feats = net(torch.rand(3, 3, 299, 299) * 255).numpy()
    taps = metrics.split_taps(feats)
    assert {k: v.shape for k, v in taps.items()} == {64: (3, 64), 192: (3, 192), 768: (3, 768), 2048: (3, 2048)}
    probs = metrics.imagenet_probs(net, taps[2048])
    assert probs.shape == (3, 1008) and np.allclose(probs.sum(1), 1.0)


def test_clean_resize_gives_clean_fids_own_features_bit_for_bit():
    from cleanfid import fid as cleanfid

    images = np.random.default_rng(0).integers(0, 256, (7, 3, 32, 32)).astype(np.float32)
    extractor = nn.Sequential(nn.AvgPool2d(13), nn.Flatten())  # 299 px -> 3 x 23 x 23 features
    ours = metrics.extract_features(metrics.array_source(images), extractor, 7, 3, resize="clean")
    stream = metrics.array_source(images[:6])  # clean-fid draws whole batches: 6 = 2 x 3
    reference = cleanfid.get_model_features(lambda z: stream(len(z)), extractor, mode="clean", z_dim=1, num_gen=6,
                                            batch_size=3, device=torch.device("cpu"), verbose=False)
    assert ours.shape == (7, 3 * 23 * 23) and np.array_equal(ours[:6], reference)
    # a last, partial batch holds exactly the remaining images, in order
    alone = metrics.extract_features(metrics.array_source(images[6:]), extractor, 1, 3, resize="clean")
    assert np.array_equal(ours[6:], alone)


def test_inception_features_reject_a_module_without_the_layers():
    base = nn.Module()
    base.layers = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match="lacks layers"):
        metrics.InceptionFeatures(base)


# ---------------------------------------------------------------- LPIPS


def test_lpips_is_zero_for_identical_images_and_positive_otherwise():
    import torchvision

    torch.manual_seed(0)
    model = metrics.lpips_with_backbone(torchvision.models.alexnet())  # random backbone, injected explicitly
    x = torch.rand(4, 1, 32, 32)
    assert metrics.lpips_distance(model, x, x, batch_size=2) == pytest.approx(0.0, abs=1e-7)
    assert metrics.lpips_distance(model, x, 1 - x, batch_size=2) > 0


# ---------------------------------------------------------------- independent critic


@pytest.mark.slow
def test_independent_critic_estimates_the_wasserstein_distance_of_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(4000, 1, generator=g)
    fake = real.roll(1, 0) + 3.0  # W1(N(0,1), N(3,1)) = 3
    settings = metrics.CriticSettings(steps=400, batch_size=128, lr=1e-3, width=16)
    far = metrics.independent_critic(real[:2000], fake[:2000], real[2000:], fake[2000:], settings)
    same = metrics.independent_critic(real[:2000], real.flip(0)[:2000], real[2000:], real.flip(0)[2000:], settings)
    assert -3.4 < far < -2.4  # negative Wasserstein distance
    assert abs(same) < 0.3
