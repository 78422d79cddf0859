"""What each pipeline stage does, as plain functions of (params, names, paths).

The DVC stage scripts, the `python -m pipeline` CLI and (later) the Prefect flows all call
these; none of them holds logic of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from pipeline import classifier as clf
from pipeline import data as datamod
from pipeline import results
from pipeline.config import Params
from pipeline.data import BatchSampler, load_prepared
from pipeline.datainfo import DataInfo
from pipeline.export import FrozenVAE, export_vae, load_vae_export
from pipeline.io import atomic_savez, atomic_torch_save, atomic_write_json, safe_torch_load
from pipeline.methods import REGISTRY, Method, build_method
from pipeline.schema import from_dict, stable_hash, to_dict
from pipeline.sections import ModelSpec, NetworkConfig
from pipeline.machine import cpu_name
from pipeline.training import Trainer, resolve_device, resolve_speed_options

MODEL_FORMAT = "model/1"


@contextlib.contextmanager
def stage_timer(name: str):
    """Print the wall time of a stage when it ends."""
    t0 = time.perf_counter()
    print(f"[{name}] started", flush=True)
    yield
    print(f"[{name}] finished in {time.perf_counter() - t0:.1f} s", flush=True)


def check_grid(params: Params) -> None:
    """Ask every grid model's method whether it can run on every grid dataset (before any training)."""
    for name in params.grid.models:
        for dataset in params.grid.datasets:
            spec = params.model(name, dataset)
            REGISTRY[spec.method].check_config(spec.config, dataset)


# ------------------------------------------------------------------ prepare


def prepare_dataset(params: Params, name: str, out_dir: Path) -> Path:
    with stage_timer(f"prepare {name}"):
        check_grid(params)
        out = datamod.prepare(name, params.dataset(name), Path(out_dir))
        sizes = load_prepared(out).meta["sizes"]
        print(f"[prepare {name}] wrote {out}: {sizes}")
        return out


# ------------------------------------------------------------------ train


def train_cell(params: Params, dataset: str, model: str, seed: int, data_dir: Path, out_dir: Path,
               checkpoint_dir: Path, vae_dir: Path | None = None, stop_at: int | None = None) -> Method:
    """Train one (dataset, model, seed) cell; writes model.pt, train_log.csv, run.json (and
    export.pt for stage-1 models) to out_dir. Resumes from checkpoint_dir when interrupted."""
    spec = params.model(model, dataset)
    cls = REGISTRY[spec.method]
    desc = f"train {model}/{dataset}/seed{seed}"
    with stage_timer(desc):
        check_grid(params)
        device = resolve_device(spec.train.device)
        cfg = resolve_speed_options(spec.train, device)  # run_hash and run.json record what ran
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(seed)
        data = load_prepared(data_dir)
        vae = None
        if cls.needs_vae:
            if vae_dir is None:
                raise ValueError(f"{model} ({spec.method}) builds on a frozen VAE export: pass --vae DIR")
            vae = load_vae_export(Path(vae_dir) / "export.pt", device)
        method = build_method(spec, data.info, params.networks, vae).to(device)
        run_hash = stable_hash({"model": spec.config_hash, "train": to_dict(cfg), "networks": to_dict(params.networks),
                                "data": data.meta["files"], "seed": seed,
                                "vae": getattr(vae, "content_hash", None)})
        sampler = BatchSampler(data.x("train"), data.info, cfg.batch_size, device, seed)
        out_dir = Path(out_dir)
        trainer = Trainer(method, sampler, cfg, Path(checkpoint_dir), out_dir / "train_log.csv",
                          run_hash, desc)
        rows = trainer.run(stop_at=stop_at)
        if trainer.iteration < cfg.iterations:
            return method  # stopped early on purpose (tests simulate a killed run this way)
        atomic_torch_save({"format": MODEL_FORMAT, "model": model, "method": spec.method,
                           "config": to_dict(spec.config), "networks": to_dict(params.networks),
                           "info": asdict(data.info), "vae_arch": vae.arch() if vae is not None else None,
                           "state_dict": {k: v.cpu() for k, v in method.state_dict().items()},
                           "iterations": trainer.iteration, "seed": seed, "run_hash": run_hash},
                          out_dir / "model.pt")
        if cls.exports_vae:
            digest = export_vae(method, out_dir / "export.pt", {"model": model, "dataset": dataset, "seed": seed,
                                                                "run_hash": run_hash, "iterations": trainer.iteration})
            print(f"[{desc}] frozen export {out_dir / 'export.pt'} (sha256 {digest[:12]})")
        atomic_write_json(out_dir / "run.json", {
            "dataset": dataset, "model": model, "method": spec.method, "seed": seed, "run_hash": run_hash,
            "config": to_dict(spec.config), "train": to_dict(cfg), "networks": to_dict(params.networks),
            "device": str(device), "cpu": cpu_name() if device.type == "cpu" else None,
            "threads": torch.get_num_threads(), "wall_time_s": round(trainer.wall_time, 2),
            "iterations_per_s": round(trainer.iteration / max(trainer.wall_time, 1e-9), 2),
            "final_losses": rows[-1] if rows else {}, "git_rev": results.git_revision()})
        return method


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Method, dict]:
    """Rebuild a trained method from model.pt (self-describing: config, data info, arch)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro` for the train stages first")
    blob = safe_torch_load(path, "re-run its train stage (`dvc repro`)")
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a {MODEL_FORMAT} file; re-run its train stage")
    config = from_dict(REGISTRY[blob["method"]].config_cls, blob["config"], f"{path}:config")
    vae = FrozenVAE.from_arch(blob["vae_arch"]) if blob["vae_arch"] else None
    spec = ModelSpec(blob["model"], blob["method"], config)
    method = build_method(spec, DataInfo.from_dict(blob["info"]), NetworkConfig(**blob["networks"]), vae)
    method.load_state_dict(blob["state_dict"])
    return method.to(device).eval(), blob


# ------------------------------------------------------------------ classifier


def train_classifier(params: Params, dataset: str, data_dir: Path, out_dir: Path) -> float | None:
    """The dataset's own feature networks, trained once per dataset on its training split, each
    with the training split's feature statistics cached beside it: the classifier (labelled image
    data) behind fd_classifier and the other classifier metrics, and the autoencoder (any image
    data, labels unused) behind fd_autoencoder. Returns the classifier's test accuracy.

    classifier.json records what was trained, or why not, so the DVC stage always has its output:
    vector data (toy2d) gets neither network (evaluate measures fd_data instead); unlabelled or
    single-class image data gets the autoencoder only, and None is returned (its classifier
    metrics are `missing` rows with that reason)."""
    from pipeline import autoencoder

    with stage_timer(f"train_classifier {dataset}"):
        data = load_prepared(data_dir)
        out_dir = Path(out_dir)
        record: dict = {"dataset": dataset}
        if data.info.kind == "image":
            model, test_mse = autoencoder.train_autoencoder(data, params.autoencoder)
            stats = train_split_stats(model.features, data, params.evaluate.batch_size)
            saved = autoencoder.save(model, data.info, params.autoencoder, stats, len(data.x("train")), out_dir)
            record["autoencoder"] = {**saved, "test_mse": test_mse}
            print(f"[train_classifier {dataset}] autoencoder test mse {test_mse:.4f} ([-1, 1] scale)")
        why = clf.dataset_without_classifier(data)
        if why:
            atomic_write_json(out_dir / "classifier.json", {**record, "applicable": False, "reason": why})
            print(f"[train_classifier {dataset}] no classifier: {why}")
            return None
        model, accuracy = clf.train_classifier(data, params.classifier)
        clf.save_classifier(model, data.info, params.classifier, accuracy, out_dir / "classifier.pt")
        mu, sigma = train_split_stats(model.features, data, params.evaluate.batch_size)
        atomic_savez(out_dir / "train_stats.npz", mu=mu, sigma=sigma, n=len(data.x("train")))
        atomic_write_json(out_dir / "classifier.json", {**record, "applicable": True, "test_accuracy": accuracy,
                                                        "n_train": len(data.x("train")),
                                                        "config": to_dict(params.classifier)})
        print(f"[train_classifier {dataset}] test accuracy {accuracy:.4f}")
        return accuracy


def train_split_stats(features: Callable[[torch.Tensor], torch.Tensor], data: datamod.Prepared,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the training split in the feature space `features` (images in [0, 255])."""
    from pipeline import metrics

    train = data.x("train")
    return metrics.feature_stats(metrics.extract_features(metrics.array_source(train), features, len(train),
                                                          batch_size, desc="train features"))


def read_classifier_record(classifier_dir: Path) -> dict:
    path = Path(classifier_dir) / "classifier.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro train_classifier` first")
    return json.loads(path.read_text())


def load_classifier_dir(classifier_dir: Path):
    """The dataset classifier and its training-split statistics ((None, None) when classifier.json
    says the dataset has none)."""
    if read_classifier_record(classifier_dir).get("applicable") is False:
        return None, None
    model, _ = clf.load_classifier(Path(classifier_dir) / "classifier.pt")
    stats = np.load(Path(classifier_dir) / "train_stats.npz")
    return model, (stats["mu"], stats["sigma"])


def load_autoencoder_dir(classifier_dir: Path):
    """The dataset autoencoder behind fd_autoencoder (None when classifier.json records none)."""
    from pipeline import autoencoder

    if "autoencoder" not in read_classifier_record(classifier_dir):
        return None
    return autoencoder.load(classifier_dir)


# ------------------------------------------------------------------ evaluate


def evaluate_cell(params: Params, dataset: str, model: str, seed: int, data_dir: Path, model_dir: Path,
                  out_dir: Path, classifier_dir: Path | None = None) -> pd.DataFrame:
    """Metrics of one cell -> out_dir/metrics.parquet, plus samples.png / reconstructions.png."""
    from pipeline.evaluate import CellEvaluator  # here, not at the top: training stages start 2.8 s faster

    with stage_timer(f"evaluate {model}/{dataset}/seed{seed}"):
        if params.train.threads:
            torch.set_num_threads(params.train.threads)
        device = resolve_device(params.evaluate.device)
        method, blob = load_model(Path(model_dir) / "model.pt", device)
        data = load_prepared(data_dir)
        classifier, stats, autoencoder = None, None, None
        if classifier_dir is not None and data.info.kind == "image":
            classifier, stats = load_classifier_dir(classifier_dir)
            autoencoder = load_autoencoder_dir(classifier_dir)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = CellEvaluator(method, data, params.evaluate, out_dir, classifier, stats, seed,
                             autoencoder=autoencoder).rows()
        df = pd.DataFrame([asdict(r) for r in rows])
        df.insert(0, "seed", seed)
        df.insert(0, "variant", model)
        df.insert(0, "method", blob["method"])
        df.insert(0, "dataset", dataset)
        df["git_rev"] = results.git_revision()
        df["params_hash"] = stable_hash({"run": blob["run_hash"], "evaluate": to_dict(params.evaluate)})
        df["checkpoint"] = f"{blob['run_hash']}@{blob['iterations']}"
        results.write_metrics(df, out_dir / "metrics.parquet")
        for r in rows:
            shown = f"{r.value:.4f}" if r.status == "ok" else f"{r.status} ({r.reason[:60]}...)"
            print(f"  {r.metric:>14}: {shown}  [{r.time_s:.1f} s]")
        return df


def record_failed_cell(params: Params, dataset: str, model: str, seed: int, out_dir: Path, stage: str,
                       error: str) -> pd.DataFrame:
    """A cell whose training or evaluation failed: one `failed` row (metric `cell`, the failing
    stage and its error as reason) written where evaluate_cell writes, so aggregate and
    table.md show the failure next to the other cells."""
    spec = params.model(model, dataset)
    row = {"dataset": dataset, "method": spec.method, "variant": model, "seed": seed, "metric": "cell",
           "value": float("nan"), "status": "failed", "reason": f"{stage}: {error}", "time_s": 0.0,
           "git_rev": results.git_revision(), "params_hash": stable_hash(
               {"model": spec.config_hash, "train": to_dict(spec.train), "evaluate": to_dict(params.evaluate)})}
    for f in results.SCHEMA:  # provenance a failed cell does not have (split, scale, n_samples, ...): empty
        row.setdefault(f.name, "" if str(f.type) == "string" else 0 if str(f.type) == "int64" else float("nan"))
    df = pd.DataFrame([row])
    results.write_metrics(df, Path(out_dir) / "metrics.parquet")
    return df


def aggregate(params: Params, evals_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Every grid cell's metrics.parquet under evals_dir -> results.parquet, summary.json, table.md."""
    with stage_timer("aggregate"):
        g = params.grid
        files = [Path(evals_dir) / d / m / f"seed{s}" / "metrics.parquet"
                 for d in g.datasets for m in g.evaluate for s in g.seeds]
        absent = [str(f) for f in files if not f.exists()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} grid cells have no metrics yet (e.g. {absent[0]}): "
                                    "run `dvc repro` (the evaluate stages) first")
        from pipeline import report as report_mod

        df = report_mod.aggregate(files, out_dir, params.grid.evaluate)
        print(f"[aggregate] {len(files)} cells, {len(df)} rows -> {out_dir}")
        return df


def report(params: Params, results_path: Path, evals_dir: Path, out_path: Path, models_dir: Path | None = None,
           curves_dir: Path | None = None) -> Path:
    """metrics/results.parquet + the per-cell PNGs under evals_dir (+ training logs under models_dir)
    -> one self-contained HTML page; curves_dir gets the per-term CSVs that `dvc plots show` draws."""
    from pipeline import report as report_mod
    from pipeline.io import atomic_write_text

    with stage_timer("report"):
        df = results.read_metrics(results_path)
        curves = report_mod.training_curves(models_dir, df[["dataset", "variant", "seed"]].drop_duplicates()) \
            if models_dir else {}
        if curves_dir:
            report_mod.write_curves(curves, curves_dir)
        page = report_mod.html_report(df, params.grid.evaluate, Path(evals_dir), params.raw, curves)
        atomic_write_text(out_path, page)
        print(f"[report] {len(df)} rows -> {out_path} ({len(page) / 1e6:.1f} MB)")
        return Path(out_path)
