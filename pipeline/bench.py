"""`python -m pipeline bench`: training and evaluation throughput, side by side with every
speed option off, FLOPs per step and the projected cost of the paper grid.

For each model it times the same training step side by side in one run: the plain loop
(fp32, eager, no fused optimiser, NCHW), the loop with the speed options of params' `train`
section (or all of them on a GPU with `--all-on`) and, with `--each`, every option alone.
The configurations are timed in three interleaved rounds and each keeps its best round, so a
shared machine's drift cannot favour one of them. FLOPs per step are counted with
torch.utils.flop_counter; the fraction of the device's peak is given where the peak is
known. Seeds packed per device are measured as concurrent processes (the grid flow packs
cells the same way). Benchmarks print figures; no test asserts a time.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from pipeline.config import Params
from pipeline.data import BatchSampler
from pipeline.datainfo import DataInfo
from pipeline.execute import slot_threads, thread_env
from pipeline.export import export_vae, load_vae_export
from pipeline.methods import REGISTRY, build_method
from pipeline.sections import ModelSpec
from pipeline.machine import describe_cpu, peak_flops
from pipeline.training import Trainer, resolve_device, resolve_speed_options

# AVAE Table 1: 7 rows x 5 datasets x 5 seeds x 5e4 iterations, FID on 50,000 samples

ALL_OFF = {"channels_last": False, "autocast": "off", "fused_optimizer": False, "compile": False}
ALL_ON_GPU = {"channels_last": True, "autocast": "bf16", "fused_optimizer": True, "compile": True}


class FlopCount(TorchDispatchMode):
    """FLOPs of the aten ops run inside, by torch.utils.flop_counter's formulas, without
    FlopCounterMode's module tracker (its autograd hooks break under autograd.grad, which
    WGAN-GP's gradient penalty calls)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def synthetic_info(resolution: int, channels: int) -> DataInfo:
    return DataInfo(f"synthetic{resolution}", "image", (channels, resolution, resolution), "[-1,1]", 10)


def bench_spec(params: Params, model: str):
    """The model's row as the grid's first dataset resolves it (per-dataset values)."""
    return params.model(model, params.grid.datasets[0])


def synthetic_export(model: str, params: Params, info: DataInfo, device: torch.device):
    """The frozen export `model` trains on: its grid stage-1 model (the plain VAE for a model
    outside the grid), untrained, exported and loaded back as train_cell would."""
    stage1 = params.grid.stage1_of(model)
    spec = bench_spec(params, stage1) if stage1 else ModelSpec("vae", "vae", REGISTRY["vae"].config_cls())
    method = build_method(spec, info, params.networks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.pt"
        export_vae(method, path, {})
        return load_vae_export(path, device)


def build(model: str, params: Params, info: DataInfo, device: torch.device):
    spec = bench_spec(params, model)
    vae = synthetic_export(model, params, info, device) if REGISTRY[spec.method].needs_vae else None
    return build_method(spec, info, params.networks, vae).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedRun:
    """One configuration's trainer, built and warmed up, kept alive so that configurations can
    be timed in interleaved rounds (a drift in the machine's speed then hits them all alike)."""

    def __init__(self, model: str, params: Params, info: DataInfo, device: torch.device, speed: dict,
                 warmup: int, tmp: Path):
        torch.manual_seed(0)
        self.device = device
        cfg = dataclasses.replace(bench_spec(params, model).train, **speed, iterations=10**9)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0  # runs built before this one
        method = build(model, params, info, device)
        data = np.random.default_rng(0).integers(0, 256, (max(4 * cfg.batch_size, 512), *info.shape), dtype=np.uint8)
        sampler = BatchSampler(data, info, cfg.batch_size, device, 0)
        self.trainer = Trainer(method, sampler, cfg, tmp / "ck", tmp / "log.csv", "bench", f"bench {model}")
        method.train()
        for _ in range(warmup):
            self.trainer.step()
        sync(device)
        self.peak_bytes = None
        if device.type == "cuda":  # this run's own peak: what it allocates on top of the runs alive before it
            torch.cuda.reset_peak_memory_stats(device)
            for _ in range(2):
                self.trainer.step()
            sync(device)
            self.peak_bytes = torch.cuda.max_memory_allocated(device) - base
        self.rates: list[float] = []
        self.steps, self.elapsed = 0, 0.0

    def time(self, steps: int) -> None:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.trainer.step()
        sync(self.device)
        dt = time.perf_counter() - t0
        self.rates.append(steps / dt)
        self.steps, self.elapsed = self.steps + steps, self.elapsed + dt

    def result(self) -> dict:
        """it_s: the best round (a shared machine only ever slows a round down); mean_it_s: all rounds."""
        with FlopCount() as counter:
            self.trainer.step()
        return {"it_s": max(self.rates), "mean_it_s": self.steps / self.elapsed, "flops": counter.total,
                "peak_bytes": self.peak_bytes}


def time_configs(model: str, params: Params, info: DataInfo, device: torch.device, speeds: dict[str, dict],
                 warmup: int, steps: int, rounds: int = 3) -> dict[str, dict]:
    """Iterations/s, FLOPs per iteration and peak memory of each named configuration, `steps`
    timed iterations each, in `rounds` interleaved rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: TimedRun(model, params, info, device, speed, warmup, Path(tmp) / name)
                for name, speed in speeds.items()}
        for chunk in np.array_split(np.arange(steps), min(rounds, steps)):
            for run in runs.values():
                run.time(len(chunk))
        return {name: run.result() for name, run in runs.items()}


def images_per_s(fn, images: torch.Tensor, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Images/s of fn over `repeats` batches (one warm-up batch first)."""
    fn(images[:batch])
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(images[:batch])
    sync(device)
    return repeats * min(batch, len(images)) / (time.perf_counter() - t0)


def time_generation(model: str, params: Params, info: DataInfo, device: torch.device, n: int = 2000) -> float:
    """Generated images per second (eval mode, batch = evaluate.batch_size, about n images)."""
    method = build(model, params, info, device).eval()
    batch = params.evaluate.batch_size
    with torch.no_grad():
        return images_per_s(lambda z: method.sample(len(z)), torch.empty(batch, 0), batch, device,
                            repeats=max(1, n // batch))


def time_extractors(params: Params, info: DataInfo, device: torch.device) -> dict:
    """Images/s of each evaluation feature path at evaluate.batch_size: the dataset classifier,
    clean-fid's resize to 299x299 (PIL bicubic, on the CPU: it feeds Inception), and Inception-v3
    (torchvision's architecture with random weights: a throughput figure only, never a metric)."""
    import torchvision

    from pipeline.classifier import Classifier
    from pipeline.metrics import batch_resizer

    batch = params.evaluate.batch_size
    images = torch.randint(0, 256, (batch, *info.shape), dtype=torch.uint8)
    classifier = Classifier(info, params.classifier).to(device).eval()
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).to(device).eval()
    resize = batch_resizer("clean")
    inception_batch = min(batch, 100 if device.type == "cuda" else 8)  # a CPU takes seconds per image batch
    rgb = images.expand(-1, 3, -1, -1) if info.channels == 1 else images
    with torch.no_grad():
        return {
            "classifier_img_s": images_per_s(lambda x: classifier.features(x.to(device).float()), images, batch, device),
            "resize299_img_s": images_per_s(resize, rgb, 64, device),
            "inception_img_s": images_per_s(lambda x: inception(x.to(device).float()), torch.randint(
                0, 256, (inception_batch, 3, 299, 299), dtype=torch.uint8), inception_batch, device, repeats=2),
        }


def time_packed(model: str, params_path: str, resolution: int, channels: int, seeds: int, steps: int) -> dict:
    """Aggregate iterations/s of `seeds` concurrent processes vs one process alone."""
    cmd = [sys.executable, "-m", "pipeline", "--params", params_path, "bench", "--models", model,
           "--resolution", str(resolution), "--channels", str(channels), "--steps", str(steps), "--json",
           "--no-packing", "--plain-only"]
    # on a CPU the packed processes share its cores, as the grid's CPU slots do
    packed_env = None if torch.cuda.is_available() else thread_env(slot_threads(seeds))

    def run(n: int, env: dict[str, str] | None = None) -> tuple[float, float | None]:
        """Total it/s of n concurrent processes (environment `env`, None: this one's) and the
        sum of their peak GPU memories."""
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
        outs = [p.communicate()[0] for p in procs]
        plain = [json.loads(o.strip().splitlines()[-1])[0]["plain"] for o in outs]
        memory = [r["peak_bytes"] for r in plain if r["peak_bytes"]]
        # whole-run rates, not best chunks: the processes must be measured over the same stretch
        return sum(r["mean_it_s"] for r in plain), (sum(memory) if memory else None)

    single, _ = run(1)
    packed, memory = run(seeds, packed_env)
    return {"single_it_s": single, "packed_it_s": packed, "ratio": packed / single, "packed_peak_bytes": memory}


def project(params: Params, rows: list[dict], extractors: dict | None = None) -> dict:
    """Device-hours of the params file's grid from the measured rates: training (each trained
    cell's iterations, per dataset as params resolve them, at its model's fast rate; a model
    not timed takes the mean rate) and metrics (generating evaluate.n_samples per evaluated
    cell, resizing them to 299 px and extracting Inception and classifier features; each
    dataset's real statistics once)."""
    g = params.grid
    rate = {r["model"]: r["fast"]["it_s"] for r in rows}
    mean_rate = float(np.mean(list(rate.values())))
    train_s = len(g.seeds) * sum(params.model(m, d).train.iterations / rate.get(m, mean_rate)
                                 for d in g.datasets for m in [*g.pretrain, *g.baselines, *g.stage2_models])
    out = {"train_h": train_s / 3600, "cells": len(g.datasets) * len(g.seeds) * len(g.evaluate)}
    if extractors:
        per_image_s = 1 / extractors["inception_img_s"] + 1 / extractors["classifier_img_s"]
        gen_s = np.mean([1 / r["gen_img_s"] for r in rows])
        resize_s = 1 / extractors["resize299_img_s"]  # one CPU core per process, not overlapped with the GPU
        n, cells, datasets = params.evaluate.n_samples, out["cells"], len(g.datasets)
        out["metrics_h"] = (cells * n * (gen_s + per_image_s + resize_s) + datasets * n * (per_image_s + resize_s)) / 3600
        out["resize_h"] = (cells + datasets) * n * resize_s / 3600
    out["total_h"] = out["train_h"] + out.get("metrics_h", 0.0)
    return out


def bench(params: Params, models: list[str], resolution: int, channels: int, steps: int, warmup: int,
          speed: dict, plain_only: bool, each: bool = False) -> list[dict]:
    """Per model: the plain loop ("plain"), the chosen speed options ("fast") and, with `each`,
    every option alone, timed side by side in interleaved rounds."""
    device = resolve_device(params.train.device)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    info = synthetic_info(resolution, channels)
    rows = []
    for model in models:
        speeds = {"plain": ALL_OFF}
        if not plain_only:
            speeds["fast"] = speed
        if each:  # which switch pays on this device
            speeds.update({option: {**ALL_OFF, option: on} for option, on in ALL_ON_GPU.items()})
        timed = time_configs(model, params, info, device, speeds, warmup, steps)
        row = {"model": model, "device": str(device), "resolution": resolution,
               "batch": bench_spec(params, model).train.batch_size, "width": params.networks.width,
               "plain": timed["plain"]}
        if not plain_only:
            row["fast"] = timed["fast"]
            row["gen_img_s"] = time_generation(model, params, info, device)
        if each:
            row["each"] = {option: timed[option]["it_s"] for option in ALL_ON_GPU}
        rows.append(row)
    return rows


def each_table(rows: list[dict]) -> str:
    lines = ["each option alone, it/s (ratio to plain):", "",
             "| model | plain | " + " | ".join(ALL_ON_GPU) + " |", "|---|---|" + "---|" * len(ALL_ON_GPU)]
    for r in rows:
        plain = r["plain"]["it_s"]
        lines.append(f"| {r['model']} | {plain:.1f} | " +
                     " | ".join(f"{r['each'][o]:.1f} ({r['each'][o] / plain:.2f})" for o in ALL_ON_GPU) + " |")
    return "\n".join(lines)


def table(rows: list[dict], speed: dict, device: torch.device) -> str:
    peak, fp32_peak = peak_flops(device, speed.get("autocast", "off")), peak_flops(device, "off")
    lines = [f"speed options: {speed}", *([describe_cpu()] if device.type == "cpu" else []), "",
             "| model | px | plain it/s | fast it/s | ratio | GFLOP/it | plain % of fp32 peak | fast % of its peak "
             "| peak mem (GB) | gen img/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fast, plain = r["fast"], r["plain"]
        pct = f"{100 * fast['flops'] * fast['it_s'] / peak:.1f}" if peak else "n/a"
        plain_pct = f"{100 * plain['flops'] * plain['it_s'] / fp32_peak:.1f}" if fp32_peak else "n/a"
        mem = f"{fast['peak_bytes'] / 1e9:.2f}" if fast["peak_bytes"] else "n/a"
        lines.append(f"| {r['model']} | {r['resolution']} | {plain['it_s']:.1f} | {fast['it_s']:.1f} | "
                     f"{fast['it_s'] / plain['it_s']:.2f} | {fast['flops'] / 1e9:.2f} | {plain_pct} | {pct} | {mem} | "
                     f"{r['gen_img_s']:.0f} |")
    return "\n".join(lines)


def main(params: Params, params_path: str, models: list[str] | None, resolution: int, channels: int,
         steps: int, warmup: int, all_on: bool, packing: int, as_json: bool, plain_only: bool,
         each: bool = False) -> int:
    models = models or [m for m in params.grid.models if m in params.models]
    device = resolve_device(params.train.device)
    fields = ALL_OFF.keys()
    resolved = resolve_speed_options(params.train, device)  # `auto` made concrete for this device
    speed = dict(ALL_ON_GPU) if all_on else {k: getattr(resolved, k) for k in fields}
    rows = bench(params, models, resolution, channels, steps, warmup, speed, plain_only, each)
    if as_json:
        print(json.dumps(rows))
        return 0
    print(table(rows, speed, device))
    if each:
        print("\n" + each_table(rows))
    extractors = time_extractors(params, synthetic_info(resolution, channels), device)
    print("\nevaluation feature paths (images/s, batch = evaluate.batch_size): " +
          ", ".join(f"{k.removesuffix('_img_s')} {v:.0f}" for k, v in extractors.items()) +
          " (inception: torchvision's Inception-v3 architecture, random weights: throughput only)")
    hours = project(params, rows, extractors)
    print(f"\nprojected grid of {params_path} ({hours['cells']} evaluated cells, the models' own iterations, "
          f"metrics on {params.evaluate.n_samples:,} samples per cell; one cell at a time at these settings, "
          f"{resolution} px): {hours['total_h']:.1f} device-hours = training {hours['train_h']:.1f} + metrics "
          f"{hours['metrics_h']:.1f} (of which the CPU resize to 299 px {hours['resize_h']:.1f})")
    if packing > 1:
        packed = time_packed(models[0], params_path, resolution, channels, packing, steps)
        print(f"\n{packing} seeds packed as concurrent processes on one device ({models[0]}): "
              f"{packed['packed_it_s']:.1f} it/s in total vs {packed['single_it_s']:.1f} it/s alone "
              f"= {packed['ratio']:.2f}x the throughput of running them one after another; peak GPU memory of the "
              f"{packing} together: " + (f"{packed['packed_peak_bytes'] / 1e9:.2f} GB" if packed["packed_peak_bytes"]
                                        else "n/a (no GPU)"))
    return 0
