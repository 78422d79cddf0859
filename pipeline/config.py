"""A whole params file, validated: the only bridge from params.yaml to the library.

Every section of params.yaml maps to a dataclass of `pipeline.sections` (a model entry to its
method's own config dataclass, see `pipeline.methods`); `pipeline.schema.from_dict` rejects
unknown keys and values of the wrong type, each dataclass checks its ranges, and `parse_params`
checks the cross-references (grid -> models -> methods, datasets -> registered datasets), so a
bad params file stops a run before any training with an error that names the key and what is
allowed. Problems that do not depend on each other are collected, so one ConfigError lists them
all, one line each. Per-dataset values (`{<dataset>: <value>}`) are resolved per grid dataset.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.datasets import DATASETS
from pipeline.methods import REGISTRY
from pipeline.schema import ConfigError, Problems, coerce_key, from_dict, require, to_dict
from pipeline.sections import (GRID_LISTS, AutoencoderConfig, ClassifierConfig, DatasetConfig, EvaluateConfig,
                               GridConfig, ModelSpec, NetworkConfig, OrchestrationConfig, ToyConfig, TrainConfig)


@dataclass
class Params:
    """The whole params.yaml, validated. `models` holds the raw model entries (each checked for
    every grid dataset); `model(name, dataset)` is the resolved row."""

    datasets: dict[str, DatasetConfig]
    grid: GridConfig
    networks: NetworkConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    classifier: ClassifierConfig
    models: dict[str, dict]
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # fd_autoencoder's features
    toy: ToyConfig = field(default_factory=ToyConfig)  # AVAE §5.1 toy experiment (stage `toy`)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)  # pipeline/flows.py
    raw: dict = field(repr=False, default_factory=dict)
    specs: dict[tuple[str, str], ModelSpec] = field(repr=False, default_factory=dict)  # resolved rows

    def model(self, name: str, dataset: str) -> ModelSpec:
        """Model `name` with its per-dataset values for `dataset` (ConfigError naming the key when
        a per-dataset value is missing)."""
        require(name in self.models, f"models.{name}", f"is not defined; defined models: {sorted(self.models)}")
        if (name, dataset) not in self.specs:
            self.specs[(name, dataset)] = parse_model(name, self.models[name], self.train, dataset, set(self.datasets))
        return self.specs[(name, dataset)]

    def dataset(self, name: str) -> DatasetConfig:
        require(name in self.datasets, f"datasets.{name}", f"is not defined; defined: {sorted(self.datasets)}")
        return self.datasets[name]


TOP_LEVEL = ("datasets", "grid", "networks", "train", "evaluate", "classifier", "autoencoder", "models", "toy",
             "orchestration")
# the sections that are one dataclass each; `datasets` and `models` map names to entries
SECTIONS = {"grid": GridConfig, "networks": NetworkConfig, "train": TrainConfig, "evaluate": EvaluateConfig,
            "classifier": ClassifierConfig, "autoencoder": AutoencoderConfig, "toy": ToyConfig,
            "orchestration": OrchestrationConfig}


def _admits_mapping(hint: Any) -> bool:
    """A field typed as a mapping (or a union with one) takes dicts as values, not per dataset."""
    hints = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(typing.get_origin(h) is dict or h is dict for h in hints)


def for_dataset(values: dict, cls: type, dataset: str, where: str, known: set[str]) -> dict:
    """`values` (keys of dataclass `cls`) with each per-dataset value resolved for `dataset`.

    Any field that is not itself a mapping may be given as `{<dataset>: <value>, ...}` (e.g.
    VAE/GAN's β per dataset, AVAE §5; α-GAN's iterations per dataset, App. H): the keys must be
    datasets of the `datasets:` section, and the dataset asked for must have a value."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in hints and not _admits_mapping(hints[key]):
            unknown = sorted(str(k) for k in value if k not in known)
            require(not unknown, f"{where}.{key}", f"names {unknown}, not datasets of 'datasets:' "
                    f"(defined: {sorted(known)}); per-dataset values are keyed by dataset names")
            require(dataset in value, f"{where}.{key}", f"has no value for dataset {dataset!r}: add "
                    f"'{dataset}: <value>' (it has values for {sorted(map(str, value))})")
            if dataset not in value:  # recorded above (inside Problems.recording)
                continue
            value = value[dataset]
        out[key] = value
    return out


def parse_model(name: str, entry: dict, train: TrainConfig, dataset: str, known: set[str]) -> ModelSpec:
    """A `models.<name>` entry for `dataset`: {method, train: {...overrides of `train`}, **method
    config fields}, any non-mapping field possibly per dataset (`for_dataset`)."""
    where = f"models.{name}"
    require(isinstance(entry, dict) and "method" in entry, where, "must be a mapping with a 'method' key")
    entry = dict(entry)
    method = entry.pop("method")
    require(isinstance(method, str) and method in REGISTRY, f"{where}.method", f"= {method!r} is not a registered "
            f"method; registered: {sorted(REGISTRY)} (python -m pipeline methods)")
    train_over = entry.pop("train", None)
    train_over = {} if train_over is None else train_over
    require(isinstance(train_over, dict), f"{where}.train", f"= {train_over!r} must be a mapping of train keys")
    config_cls = REGISTRY[method].config_cls
    problems = Problems()
    with problems.recording():
        entry = for_dataset(entry, config_cls, dataset, where, known)
        train_over = for_dataset(train_over, TrainConfig, dataset, f"{where}.train", known)
    problems.raise_if_any()
    model_train = problems.parse(lambda: from_dict(TrainConfig, {**to_dict(train), **train_over}, f"{where}.train"))
    config = problems.parse(lambda: from_dict(config_cls, entry, where))
    problems.raise_if_any()
    return ModelSpec(name=name, method=method, config=config, train=model_train, dataset=dataset)


def _parse_dataset(name: str, entry: Any) -> DatasetConfig:
    """A `datasets.<name>` entry; its loader (default: its name) must be a registered dataset."""
    cfg = from_dict(DatasetConfig, entry, f"datasets.{name}")
    loader = cfg.loader or name
    require(loader in DATASETS, f"datasets.{name}" + (".loader" if cfg.loader else ""),
            f"names no known dataset ({loader!r}); known: {sorted(DATASETS)} (python -m pipeline data)")
    return cfg


def _parse_entries(section: Any, where: str, parse_entry: Callable[[str, Any], Any],
                   problems: Problems) -> tuple[dict, set[str]]:
    """Parse each entry of a name -> entry section on its own, so one bad entry hides no other.

    Returns the parsed entries and the keys already reported (`<where>.<name>`, or `<where>`
    itself when the section is no mapping), which the grid's references then skip."""
    if section is None:
        return {}, set()
    if not isinstance(section, dict):
        problems.add(ConfigError(f"params: '{where}' = {section!r} must be a mapping of names to entries"))
        return {}, {where}
    parsed, reported = {}, set()
    for name, entry in section.items():
        try:
            name = coerce_key(name, str, where)
            parsed[name] = parse_entry(name, entry)
        except ConfigError as e:
            problems.add(e)
            reported.add(f"{where}.{name}")
    return parsed, reported


def _check_grid_names(g: GridConfig, datasets: dict, models: dict, reported: set[str]) -> None:
    """Every dataset and model the grid names is defined (unless its entry was already reported)."""
    for name in [*g.datasets, *g.toy]:
        if {"datasets", f"datasets.{name}"}.isdisjoint(reported):
            require(name in datasets, f"datasets.{name}", f"is not defined; defined: {sorted(datasets)}")
    for name in dict.fromkeys([*g.models, *(entry.export for entry in g.stage2)]):
        if {"models", f"models.{name}"}.isdisjoint(reported):
            require(name in models, f"models.{name}", f"is not defined; defined models: {sorted(models)}")


def _check_grid_stages(g: GridConfig, methods: dict[str, str]) -> None:
    """Each grid model sits in the stage its method belongs to (stage 1, baseline, stage 2), and
    each is trained once (a model's output folder is models/<dataset>/<model>/seed<k>)."""
    method = {name: REGISTRY[m] for name, m in methods.items() if m in REGISTRY}
    for name in g.pretrain:
        require(name not in method or method[name].exports_vae, f"grid.pretrain ({name})",
                "must be a method that exports a frozen VAE (vae, vae_s)")
    for name in g.baselines:
        require(name not in method or not method[name].needs_vae, f"grid.baselines ({name})",
                "builds on a frozen VAE export: list it under grid.stage2 as {model: " + name + ", on: <a pretrain model>}")
    for i, entry in enumerate(g.stage2):
        require(entry.export in g.pretrain, f"grid.stage2[{i}].export ({entry.export})",
                f"is not a stage-1 model of grid.pretrain {g.pretrain}")
        require(entry.model not in method or method[entry.model].needs_vae, f"grid.stage2[{i}] ({entry.model})",
                "trains from scratch: list it under grid.baselines")
    trained = [*g.pretrain, *g.baselines, *g.stage2_models]
    twice = sorted({m for m in trained if trained.count(m) > 1})
    require(not twice, "grid", f"trains {twice} more than once (each model is one row with one output folder: "
            "define a model entry per stage-1 export, e.g. lsr_gan_b5 with the same settings)")
    for name in g.evaluate:
        require(name in trained, f"grid.evaluate ({name})",
                "is not trained by the grid: add it to grid.pretrain, grid.baselines or grid.stage2")


def parse_params(raw: dict) -> Params:
    """Validate a params mapping (see params.yaml) into Params.

    Raises one ConfigError that lists every independent problem, one line each: each section
    and each dataset / model entry is checked on its own, then the grid's cross-references."""
    require(isinstance(raw, dict), "<root>", f"params must be a mapping of sections {list(TOP_LEVEL)}, "
            f"got {type(raw).__name__}")
    problems = Problems()
    with problems.recording():
        for key in raw:
            require(key in TOP_LEVEL, str(key), f"is not a known section; allowed: {list(TOP_LEVEL)}")
        if isinstance(raw.get("grid"), dict):
            for key in GRID_LISTS:
                require(key in raw["grid"], f"grid.{key}", f"is missing: dvc.yaml's stages iterate over it "
                        f"(write '{key}: []' for none)")
    sections = {name: problems.parse(functools.partial(from_dict, cls, raw.get(name), name))
                for name, cls in SECTIONS.items()}
    train = sections["train"] or TrainConfig()  # a bad train section is reported once, not per model
    datasets, bad_datasets = _parse_entries(raw.get("datasets"), "datasets", _parse_dataset, problems)
    grid, specs = sections["grid"], {}
    known = set(datasets) | {d.rsplit(".", 1)[-1] for d in bad_datasets}

    def parse_entry(name: str, entry: Any) -> dict:
        """Check a model entry for every grid dataset (a model outside the grid: its types only)."""
        in_grid = grid is not None and name in grid.models
        for dataset in (grid.datasets if in_grid else [None]):
            spec = parse_model(name, entry, train, dataset or _any_dataset(entry), known)
            if dataset:
                specs[(name, dataset)] = spec
        return entry

    models, bad_models = _parse_entries(raw.get("models"), "models", parse_entry, problems)
    if grid is not None:
        with problems.recording():
            _check_grid_names(grid, datasets, models, bad_datasets | bad_models)
            _check_grid_stages(grid, {n: e["method"] for n, e in models.items()})
    problems.raise_if_any()
    return Params(datasets=datasets, models=models, raw=raw, specs=specs, **sections)


def _any_dataset(entry: dict) -> str:
    """A dataset some per-dataset value of `entry` names ('' if none): checks the types of a
    model outside the grid without asking for values it does not need."""
    if not isinstance(entry, dict):
        return ""  # parse_model reports it
    train = entry.get("train") if isinstance(entry.get("train"), dict) else {}
    values = [v for v in [*entry.values(), *train.values()] if isinstance(v, dict)]
    return next((str(k) for v in values for k in v), "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found: run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e}): save it as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:  # PyYAML's parser recurses once per nesting level
        raise ConfigError(f"{path} is not valid YAML: nested too deeply") from None
    return parse_params({} if raw is None else raw)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line from a YAML error: what is wrong and where (PyYAML's own message spans lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem
