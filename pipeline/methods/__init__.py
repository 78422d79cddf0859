"""Method registry: each method is one file that declares its networks and what each
optimiser phase minimises. The training loop (`pipeline.training`) knows no method.

Adding a method: write `pipeline/methods/<name>.py` with a config dataclass and a `Method`
subclass decorated with `@register` (every module of this package is imported, so the
decorator is the registry line), and add a `models:` entry to params.yaml (README, "Adding a
method"). Every method is built by `build_method`, in training, loading, benchmarks and tests.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.schema import require
from pipeline.sections import ModelSpec, NetworkConfig


@dataclass
class Phase:
    """One optimiser phase of an iteration.

    name: prefix of its logged terms; modules: whose parameters it updates (nothing else
    receives gradients during it); loss: batch -> named terms, which must include "loss";
    lr / betas: its Adam optimiser; steps: updates per iteration (e.g. 5 critic steps).
    """

    name: str
    modules: list[nn.Module]
    loss: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    lr: float = 2e-4  # DCGAN (Radford et al.), used by AVAE §5
    betas: tuple[float, float] = (0.5, 0.999)  # DCGAN beta1 = 0.5
    steps: int = 1  # updates of this phase per iteration


@dataclass
class OptimiserConfig:
    """The Adam settings every method config inherits (a method changes a default by declaring
    the field again, with its source): lr: learning rate; beta1, beta2: Adam's moment decays."""

    lr: float = 2e-4  # DCGAN (Radford et al.), used by AVAE §5 for every model
    beta1: float = 0.5  # DCGAN: β1 = 0.5
    beta2: float = 0.999  # Adam's default (Kingma & Ba), kept by DCGAN

    def __post_init__(self) -> None:
        require(self.lr > 0, "models.*.lr", f"= {self.lr} must be > 0")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "models.*.beta1",
                f"= {self.beta1} and beta2 = {self.beta2} must be in [0, 1)")

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2


@dataclass(frozen=True)
class Learning:
    """A short run of an example that must show learning on any CPU (the slow contract test,
    tests/test_method_contract.py): `iterations` of the real `run.train_cell` on `data` ('toy2d':
    AVAE §5.1's points; 'bars': 32 px images of one bright bar), batch `batch_size`, networks of
    width 4 with `latent_dim` and MLPs of `mlp_hidden` units, `config` added to the example's. A
    stage-2 example first trains its stage-1 model for `stage1_iterations` with `stage1_config`
    added. Then, where set: `samples`, the trained model's Fréchet distance of 2,000 samples to the
    training points (toy2d) below this fraction of the untrained model's; `reconstructions`, its test
    reconstruction MSE below this fraction of the MSE of predicting the training mean."""

    data: str
    iterations: int
    batch_size: int = 64
    latent_dim: int = 2
    mlp_hidden: int = 128  # AVAE §5.1: MLPs of 128 units
    config: dict = field(default_factory=dict)
    stage1_iterations: int = 0
    stage1_config: dict = field(default_factory=dict)
    samples: float | None = None
    reconstructions: float | None = None


@dataclass(frozen=True)
class Example:
    """A config of a method that the contract tests (tests/test_method_contract.py) put through
    every check: `config`, a params `models:` entry without `method`; `stage1`, for a method
    trained on a frozen export, the stage-1 models entry (with `method`) whose export it trains on;
    `vector`: it also runs on vector data (toy2d), not only on images; `learning`: its short
    learning check, if it carries one (every method has at least one)."""

    config: dict = field(default_factory=dict)
    stage1: dict = field(default_factory=lambda: {"method": "vae"})
    vector: bool = True
    learning: Learning | None = None


@dataclass
class Stage1Export:
    """What a stage-1 model hands to its frozen export (`pipeline.export.export_vae`): its encoder
    and decoder, sigma ('learned' or 'encoder'), the architecture they are built as, and the
    stage-1 objective ({"method", "config", "state"}) that 004's fine-tuning keeps minimising."""

    encoder: nn.Module
    decoder: nn.Module
    sigma: str
    architecture: str
    objective: dict


class Method(nn.Module, abc.ABC):
    """Base class. Subclasses set `name`, `config_cls`, build networks in __init__ and
    implement `phases` and `decode` (the network that maps a code to an output: a decoder or a
    generator), and `encode` when they have an encoder; `sample` and `reconstruct` follow from
    those two (EncoderDecoderMethod and EncoderGeneratorMethod below are the two common shapes).
    A stage-1 model implements `export` (what its frozen export holds). `examples` names the
    configs the contract tests run (at least one, one of them with a learning check).

    needs_vae: trained on a frozen stage-1 export (receives it as `vae`);
    exports_vae: is itself a stage-1 model (set from whether the class implements `export`);
    stochastic_encoder: its encoder is a distribution q(z|x) (False for BiGAN, AGE, α-GAN,
    whose deterministic encoders have no KL or posterior variance to report);
    twice_differentiated: attributes naming networks whose gradient a loss differentiates again
    (a gradient penalty); torch.compile cannot, so `train.compile` leaves them eager.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type]
    needs_vae: ClassVar[bool] = False
    exports_vae: ClassVar[bool] = False  # derived: True exactly when the class implements export()
    stochastic_encoder: ClassVar[bool] = True  # False: encode() is a point mass (no KL, no posterior draws)
    twice_differentiated: ClassVar[tuple[str, ...]] = ()  # networks under a gradient penalty
    examples: ClassVar[dict[str, Example]] = {}  # name -> a config the contract tests run

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.exports_vae = cls.export is not Method.export

    def __init__(self, config, info: DataInfo, net: NetworkConfig, vae: nn.Module | None = None):
        super().__init__()
        self.config, self.info, self.net = config, info, net

    @classmethod
    def check_config(cls, config, dataset: str) -> None:
        """Raise ConfigError if `config` cannot run on `dataset` (called before any training)."""

    @abc.abstractmethod
    def phases(self) -> list[Phase]:
        """The optimiser phases of one iteration, in order."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> outputs on the model scale: the decoder or generator samples come from
        (with fresh noise where the generator takes some besides z, as AVAE's G(z, ξ))."""

    def prior(self, n: int) -> torch.Tensor:
        """z ~ p(z) = N(0, I)."""
        return torch.randn(n, self.net.latent_dim, device=self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sample(self, n: int) -> torch.Tensor:
        """n samples on the model scale, decode(z) with z ~ p(z) (called under torch.no_grad)."""
        return self.decode(self.prior(n))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mu, log_sigma) of q(z|x), or None for methods without an encoder."""
        return None

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        """decode(μ(x)): reconstructions on the model scale, or None without an encoder."""
        posterior = self.encode(x)
        return None if posterior is None else self.decode(posterior[0])

    def export(self) -> Stage1Export:
        """What the frozen export of a stage-1 model holds (implemented by stage-1 methods only)."""
        raise TypeError(f"method {self.name!r} is not a stage-1 model: it has no frozen export")


class EncoderDecoderMethod(Method):
    """A method whose networks are a Gaussian encoder q(z|x) (`encoder`) and a decoder
    (`decoder`) that is also its generator (β-VAE, VAE-S, VAE/GAN)."""

    def decode(self, z):
        return self.decoder(z)

    def encode(self, x):
        return self.encoder(x)


class EncoderGeneratorMethod(Method):
    """A method with a generator G(z) (`generator`) and a deterministic encoder E(x)
    (`encoder`, a DeterministicEncoder): BiGAN, AGE, α-GAN; x̂ = G(E(x))."""

    stochastic_encoder = False  # deterministic encoder: no kl / recon_variance rows

    def decode(self, z):
        return self.generator(z)

    def encode(self, x):
        """(E(x), log σ): the encoder is deterministic, so log σ is a constant tensor full of
        DETERMINISTIC_LOG_SIGMA (-10)."""
        return self.encoder.posterior(x)


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to REGISTRY under `cls.name`."""
    if cls.name in REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def build_method(spec: ModelSpec, info: DataInfo, net: NetworkConfig, vae: nn.Module | None = None) -> Method:
    """The method `spec` names with its config, for data `info` and networks `net`; `vae`: the
    frozen stage-1 export a stage-2 method is trained on (`pipeline.export.load_vae_export`)."""
    cls = REGISTRY[spec.method]
    if cls.needs_vae and vae is None:
        raise ValueError(f"{spec.name} ({spec.method}) is trained on a frozen stage-1 export: pass "
                         "vae=load_vae_export(<stage-1 model folder>/export.pt)")
    return cls(spec.config, info, net, vae)


def _import_all() -> None:
    """Import every module of this package so that their @register decorators run."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
