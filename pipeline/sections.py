"""The sections of params.yaml as typed dataclasses (built by `pipeline.schema.from_dict`).

One dataclass per section (`train`, `networks`, `evaluate`, `classifier`, `autoencoder`,
`orchestration`, `toy`, `grid`) and per `datasets:` entry; each comments its defaults and checks
its ranges in `__post_init__`. `ModelSpec` is one resolved `models:` entry (a method's own config
dataclass lives in its file under `pipeline/methods/`). `pipeline.config` assembles a whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.schema import require, stable_hash, to_dict


@dataclass
class TrainConfig:
    """Settings of the generic training loop.

    iterations: generator steps (the papers' "iterations"); batch_size: images per step;
    log_every: iterations between rows of train_log.csv; checkpoint_every: iterations between
    resumable checkpoints; device: auto | cpu | cuda | cuda:N; threads: CPU threads (0 = all);
    lr_decay_to: final learning rate as a fraction of the initial one (exponential decay);
    channels_last, autocast, fused_optimizer, compile: speed options (see training.py; `auto`:
    bf16 where the device computes it natively, channels_last there and on every CPU; recorded
    resolved in run.json);
    keep_checkpoints: checkpoints kept; deterministic: deterministic kernels only.
    """

    iterations: int = 50_000  # AVAE §5: 5e4 iterations
    batch_size: int = 64  # AVAE §5: batch 64
    log_every: int = 50  # iterations between train_log.csv rows
    checkpoint_every: int = 1000  # iterations between resumable checkpoints
    device: str = "auto"  # auto picks cuda when available
    threads: int = 0  # torch intra-op threads on CPU; 0 = every core
    lr_decay_to: float = 1.0  # 1.0 = constant lr; AVAE authors' code decays to 0.02
    # speed options: each is checked against the plain loop by tests/test_speed.py
    channels_last: bool | Literal["auto"] = False  # NHWC memory format for the conv nets and image batches
    autocast: Literal["off", "bf16", "auto"] = "off"  # bf16 autocast of network forwards; losses stay fp32
    fused_optimizer: bool = False  # Adam with foreach (CPU) / fused (CUDA) kernels
    compile: bool = False  # torch.compile every network (worth it for long GPU runs only)
    keep_checkpoints: int = 2  # newest checkpoints kept in the checkpoint folder
    deterministic: bool = False  # deterministic kernels only: bitwise-reproducible CPU runs (training.py)

    def __post_init__(self) -> None:
        require(self.iterations >= 1, "train.iterations", f"= {self.iterations} must be >= 1")
        require(self.batch_size >= 2, "train.batch_size", f"= {self.batch_size} must be >= 2")
        require(self.log_every >= 1, "train.log_every", "must be >= 1")
        require(self.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
        require(self.keep_checkpoints >= 1, "train.keep_checkpoints", f"= {self.keep_checkpoints} must be >= 1")
        require(self.threads >= 0, "train.threads", "must be >= 0")
        require(0.0 < self.lr_decay_to <= 1.0, "train.lr_decay_to", f"= {self.lr_decay_to} must be in (0, 1]")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                "train.device", f"= {self.device!r}; use auto, cpu, cuda or cuda:N")


@dataclass
class NetworkConfig:
    """Network sizes shared by every method.

    width: AVAE Fig. 5 width multiplier w; latent_dim: size of z; mlp_hidden: units of the
    two-hidden-layer MLPs used for vector data (toy2d).
    """

    width: int = 128  # AVAE Fig. 5: w = 128
    latent_dim: int = 100  # AVAE authors' code: latent size 100
    mlp_hidden: int = 128  # AVAE §5.1: MLPs of 128 units

    def __post_init__(self) -> None:
        require(1 <= self.width <= 1024, "networks.width", f"= {self.width} must be in [1, 1024]")
        require(1 <= self.latent_dim <= 4096, "networks.latent_dim", f"= {self.latent_dim} must be in [1, 4096]")
        require(self.mlp_hidden >= 1, "networks.mlp_hidden", "must be >= 1")


@dataclass
class EvaluateConfig:
    """Evaluation settings.

    n_samples: generated samples for fd_classifier and fid (paper: 50,000); n_recon: test
    images reconstructed for mse/lpips (0 = the whole test split); batch_size: images per
    forward pass; grid_rows: rows (and columns) of the PNG grids; inception_weights /
    alexnet_weights: optional explicit weight files (empty = the libraries' own caches);
    metrics: registered metrics to compute (empty = all; `python -m pipeline metrics`);
    stats_cache: folder of cached real-data feature statistics (empty = no cache);
    n_variance / variance_draws: test images and z ~ q(z|x) draws per image of recon_variance;
    is_splits: chunks of the Inception scores; diversity_pairs: image pairs of MS-SSIM
    diversity; critic_steps / critic_batch_size / critic_lr / critic_width: the independent
    Wasserstein critic; strip_steps: images per row of the interpolation / traversal strips;
    device: where the trained model and Inception run (auto = cuda when visible; the small
    classifier, LPIPS and the critic stay on the CPU); autocast: bf16 for sample generation
    only (images are stored as 8-bit anyway; reconstructions and every feature extractor stay
    fp32, so FID stays comparable with published values).
    """

    n_samples: int = 50_000  # AVAE T1: FID on 50,000 samples
    n_recon: int = 0  # 0 = whole test split
    batch_size: int = 500  # images per forward pass
    grid_rows: int = 8  # 8 x 8 sample grid
    inception_weights: str = ""  # clean-fid's inception-2015-12-05.pt; empty = clean-fid's cache
    alexnet_weights: str = ""  # torchvision alexnet-owt-7be5be79.pth; empty = torch hub cache
    metrics: list[str] = field(default_factory=list)  # empty = every registered metric
    stats_cache: str = "cache/stats"  # real-data statistics keyed by dataset + extractor hash
    n_variance: int = 500  # test images for recon_variance (LSR-GAN T1 uses the test set)
    variance_draws: int = 5  # z ~ q(z|x) per image for recon_variance
    is_splits: int = 10  # Inception score chunks (Salimans et al. 2016: 10)
    diversity_pairs: int = 500  # random pairs for 1 - MS-SSIM (α-GAN §4)
    critic_steps: int = 2000  # independent critic updates (α-GAN trains it for long; CPU params: 50)
    critic_batch_size: int = 64  # independent critic batch
    critic_lr: float = 1e-4  # WGAN-GP Adam lr (Gulrajani et al. 2017)
    critic_width: int = 32  # channels of the critic's first conv
    strip_steps: int = 10  # images per interpolation / traversal row
    device: str = "auto"  # model + Inception: auto | cpu | cuda | cuda:N
    autocast: Literal["off", "bf16"] = "off"  # bf16 sample generation (GPU params)

    def __post_init__(self) -> None:
        require(self.n_samples >= 2, "evaluate.n_samples", "must be >= 2 (a covariance needs two samples)")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                "evaluate.device", f"= {self.device!r}; use auto, cpu, cuda or cuda:N")
        require(self.n_variance >= 1, "evaluate.n_variance", "must be >= 1")
        require(self.variance_draws >= 2, "evaluate.variance_draws", "must be >= 2 (a variance needs two draws)")
        require(self.is_splits >= 1, "evaluate.is_splits", "must be >= 1")
        require(self.diversity_pairs >= 1, "evaluate.diversity_pairs", "must be >= 1")
        require(self.critic_steps >= 1 and self.critic_batch_size >= 2 and self.critic_lr > 0 and self.critic_width >= 1,
                "evaluate.critic_steps", "critic_steps >= 1, critic_batch_size >= 2, critic_lr > 0, critic_width >= 1")
        require(self.strip_steps >= 2, "evaluate.strip_steps", "must be >= 2")
        require(len(set(self.metrics)) == len(self.metrics), "evaluate.metrics", f"= {self.metrics} has duplicates")
        require(self.n_recon >= 0, "evaluate.n_recon", "must be >= 0")
        require(self.batch_size >= 1, "evaluate.batch_size", "must be >= 1")
        require(1 <= self.grid_rows <= 32, "evaluate.grid_rows", "must be in [1, 32]")


@dataclass
class ClassifierConfig:
    """The dataset classifier behind fd_classifier (trained on the training split).

    epochs: passes over the training split; batch_size; lr: Adam learning rate; width:
    channels of the first conv layer; feature_dim: size of the penultimate layer (the
    feature space of fd_classifier).
    """

    epochs: int = 3  # passes over the training split
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # Adam learning rate
    width: int = 32  # channels of the first conv layer
    feature_dim: int = 128  # penultimate layer: the fd_classifier feature space

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "classifier.epochs", "must be >= 1")
        require(self.batch_size >= 2, "classifier.batch_size", "must be >= 2")
        require(self.lr > 0, "classifier.lr", "must be > 0")
        require(self.width >= 1 and self.feature_dim >= 2, "classifier.width", "and feature_dim must be positive")


@dataclass
class AutoencoderConfig:
    """The dataset autoencoder behind fd_autoencoder: trained on the training split of any image
    dataset without labels (no downloaded weights); its bottleneck is the metric's feature space.

    epochs: passes over the training split; batch_size; lr: Adam learning rate; width: channels of
    the first conv layer (w, 2w, 4w, as the classifier); feature_dim: bottleneck size (the feature
    space of fd_autoencoder); seed: its own seed (initial weights and batch order), apart from the
    grid's seeds, so every model of a dataset is measured in the same features.
    """

    epochs: int = 3  # passes over the training split
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # Adam learning rate
    width: int = 32  # channels of the first conv layer
    feature_dim: int = 128  # bottleneck: the fd_autoencoder feature space
    seed: int = 0  # initial weights and batch order of the autoencoder

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "autoencoder.epochs", "must be >= 1")
        require(self.batch_size >= 2, "autoencoder.batch_size", "must be >= 2")
        require(self.lr > 0, "autoencoder.lr", "must be > 0")
        require(self.width >= 1 and self.feature_dim >= 2, "autoencoder.width", "and feature_dim must be positive")
        require(self.seed >= 0, "autoencoder.seed", "must be >= 0")


@dataclass
class OrchestrationConfig:
    """Prefect orchestration of the grid (pipeline/flows.py, pipeline/hosts.py); no stage reads it.

    retries: extra attempts of a failing stage before its cells are recorded as failed;
    retry_delay_s: seconds between attempts; devices: GPU ids given to concurrent tasks, one
    task per GPU ("auto" = every GPU the host shows, or a list such as "0,1"); cells_per_gpu:
    concurrent tasks given the same GPU, each its own process (`python -m pipeline bench
    --packing N` measures the gain and the memory of N packed seeds); cpu_slots:
    tasks at a time on a host without GPUs (1 = the cells in sequence); inline_on_cpu: with a
    single CPU slot, run each stage's command in the flow's own process instead of a new
    interpreter (GPU slots always get their own process, for CUDA_VISIBLE_DEVICES);
    lost_after_s: on a grid spread over hosts (pipeline/hosts.py), a stage run without a
    heartbeat for this long lost its host: it is marked Crashed and run again elsewhere.
    """

    retries: int = 1  # a transient fault (OOM, preempted node) gets one more attempt
    retry_delay_s: float = 10.0  # seconds before the next attempt
    devices: str = "auto"  # one task per GPU: "auto" = every visible GPU, or ids "0,1,3"
    cells_per_gpu: int = 1  # tasks sharing one GPU at once (packed cells: the small nets leave a GPU idle)
    cpu_slots: int = 1  # without GPUs: concurrent tasks (1 = in sequence)
    inline_on_cpu: bool = True  # one CPU slot: run stages in the flow's process (no interpreter start per stage)
    lost_after_s: float = 90.0  # silent this long = host lost (3 heartbeats of 30 s, Prefect's shortest period)

    def __post_init__(self) -> None:
        require(self.retries >= 0, "orchestration.retries", f"= {self.retries} must be >= 0")
        require(self.retry_delay_s >= 0, "orchestration.retry_delay_s", "must be >= 0")
        require(self.cpu_slots >= 1, "orchestration.cpu_slots", f"= {self.cpu_slots} must be >= 1")
        require(self.cells_per_gpu >= 1, "orchestration.cells_per_gpu", f"= {self.cells_per_gpu} must be >= 1")
        require(self.lost_after_s >= 45, "orchestration.lost_after_s", f"= {self.lost_after_s} must be >= 45 "
                "(1.5 x Prefect's shortest heartbeat period, 30 s)")
        ids = [d.strip() for d in self.devices.split(",")]
        require(self.devices == "auto" or all(d.isdigit() for d in ids), "orchestration.devices",
                f"= {self.devices!r}; use auto or comma-separated GPU ids such as '0,1'")


@dataclass
class ToyConfig:
    """The toy experiment of AVAE §5.1 (Fig. 6): VAE vs AVAE with and without ξ on toy2d.

    seed: training seed; latent_dim: size of z; mlp_hidden: units of the two-hidden-layer
    MLPs; batch_size: points per step; vae_iterations / vae_beta / vae_lr: the β-VAE
    (learned input-independent σ); avae_iterations / avae_lr / latent_loss: both AVAE
    generators (G(z) and G(z, ξ)) trained on the frozen VAE; lr_decay_to: final learning
    rate of every toy model as a fraction of the initial one; sweep_points: latent positions
    along each drawn manifold; xi_draws: ξ samples per latent position for G(z, ξ);
    kde_bandwidth: isotropic Gaussian KDE bandwidth (data units) for the data density at
    manifold points; branch_positions / branch_draws: latent positions and outputs per position
    of the branch figures (which branch each output lands on); plot_points: data points drawn;
    device / threads: as in `train`.
    """

    seed: int = 0  # training seed
    latent_dim: int = 1  # AVAE §5.1: one-dimensional latent space
    mlp_hidden: int = 128  # AVAE §5.1: two-hidden-layer MLPs of 128 units
    batch_size: int = 64  # AVAE §5: batch 64
    vae_iterations: int = 4000  # not in the paper: enough for the toy VAE on a CPU
    vae_beta: float = 0.1  # AVAE eq. 9 β; not in the paper: 0.1 keeps x1 precise in the 1-D code
    vae_lr: float = 1e-3  # not in the paper: Adam lr for the toy VAE
    avae_iterations: int = 6000  # not in the paper: generator steps of each toy AVAE
    avae_lr: float = 5e-4  # not in the paper (AVAE §5 uses 2e-4 on images)
    latent_loss: Literal["a", "b"] = "b"  # AVAE §4.2: L_G = L_Z^b + L_M, the method §5.1 trains with
    lr_decay_to: float = 1.0  # final lr as a fraction of the initial one (exponential decay, as `train`)
    sweep_points: int = 2000  # latent positions along each manifold (quantiles of the data's codes)
    xi_draws: int = 10  # ξ samples per latent position for the cloud of G(z, ξ)
    kde_bandwidth: float = 0.1  # data units; AVAE §5.1's observation noise is 0.1
    branch_positions: int = 200  # latent positions of the branch figures (quantiles of the data's codes)
    branch_draws: int = 100  # outputs per latent position (fresh ξ each for G(z, ξ))
    plot_points: int = 4000  # training points drawn in the figure
    device: str = "cpu"  # tiny MLPs: the CPU is fast enough and deterministic
    threads: int = 1  # torch intra-op threads on CPU (0 = every core); MLPs this small run fastest on one

    def __post_init__(self) -> None:
        for key in ("latent_dim", "mlp_hidden", "vae_iterations", "avae_iterations", "sweep_points",
                    "xi_draws", "plot_points", "branch_positions", "branch_draws"):
            require(getattr(self, key) >= 1, f"toy.{key}", f"= {getattr(self, key)} must be >= 1")
        require(self.batch_size >= 2, "toy.batch_size", f"= {self.batch_size} must be >= 2")
        require(self.vae_beta >= 0, "toy.vae_beta", f"= {self.vae_beta} must be >= 0")
        require(self.vae_lr > 0 and self.avae_lr > 0, "toy.vae_lr", "and toy.avae_lr must be > 0")
        require(self.kde_bandwidth > 0, "toy.kde_bandwidth", f"= {self.kde_bandwidth} must be > 0")
        require(0.0 < self.lr_decay_to <= 1.0, "toy.lr_decay_to", f"= {self.lr_decay_to} must be in (0, 1]")
        require(self.threads >= 0, "toy.threads", "must be >= 0")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                "toy.device", f"= {self.device!r}; use auto, cpu, cuda or cuda:N")


@dataclass
class DatasetConfig:
    """One dataset (pipeline/datasets/ declares each; `python -m pipeline data` lists them).

    source: where its raw files are ('' = $<NAME>_DIR, then data/raw/<loader>); n_train /
    n_test: sizes for generated datasets (toy2d, color_mnist) or a cap on a real split (0 =
    all); seed: generation seed for synthetic data; loader: the registered dataset that
    prepares this entry ('' = the entry's own name; e.g. `celeba96: {loader: celeba,
    resolution: 96}`); resolution / crop / resample / test_split: override the dataset's
    declared preprocessing ('' or 0 = the declaration's default, which follows the papers);
    split_file: image_folder's optional list of "<relative path> <train|test>[ <label>]" lines;
    download: let torchvision's downloader fetch missing raw files (needs a connection);
    chunk: examples written per chunk (memory bound and resume granularity).
    """

    source: str = ""  # raw files; empty = $<NAME>_DIR, then data/raw/<loader>
    n_train: int = 0  # toy2d / color_mnist: examples; real data: cap (0 = the whole split)
    n_test: int = 0  # toy2d / color_mnist: examples; real data: cap (0 = the whole split)
    seed: int = 0  # toy2d / color_mnist generation seed
    loader: str = ""  # registered dataset preparing this entry; empty = the entry's name
    resolution: int = 0  # output side in pixels; 0 = declared (CelebA 64 AVAE §5, 96 in 004 §III)
    crop: str = ""  # "" = declared; "none", "square" (largest centred square) or a fraction such as "0.7" (tf.image.central_crop, AVAE §5 CelebA)
    resample: str = ""  # resize filter: "" = declared; nearest | bilinear | bicubic | lanczos | box (PIL, antialiased)
    test_split: str = ""  # official split stored as 'test' (reconstruction metrics); "" = declared (CelebA: test)
    split_file: str = ""  # image_folder: "<relative path> <train|test>[ <integer label>]" lines; empty = every 10th image is test
    download: bool = False  # allow torchvision's downloader when the raw files are absent (online machines only)
    chunk: int = 4096  # examples per written chunk: bounds memory, and an interrupted prepare resumes per chunk

    def __post_init__(self) -> None:
        require(self.n_train >= 0 and self.n_test >= 0, "datasets.*.n_train", "and n_test must be >= 0")
        require(self.resolution >= 0, "datasets.*.resolution", "must be >= 0 (0 = the declared size)")
        require(self.chunk >= 1, "datasets.*.chunk", "must be >= 1")
        require(self.resample in ("", "nearest", "bilinear", "bicubic", "lanczos", "box"), "datasets.*.resample",
                f"= {self.resample!r}; use one of nearest, bilinear, bicubic, lanczos, box (or '' for the default)")
        require(self.crop in ("", "none", "square") or _is_fraction(self.crop), "datasets.*.crop",
                f"= {self.crop!r}; use 'none', 'square' or a fraction in (0, 1] such as '0.7'")


def _is_fraction(text: str) -> bool:
    try:
        return 0 < float(text) <= 1
    except ValueError:
        return False


@dataclass
class Stage2Entry:
    """One stage-2 row: `model` is trained on the frozen export of the stage-1 model `export`."""

    model: str
    export: str


GRID_LISTS = ("datasets", "seeds", "pretrain", "baselines", "stage2", "evaluate", "toy")  # dvc.yaml iterates over each


@dataclass
class GridConfig:
    """The benchmark grid: datasets x seeds x models, by stage. Every list may be empty but
    datasets, seeds and evaluate (dvc.yaml's stages iterate over each; an empty one has none).

    pretrain: stage-1 models exported frozen (methods that export a VAE); baselines: models
    trained from scratch; stage2: models trained on a frozen stage-1 export, each
    `{model: <name>, export: <a pretrain model>}` (one `train` stage per entry, dataset and seed);
    evaluate: models whose cells are evaluated and tabulated, in table order; toy: the vector
    datasets the AVAE §5.1 toy experiment (stage `toy`) runs on ([toy2d] or none).
    """

    datasets: list[str] = field(default_factory=lambda: ["fashion_mnist"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # AVAE T1: five runs
    pretrain: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    stage2: list[Stage2Entry] = field(default_factory=list)
    evaluate: list[str] = field(default_factory=list)
    toy: list[str] = field(default_factory=list)  # AVAE §5.1: [toy2d] runs the toy stage

    def __post_init__(self) -> None:
        require(len(self.seeds) == len(set(self.seeds)), "grid.seeds", f"= {self.seeds} has duplicates")
        require(all(s >= 0 for s in self.seeds), "grid.seeds", "must be >= 0")
        require(self.datasets != [], "grid.datasets", "must name at least one dataset")
        require(self.seeds != [], "grid.seeds", "must name at least one seed")
        require(self.evaluate != [], "grid.evaluate", "must name at least one model (the table's rows)")

    @property
    def stage2_models(self) -> list[str]:
        return [entry.model for entry in self.stage2]

    def stage1_of(self, model: str) -> str | None:
        """The stage-1 model whose export `model` is trained on (None: it needs none)."""
        return next((entry.export for entry in self.stage2 if entry.model == model), None)

    @property
    def models(self) -> list[str]:
        """Every model the grid trains or evaluates, in params order."""
        return list(dict.fromkeys([*self.pretrain, *self.baselines, *self.stage2_models, *self.evaluate]))


@dataclass
class ModelSpec:
    """One row of the benchmark on one dataset: a registered method with its config and loop
    settings, per-dataset values resolved for `dataset`. `methods.build_method` builds it."""

    name: str
    method: str
    config: Any  # the method's own config dataclass
    train: TrainConfig | None = None  # the loop settings; None for a model rebuilt from its file (run.load_model)
    dataset: str = ""  # the dataset its per-dataset values were resolved for

    @property
    def config_hash(self) -> str:
        return stable_hash({"method": self.method, "config": to_dict(self.config)})
