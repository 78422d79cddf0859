"""Building the examples each method declares (`Method.examples`): params with the example as model
`model` (and its stage-1 model `stage1`) in a one-dataset grid, and the method built from them."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params, parse_params
from pipeline.datainfo import DataInfo
from pipeline.export import export_vae, load_vae_export
from pipeline.methods import REGISTRY, Example, Method, build_method
from pipeline.sections import NetworkConfig
from tests.conftest import TINY_NET, tiny_params

CASES = [(name, example) for name, cls in sorted(REGISTRY.items()) for example in cls.examples]


def example_of(name: str, example: str) -> Example:
    return REGISTRY[name].examples[example]


def example_params(name: str, example: str, dataset: str, networks: dict | None = None, train: dict | None = None,
                   config: dict | None = None, stage1_config: dict | None = None) -> Params:
    """Params whose grid trains the example as `model` on `dataset` (stage 1, baseline or stage 2 on
    the export of `stage1`), with `config` / `stage1_config` added to the example's entries."""
    cls, spec = REGISTRY[name], example_of(name, example)
    models = {"model": {"method": name, **spec.config, **(config or {})}}
    grid = {"datasets": [dataset], "seeds": [0], "pretrain": [], "baselines": [], "stage2": [], "evaluate": ["model"],
            "toy": []}
    if cls.needs_vae:
        models["stage1"] = {**spec.stage1, **(stage1_config or {})}
        grid.update(pretrain=["stage1"], stage2=[{"model": "model", "export": "stage1"}])
    else:
        grid["pretrain" if cls.exports_vae else "baselines"] = ["model"]
    overrides = {"networks": networks or {"width": 4, "latent_dim": 8, "mlp_hidden": 32}, "grid": grid,
                 "models": models}
    if train:
        overrides["train"] = train
    return parse_params(tiny_params(**overrides))


def untrained_export(name: str, example: str, info: DataInfo, folder: Path, net: NetworkConfig = TINY_NET):
    """The example's stage-1 model, untrained, exported and loaded back frozen (None: it needs none)."""
    if not REGISTRY[name].needs_vae:
        return None
    params = example_params(name, example, info.name)
    stage1 = build_method(params.model("stage1", info.name), info, net)
    export_vae(stage1, Path(folder) / "export.pt", {})
    return load_vae_export(Path(folder) / "export.pt")


def build_example(name: str, example: str, info: DataInfo, folder: Path, net: NetworkConfig = TINY_NET,
                  **config) -> Method:
    """The example's method for data `info` (on an untrained stage-1 export when it needs one),
    `config` added to its entry."""
    spec = example_params(name, example, info.name, config=config).model("model", info.name)
    return build_method(spec, info, net, untrained_export(name, example, info, folder, net))
