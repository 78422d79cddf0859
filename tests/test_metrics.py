"""Each metric against a known value (pure maths; networks randomly initialised and passed explicitly)."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import metrics
from pipeline.ssim import ssim, ssim_terms


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


def test_cached_arrays_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"64__sigma": np.eye(2), "features": np.arange(6.0).reshape(3, 2)}

    first = metrics.cached_arrays(tmp_path, "k1", compute)
    second = metrics.cached_arrays(tmp_path, "k1", compute)
    assert len(calls) == 1 and set(second) == {"64__sigma", "features"}
    assert all(np.array_equal(first[k], second[k]) for k in first)
    metrics.cached_arrays(tmp_path, "k2", compute)  # another key: computed again
    assert len(calls) == 2


# ---------------------------------------------------------------- KID


def test_kid_is_clean_fids_kernel_distance_on_the_same_features():
    from cleanfid import fid as cleanfid

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 16)), rng.normal(0.3, 1.0, size=(200, 16))
    np.random.seed(5)
    reference = cleanfid.kernel_distance(real, fake, num_subsets=100, max_subset_size=1000)
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    assert metrics.kernel_distance(real, fake, seed=5) == reference
    assert np.random.random() == before, "the global NumPy RNG is left as it was"


def test_kid_of_two_points_each_by_hand():
    # subsets are the whole sets: unbiased MMD² with k(a, b) = (a·b / 1 + 1)³ on real {0, 1}, fake {1, 2}:
    # k(0,1) = 1 -> 1; k(1,2) = 27 -> 27; cross 1 + 1 + 8 + 27 = 37 -> 2 · 37 / 4 = 18.5; 1 + 27 − 18.5 = 9.5
    assert metrics.kernel_distance(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])) == pytest.approx(9.5)


# ---------------------------------------------------------------- TF32 off in feature extraction


def test_feature_extraction_and_lpips_run_with_tf32_off_and_restore_the_flags():
    seen = []

    def extractor(x):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return x.flatten(1)

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # PyTorch's cuDNN default
        images = np.zeros((5, 1, 4, 4), dtype=np.uint8)
        metrics.extract_features(metrics.array_source(images), extractor, 5, 2)
        metrics.lpips_distance(lambda a, b: extractor(a).sum(1), torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4), 2)
        assert seen and all(flags == (False, False) for flags in seen)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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


def fixed_image(h: int, w: int, c: int, phase: int) -> np.ndarray:
    """A deterministic H x W x C uint8 test image (integer arithmetic only)."""
    i, j, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return ((8 * i + 4 * j + 30 * k + 16 * phase) % 256 + (i * j * 5 + 17 * phase) % 64).clip(0, 255).astype(np.uint8)


def soften(x: np.ndarray) -> np.ndarray:
    """Mean of each pixel and its up, left and up-left neighbours (wrapping), rounded down."""
    total = x.astype(int) + np.roll(x, 1, axis=0) + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=(0, 1))
    return (total // 4).astype(np.uint8)


# MultiScaleSSIM(a[None], b[None], max_val=255) of tensorflow/models research/compression/image_encoder/msssim.py
# (Odena et al.'s implementation, α-GAN's diversity), its NumPy/SciPy code run as published on these pairs
# (scipy 1.17, numpy 2.4; scipy.ndimage.convolve for the deprecated scipy.ndimage.filters.convolve).
MSSSIM_REFERENCE = {
    "gray32": ((32, 32, 1, 0), (32, 32, 1, 1), False, 0.667732608158811),
    "gray32_soft": ((32, 32, 1, 2), (32, 32, 1, 2), True, 0.9452994473337861),
    "rgb32_soft": ((32, 32, 3, 0), (32, 32, 3, 1), True, 0.8490653161084012),
    "gray28_soft": ((28, 28, 1, 0), (28, 28, 1, 1), True, 0.8589618846976489),  # odd 7 px scale
    "gray64": ((64, 64, 1, 0), (64, 64, 1, 2), False, 0.4043533054946929),
}


@pytest.mark.parametrize("name", sorted(MSSSIM_REFERENCE))
def test_ms_ssim_equals_the_reference_msssim_py(name):
    shape_a, shape_b, softened, expected = MSSSIM_REFERENCE[name]
    a, b = fixed_image(*shape_a), fixed_image(*shape_b)
    b = soften(b) if softened else b
    to01 = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    assert float(metrics.ms_ssim(to01(a), to01(b))[0]) == pytest.approx(expected, rel=1e-10)


def test_the_loss_ssim_and_the_metric_ssim_agree():
    # one SSIM, two arithmetics: 004's float32 loss and msssim.py's float64 single scale
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    y = (x + 0.2 * torch.rand_like(x)).clamp(0, 1)
    metric = ssim_terms(x, y)[0]
    assert torch.allclose(ssim(x.float(), y.float()).double(), metric, rtol=1e-5)


def test_ms_ssim_is_zero_where_the_reference_raises_a_negative_mean_to_a_power():
    a = torch.from_numpy(fixed_image(32, 32, 1, 0)).permute(2, 0, 1)[None].double() / 255
    assert float(metrics.ms_ssim(a, 1 - a)[0]) == 0.0  # msssim.py: NaN (anti-correlated: cs < 0)


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


def test_normalised_laplacian_by_hand():
    assert metrics.norm_laplace(torch.full((2, 1, 8, 8), 0.5)) == pytest.approx(0.0, abs=1e-12)
    assert metrics.norm_laplace(torch.zeros(2, 1, 8, 8)) == 0.0  # no light, no edges
    # valid 6x6 of an 8x8 checkerboard: |L| = 4 at all 36 pixels; 3x3 mean 5/9 at 18, 4/9 at 18 -> 144 / 18 = 8
    assert metrics.norm_laplace(checkerboard()) == pytest.approx(8.0)
    # a vertical step (3 black, 3 white columns): valid columns L = 0, 1, -1, 0 and μ = 0, 1/3, 2/3, 1, each
    # in 4 rows -> Σ|L| = 8, Σμ = 8 -> 1 (the per-pixel mean of |L|/μ, 0 where μ = 0, would be 1.125)
    step = torch.zeros(1, 1, 6, 6)
    step[..., 3:] = 1.0
    assert metrics.norm_laplace(step) == pytest.approx(1.0)
    assert metrics.norm_laplace(0.5 * step) == pytest.approx(1.0)  # luminance-normalised: scale-free


def test_invisible_background_noise_leaves_the_normalised_laplacian_nearly_unchanged():
    # bright, textured objects on black; then 0/+1 grey levels of noise where the background is black
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = torch.rand(40, 2, generator=g) * 12 + 10
    inside = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) < 64
    texture = torch.randint(120, 256, (40, 32, 32), generator=g)
    clean = (inside * texture).to(torch.uint8)[:, None]
    noise = torch.randint(0, 2, clean.shape, generator=g, dtype=torch.uint8) * (clean == 0)
    before, after = (metrics.norm_laplace(x.float() / 255) for x in (clean, clean + noise))
    assert after == pytest.approx(before, rel=0.03)


# ---------------------------------------------------------------- Inception score


def test_inception_score_bounds():
    k = 5
    confident_uniform = np.eye(k)[np.arange(1000) % k]  # every class equally often, each sure
    assert metrics.inception_score(confident_uniform, splits=10)[0] == pytest.approx(k, rel=1e-6)
    collapsed = np.tile(np.eye(k)[0], (1000, 1))
    assert metrics.inception_score(collapsed, splits=10)[0] == pytest.approx(1.0, rel=1e-6)


class RandomInceptionBase(nn.Module):
    """A randomly initialised stand-in with the TorchScript file's interface: its layer names, its
    1008-way `output`, and stylegan2-ada's forward flags (resize to 299 inside). Not Inception!"""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 64, 3, stride=4), pool0=nn.MaxPool2d(3, 2), conv_4=nn.Conv2d(64, 192, 1),
            pool1=nn.MaxPool2d(3, 2), mixed_7=nn.Conv2d(192, 768, 3, stride=4), mixed_10=nn.Conv2d(768, 2048, 1),
            pool2=nn.AdaptiveAvgPool2d(1)))
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img.float(), size=(299, 299), mode="bilinear", align_corners=False)
        features = self.layers((x - 128.0) / 128.0).reshape(-1, 2048)
        if return_features:
            return features
        logits = features @ self.output.weight.T if no_output_bias else self.output(features)
        return torch.softmax(logits, dim=1)


class RecordingInceptionBase(RandomInceptionBase):
    """The stand-in, noting (input shape, no_output_bias) of each forward call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, img, return_features=False, use_fp16=False, no_output_bias=False):
        self.calls.append((tuple(img.shape), no_output_bias))
        return super().forward(img, return_features, use_fp16, no_output_bias)


def random_inception() -> metrics.InceptionFeatures:
    torch.manual_seed(0)
    return metrics.InceptionFeatures(RecordingInceptionBase()).eval()


def test_inception_taps_give_the_four_feature_sizes_and_probabilities():
    net = random_inception()
    with torch.no_grad():
        feats = net(torch.rand(3, 3, 299, 299) * 255).numpy()
        probs = metrics.imagenet_probs(net, torch.rand(3, 3, 32, 32) * 255)
    taps = metrics.split_taps(feats)
    assert {k: v.shape for k, v in taps.items()} == {64: (3, 64), 192: (3, 192), 768: (3, 768), 2048: (3, 2048)}
    assert probs.shape == (3, 1008) and torch.allclose(probs.sum(1), torch.ones(3))
    assert net.base.calls[-1] == ((3, 3, 32, 32), True), "native size in, no output bias (stylegan2-ada's IS)"


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


# ---------------------------------------------------------------- precision, recall, density, coverage


def test_prdc_by_hand_on_one_dimensional_points():
    real, fake = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]]), np.array([[0.5], [2.6], [20.0]])
    # k = 1: real radii 1, 1, 1, 1, 7; fake radii 2.1, 2.1, 17.4
    # precision: 0.5 (to 0) and 2.6 (to 3) inside, 20 outside -> 2/3; recall: every real point within 2.1 of
    # 0.5 or 2.6, or within 17.4 of 20 -> 1; density: 0.5 in the balls of 0 and 1, 2.6 in those of 2 and 3 ->
    # 4 / (1 · 3); coverage: balls of 0, 1, 2, 3 hold a sample, 10's (radius 7, nearest sample 7.4) none -> 4/5
    values = metrics.prdc(real, fake, pr_k=1, dc_k=1)
    assert values == pytest.approx({"precision": 2 / 3, "recall": 1.0, "density": 4 / 3, "coverage": 0.8})


def test_prdc_ties_are_inside_for_precision_recall_and_outside_for_density_coverage():
    real, fake = np.array([[0.0], [1.0], [5.0], [6.0]]), np.array([[2.0], [7.5], [20.0]])
    # k = 1: every real radius is 1; the sample at 2 lies exactly on real 1's ball (and outside all others)
    values = metrics.prdc(real, fake, pr_k=1, dc_k=1)
    assert values["precision"] == pytest.approx(1 / 3)  # <= (Kynkäänniemi et al.)
    assert values["density"] == 0.0 and values["coverage"] == 0.0  # < (prdc)
    assert values["recall"] == 1.0  # fake radii 5.5, 5.5, 12.5 reach every real point


def reference_prdc(real: np.ndarray, fake: np.ndarray, pr_k: int, dc_k: int) -> dict:
    """Kynkäänniemi et al.'s and Naeem et al.'s definitions, point by point."""
    d = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
    nnd = lambda x, k: np.sort(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)), axis=1)[:, k]  # noqa: E731
    r_pr, r_dc, f_pr = nnd(real, pr_k), nnd(real, dc_k), nnd(fake, pr_k)
    return {"precision": np.mean([any(d[i, j] <= r_pr[i] for i in range(len(real))) for j in range(len(fake))]),
            "recall": np.mean([any(d[i, j] <= f_pr[j] for j in range(len(fake))) for i in range(len(real))]),
            "density": np.mean([sum(d[i, j] < r_dc[i] for i in range(len(real))) for j in range(len(fake))]) / dc_k,
            "coverage": np.mean([min(d[i]) < r_dc[i] for i in range(len(real))])}


def test_prdc_equals_the_reference_definitions_on_gaussian_features(monkeypatch):
    from pipeline.metrics import manifold

    monkeypatch.setattr(manifold, "BLOCK", 16)  # several row blocks
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.5, 1.3, size=(45, 5))
    assert metrics.prdc(real, fake) == pytest.approx(reference_prdc(real, fake, 3, 5))
    same = metrics.prdc(real, real)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_prdc_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match="more than 5 real and fake"):
        metrics.prdc(np.zeros((5, 2)), np.ones((10, 2)))


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
