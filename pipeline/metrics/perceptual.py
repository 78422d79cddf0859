"""LPIPS v0.1 with AlexNet (Zhang et al. 2018), the `lpips` package: its shipped linear layers
on a torchvision AlexNet backbone loaded from an explicit weights file (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.metrics.frechet import fp32_matmul, to_255_rgb


def load_lpips(weights_path: str | Path) -> torch.nn.Module:
    """LPIPS v0.1 (AlexNet) with the backbone loaded from torchvision's alexnet-owt-7be5be79.pth
    (the caller checks both files' sha256: pipeline.weights)."""
    import torchvision

    alexnet = torchvision.models.alexnet()
    alexnet.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return lpips_with_backbone(alexnet)


def lpips_with_backbone(alexnet: torch.nn.Module) -> torch.nn.Module:
    """The lpips package's v0.1 linear layers on top of the given torchvision AlexNet's features."""
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    for slice_ in (getattr(model.net, f"slice{k}") for k in range(1, 6)):
        for name, layer in slice_.named_children():
            layer.load_state_dict(alexnet.features[int(name)].state_dict())
    return model.eval()


def lpips_distance(model: torch.nn.Module, x01: torch.Tensor, y01: torch.Tensor, batch_size: int) -> float:
    """Mean LPIPS between image pairs given in [0,1] (lpips expects [-1,1], 3 channels), TF32 off."""
    total = 0.0
    with torch.no_grad(), fp32_matmul():
        for i in range(0, len(x01), batch_size):
            a, b = (to_255_rgb(t[i:i + batch_size]) / 127.5 - 1 for t in (x01, y01))
            total += float(model(a, b).sum())
    return total / len(x01)
