"""The frozen stage-1 export: self-describing, verified, inert."""

import pytest
import torch

from pipeline.datainfo import DataInfo
from pipeline.export import ExportError, export_vae, load_vae_export
from pipeline.methods.vae import VAE, VaeConfig
from tests.conftest import TINY_NET

INFO = DataInfo("fashion_mnist", "image", (1, 32, 32), "[-1,1]", 10)


def test_export_roundtrip_is_frozen_and_identical(tmp_path):
    vae = VAE(VaeConfig(), INFO, TINY_NET).eval()
    digest = export_vae(vae, tmp_path / "e.pt", {"seed": 0})
    frozen = load_vae_export(tmp_path / "e.pt")
    assert frozen.content_hash == digest and frozen.info == INFO  # data scale travels with it
    assert all(not p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(frozen.encoder(x)[0], vae.encoder(x)[0])
    blob = torch.load(tmp_path / "e.pt", weights_only=False)
    assert set(blob) == {"format", "arch", "state_dict", "content_hash", "provenance", "record_hash"}  # no training state


def test_tampered_export_is_refused(tmp_path):
    vae = VAE(VaeConfig(), INFO, TINY_NET)
    export_vae(vae, tmp_path / "e.pt", {})
    blob = torch.load(tmp_path / "e.pt", weights_only=False)
    blob["state_dict"]["encoder.log_sigma"] += 1
    torch.save(blob, tmp_path / "e.pt")
    with pytest.raises(ExportError, match="content hash"):
        load_vae_export(tmp_path / "e.pt")


def test_missing_export_says_which_stage(tmp_path):
    with pytest.raises(ExportError, match="dvc repro pretrain_vae"):
        load_vae_export(tmp_path / "nope.pt")
