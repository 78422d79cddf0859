"""The PNG files of one cell a person looks at: samples, reconstructions (rows alternate: test
originals, then their reconstructions), an interpolation strip and latent traversals; a scatter
of samples over the data for vector data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import save_image

from pipeline.evaluate.cell import Cell
from pipeline.io import atomic_write


class Pictures:
    """PNG files of one cell: samples, reconstructions, interpolation strip, latent traversals."""

    def __init__(self, cell: Cell, out_dir: Path):
        self.cell, self.out_dir = cell, Path(out_dir)
        self.k = cell.cfg.grid_rows

    def save_all(self) -> list[Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.cell.info.kind != "image":
            return [self.scatter()]
        paths = [self.samples()]
        if self.cell.has_encoder:
            paths.append(self.reconstructions())
        return paths + [self.interpolation(), self.traversals()]

    def _save(self, images01: torch.Tensor, name: str, nrow: int) -> Path:
        """A PNG grid, written atomically (format named: the temporary file ends in .tmp)."""
        return atomic_write(self.out_dir / name,
                            lambda p: save_image(images01, p, nrow=nrow, padding=1, format="png"))

    def samples(self) -> Path:
        return self._save(self.cell.samples01[:self.k * self.k], "samples.png", self.k)

    def reconstructions(self) -> Path:
        """Alternating rows: test originals, then their reconstructions."""
        x, x_hat, k = self.cell.test01, self.cell.recon01, self.k
        rows = [t for i in range(0, k * k // 2, k) for t in (x[i:i + k], x_hat[i:i + k])]
        return self._save(torch.cat(rows), "reconstructions.png", k)

    def decode01(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.cell.unit(self.cell.decode(z))

    def anchors(self, n: int) -> torch.Tensor:
        """Latent codes to start from: posterior means of test images, or prior draws without an encoder."""
        if self.cell.has_encoder:
            return self.cell.posterior[0][:n]
        return torch.randn(n, self.cell.method.net.latent_dim, generator=self.cell.generator)

    def interpolation(self) -> Path:
        """Rows of linear interpolations between the codes of two test images (AVAE-S Fig. 3)."""
        steps = self.cell.cfg.strip_steps
        codes = self.anchors(2 * min(self.k, 4))
        rows = max(1, len(codes) // 2)
        t = torch.linspace(0, 1, steps)[:, None]
        z = torch.cat([(1 - t) * codes[2 * r] + t * codes[2 * r + 1] for r in range(rows)])
        return self._save(self.decode01(z), "interpolation.png", steps)

    def traversals(self) -> Path:
        """One row per latent dimension: that coordinate swept over [-3, 3] from a test image's code (AVAE-S Fig. 2)."""
        steps = self.cell.cfg.strip_steps
        base = self.anchors(1)[0]
        dims = min(self.k, base.numel())
        values = torch.linspace(-3, 3, steps)
        z = base.repeat(dims * steps, 1)
        for d in range(dims):
            z[d * steps:(d + 1) * steps, d] = values
        return self._save(self.decode01(z), "traversals.png", steps)

    def scatter(self) -> Path:
        fake = self.cell.samples[:2000].numpy()
        real = np.asarray(self.cell.data.x("test"))[:2000]
        fig = Figure(figsize=(5, 4), dpi=100)
        ax = fig.subplots()
        ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="data")
        ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.3, label="samples")
        ax.legend(markerscale=5)
        fig.tight_layout()
        return atomic_write(self.out_dir / "samples.png", lambda p: fig.savefig(p, format="png"))
