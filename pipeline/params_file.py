"""Switching params.yaml to a paper's configuration, and shrinking one for a dry run.

`python -m pipeline use params/avae.yaml` makes a paper file the params.yaml that `dvc repro`
reads (validated first; an edited params.yaml is never overwritten silently).
`python -m pipeline smoke params/avae.yaml` writes the same grid shrunk to toy size (one seed,
a few iterations, tiny networks and evaluation sizes, capped datasets): every stage of the paper's
pipeline runs, in minutes, on any machine: the dry run before a GPU week.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import yaml

from pipeline.config import Params, load_params, parse_params
from pipeline.io import atomic_write_text
from pipeline.schema import ConfigError

SMOKE_ITERATIONS = 4  # every model's iterations in a smoke run
SMOKE_PROBE = 2  # probe lengths (balance_steps) in a smoke run
SMOKE_SPLIT = {"n_train": 256, "n_test": 64}  # dataset caps in a smoke run
SMOKE_SECTIONS = {  # section -> key -> value in a smoke run
    "networks": {"width": 4, "latent_dim": 8},
    "train": {"iterations": SMOKE_ITERATIONS, "batch_size": 16, "log_every": 2, "checkpoint_every": 2,
              "device": "cpu", "threads": 1, "deterministic": True},  # one thread: the fastest for nets this small
    "evaluate": {"n_samples": 64, "n_recon": 32, "batch_size": 32, "grid_rows": 4, "n_variance": 8,
                 "variance_draws": 2, "is_splits": 2, "diversity_pairs": 8, "critic_steps": 2,
                 "critic_batch_size": 8, "critic_width": 4, "strip_steps": 3, "device": "cpu", "autocast": "off"},
    "classifier": {"epochs": 1, "batch_size": 32, "width": 4, "feature_dim": 8},
    "autoencoder": {"epochs": 1, "batch_size": 32, "width": 4, "feature_dim": 8},
    "toy": {"vae_iterations": 20, "avae_iterations": 20, "sweep_points": 50, "xi_draws": 2, "branch_positions": 10,
            "branch_draws": 4, "plot_points": 200},
}


def stage_count(params: Params) -> int:
    """The stages dvc.yaml resolves to for these params."""
    g = params.grid
    cells = len(g.datasets) * len(g.seeds)
    trained = len(g.pretrain) + len(g.baselines) + len(g.stage2)
    return len(params.datasets) + cells * (trained + len(g.evaluate)) + len(g.datasets) + len(g.toy) + 2


def describe(params: Params, path: Path | str) -> str:
    """One line: the grid's size and stage count; and a note naming the models defined under
    `models:` that no grid list names (valid, but nothing trains them)."""
    g = params.grid
    text = (f"{path}: ok ({len(g.datasets)} datasets x {len(g.seeds)} seeds x {len(g.evaluate)} models; "
            f"{stage_count(params)} stages)")
    idle = [name for name in params.models if name not in g.models]
    if idle:
        text += (f"\nnote: {', '.join(idle)} {'is' if len(idle) == 1 else 'are'} defined under models: but in no "
                 "grid list (grid.pretrain, baselines, stage2, evaluate): nothing trains or evaluates "
                 f"{'it' if len(idle) == 1 else 'them'}")
    return text


def _edited(target: Path) -> bool:
    """target differs from its committed version (untracked counts as edited)."""
    proc = subprocess.run(["git", "status", "--porcelain", "--", str(target)], cwd=target.parent,
                          capture_output=True, text=True)
    return proc.returncode != 0 or bool(proc.stdout.strip())


def _guard(target: Path, text: str, force: bool) -> None:
    """Refuse to overwrite an edited params file with other content (unless force)."""
    if force or not target.exists() or target.read_text(encoding="utf-8") == text:
        return
    known = {p.read_text(encoding="utf-8") for p in (target.parent / "params").glob("*.yaml")}
    if target.read_text(encoding="utf-8") not in known and _edited(target):
        raise ConfigError(f"params: '{target}' has edits that are in no file of params/ and not committed: "
                          "commit or copy them first, or pass --force to overwrite them")


def use(source: Path, target: Path = Path("params.yaml"), force: bool = False) -> Params:
    """Validate `source` and make it `target` (atomically); returns the params."""
    params = load_params(source)
    text = Path(source).read_text(encoding="utf-8")
    _guard(Path(target), text, force)
    atomic_write_text(target, text)
    return params


def shrink(raw: dict) -> dict:
    """A params mapping with the same grid at toy size (see SMOKE_*): one seed, few iterations,
    tiny networks and evaluation, capped datasets. Per-dataset values keep their keys."""
    raw = copy.deepcopy(raw)
    for section, values in SMOKE_SECTIONS.items():
        raw.setdefault(section, {}).update(values)
    raw["grid"]["seeds"] = raw["grid"]["seeds"][:1]
    for name, entry in (raw.get("datasets") or {}).items():
        entry = raw["datasets"][name] = dict(entry or {})
        for key, cap in SMOKE_SPLIT.items():
            entry[key] = min(entry.get(key) or cap, cap)
    for name, entry in (raw.get("models") or {}).items():
        entry = raw["models"][name] = dict(entry)
        train = entry["train"] = dict(entry.get("train") or {})
        train["iterations"] = SMOKE_ITERATIONS
        for key in ("batch_size", "log_every", "checkpoint_every"):
            train.pop(key, None)
        if "balance_steps" in entry:
            entry["balance_steps"] = SMOKE_PROBE
    return raw


def smoke(source: Path, target: Path = Path("params.yaml"), force: bool = False) -> Params:
    """Write `source`'s grid at toy size to `target` (validated, atomically); returns the params."""
    load_params(source)  # the paper file itself must be valid
    raw = shrink(yaml.safe_load(Path(source).read_text(encoding="utf-8")))
    params = parse_params(raw)
    text = (f"# A dry run of {source} at toy size, written by `python -m pipeline smoke {source}`:\n"
            f"# one seed, {SMOKE_ITERATIONS} iterations per model, tiny networks and evaluation sizes.\n"
            + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    _guard(Path(target), text, force)
    atomic_write_text(target, text)
    return params
