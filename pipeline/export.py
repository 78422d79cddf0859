"""Frozen stage-1 exports: a VAE's encoder and decoder, loadable for inference only.

An export holds the weights, the architecture config (network sizes, sigma mode and the
architecture name: dcgan / resnet / avae_s), the data description (scale included), the
stage-1 objective (method, config and any fixed loss state such as VAE-S's balanced
weights, so that 004's fine-tuning can keep minimising it) and a content hash of the
weights; `load_vae_export` verifies the hash and returns a `FrozenVAE` whose parameters never
require gradients and which stays in eval mode, so nothing a later stage does can change it.
Exports of format vae_export/1 (before architectures were selectable) load as 'dcgan' with no
recorded objective.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.io import UnsafeOrCorruptFile, atomic_torch_save, safe_torch_load
from pipeline.methods import Method
from pipeline.networks.architectures import build_decoder, build_encoder
from pipeline.sections import NetworkConfig

EXPORT_FORMAT = "vae_export/2"
READABLE_FORMATS = ("vae_export/1", EXPORT_FORMAT)  # /1: dcgan only, no objective


class FrozenVAE(nn.Module):
    """Encoder + decoder of a stage-1 VAE, frozen: no gradients, always in eval mode."""

    def __init__(self, info: DataInfo, net: NetworkConfig, sigma: str, architecture: str = "dcgan",
                 objective: dict | None = None):
        super().__init__()
        self.info, self.net, self.sigma, self.architecture = info, net, sigma, architecture
        self.objective = objective  # {"method", "config", "state"} of the stage-1 loss, or None
        self.encoder = build_encoder(architecture, info, net, sigma)
        self.decoder = build_decoder(architecture, net.latent_dim, info, net)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenVAE":
        return super().train(False)  # batch-norm statistics stay frozen too

    def arch(self) -> dict:
        return {"info": asdict(self.info), "networks": asdict(self.net), "sigma": self.sigma,
                "architecture": self.architecture, "objective": self.objective}

    @classmethod
    def from_arch(cls, arch: dict) -> "FrozenVAE":
        return cls(DataInfo.from_dict(arch["info"]), NetworkConfig(**arch["networks"]), arch["sigma"],
                   arch.get("architecture", "dcgan"), arch.get("objective"))


def record_hash(blob: dict) -> str:
    """sha256 over everything in an export but the weights (architecture, objective, provenance)."""
    record = {k: v for k, v in blob.items() if k not in ("state_dict", "content_hash", "record_hash")}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=repr).encode()).hexdigest()


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_vae(method: Method, path: Path, provenance: dict) -> str:
    """Write the frozen export of a stage-1 method (what its `export()` declares: encoder, decoder,
    sigma, architecture and its objective {"method", "config", "state"}); returns the weights'
    content hash."""
    stage1 = method.export()
    frozen = FrozenVAE(method.info, method.net, stage1.sigma, stage1.architecture, stage1.objective)
    frozen.encoder.load_state_dict(stage1.encoder.state_dict())
    frozen.decoder.load_state_dict(stage1.decoder.state_dict())
    state = {k: v.cpu() for k, v in frozen.state_dict().items()}
    digest = weights_hash(state)
    blob = {"format": EXPORT_FORMAT, "arch": frozen.arch(), "state_dict": state, "content_hash": digest,
            "provenance": provenance}
    atomic_torch_save({**blob, "record_hash": record_hash(blob)}, path)
    return digest


class ExportError(ValueError):
    """An export file is missing, of another format, or fails its content hash."""


def load_vae_export(path: str | Path, device: str | torch.device = "cpu") -> FrozenVAE:
    """Load and verify a frozen export; raises ExportError naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"VAE export {path} not found: run `dvc repro pretrain_vae` first")
    try:
        blob = safe_torch_load(path, "re-run `dvc repro pretrain_vae` or `dvc checkout`")
    except UnsafeOrCorruptFile as e:
        raise ExportError(str(e)) from None
    if not isinstance(blob, dict) or blob.get("format") not in READABLE_FORMATS:
        raise ExportError(f"{path} is not a VAE export (format {blob.get('format') if isinstance(blob, dict) else '?'!r}, "
                          f"readable: {list(READABLE_FORMATS)}); re-run `dvc repro pretrain_vae`")
    if not isinstance(blob.get("state_dict"), dict) or weights_hash(blob["state_dict"]) != blob.get("content_hash"):
        raise ExportError(f"{path}: weights do not match their content hash (corrupt or edited); "
                          "re-run `dvc repro pretrain_vae` or `dvc checkout`")
    if "record_hash" in blob and record_hash(blob) != blob["record_hash"]:  # vae_export/1 files have none
        raise ExportError(f"{path}: its architecture/provenance record does not match its hash (corrupt or "
                          "edited); re-run `dvc repro pretrain_vae` or `dvc checkout`")
    try:
        frozen = FrozenVAE.from_arch(blob["arch"])
        frozen.load_state_dict(blob["state_dict"])
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        arch = blob.get("arch") if isinstance(blob.get("arch"), dict) else {}
        raise ExportError(f"{path}: its weights do not fit the recorded architecture "
                          f"{arch.get('architecture', 'dcgan')!r} ({type(e).__name__}: {e}); "
                          "re-run `dvc repro pretrain_vae`") from None
    frozen.content_hash = blob["content_hash"]
    return frozen.to(device)
