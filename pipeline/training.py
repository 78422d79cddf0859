"""The generic training loop. It knows phases, never a method or a loss term.

Each iteration runs the method's phases in order; a phase updates only its own modules
(every other parameter has requires_grad off while it runs) with its own Adam optimiser,
`steps` times; a phase whose loss returns a false "gate" term skips that update. Every
`log_every` iterations the mean of each named term is logged (the only
host-device sync); a non-finite term stops the run with the last good checkpoint kept.
Checkpoints (a folder of step-NNNNNNNN.pt files, each with a sha256 sidecar; the newest
`keep_checkpoints` kept) hold the weights, optimiser and scheduler states, every RNG state
(Python, NumPy, torch CPU/CUDA) and the batch sampler, so a killed run resumes to the same
result as an uninterrupted one. They are loaded with `weights_only=True` (no code runs), and
a checkpoint that fails its checksum is skipped with a warning, never loaded.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import hashlib
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.data import BatchSampler
from pipeline.io import atomic_write, atomic_write_text, safe_torch_load
from pipeline.machine import native_bf16
from pipeline.methods import Method
from pipeline.sections import TrainConfig

CHECKPOINT_FORMAT = "train_checkpoint/2"
# a gated phase may skip every update of an iteration; its schedule still advances with the iteration
warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device = {name!r} but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def rng_state(device: torch.device) -> dict:
    """Every RNG a step may draw from, as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def set_deterministic(enabled: bool) -> None:
    """train.deterministic: deterministic kernels only (an op without one raises, naming itself);
    cuDNN autotuning off. CPU runs are then bitwise reproducible."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS: fixed reduction order
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled


class CheckpointStore:
    """A folder of step-NNNNNNNN.pt checkpoints, each beside a .sha256 file of its bytes.

    save() writes the checkpoint then its checksum (both atomically) and prunes all but the
    newest `keep`; a file without a matching checksum (killed mid-save, truncated, bit-flipped)
    is never loaded: newest_valid() warns and falls back to the one before.
    """

    def __init__(self, folder: Path, keep: int):
        self.folder, self.keep = Path(folder), keep
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"checkpoint folder {self.folder} is a file: move it away or pass another "
                                     "--checkpoints folder")

    def paths(self) -> list[Path]:
        """Checkpoint files, newest first."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("step-*.pt"), reverse=True)

    def save(self, state: dict, iteration: int) -> Path:
        buf = io.BytesIO()
        torch.save(state, buf)
        blob = buf.getvalue()
        path = self.folder / f"step-{iteration:08d}.pt"
        atomic_write(path, lambda tmp: tmp.write_bytes(blob))
        atomic_write_text(path.with_suffix(".pt.sha256"), f"{hashlib.sha256(blob).hexdigest()}  {path.name}\n")
        for old in self.paths()[self.keep:]:
            old.with_suffix(".pt.sha256").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path, device: torch.device) -> dict:
        """Verify `path` against its checksum and load it without running code; ValueError if invalid."""
        sidecar = path.with_suffix(".pt.sha256")
        if not sidecar.exists():
            raise ValueError("no checksum file beside it (the save was interrupted)")
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != sidecar.read_text().split()[0]:
            raise ValueError("its bytes do not match the recorded sha256 (truncated or corrupted)")
        return safe_torch_load(path, "the checkpoint before it is used, if there is one", device, data=blob)

    def newest_valid(self, device: torch.device, desc: str) -> dict | None:
        """The newest checkpoint that passes its checksum, or None; clears temp files of killed saves."""
        for leftover in self.folder.glob(".step-*.tmp") if self.folder.is_dir() else []:
            leftover.unlink(missing_ok=True)
        for path in self.paths():
            try:
                return self.load(path, device)
            except (ValueError, OSError) as e:
                warnings.warn(f"[{desc}] skipping checkpoint {path}: {e}", stacklevel=2)
                print(f"[{desc}] WARNING: skipping checkpoint {path}: {e}", flush=True)
        return None

    def newest_iteration(self) -> int:
        """The step of the newest checkpoint file (0 if none), from its name."""
        paths = self.paths()
        return int(paths[0].stem.split("-")[1]) if paths else 0


def rows_to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def fused_kwargs(cfg: TrainConfig, device: torch.device) -> dict:
    """Adam's multi-tensor kernels: fused on CUDA, foreach on CPU."""
    if not cfg.fused_optimizer:
        return {"foreach": False}
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def network_modules(method: nn.Module) -> list[nn.Module]:
    """The networks of a method (modules defined in pipeline.networks), outermost only."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if type(child).__module__.startswith("pipeline.networks"):
                found.append(child)
            else:
                visit(child)

    visit(method)
    return found


def _float(output):
    """Network outputs as fp32 (losses, log-densities and critic logits are computed in fp32)."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, tuple):
        return tuple(o.float() if isinstance(o, torch.Tensor) else o for o in output)
    return output


def bf16_forward(forward, device_type: str):
    """`forward` run under bf16 autocast, its outputs returned as fp32: only the networks compute
    in bf16, never the loss code between them (SSIM, Sobel, Gabor and TC terms stay fp32)."""
    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(*args, **kwargs)
        return _float(output)
    return run


def resolve_speed_options(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """`cfg` with `auto` speed options made concrete for `device`: bf16 autocast where it computes
    bf16 natively, fp32 elsewhere; channels_last on every CPU (it pays in fp32 too: README, Speed)
    and on a GPU with native bf16."""
    native = native_bf16(device)
    return dataclasses.replace(
        cfg, autocast=("bf16" if native else "off") if cfg.autocast == "auto" else cfg.autocast,
        channels_last=(native or device.type == "cpu") if cfg.channels_last == "auto" else cfg.channels_last)


def apply_speed_options(method: nn.Module, cfg: TrainConfig) -> None:
    """Apply channels_last / bf16 autocast (each network's forward) / compile to `method`."""
    device = method.device
    if cfg.channels_last:
        method.to(memory_format=torch.channels_last)
    networks = network_modules(method)
    if cfg.autocast == "bf16":
        for net in networks:
            net.forward = bf16_forward(net.forward, device.type)
    if cfg.compile:  # aot_autograd has no double backward: a gradient-penalised network stays eager
        eager = [getattr(method, name) for name in type(method).twice_differentiated]
        for net in networks:
            if not any(net is e for e in eager):
                net.compile()


class Trainer:
    """Runs `method`'s phases for cfg.iterations, with logging, checkpoints and resume.

    checkpoint_dir holds this run's checkpoints; run_hash identifies the configuration: a
    checkpoint with another hash is ignored.
    """

    def __init__(self, method: Method, sampler: BatchSampler, cfg: TrainConfig, checkpoint_dir: Path,
                 log_path: Path, run_hash: str, desc: str = "train"):
        cfg = resolve_speed_options(cfg, method.device)
        self.method, self.sampler, self.cfg = method, sampler, cfg
        self.checkpoints = CheckpointStore(checkpoint_dir, cfg.keep_checkpoints)
        self.log_path, self.run_hash, self.desc = Path(log_path), run_hash, desc
        self.phases = method.phases()
        self.trainable = list(dict.fromkeys(m for p in self.phases for m in p.modules))
        self.phase_params = [[q for m in p.modules for q in m.parameters()] for p in self.phases]
        gamma = cfg.lr_decay_to ** (1.0 / cfg.iterations)  # exponential decay to lr_decay_to at the end
        self.optimizers = [torch.optim.Adam(params, lr=p.lr, betas=p.betas, **fused_kwargs(cfg, method.device))
                           for p, params in zip(self.phases, self.phase_params)]
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma) for o in self.optimizers]
        apply_speed_options(method, cfg)
        self.iteration = 0
        self.rows: list[dict] = []
        self.wall_time = 0.0
        # per loss term and per phase gradient: the first iteration it was non-finite (-1: never);
        # kept on the device and read only when logging or checkpointing (no per-step sync)
        self.first_nonfinite: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}  # running sums of the terms since the last log row
        self.count = 0

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "run_hash": self.run_hash, "iteration": self.iteration,
                "method": self.method.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers], "sampler": self.sampler.state_dict(),
                "rng": rng_state(self.method.device), "rows": self.rows, "wall_time": self.wall_time,
                "sums": self.sums, "count": self.count, "first_nonfinite": self.first_nonfinite}

    def save_checkpoint(self) -> None:
        self.check_finite()
        for name, p in self.method.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"{self.desc}: weight {name} is non-finite at iteration {self.iteration}; "
                                       f"the last good checkpoint is kept in {self.checkpoints.folder}")
        self.checkpoints.save(self.state_dict(), self.iteration)
        atomic_write_text(self.log_path, rows_to_csv(self.rows))

    def try_resume(self) -> bool:
        """Load the newest valid checkpoint if it belongs to this configuration."""
        state = self.checkpoints.newest_valid(self.method.device, self.desc)
        if state is None:
            return False
        if state.get("format") != CHECKPOINT_FORMAT or state.get("run_hash") != self.run_hash:
            print(f"[{self.desc}] ignoring checkpoints in {self.checkpoints.folder}: they belong to another "
                  "configuration (starting from scratch)")
            return False
        self.method.load_state_dict(state["method"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            sch.load_state_dict(s)
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"], self.method.device)
        self.iteration, self.rows, self.wall_time = state["iteration"], state["rows"], state["wall_time"]
        self.sums, self.count, self.first_nonfinite = state["sums"], state["count"], state["first_nonfinite"]
        # the log as of the checkpoint: `dvc repro` removes a stage's outputs before it reruns it
        atomic_write_text(self.log_path, rows_to_csv(self.rows))
        print(f"[{self.desc}] resuming from iteration {self.iteration} ({self.checkpoints.folder})")
        return True

    # -------------------------------------------------------------- non-finite guard
    def flag_nonfinite(self, name: str, value: torch.Tensor) -> None:
        """Record (on the device) the first iteration at which `value` was NaN or infinite."""
        first = self.first_nonfinite.get(name)
        if first is None:
            first = self.first_nonfinite[name] = torch.full((), -1, dtype=torch.long, device=value.device)
        bad = ~torch.isfinite(value.detach()).all() & (first < 0)
        first.copy_(torch.where(bad, self.iteration + 1, first))

    def check_finite(self) -> None:
        """Stop, naming the term and the iteration, if any loss or gradient was ever non-finite."""
        bad = {name: int(first) for name, first in self.first_nonfinite.items() if int(first) >= 0}
        if bad:
            # the earliest; at a tie a loss term before the gradient it caused
            name, step = min(bad.items(), key=lambda kv: (kv[1], kv[0].endswith("/gradient")))
            others = ", ".join(f"{n} at {s}" for n, s in sorted(bad.items(), key=lambda kv: kv[1]) if n != name)
            raise TrainingDiverged(
                f"{self.desc}: {name} became non-finite at iteration {step}" + (f" (then {others})" if others else "") +
                f". The last good checkpoint is kept in {self.checkpoints.folder} (iteration "
                f"{self.checkpoints.newest_iteration()}); lower the learning rate or check the data.")

    # -------------------------------------------------------------- loop
    def step(self) -> None:
        """One iteration: every phase, `steps` times each."""
        for phase, optimizer, params in zip(self.phases, self.optimizers, self.phase_params):
            for module in self.trainable:
                module.requires_grad_(any(module is m for m in phase.modules))
            for _ in range(phase.steps):
                batch = self.sampler.next()
                if self.cfg.channels_last and batch.ndim == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                terms = phase.loss(batch)
                # a method may gate an update on the batch (AVAE-S: D only while its accuracy < 0.7)
                if "gate" not in terms or bool(terms["gate"]):
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    grads = [q.grad for q in params if q.grad is not None]
                    if grads:
                        self.flag_nonfinite(f"{phase.name}/gradient", torch.nn.utils.get_total_norm(grads))
                    optimizer.step()
                for key, value in terms.items():
                    name = f"{phase.name}/{key}"
                    if key != "gate":
                        self.flag_nonfinite(name, value)
                    self.sums[name] = self.sums.get(name, 0.0) + value.detach() / phase.steps
        for scheduler in self.schedulers:
            scheduler.step()

    def run(self, stop_at: int | None = None) -> list[dict]:
        """Train up to cfg.iterations. `stop_at` simulates a kill: the loop just stops there,
        without logging or checkpointing, as a killed process would."""
        set_deterministic(self.cfg.deterministic)
        self.try_resume()
        end = min(self.cfg.iterations, stop_at or self.cfg.iterations)
        self.method.train()
        t0 = time.perf_counter()
        bar = tqdm(total=self.cfg.iterations, initial=self.iteration, desc=self.desc, unit="it",
                   mininterval=2.0, dynamic_ncols=True)
        while self.iteration < end:
            self.step()
            self.iteration += 1
            self.count += 1
            bar.update(1)
            last = self.iteration == self.cfg.iterations
            if self.iteration % self.cfg.log_every == 0 or last:
                self.check_finite()
                row = {"iteration": self.iteration, **{k: float(v) / self.count for k, v in self.sums.items()}}
                self.rows.append(row)
                bar.set_postfix({k.split("/")[0][:4] + "/" + k.split("/")[1]: f"{v:.3g}"
                                 for k, v in row.items() if k != "iteration"}, refresh=False)
                self.sums, self.count = {}, 0
            if self.iteration % self.cfg.checkpoint_every == 0 or last:
                self.wall_time += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint()
        bar.close()
        self.method.eval()
        return self.rows
