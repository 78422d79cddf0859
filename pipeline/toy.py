"""The toy experiment of AVAE §5.1 (Fig. 6): where do reconstructions land on 2-D data?

Data: toy2d, x = (3·z1 + 0.1·ε, cos(3·z1) + tanh(3·z2) + 0.1·ε); a one-dimensional latent
can carry z1 (through x1) but not z2, so for each x1 the data has two branches,
cos(3·z1) ± 1. A VAE decoder outputs their average (a curve between the branches, where
there is little data); AVAE's generator G(z) has to pick a branch, and G(z, ξ) lets ξ pick
it, so its reconstructions cover both (AVAE §5.1).

The three models are trained by the pipeline's own `run.train_cell` (the generic loop):
`vae` (β-VAE, exported frozen), `avae` (G(z)) and `avae_xi` (G(z, ξ)) on that export.
The claim is quantified twice: as the data density (Gaussian KDE of the training points) and
the nearest-data-point distance at each model's reconstructions of the test split and along its
latent sweep; and by branch: at each latent position, where `branch_draws` outputs land (upper
branch, lower branch, or the sparse band between them), so that "G(z, ξ) covers both branches
for a fixed z while G(z) must pick one" is a number. A JSON holds the figures and a PNG draws
them as in Fig. 6.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from pipeline import run
from pipeline.config import Params
from pipeline.data import load_prepared
from pipeline.io import atomic_write, atomic_write_json
from pipeline.methods import Method
from pipeline.methods.avae import AvaeConfig
from pipeline.methods.vae import VaeConfig
from pipeline.schema import to_dict
from pipeline.sections import GridConfig, ModelSpec, Stage2Entry, ToyConfig, TrainConfig

DATASET = "toy2d"
MODELS = ("vae", "avae", "avae_xi")  # the VAE, G(z), G(z, ξ)
BRANCH_GAP = 0.5  # |x2 − cos(x1)| below this is the band between the branches cos(3·z1) ± 1 (15 % of the data)


# ------------------------------------------------------------------ configuration


def toy_params(params: Params, toy: ToyConfig) -> Params:
    """`params` with the toy section's networks, models and grid (what train_cell reads)."""
    net = dataclasses.replace(params.networks, latent_dim=toy.latent_dim, mlp_hidden=toy.mlp_hidden)

    def train(iterations: int) -> TrainConfig:
        return TrainConfig(iterations=iterations, batch_size=toy.batch_size, log_every=max(1, iterations // 50),
                           checkpoint_every=iterations, device=toy.device, threads=toy.threads,
                           lr_decay_to=toy.lr_decay_to)

    vae = VaeConfig(beta=toy.vae_beta, reconstruction="mse", sigma="learned", lr=toy.vae_lr)  # AVAE eq. 9, Fig. 5
    specs = {("vae", DATASET): ModelSpec("vae", "vae", vae, train(toy.vae_iterations), DATASET)}
    for name, xi in (("avae", False), ("avae_xi", True)):
        config = AvaeConfig(xi=xi, latent_loss=toy.latent_loss, lr=toy.avae_lr)
        specs[(name, DATASET)] = ModelSpec(name, "avae", config, train(toy.avae_iterations), DATASET)
    grid = GridConfig(datasets=[DATASET], seeds=[toy.seed], pretrain=["vae"], baselines=[],
                      stage2=[Stage2Entry("avae", "vae"), Stage2Entry("avae_xi", "vae")], evaluate=list(MODELS))
    models = {name: {"method": spec.method} for (name, _), spec in specs.items()}
    return dataclasses.replace(params, networks=net, models=models, specs=specs, grid=grid, toy=toy)


def train_toy_models(params: Params, data_dir: Path, models_dir: Path) -> dict[str, Method]:
    """Train the VAE, then G(z) and G(z, ξ) on its frozen export, with `run.train_cell`.

    Each model's folder under models_dir holds model.pt, train_log.csv and run.json; the
    resumable checkpoints live in a temporary folder (the whole stage takes minutes).
    """
    models_dir = Path(models_dir)
    trained, threads = {}, torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory(prefix="toy_checkpoints_") as checkpoints:
            for name in MODELS:
                vae_dir = models_dir / "vae" if name != "vae" else None
                trained[name] = run.train_cell(params, DATASET, name, params.toy.seed, Path(data_dir),
                                               models_dir / name, Path(checkpoints) / name, vae_dir).eval()
    finally:
        torch.set_num_threads(threads)  # train_cell sets toy.threads for the whole process
    return trained


# ------------------------------------------------------------------ density maths


def kde_log_density(points: np.ndarray, data: np.ndarray, bandwidth: float, cutoff: float = 6.0,
                    chunk: int = 2048) -> np.ndarray:
    """log p̂(y) for each row y of `points`, p̂(y) = (1/n) Σ_i N(y; x_i, h² I) over the n rows x_i of
    `data` (isotropic Gaussian kernel density estimate, bandwidth h in data units).

    A point whose nearest data point is within (cutoff − 3)·h sums the kernels of the data
    within cutoff·h (a k-d tree): each one left out weighs less than e^(−(6·cutoff − 9)/2)
    (e^−13.5) times the nearest one's. Any other point sums over all the data.
    """
    points, data = np.asarray(points, dtype=np.float64), np.asarray(data, dtype=np.float64)
    (n, dim), h2 = data.shape, bandwidth ** 2
    tree = cKDTree(data)
    log_sum = np.empty(len(points))
    near = tree.query(points)[0] <= (cutoff - 3) * bandwidth
    idx = np.flatnonzero(near)
    for block in np.array_split(idx, max(1, math.ceil(len(idx) / chunk))):
        pairs = cKDTree(points[block]).sparse_distance_matrix(tree, cutoff * bandwidth, output_type="ndarray")
        log_sum[block] = np.log(np.bincount(pairs["i"], weights=np.exp(-pairs["v"] ** 2 / (2 * h2)),
                                            minlength=len(block)))
    idx = np.flatnonzero(~near)
    for block in np.array_split(idx, max(1, math.ceil(len(idx) / 256))):
        log_sum[block] = logsumexp(-cdist(points[block], data, "sqeuclidean") / (2 * h2), axis=1)
    return log_sum - math.log(n) - 0.5 * dim * math.log(2 * math.pi * h2)


def nearest_distance(points: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of `points` to its nearest row of `data`."""
    return cKDTree(np.asarray(data, dtype=np.float64)).query(np.asarray(points, dtype=np.float64))[0]


# ------------------------------------------------------------------ manifolds


@torch.no_grad()
def latent_sweep(vae: Method, x_train: np.ndarray, n: int) -> torch.Tensor:
    """n latent positions spanning the codes the VAE gives the data: the 0.5 %..99.5 %
    quantiles (per dimension) of the posterior means μ(x) over the training points, in order."""
    mu = vae.encode(torch.tensor(np.asarray(x_train), dtype=torch.float32))[0]
    return torch.quantile(mu, torch.linspace(0.005, 0.995, n), dim=0)


@torch.no_grad()
def manifolds(models: dict[str, Method], x_train: np.ndarray, x_test: np.ndarray,
              toy: ToyConfig) -> dict[str, dict[str, np.ndarray]]:
    """Per model: 'sweep', its reconstruction manifold (D(z) for the VAE, G(z) or, for each z,
    `xi_draws` points G(z, ξ)) over `latent_sweep`, 'sweep_z' their latent position (first
    coordinate), 'recon', its reconstructions of the test points (from μ(x)), and 'branches',
    `model_branches` at `branch_positions` latent positions of the same sweep."""
    torch.manual_seed(toy.seed)
    models = {name: model.to("cpu") for name, model in models.items()}
    z = latent_sweep(models["vae"], x_train, toy.sweep_points)
    x = torch.tensor(np.asarray(x_test), dtype=torch.float32)
    z_branch = latent_sweep(models["vae"], x_train, toy.branch_positions)
    out = {}
    for name, model in models.items():
        sweep_z = z.repeat(toy.xi_draws, 1) if getattr(model.config, "xi", False) else z  # G(z, ξ): a cloud
        out[name] = {"sweep": model.decode(sweep_z).numpy(), "sweep_z": sweep_z[:, 0].numpy(),
                     "recon": model.reconstruct(x).numpy(),
                     "branches": model_branches(model, z_branch, toy.branch_draws)}
    return out


def branch_of(points: np.ndarray) -> np.ndarray:
    """+1 on the upper branch cos(3·z1) + 1, −1 on the lower one, 0 in the band between them: the
    sign of x2 − cos(x1) where |x2 − cos(x1)| >= BRANCH_GAP (x1 = 3·z1 + 0.1·ε, so cos(x1) is
    the centre line between the branches, up to the noise)."""
    offset = np.asarray(points)[:, 1] - np.cos(np.asarray(points)[:, 0])
    return np.where(np.abs(offset) < BRANCH_GAP, 0, np.sign(offset)).astype(np.int64)


def branch_figures(branches: np.ndarray) -> dict:
    """branches: (latent positions, draws) of branch_of. between_fraction: outputs in the band
    between the branches; branch_balance: mean over positions of min(#upper, #lower) / draws
    (0 when each position keeps to one branch, about 0.5 · (1 − between) when a position's
    draws split evenly); branch_switches: how often the majority branch changes along the
    sorted latent positions (a deterministic G(z) that jumps from branch to branch)."""
    upper, lower = (branches == 1).sum(1), (branches == -1).sum(1)
    majority = np.sign(upper - lower)
    majority = majority[majority != 0]
    return {"between_fraction": float((branches == 0).mean()),
            "branch_balance": float((np.minimum(upper, lower) / branches.shape[1]).mean()),
            "branch_switches": int((np.diff(majority) != 0).sum())}


@torch.no_grad()
def model_branches(model: Method, z: torch.Tensor, draws: int) -> np.ndarray:
    """branch_of for `draws` outputs decode(z) at each latent position (fresh ξ for each draw
    of G(z, ξ); a deterministic decoder repeats itself)."""
    x = model.decode(z.repeat(draws, 1)).numpy()
    return branch_of(x).reshape(draws, len(z)).T


def data_branches(positions: int, draws: int, seed: int) -> np.ndarray:
    """branch_of for the data itself: `draws` points of toy2d at each of `positions` values of z1
    (the 0.5 %..99.5 % quantiles of N(0, 1), as `latent_sweep`), z2 and ε drawn afresh."""
    from scipy.stats import norm

    z1 = norm.ppf(np.linspace(0.005, 0.995, positions))
    rng = np.random.default_rng(seed)
    z2, eps = rng.standard_normal((2, positions, draws))
    x = np.stack([3 * z1[:, None] + 0.1 * eps, np.cos(3 * z1)[:, None] + np.tanh(3 * z2) + 0.1 * eps], -1)
    return branch_of(x.reshape(-1, 2)).reshape(positions, draws)


def density_figures(points: np.ndarray, x_train: np.ndarray, bandwidth: float, hdr_level: float) -> dict:
    """Where `points` lie relative to the data: mean and median KDE log-density, the fraction
    inside the data's 50 % highest-density region (log-density >= hdr_level), and the mean
    distance to the nearest training point."""
    log_p = kde_log_density(points, x_train, bandwidth)
    return {"log_density_mean": float(log_p.mean()), "log_density_median": float(np.median(log_p)),
            "in_data_hdr50": float((log_p >= hdr_level).mean()),
            "nn_distance": float(nearest_distance(points, x_train).mean())}


def summarise(points: dict[str, dict[str, np.ndarray]], x_train: np.ndarray, x_test: np.ndarray,
              toy: ToyConfig) -> dict:
    """The JSON figures, per model: `density_figures` of its reconstructions of the test points
    ('recon') and of its latent sweep ('sweep'), `branch_figures` ('branches') and the
    reconstruction MSE. 'data' holds the data's own figures (what a model whose outputs are
    real data would get); the 50 % highest-density region is where the KDE exceeds its median
    on the test points (the two branches cos(3·z1) ± 1, not the sparse band between them)."""
    x_train, x_test = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    bandwidth = toy.kde_bandwidth
    hdr_level = float(np.median(kde_log_density(x_test, x_train, bandwidth)))
    summary = {"data": {"recon": density_figures(x_test, x_train, bandwidth, hdr_level),
                        "branches": branch_figures(data_branches(toy.branch_positions, toy.branch_draws, toy.seed))},
               "hdr50_log_density": hdr_level, "kde_bandwidth": bandwidth}
    for name, p in points.items():
        summary[name] = {"recon": density_figures(p["recon"], x_train, bandwidth, hdr_level),
                         "sweep": density_figures(p["sweep"], x_train, bandwidth, hdr_level),
                         "branches": branch_figures(p["branches"]),
                         "recon_mse": float(((p["recon"] - x_test) ** 2).mean())}
    return summary


# ------------------------------------------------------------------ figure


def plot_fig6(points: dict[str, dict[str, np.ndarray]], x_data: np.ndarray, summary: dict, path: Path) -> Path:
    """AVAE Fig. 6: data points, the VAE manifold (dotted), AVAE's manifold coloured by the
    latent position; top G(z), bottom G(z, ξ)."""
    fig = Figure(figsize=(9, 9), constrained_layout=True)
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    vae = points["vae"]
    rows = (("avae", "AVAE G(z) (without ξ)"), ("avae_xi", "AVAE G(z, ξ) (with ξ)"))
    for ax, (name, label) in zip(axes, rows):
        p = points[name]
        ax.scatter(x_data[:, 0], x_data[:, 1], s=2, c="0.75", alpha=0.5, lw=0, label="data", rasterized=True)
        size, alpha = (4, 1.0) if name == "avae" else (2, 0.35)
        im = ax.scatter(p["sweep"][:, 0], p["sweep"][:, 1], c=p["sweep_z"], cmap="viridis", s=size, alpha=alpha,
                        lw=0, label=label, rasterized=True)
        ax.plot(vae["sweep"][:, 0], vae["sweep"][:, 1], ":", c="k", lw=2, label="VAE decoder D(z)")
        s, v = summary[name], summary["vae"]
        ax.set_title(f"{label}: {s['recon']['in_data_hdr50']:.0%} of test reconstructions in the data's 50 % "
                     f"highest-density region (VAE {v['recon']['in_data_hdr50']:.0%});\nfor a fixed z, "
                     f"{s['branches']['branch_balance']:.0%} of outputs on its less used branch", fontsize=9)
        ax.legend(loc="lower left", fontsize=8, markerscale=3)
        ax.set_ylabel("x2")
        fig.colorbar(im, ax=ax, label="latent position z")
    axes[-1].set_xlabel("x1")
    lo, hi = np.percentile(x_data[:, 0], [0.5, 99.5])
    axes[0].set_xlim(lo, hi)
    axes[0].set_ylim(-2.6, 2.6)
    fig.suptitle("AVAE §5.1 toy experiment (Fig. 6): 1-D latent, 2-D data")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return Path(path)


# ------------------------------------------------------------------ entry point


def run_toy(params: Params, data_dir: Path, models_dir: Path, figure: Path, summary_path: Path) -> dict:
    """Train the three toy models (params.toy) on the prepared toy2d folder, then write the
    Fig. 6 PNG to `figure` and the figures (see `summarise`) as JSON to `summary_path`."""
    toy = params.toy
    data = load_prepared(data_dir)
    if data.info.name != DATASET:
        raise ValueError(f"{data_dir} holds {data.info.name!r}, the toy experiment needs {DATASET!r}: "
                         f"pass --data data/prepared/{DATASET}")
    with run.stage_timer("toy"):
        models = train_toy_models(toy_params(params, toy), Path(data_dir), Path(models_dir))
        x_train, x_test = np.asarray(data.x("train")), np.asarray(data.x("test"))
        points = manifolds(models, x_train, x_test, toy)
        summary = summarise(points, x_train, x_test, toy)
        summary["config"] = to_dict(toy)
        plot_fig6(points, x_train[np.random.default_rng(toy.seed).permutation(len(x_train))[:toy.plot_points]],
                  summary, Path(figure))
        atomic_write_json(summary_path, summary)
        for name in ("data", *MODELS):
            for part, figures in summary[name].items():
                if isinstance(figures, dict):
                    print(f"[toy] {name:>8} {part}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
        return summary
