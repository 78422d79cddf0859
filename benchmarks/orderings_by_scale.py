"""The papers' orderings at several training lengths: does a failing ordering move with scale?

    .venv/bin/python benchmarks/orderings_by_scale.py params params.yaml --fraction 0.25 --out /tmp/x/params.yaml
    .venv/bin/python benchmarks/orderings_by_scale.py table 25%=a/metrics/summary.json 100%=metrics/summary.json

`params` writes a params file whose every iteration count (train.iterations and each model's
own) is `fraction` of the given file's, everything else equal: run it in a clone of the
repository (`make repro` there) for one point of the scale axis. `table` checks every ordering
of pipeline/findings.py on each labelled summary.json and prints a row per ordering, dataset
and metric with its verdict and the models' means at each label: an ordering that turns from
failing to holding as training grows is a matter of scale; one that fails at every length
(or moves away) is a candidate bug to look into.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import findings  # noqa: E402


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


def verdict(result: findings.Result) -> str:
    """'holds' / 'fails' with '*' when significant, then the models' means in the ordering."""
    if result.verdict == findings.UNKNOWN:
        return "cannot tell"
    mark = "*" if result.significance == "significant" else ""
    means = {}
    for step in result.steps:
        means[step.better], means[step.worse] = step.better_stats.mean, step.worse_stats.mean
    return f"{result.verdict}{mark}: " + ", ".join(f"{m} {v:.4g}" for m, v in means.items())


def table(labelled: dict[str, dict]) -> str:
    checked = {label: {r.key: r for r in findings.check(summary)} for label, summary in labelled.items()}
    keys = list(dict.fromkeys(k for results in checked.values() for k in results))
    lines = ["| ordering | dataset | " + " | ".join(labelled) + " |", "|---|---|" + "---|" * len(labelled)]
    for key in keys:
        any_result = next(results[key] for results in checked.values() if key in results)
        cells = [verdict(results[key]) if key in results else "—" for results in checked.values()]
        lines.append(f"| {any_result.finding.claim(key[2])} ({any_result.finding.source}) | {key[1]} | "
                     + " | ".join(cells) + " |")
    counts = {label: sum(r.verdict == findings.HOLDS for r in results.values()) for label, results in checked.items()}
    lines += ["", "holding: " + ", ".join(f"{label} {n} of {len(checked[label])}" for label, n in counts.items()),
              "'*': significant (Welch's t-test over seeds, Benjamini–Hochberg over all steps of one label)"]
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
        labelled = {}
        for item in args.summaries:
            label, sep, path = item.partition("=")
            if not sep:
                parser.error(f"{item!r}: give LABEL=path/to/summary.json")
            labelled[label] = json.loads(Path(path).read_text())
        print(table(labelled))


if __name__ == "__main__":
    main()
