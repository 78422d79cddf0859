"""The grid as DVC resolves it (pipeline/plan.py): stages, order, upstream edges, freshness."""

from __future__ import annotations

import pytest

from pipeline import plan
from pipeline.config import load_params
from pipeline.schema import ConfigError
from tests.grid_repo import dvc, make_repo
from tests.toy_dvc import make_origin

CELLS = [(d, m, s) for d in ("toy2d", "fashion_mnist") for m in ("vae", "avae_b") for s in (0, 1)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("plan"))


def by_cell(calls, stage, dataset, model=None, seed=None) -> plan.StageCall:
    return next(c for c in calls if (c.stage, c.dataset, c.model, c.seed) == (stage, dataset, model, seed))


def test_plan_covers_the_grid_upstream_first(repo):
    calls = plan.plan_grid(repo, load_params(repo / "params.yaml"))
    names = [c.name for c in calls]
    # 2 prepare, 4 VAEs, 4 stage-2 models, 2 classifiers, 8 evaluations, aggregate; and stages outside the grid
    assert len([c for c in calls if c.dataset]) == 20
    assert max(i for i, c in enumerate(calls) if c.stage == "evaluate") < names.index("aggregate")
    listed = dvc(repo, "stage", "list", "--name-only").stdout.split()
    assert sorted(names) == sorted(listed)  # the whole grid = every stage of dvc.yaml
    for i, call in enumerate(calls):
        assert set(call.upstream) <= set(names[:i]), f"{call.name} comes before its upstream {call.upstream}"
        assert not call.up_to_date  # nothing has run in the new repository
    stage2 = next(c for c in calls if c.model == "avae_b" and c.dataset == "fashion_mnist" and c.seed == 1
                  and c.stage != "evaluate")
    assert stage2.label == f"{stage2.stage} avae_b/fashion_mnist/seed1"
    vae = next(c for c in calls if c.model == "vae" and c.dataset == "fashion_mnist" and c.seed == 1
               and c.stage != "evaluate")
    assert set(stage2.upstream) == {"prepare@fashion_mnist", vae.name}
    evaluate = by_cell(calls, "evaluate", "toy2d", "vae", 0)
    assert set(evaluate.upstream) == {"prepare@toy2d", by_cell(calls, vae.stage, "toy2d", "vae", 0).name,
                                      "train_classifier@toy2d"}
    assert evaluate.option("--out") == "evals/toy2d/vae/seed0"
    assert by_cell(calls, "prepare", "toy2d").label == "prepare toy2d"
    assert next(c for c in calls if c.name == "aggregate").upstream
    # every (dataset, model, seed) cell is evaluated exactly once
    assert sorted((c.dataset, c.model, c.seed) for c in calls if c.stage == "evaluate") == sorted(CELLS)
    assert plan.after_aggregate(calls) >= {"aggregate", "report"}
    # priority: the stages downstream (the VAE: its stage-2 model, both evaluations, aggregate, report)
    assert vae.priority == 5 and stage2.priority == 3 and evaluate.priority == 2
    assert next(c for c in calls if c.name == "report").priority == 0
    assert by_cell(calls, "prepare", "toy2d").priority > vae.priority


def test_plan_of_one_cell_pulls_in_what_it_needs(repo):
    calls = plan.plan_grid(repo, load_params(repo / "params.yaml"), datasets=["toy2d"], seeds=[1], models=["avae_b"],
                           aggregate=False)
    assert calls[0].name == "prepare@toy2d" and len(calls) == 5  # + classifier, VAE, avae_b, its evaluation
    assert {(c.model, c.stage == "evaluate") for c in calls} == {(None, False), ("vae", False), ("avae_b", False),
                                                                ("avae_b", True)}
    assert all(c.dataset == "toy2d" and c.seed in (1, None) for c in calls)


def test_selection_outside_the_grid_is_refused(repo):
    params = load_params(repo / "params.yaml")
    with pytest.raises(ConfigError, match=r"grid\.seeds.*\[7\].*params\.yaml"):
        plan.plan_grid(repo, params, seeds=[7])
    with pytest.raises(ConfigError, match="gan"):
        plan.plan_grid(repo, params, models=["gan"])


def test_one_stage_by_address_and_its_source_hashes(repo):
    call = plan.plan_stage(repo, "evaluate@toy2d-vae-0", available=True)
    assert call.stage == "evaluate" and (call.dataset, call.model, call.seed) == ("toy2d", "vae", 0)
    assert not call.up_to_date  # no dvc.lock entry
    assert "train_classifier@toy2d" in call.upstream
    sources = plan.source_hashes(repo, ["evaluate@toy2d-vae-0"])["evaluate@toy2d-vae-0"]
    assert set(sources) == {"pipeline", "stages/evaluate.py", "params.yaml"}  # not data/, models/, classifiers/
    with pytest.raises(ConfigError, match=r"no stage nope@x.*same commit"):
        plan.plan_stage(repo, "nope@x", available=False)


def test_changed_stages_are_those_dvc_status_names(tmp_path):
    from dvc.repo import Repo

    origin, _ = make_origin(tmp_path)
    assert dvc(origin, "repro", "make").returncode == 0
    with Repo(str(origin)) as repo:
        assert plan.changed_here(repo) == {"train", "report"}
        assert plan.changed_here(repo, {"make", "train"}) == {"train"}
        # the same answer as DVC's status of each stage on its own
        assert {n for n in ("make", "train", "report") if repo.status(targets=[plan.target(origin, n)])} == {"train", "report"}


def test_stage_cell_reads_positional_arguments():
    assert plan.stage_cell(["python", "-m", "stages.train", "d", "m", "3", "--out", "x"]) == ("d", "m", 3)
    assert plan.stage_cell(["python", "-m", "stages.prepare", "d", "--out", "x"]) == ("d", None, None)
    assert plan.stage_cell(["python", "-m", "stages.aggregate", "--evals", "e"]) == (None, None, None)


def test_freshness_flows_down_and_aggregate_reruns_when_a_cell_changed():
    def call(name, *up, fresh=True):
        return plan.StageCall(name, name, (), up, None, None, None, fresh)

    calls = plan.upstream_freshness([call("a", fresh=False), call("b", "a"), call("c")])
    assert [c.up_to_date for c in calls] == [False, False, True]
    later = plan.with_aggregate_stale([call("aggregate"), call("report", "aggregate")], cells_changed=True)
    assert [c.up_to_date for c in later] == [False, False]


def test_overlapping_paths():
    assert plan.overlaps("models", "models/toy2d/vae/seed0") and plan.overlaps("evals/a/", "evals/a")
    assert not plan.overlaps("models/a", "models/ab")
