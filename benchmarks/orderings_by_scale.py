"""The papers' orderings at several training lengths: does a failing ordering move with scale?

    .venv/bin/python benchmarks/orderings_by_scale.py params params.yaml --fraction 0.25 --out /tmp/x/params.yaml
    .venv/bin/python benchmarks/orderings_by_scale.py table 25%=a/metrics/summary.json 100%=metrics/summary.json

`params` writes a params file whose every iteration count (train.iterations and each model's
own) is `fraction` of the given file's, everything else equal: run it in a clone of the
repository (`make repro` there) for one point of the scale axis. `table` checks every ordering
of pipeline/findings.py on each labelled summary.json and prints a row per ordering, dataset
and metric with its verdict and the models' means at each label: an ordering that turns from
failing to holding as training grows is a matter of scale; one that fails at every length
(or moves away) is a candidate bug to look into. Where a results.parquet lies beside the
summary.json (the run's metrics/ folder), each verdict also says in how many seeds the whole
ordering holds, each seed's models compared with one another.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import findings, results  # noqa: E402


def scaled(iterations, fraction: float):
    """An iteration count times `fraction` (at least 1); a per-dataset mapping entry by entry."""
    if isinstance(iterations, dict):
        return {dataset: scaled(n, fraction) for dataset, n in iterations.items()}
    return max(1, round(iterations * fraction))


def scaled_params(params: dict, fraction: float) -> dict:
    """`params` with train.iterations and every model's train.iterations times `fraction`."""
    out = copy.deepcopy(params)
    for train in [out["train"], *(spec.get("train", {}) for spec in out.get("models", {}).values())]:
        if "iterations" in train:
            train["iterations"] = scaled(train["iterations"], fraction)
    return out


def seed_values(results_parquet: Path) -> dict[tuple[str, str, str], dict[int, float]]:
    """{(dataset, model, metric): {seed: value}} of a results.parquet's computed (status ok) rows."""
    frame = results.read_metrics(results_parquet)
    values: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in frame[frame["status"] == "ok"].itertuples():
        values.setdefault((row.dataset, row.variant, row.metric), {})[int(row.seed)] = float(row.value)
    return values


def seeds_holding(result: findings.Result, values: dict) -> tuple[int, int] | None:
    """(seeds in which every step of the ordering holds, seeds that all its models have); None
    when the result has no steps or its models share no seed."""
    models = {m for step in result.steps for m in (step.better, step.worse)}
    per_model = {m: values.get((result.dataset, m, result.metric), {}) for m in models}
    seeds = set.intersection(*(set(v) for v in per_model.values())) if per_model else set()
    if not seeds:
        return None

    def holds(step: findings.Step, seed: int) -> bool:
        better, worse = per_model[step.better][seed], per_model[step.worse][seed]
        return better > worse if result.finding.higher_is_better else better < worse

    return sum(all(holds(step, seed) for step in result.steps) for seed in seeds), len(seeds)


def verdict(result: findings.Result, values: dict | None = None) -> str:
    """'holds' / 'fails' with '*' when significant, then the models' means in the ordering, then
    (with per-seed `values`) the seeds in which it holds."""
    if result.verdict == findings.UNKNOWN:
        return "cannot tell"
    mark = "*" if result.significance == "significant" else ""
    means = {}
    for step in result.steps:
        means[step.better], means[step.worse] = step.better_stats.mean, step.worse_stats.mean
    text = f"{result.verdict}{mark}: " + ", ".join(f"{m} {v:.4g}" for m, v in means.items())
    counted = seeds_holding(result, values) if values else None
    return text + (f"; holds in {counted[0]} of {counted[1]} seeds" if counted else "")


def table(labelled: dict[str, dict], per_seed: dict[str, dict] | None = None) -> str:
    per_seed = per_seed or {}
    checked = {label: {r.key: r for r in findings.check(summary)} for label, summary in labelled.items()}
    keys = list(dict.fromkeys(k for results in checked.values() for k in results))
    lines = ["| ordering | dataset | " + " | ".join(labelled) + " |", "|---|---|" + "---|" * len(labelled)]
    for key in keys:
        any_result = next(results[key] for results in checked.values() if key in results)
        cells = [verdict(results[key], per_seed.get(label)) if key in results else "—"
                 for label, results in checked.items()]
        lines.append(f"| {any_result.finding.claim(key[2])} ({any_result.finding.source}) | {key[1]} | "
                     + " | ".join(cells) + " |")
    counts = {label: sum(r.verdict == findings.HOLDS for r in results.values()) for label, results in checked.items()}
    lines += ["", "holding: " + ", ".join(f"{label} {n} of {len(checked[label])}" for label, n in counts.items()),
              "'*': significant (Welch's t-test over seeds, Benjamini–Hochberg over all steps of one label)"]
    if per_seed:
        lines.append("'holds in k of n seeds': every step of the ordering holds within the seed "
                     f"(from results.parquet beside the summary: {', '.join(per_seed)})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="a params file with every iteration count scaled")
    p.add_argument("source", type=Path)
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table", help="the orderings of each labelled summary.json, side by side")
    t.add_argument("summaries", nargs="+", help="LABEL=path/to/summary.json")
    args = parser.parse_args()
    if args.command == "params":
        if not 0 < args.fraction:
            parser.error("--fraction must be > 0")
        scaled = scaled_params(yaml.safe_load(args.source.read_text()), args.fraction)
        args.out.write_text(yaml.safe_dump(scaled, sort_keys=False))
        print(f"wrote {args.out}: every iteration count x {args.fraction:g}")
    else:
        labelled, per_seed = {}, {}
        for item in args.summaries:
            label, sep, path = item.partition("=")
            if not sep:
                parser.error(f"{item!r}: give LABEL=path/to/summary.json")
            labelled[label] = json.loads(Path(path).read_text())
            beside = Path(path).parent / "results.parquet"
            if beside.exists():
                per_seed[label] = seed_values(beside)
        print(table(labelled, per_seed))


if __name__ == "__main__":
    main()
