"""The generic training loop. It knows phases, never a method or a loss term.

Each iteration runs the method's phases in order; a phase updates only its own modules
(every other parameter has requires_grad off while it runs) with its own Adam optimiser,
`steps` times; a phase whose loss returns a false "gate" term skips that update. Every
`log_every` iterations the mean of each named term is logged (the only
host-device sync); a non-finite term stops the run with the last good checkpoint kept.
Checkpoints hold the weights, optimiser and scheduler states, the RNG and the batch
sampler, so a killed run resumes to the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import TrainConfig
from pipeline.data import BatchSampler
from pipeline.io import atomic_torch_save, atomic_write_text
from pipeline.methods import Method

CHECKPOINT_FORMAT = "train_checkpoint/1"
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
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


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


def _float_outputs(module: nn.Module, inputs, output):
    """Forward hook: network outputs leave bf16 autocast as fp32 (losses, log-densities and
    critic logits are computed in fp32)."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, tuple):
        return tuple(o.float() if isinstance(o, torch.Tensor) else o for o in output)
    return output


def apply_speed_options(method: nn.Module, cfg: TrainConfig):
    """Apply channels_last / autocast / compile to `method`; returns the autocast context factory."""
    device = method.device
    if cfg.channels_last:
        method.to(memory_format=torch.channels_last)
    networks = network_modules(method)
    if cfg.autocast == "bf16":
        for net in networks:
            net.register_forward_hook(_float_outputs)
    if cfg.compile:
        for net in networks:
            net.compile()
    if cfg.autocast == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


class Trainer:
    """Runs `method`'s phases for cfg.iterations, with logging, checkpoints and resume.

    run_hash identifies the configuration: a checkpoint with another hash is ignored.
    """

    def __init__(self, method: Method, sampler: BatchSampler, cfg: TrainConfig, checkpoint: Path,
                 log_path: Path, run_hash: str, desc: str = "train"):
        self.method, self.sampler, self.cfg = method, sampler, cfg
        self.checkpoint, self.log_path, self.run_hash, self.desc = Path(checkpoint), Path(log_path), run_hash, desc
        self.phases = method.phases()
        self.trainable = list(dict.fromkeys(m for p in self.phases for m in p.modules))
        gamma = cfg.lr_decay_to ** (1.0 / cfg.iterations)  # exponential decay to lr_decay_to at the end
        self.optimizers = [torch.optim.Adam([q for m in p.modules for q in m.parameters()], lr=p.lr, betas=p.betas,
                                            **fused_kwargs(cfg, method.device)) for p in self.phases]
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma) for o in self.optimizers]
        self.autocast = apply_speed_options(method, cfg)
        self.iteration = 0
        self.rows: list[dict] = []
        self.wall_time = 0.0

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "run_hash": self.run_hash, "iteration": self.iteration,
                "method": self.method.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers], "sampler": self.sampler.state_dict(),
                "rng": rng_state(self.method.device), "rows": self.rows, "wall_time": self.wall_time}

    def save_checkpoint(self) -> None:
        for p in self.method.parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"{self.desc}: non-finite weights at iteration {self.iteration}; "
                                       f"last good checkpoint kept at {self.checkpoint}")
        atomic_torch_save(self.state_dict(), self.checkpoint)
        atomic_write_text(self.log_path, rows_to_csv(self.rows))

    def try_resume(self) -> bool:
        """Load the checkpoint if it exists and belongs to this configuration."""
        if not self.checkpoint.exists():
            return False
        state = torch.load(self.checkpoint, map_location=self.method.device, weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("run_hash") != self.run_hash:
            print(f"[{self.desc}] ignoring checkpoint {self.checkpoint}: it belongs to another configuration")
            return False
        self.method.load_state_dict(state["method"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            sch.load_state_dict(s)
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"], self.method.device)
        self.iteration, self.rows, self.wall_time = state["iteration"], state["rows"], state["wall_time"]
        print(f"[{self.desc}] resuming from iteration {self.iteration} ({self.checkpoint})")
        return True

    # -------------------------------------------------------------- loop
    def step(self, sums: dict[str, torch.Tensor]) -> None:
        """One iteration: every phase, `steps` times each."""
        for phase, optimizer in zip(self.phases, self.optimizers):
            for module in self.trainable:
                module.requires_grad_(any(module is m for m in phase.modules))
            for _ in range(phase.steps):
                batch = self.sampler.next()
                if self.cfg.channels_last and batch.ndim == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                with self.autocast():
                    terms = phase.loss(batch)
                # a method may gate an update on the batch (AVAE-S: D only while its accuracy < 0.7)
                if "gate" not in terms or bool(terms["gate"]):
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                for key, value in terms.items():
                    name = f"{phase.name}/{key}"
                    sums[name] = sums.get(name, 0.0) + value.detach() / phase.steps
        for scheduler in self.schedulers:
            scheduler.step()

    def run(self, stop_at: int | None = None) -> list[dict]:
        """Train up to cfg.iterations. `stop_at` simulates a kill: the loop just stops there,
        without logging or checkpointing, as a killed process would."""
        self.try_resume()
        end = min(self.cfg.iterations, stop_at or self.cfg.iterations)
        self.method.train()
        sums: dict[str, torch.Tensor] = {}
        count, t0 = 0, time.perf_counter()
        bar = tqdm(total=self.cfg.iterations, initial=self.iteration, desc=self.desc, unit="it",
                   mininterval=2.0, dynamic_ncols=True)
        while self.iteration < end:
            self.step(sums)
            self.iteration += 1
            count += 1
            bar.update(1)
            last = self.iteration == self.cfg.iterations
            if self.iteration % self.cfg.log_every == 0 or last:
                row = {"iteration": self.iteration, **{k: float(v) / count for k, v in sums.items()}}
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingDiverged(
                        f"{self.desc}: {', '.join(bad)} became non-finite at iteration {self.iteration}. "
                        f"The last good checkpoint is kept at {self.checkpoint} (iteration "
                        f"{self._checkpoint_iteration()}); lower the learning rate or check the data.")
                self.rows.append(row)
                bar.set_postfix({k.split("/")[0][:4] + "/" + k.split("/")[1]: f"{v:.3g}"
                                 for k, v in row.items() if k != "iteration"}, refresh=False)
                sums, count = {}, 0
            if self.iteration % self.cfg.checkpoint_every == 0 or last:
                self.wall_time += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint()
        bar.close()
        self.method.eval()
        return self.rows

    def _checkpoint_iteration(self) -> int:
        if not self.checkpoint.exists():
            return 0
        return torch.load(self.checkpoint, map_location="cpu", weights_only=False)["iteration"]
