"""The grid as DVC sees it: which stages of dvc.yaml to run, in which order, and which are fresh.

Everything comes from DVC's own resolved view of dvc.yaml (the grid of params.yaml expanded
into stages, their commands, dependencies, outputs and the graph between them); only the names
of the `evaluate` and `aggregate` stages are known here. A stage's cell (dataset, model, seed)
is read from its command's positional arguments (`python -m stages.X dataset model seed --opts`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import Params
from pipeline.schema import require

EVALUATE_STAGE = "evaluate"  # dvc.yaml: the per-cell stage whose output holds the cell's metrics
AGGREGATE_STAGE = "aggregate"  # dvc.yaml: the stage that tabulates every cell


@dataclass(frozen=True)
class StageCall:
    """One DVC stage of the grid, as the flows run it.

    name: DVC address (`train@fashion_mnist-cell0-0`); stage: its dvc.yaml stage (`train`);
    argv: its command from dvc.yaml; upstream: addresses of the stages it depends on;
    dataset / model / seed: the cell it belongs to, read from the command's positional
    arguments (None where the stage has none); up_to_date: DVC reports it unchanged;
    priority: the stages of the plan downstream of it (a free slot goes to the waiting stage
    with the most, so the stages that hold up others run first).
    """

    name: str
    stage: str
    argv: tuple[str, ...]
    upstream: tuple[str, ...]
    dataset: str | None
    model: str | None
    seed: int | None
    up_to_date: bool
    priority: int = 0

    @property
    def label(self) -> str:
        """Task name: `train avae_b/fashion_mnist/seed3`, `prepare toy2d`, `aggregate`."""
        if self.model is not None:
            return f"{self.stage} {self.model}/{self.dataset}/seed{self.seed}"
        return f"{self.stage} {self.dataset}" if self.dataset else self.stage

    def option(self, flag: str) -> str | None:
        """The value of `flag` (e.g. `--out`) in the stage's command."""
        argv = list(self.argv)
        return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def stage_cell(argv: list[str]) -> tuple[str | None, str | None, int | None]:
    """(dataset, model, seed) from a stage command `python -m stages.X [dataset [model seed]] --opts`."""
    start = argv.index("-m") + 2 if "-m" in argv else 2
    positional = []
    for token in argv[start:]:
        if token.startswith("-"):
            break
        positional.append(token)
    dataset = positional[0] if positional else None
    model = positional[1] if len(positional) > 1 else None
    seed = int(positional[2]) if len(positional) > 2 else None
    return dataset, model, seed


def grid_models(params: Params) -> list[str]:
    """Every model the grid trains or evaluates, in params order."""
    return params.grid.models


def check_selection(params: Params, datasets: list[str], seeds: list[int], models: list[str]) -> None:
    """A selection must lie inside params.yaml's grid: dvc.yaml has stages for nothing else."""
    g = params.grid
    for key, chosen, allowed in (("grid.datasets", datasets, g.datasets), ("grid.seeds", seeds, g.seeds),
                                 ("grid models", models, grid_models(params))):
        outside = [x for x in chosen if x not in allowed]
        require(not outside, key, f"does not contain {outside} (allowed: {list(allowed)}); dvc.yaml has "
                "stages only for the grid in params.yaml: add them there first")


def target(root: str | Path, name: str) -> str:
    """A DVC target for stage `name` of root/dvc.yaml, whatever the working directory."""
    return f"{Path(root) / 'dvc.yaml'}:{name}"


def plan_grid(root: str | Path, params: Params, datasets: list[str] | None = None,
              seeds: list[int] | None = None, models: list[str] | None = None,
              aggregate: bool = True, available: set[str] | None = None) -> list[StageCall]:
    """The DVC stages of the selected cells and everything upstream of them, upstream first.

    A cell is selected when its dataset, model and seed are all selected (None = every one
    of params.yaml's grid). With no selection at all and `aggregate`, every stage of dvc.yaml
    is planned, as `dvc repro` would run them: the aggregate stage (last) and stages outside
    the grid such as `toy`; a selection never aggregates (the table covers the whole grid).
    A stage is up to date when `dvc status` reports it unchanged here, or, for the stages in
    `available` (their outputs can be pulled from a DVC remote, dvc.lock holds their entries),
    when that entry still describes the stage (record_current).
    """
    import networkx as nx
    from dvc.repo import Repo

    whole = datasets is None and seeds is None and models is None and aggregate
    datasets = list(params.grid.datasets if datasets is None else datasets)
    seeds = list(params.grid.seeds if seeds is None else seeds)
    models = list(grid_models(params) if models is None else models)
    check_selection(params, datasets, seeds, models)
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {s.name: s for s in graph.nodes}
        cells = {name: stage_cell(shlex.split(s.cmd)) for name, s in by_name.items()}
        chosen = {name for name, (d, m, k) in cells.items()
                  if m is not None and d in datasets and m in models and k in seeds}
        needed = set(by_name) if whole else chosen | {s.name for n in chosen for s in nx.descendants(graph, by_name[n])}
        changed = changed_here(repo, None if whole else needed)
        calls = []
        for stage in reversed(list(nx.topological_sort(graph))):
            if stage.name in needed:
                fresh = stage.name not in changed or (stage.name in (available or ()) and record_current(graph, stage))
                calls.append(stage_call(graph, stage, fresh, needed))
    return with_priorities(upstream_freshness(calls))


def with_priorities(calls: list[StageCall]) -> list[StageCall]:
    """Each stage's priority: how many stages of `calls` are downstream of it."""
    downstream: dict[str, set[str]] = {c.name: set() for c in calls}
    for call in reversed(calls):  # downstream first
        for up in call.upstream:
            if up in downstream:
                downstream[up] |= {call.name} | downstream[call.name]
    return [replace(c, priority=len(downstream[c.name])) for c in calls]


def changed_here(repo, names: set[str] | None = None) -> set[str]:
    """The stages among `names` (None: every stage) that `dvc status` reports changed in this
    checkout: one pass over the whole pipeline, which costs about what 5 targeted stages do."""
    changed = {address.rsplit(":", 1)[-1] for address in repo.status()}
    return changed if names is None else changed & set(names)


def plan_stage(root: str | Path, name: str, available: bool) -> StageCall:
    """One stage of dvc.yaml by address, with every stage it depends on as upstream; up to date
    when `available` (its record is merged into dvc.lock) and the record is current."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        stage = find_stage(graph, name, root)
        return stage_call(graph, stage, available and record_current(graph, stage))


def record_current(graph, stage) -> bool:
    """The stage's dvc.lock entry still describes it: same command and params, same
    dependencies (DVC's --allow-missing rule: a missing dependency counts as unchanged unless
    an upstream stage's recorded output differs from it). Its outputs are not looked at: they
    are published in the DVC remote, whatever copy of them this checkout holds."""
    with stage.repo.lock:
        return not stage.changed_stage() and not stage.changed_deps(True, list(graph.successors(stage)))


def stage_call(graph, stage, up_to_date: bool, among: set[str] | None = None) -> StageCall:
    """The StageCall of a DVC stage of `graph`; upstream: the stages it depends on (those in `among`)."""
    d, m, k = stage_cell(shlex.split(stage.cmd))
    upstream = sorted(s.name for s in graph.successors(stage) if among is None or s.name in among)
    return StageCall(name=stage.name, stage=stage.name.split("@")[0], argv=tuple(shlex.split(stage.cmd)),
                     upstream=tuple(upstream), dataset=d, model=m, seed=k, up_to_date=up_to_date)


def find_stage(graph, name: str, root: str | Path):
    """Stage `name` of the DVC graph; a host whose dvc.yaml lacks it gets a clear error."""
    stage = next((s for s in graph.nodes if s.name == name), None)
    require(stage is not None, f"{Path(root) / 'dvc.yaml'}", f"has no stage {name}: every host must check out "
            "the same commit and params file as the host that planned the grid")
    return stage


def overlaps(a: str, b: str) -> bool:
    """Two repository paths where one is the other or lies inside it."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def source_hashes(root: str | Path, names: list[str]) -> dict[str, dict[str, str]]:
    """Per stage, the hashes DVC computes here of its dependencies that no upstream stage
    produces (code, params): hosts that run a stage must see the same ones."""
    from dvc.repo import Repo

    found = {}
    with Repo(str(root)) as repo:
        graph = repo.index.graph
        for name in names:
            stage = find_stage(graph, name, root)
            produced = [str(o.def_path) for u in graph.successors(stage) for o in u.outs]
            found[name] = {str(d.def_path): json.dumps(d.get_hash().value, sort_keys=True, default=str)
                           for d in stage.deps if not any(overlaps(str(d.def_path), p) for p in produced)}
    return found


def upstream_freshness(calls: list[StageCall]) -> list[StageCall]:
    """A stage is up to date only when every stage upstream of it is too (dvc repro's rule:
    DVC's status cannot know that an upstream stage about to run will change its outputs)."""
    fresh: dict[str, bool] = {}
    out = []
    for call in calls:  # upstream first; stages outside `calls` were settled before
        fresh[call.name] = call.up_to_date and all(fresh.get(u, True) for u in call.upstream)
        out.append(replace(call, up_to_date=fresh[call.name]))
    return out


def after_aggregate(calls: list[StageCall]) -> set[str]:
    """aggregate and every stage downstream of it (e.g. report): they run once the cells have
    finished and their failures are recorded."""
    later = {c.name for c in calls if c.name == AGGREGATE_STAGE}
    for call in calls:  # upstream first
        if later & set(call.upstream):
            later.add(call.name)
    return later


def with_aggregate_stale(calls: list[StageCall], cells_changed: bool) -> list[StageCall]:
    """The stages from aggregate on, with aggregate out of date when a cell ran or failed."""
    return upstream_freshness([replace(c, up_to_date=c.up_to_date and not (cells_changed and c.name == AGGREGATE_STAGE))
                               for c in calls])


def first_failure(name: str, calls: dict[str, StageCall], results: dict[str, dict]) -> tuple[str, str] | None:
    """The failed stage behind `name` (itself or upstream), with its error."""
    if results[name]["status"] == "failed":
        return name, results[name]["error"]
    for up in calls[name].upstream:
        found = first_failure(up, calls, results)
        if found:
            return found
    return None
