"""benchmarks/orderings_by_scale.py: the per-seed count of an ordering, from a results.parquet."""

import importlib.util
import math
from pathlib import Path

import pandas as pd

from pipeline import findings, results
from tests.test_results import frame

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "orderings_by_scale.py"
spec = importlib.util.spec_from_file_location("orderings_by_scale", SCRIPT)
orderings_by_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(orderings_by_scale)


def summary_of(values: dict) -> dict:
    """summary.json's shape from {(dataset, model, metric): {seed: value}} (std 1: these tests do not look at significance)."""
    out: dict = {}
    for (dataset, model, metric), by_seed in values.items():
        mean = sum(by_seed.values()) / len(by_seed)
        out.setdefault(dataset, {}).setdefault(model, {})[metric] = {"mean": mean, "std": 1.0, "n": len(by_seed)}
    return out


def result_for(summary: dict, finding_id: str, metric: str) -> findings.Result:
    return next(r for r in findings.check(summary) if r.finding.id == finding_id and r.metric == metric)


def test_an_ordering_counts_the_seeds_where_its_models_compare_as_the_paper_says():
    # lower fd_classifier is better: gan beats vae in seeds 0 and 2, not in 1; seed 3 has no vae
    values = {("d", "gan", "fd_classifier"): {0: 1.0, 1: 5.0, 2: 2.0, 3: 0.5},
              ("d", "vae", "fd_classifier"): {0: 3.0, 1: 4.0, 2: 6.0}}
    result = result_for(summary_of(values), "avae-t1-fid-gan", "fd_classifier")
    assert orderings_by_scale.seeds_holding(result, values) == (2, 3)
    assert orderings_by_scale.verdict(result, values).endswith("; holds in 2 of 3 seeds")
    assert "seeds" not in orderings_by_scale.verdict(result)


def test_a_chain_holds_in_a_seed_only_when_every_step_does():
    # the 004 mse chain, lower is better: avae_s < vae_s < avae_finetune < vae_mse
    chain = ("avae_s", "vae_s", "avae_finetune", "vae_mse")
    per_seed = {0: (1, 2, 3, 4), 1: (1, 3, 2, 4), 2: (1, 2, 3, 3.5)}  # seed 1 breaks the middle step
    values = {("d", m, "mse"): {s: v[i] for s, v in per_seed.items()} for i, m in enumerate(chain)}
    result = result_for(summary_of(values), "avae-s-mse", "mse")
    assert orderings_by_scale.seeds_holding(result, values) == (2, 3)


def test_seed_values_reads_computed_rows_only(tmp_path):
    rows = [frame(variant="gan", seed=0, metric="fd_classifier", value=1.5),
            frame(variant="gan", seed=1, metric="fd_classifier", value=2.5),
            frame(variant="gan", seed=0, metric="fid", value=math.nan, status="missing", reason="no weights")]
    path = results.write_metrics(pd.concat(rows), tmp_path / "results.parquet")
    assert orderings_by_scale.seed_values(path) == {("fashion_mnist", "gan", "fd_classifier"): {0: 1.5, 1: 2.5}}
