"""Training it/s of every grid model in fp32, NCHW against channels_last, on this CPU: the
measurement behind `train.channels_last: auto` being on for every CPU.

    .venv/bin/python benchmarks/channels_last.py [--params params.yaml] [--steps 45] [models ...]

Each model's two configurations are built side by side and timed in three interleaved rounds
(pipeline.bench.time_configs, the bench's own timer: each keeps its best round), at the
params' network and batch sizes on synthetic 32 px images. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import bench  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.machine import describe_cpu  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    params = load_params(args.params)
    models = args.models or params.grid.models
    info, device = bench.synthetic_info(32, 1), torch.device("cpu")
    speeds = {"nchw": bench.ALL_OFF, "channels_last": {**bench.ALL_OFF, "channels_last": True}}
    print(describe_cpu())
    print("\n| model | fp32 NCHW it/s | fp32 channels_last it/s | ratio |\n|---|---|---|---|")
    for model in models:
        timed = bench.time_configs(model, params, info, device, speeds, 5, args.steps)
        nchw, last = timed["nchw"]["it_s"], timed["channels_last"]["it_s"]
        print(f"| {model} | {nchw:.1f} | {last:.1f} | {last / nchw:.2f} |", flush=True)


if __name__ == "__main__":
    main()
